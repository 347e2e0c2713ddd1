"""The dashboard's charts: plotly figures (as JSON-ready dicts) built from the views' rows."""

import plotly.graph_objects as go
from plotly.subplots import make_subplots

TOP_ITEMS = 10
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
COLORS = ("#1a73e8", "#12b5cb", "#e8710a", "#9334e6", "#1e8e3e", "#d93025")


def _layout(**extra) -> dict:
    layout = {
        "template": "plotly_white",
        "font": {"family": FONT, "size": 13, "color": "#202124"},
        "margin": {"l": 64, "r": 24, "t": 24, "b": 56},
        "colorway": COLORS,
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        "hoverlabel": {"font": {"family": FONT}},
    }
    return layout | extra


def _figure(traces: list, layout: dict, subplots: dict | None = None) -> dict:
    """A figure as JSON-ready dict; with ``subplots`` (make_subplots arguments, one row), trace i
    goes into column i + 1."""
    if subplots is None:
        figure = go.Figure(traces)
    else:
        figure = make_subplots(**subplots)
        for col, trace in enumerate(traces, start=1):
            figure.add_trace(trace, row=1, col=col)
    figure.update_layout(**layout)
    return figure.to_plotly_json()


def _axis(title: str, **extra) -> dict:
    return {"title": {"text": title}, "automargin": True} | extra


def _category_axis() -> dict:
    """The category axis of horizontal bars: the first row on top, labels clear of the bars."""
    return {"autorange": "reversed", "automargin": True, "ticksuffix": "  "}


def visits_by_page_chart(rows: list[dict]) -> dict:
    pages = [row["page_path"] for row in rows]
    traces = [
        go.Bar(
            name=label,
            x=pages,
            y=[row[column] for row in rows],
            texttemplate="%{y:,}",
            textposition="outside",
            cliponaxis=False,
            hovertemplate=f"%{{x}}: %{{y:,}} {label.lower()}<extra></extra>",
        )
        for column, label in (("visits", "Visits"), ("page_views", "Page views"))
    ]
    layout = _layout(
        barmode="group",
        xaxis=_axis("Page"),
        yaxis=_axis("Visits / page views", tickformat=","),
    )
    return _figure(traces, layout)


def visits_by_device_chart(rows: list[dict]) -> dict:
    trace = go.Pie(
        labels=[row["device_type"] for row in rows],
        values=[row["visits"] for row in rows],
        customdata=[row["visits_with_purchase"] for row in rows],
        hole=0.55,
        sort=False,
        texttemplate="%{label}<br>%{percent:.1%}",
        hovertemplate="%{label}: %{value:,} visits (%{percent:.1%}),"
        "<br>%{customdata:,} with a purchase<extra></extra>",
        marker={"line": {"color": "white", "width": 2}},
    )
    total = sum(row["visits"] for row in rows)
    layout = _layout(
        showlegend=False,
        margin={"l": 16, "r": 16, "t": 16, "b": 16},
        annotations=[
            {"text": f"<b>{total:,}</b><br>visits", "showarrow": False, "font": {"size": 16}}
        ],
    )
    return _figure([trace], layout)


def sales_by_category_chart(rows: list[dict]) -> dict:
    currencies = sorted({row["currency"] for row in rows})
    traces = []
    for currency in currencies:
        mine = [row for row in rows if row["currency"] == currency]
        traces.append(
            go.Bar(
                name=currency,
                x=[row["category"] for row in mine],
                y=[row["revenue"] for row in mine],
                customdata=[[row["units_sold"], row["orders"]] for row in mine],
                texttemplate="%{y:,.3s}",
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"%{{x}}: {currency} %{{y:,.2f}}<br>%{{customdata[0]:,}} units "
                "in %{customdata[1]:,} orders<extra></extra>",
            )
        )
    unit = f" ({currencies[0]})" if len(currencies) == 1 else ""
    layout = _layout(
        showlegend=len(currencies) > 1,
        xaxis=_axis("Category"),
        yaxis=_axis(f"Revenue{unit}", tickformat=",.2s"),
    )
    return _figure(traces, layout)


def popular_items_chart(rows: list[dict]) -> dict:
    """Two panels: the top items by units sold and the top items by revenue."""
    several_currencies = len({row["currency"] for row in rows}) > 1

    def label(row: dict) -> str:
        name = row["product_name"] or row["product_id"]
        return f"{name} ({row['currency']})" if several_currencies else name

    panels = (("units_sold", "units_rank", "%{x:,}"), ("revenue", "revenue_rank", "%{x:,.3s}"))
    traces = [
        _top_items_bar(rows, value, rank, text, color, label)
        for (value, rank, text), color in zip(panels, COLORS, strict=False)
    ]
    currency = f" ({rows[0]['currency']})" if rows and not several_currencies else ""
    layout = _layout(
        margin={"l": 16, "r": 48, "t": 40, "b": 56},
        xaxis=_axis("Units sold", tickformat=","),
        xaxis2=_axis(f"Revenue{currency}", tickformat=",.2s"),
        yaxis=_category_axis(),
        yaxis2=_category_axis(),
    )
    titles = (f"Top {TOP_ITEMS} by units sold", f"Top {TOP_ITEMS} by revenue")
    subplots = {"rows": 1, "cols": 2, "subplot_titles": titles, "horizontal_spacing": 0.22}
    return _figure(traces, layout, subplots)


def _top_items_bar(rows: list[dict], value: str, rank: str, text: str, color: str, label) -> go.Bar:
    """Horizontal bars of ``value`` for the items ranked TOP_ITEMS or better by ``rank``."""
    top = sorted((r for r in rows if r[rank] <= TOP_ITEMS), key=lambda r: (r[rank], label(r)))
    return go.Bar(
        orientation="h",
        y=[label(row) for row in top],
        x=[row[value] for row in top],
        customdata=[[row["product_id"], row["category"]] for row in top],
        marker_color=color,
        texttemplate=text,
        textposition="outside",
        cliponaxis=False,
        showlegend=False,
        hovertemplate=f"%{{y}} (%{{customdata[0]}}, %{{customdata[1]}}): {text}<extra></extra>",
    )


def page_views_per_minute_chart(rows: list[dict]) -> dict:
    trace = go.Bar(
        x=[row["minute"] for row in rows],
        y=[row["page_views"] for row in rows],
        hovertemplate="%{x|%H:%M} UTC: %{y:,} page views<extra></extra>",
    )
    layout = _layout(
        bargap=0.15,
        xaxis=_axis("Minute (UTC)", type="date", tickformat="%H:%M"),
        yaxis=_axis("Page views", tickformat=",", rangemode="tozero"),
    )
    return _figure([trace], layout)


def clicks_by_page_chart(rows: list[dict]) -> dict:
    trace = go.Bar(
        orientation="h",
        y=[row["page_path"] for row in rows],
        x=[row["page_views"] for row in rows],
        marker_color=COLORS[1],
        texttemplate="%{x:,}",
        textposition="outside",
        cliponaxis=False,
        hovertemplate="%{y}: %{x:,} page views<extra></extra>",
    )
    layout = _layout(
        xaxis=_axis("Page views", tickformat=",", rangemode="tozero"),
        yaxis=_category_axis(),
    )
    return _figure([trace], layout)


# Looker Studio
