"""The lab's dashboard and realtime page (``clickstream dashboard``), and a Looker Studio link.

The dashboard (``/``) draws the four Task 1.3 charts (visits by page, most popular items, sales
by category, visits by device type); the realtime page (``/realtime``, Task 3) shows clicks by page
and page views per minute over the last minutes and refreshes by itself. Both read the analyst
views (``metadata/views``) through the BigQuery client: the local stack, or a project with
``--project``. Charts are drawn in the browser by plotly.js, served from the plotly package, so
nothing is fetched from the internet at view time.

The realtime page also lists the denial-of-service drill's incidents (``/api/incidents``): those
the local alert evaluator (``clickstream monitoring drill``) records in its incidents file.

``--looker-link`` prints a Looker Studio Linking API URL that creates a report whose data sources
are the same views in BigQuery.
"""

import dataclasses
import datetime
import functools
import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from plotly.utils import PlotlyJSONEncoder

from clickstream.core import contract, incidents

if TYPE_CHECKING:
    from google.cloud import bigquery
from clickstream.dashboard.charts import (
    TOP_ITEMS,
    clicks_by_page_chart,
    page_views_per_minute_chart,
    popular_items_chart,
    sales_by_category_chart,
    visits_by_device_chart,
    visits_by_page_chart,
)

LOG = logging.getLogger(__name__)
ASSETS = resources.files("clickstream.dashboard").joinpath("assets")
ASSET_ROUTES = {
    "/": "index.html",
    "/realtime": "realtime.html",
    "/static/dashboard.css": "dashboard.css",
    "/static/dashboard.js": "dashboard.js",
}
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "json": "application/json",
}
LOOKER_CREATE_URL = "https://lookerstudio.google.com/reporting/create"
# Linking API data source aliases ds0, ds1, ... in this order; a template report given with
# --report-id must use the same aliases for the same views.
LOOKER_DATA_SOURCES = (
    "visits_by_page",
    "popular_items",
    "sales_by_category",
    "visits_by_device",
    "page_views_per_minute",
)
CLOCKS = ("now", "latest")
MAX_MINUTES = 24 * 60
RECENT_INCIDENTS = 10


class BadRequest(ValueError):
    """A request parameter is out of range."""


@dataclass(frozen=True)
class Source:
    """Where the views live: a BigQuery client (emulator or cloud) and a dataset."""

    bq: "bigquery.Client"  # imported lazily
    dataset: str

    @property
    def name(self) -> str:
        return f"{self.bq.project}.{self.dataset}"

    def view(self, name: str) -> str:
        return f"`{self.bq.project}.{self.dataset}.{name}`"

    def rows(self, sql: str, **params) -> list[dict]:
        """The rows of ``sql`` as dicts; ``params`` become query parameters (@name)."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[_parameter(name, value) for name, value in params.items()]
        )
        return [dict(row.items()) for row in self.bq.query(sql, job_config=config).result()]

    def missing_views(self) -> list[str]:
        """The views of ``metadata/views`` that the dataset lacks."""
        from google.api_core.exceptions import NotFound

        missing = []
        for view in contract.views():
            try:
                self.bq.get_table(f"{self.name}.{view.name}")
            except NotFound:
                missing.append(view.name)
        return missing


def _parameter(name: str, value):
    from google.cloud import bigquery

    kind = "TIMESTAMP" if isinstance(value, datetime.datetime) else "INT64"
    return bigquery.ScalarQueryParameter(name, kind, value)


@dataclass(frozen=True)
class Settings:
    source: Source
    clock: str  # "now" (live stream) or "latest" (the realtime window ends at the latest minute)
    minutes: int  # default realtime window
    refresh_seconds: int
    incidents: Path | None = None  # the DoS drill's incidents file, if any


# Data for the pages


def dashboard_data(source: Source) -> dict:
    """The four Task 1.3 datasets from the views, totals over them, and a chart for each."""
    data = {
        "visits_by_page": source.rows(
            f"SELECT * FROM {source.view('visits_by_page')} "
            "ORDER BY visits DESC, page_views DESC, page_path"
        ),
        "popular_items": source.rows(
            f"SELECT * FROM {source.view('popular_items')} "
            "WHERE units_rank <= @top OR revenue_rank <= @top "
            "ORDER BY currency, units_rank, revenue_rank, product_id",
            top=TOP_ITEMS,
        ),
        "sales_by_category": source.rows(
            f"SELECT * FROM {source.view('sales_by_category')} "
            "ORDER BY revenue DESC, category, currency"
        ),
        "visits_by_device": source.rows(
            f"SELECT * FROM {source.view('visits_by_device')} ORDER BY visits DESC, device_type"
        ),
    }
    return {
        "source": source.name,
        "data": data,
        "totals": totals(data),
        "charts": {
            "visits_by_page": visits_by_page_chart(data["visits_by_page"]),
            "popular_items": popular_items_chart(data["popular_items"]),
            "sales_by_category": sales_by_category_chart(data["sales_by_category"]),
            "visits_by_device": visits_by_device_chart(data["visits_by_device"]),
        },
    }


def totals(data: dict) -> dict:
    """Headline figures: visits, page views, visits with a purchase, units, revenue by currency."""
    devices, sales = data["visits_by_device"], data["sales_by_category"]
    revenue: dict[str, Decimal] = {}
    for row in sales:
        revenue[row["currency"]] = revenue.get(row["currency"], Decimal(0)) + row["revenue"]
    return {
        "visits": sum(row["visits"] for row in devices),
        "visits_with_purchase": sum(row["visits_with_purchase"] for row in devices),
        "page_views": sum(row["page_views"] for row in data["visits_by_page"]),
        "units_sold": sum(row["units_sold"] for row in sales),
        "revenue": revenue,
    }


def realtime_data(
    source: Source, minutes: int, clock: str, now: datetime.datetime | None = None
) -> dict:
    """Page views per minute and clicks by page in the window of ``minutes`` whole minutes that
    ends at the current minute (``clock`` "now") or at the latest minute in the data ("latest")."""
    view = source.view("page_views_per_minute")
    end = None
    if clock == "latest":
        end = source.rows(f"SELECT MAX(minute) AS latest FROM {view}")[0]["latest"]
    end = (end or now or datetime.datetime.now(datetime.UTC)).replace(second=0, microsecond=0)
    start = end - datetime.timedelta(minutes=minutes)  # the window is (start, end]
    rows = source.rows(
        f"SELECT minute, page_path, page_views FROM {view} "
        "WHERE minute > @start AND minute <= @end",
        start=start,
        end=end,
    )
    per_minute = {start + datetime.timedelta(minutes=i + 1): 0 for i in range(minutes)}
    by_page: dict[str, int] = {}
    for row in rows:
        per_minute[row["minute"]] += row["page_views"]
        by_page[row["page_path"]] = by_page.get(row["page_path"], 0) + row["page_views"]
    per_minute_rows = [{"minute": m, "page_views": n} for m, n in per_minute.items()]
    by_page_rows = [
        {"page_path": page, "page_views": n}
        for page, n in sorted(by_page.items(), key=lambda item: (-item[1], item[0]))
    ]
    return {
        "source": source.name,
        "clock": clock,
        "minutes": minutes,
        "window_start": start,
        "window_end": end,
        "page_views": sum(by_page.values()),
        "per_minute": per_minute_rows,
        "by_page": by_page_rows,
        "charts": {
            "page_views_per_minute": page_views_per_minute_chart(per_minute_rows),
            "clicks_by_page": clicks_by_page_chart(by_page_rows),
        },
    }


def incidents_data(path: Path | None) -> dict:
    """The latest incidents of the drill's file (the open ones first), and how many are open."""
    found = incidents.read(path) if path else []
    found.sort(key=lambda incident: incident.state != incidents.OPEN)  # stable: latest first
    return {
        "source": str(path) if path else None,
        "open": sum(incident.state == incidents.OPEN for incident in found),
        "incidents": [dataclasses.asdict(i) for i in found[:RECENT_INCIDENTS]],
    }


# Charts: plotly figures as JSON-ready dicts, drawn by plotly.js in the page


def looker_link(project: str, dataset: str, report_id: str | None = None) -> str:
    """A Looker Studio Linking API URL with one BigQuery data source per view (aliases ds0, ds1,
    ... in ``LOOKER_DATA_SOURCES`` order). Without ``report_id`` it creates a blank report with
    those data sources, open for editing; with one, a copy of that template report on them."""
    params = {"r.reportName": f"Clickstream analytics ({project}.{dataset})", "c.mode": "edit"}
    if report_id:
        params["c.reportId"] = report_id
    for index, name in enumerate(LOOKER_DATA_SOURCES):
        alias = f"ds.ds{index}"
        params |= {
            f"{alias}.connector": "bigQuery",
            f"{alias}.datasourceName": f"{dataset}.{name}",
            f"{alias}.type": "TABLE",
            f"{alias}.projectId": project,
            f"{alias}.datasetId": dataset,
            f"{alias}.tableId": name,
        }
    return f"{LOOKER_CREATE_URL}?{urlencode(params, quote_via=quote)}"


# The server


class DashboardServer(ThreadingHTTPServer):
    """Serves the pages, their JSON and plotly.js; ``settings`` says where the data is."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: Settings):
        super().__init__(address, DashboardHandler)
        self.settings = settings

    @property
    def url(self) -> str:
        host, port = cast(tuple[str, int], self.server_address[:2])  # an AF_INET socket's
        return f"http://{host}:{port}/"


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in ASSET_ROUTES:
            name = ASSET_ROUTES[url.path]
            self._send(ASSETS.joinpath(name).read_bytes(), name.rsplit(".", 1)[1])
        elif url.path == "/static/plotly.min.js":
            self._send(plotly_js(), "js", cache=True)
        elif url.path == "/api/charts":
            self._send_data(lambda: dashboard_data(self.server.settings.source))
        elif url.path == "/api/realtime":
            self._send_data(lambda: self._realtime(parse_qs(url.query)))
        elif url.path == "/api/incidents":
            self._send_data(lambda: incidents_data(self.server.settings.incidents))
        else:
            self._send_json({"error": f"not found: {url.path}"}, HTTPStatus.NOT_FOUND)

    def _realtime(self, query: dict[str, list[str]]) -> dict:
        settings = self.server.settings
        minutes = query.get("minutes", [str(settings.minutes)])[0]
        if not minutes.isdigit() or not 1 <= int(minutes) <= MAX_MINUTES:
            raise BadRequest(f"minutes must be a whole number from 1 to {MAX_MINUTES}")
        data = realtime_data(settings.source, int(minutes), settings.clock)
        return data | {"refresh_seconds": settings.refresh_seconds}

    def _send_data(self, build) -> None:
        try:
            data = build()
        except BadRequest as error:
            self._send_json({"error": str(error)}, HTTPStatus.BAD_REQUEST)
        except Exception as error:  # the page shows what went wrong (e.g. the emulator stopped)
            LOG.warning("%s failed: %s", self.path, error)
            self._send_json({"error": str(error)}, HTTPStatus.BAD_GATEWAY)
        else:
            self._send_json(data)

    def _send_json(self, data: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(data, cls=PlotlyJSONEncoder)  # Decimal and datetime too
        self._send(body.encode(), "json", status)

    def _send(
        self, body: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK, cache: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPES[kind])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        LOG.debug(format, *args)  # polling every few seconds would flood the terminal


@functools.cache
def plotly_js() -> bytes:
    """plotly.js as shipped in the plotly package (no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()
