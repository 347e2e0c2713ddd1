"""The generated sections of docs/capacity.md: the model's assumptions, the measured figures, the
workers and BigQuery costs at each rate, and the templates' Dataflow options, computed by
``deploy/capacity.py``. ``clickstream template docs`` writes them; a test fails when stale."""

from clickstream import pipelines
from clickstream.core import generated, templates
from clickstream.core.generated import cell
from clickstream.deploy import capacity
from clickstream.pipelines.template_docs import COMMAND

PAGE = capacity.ROOT / "docs" / "capacity.md"
PATHS = {  # the write paths costed, as the page names them
    "batch": "batch: load jobs, a MERGE per table per day",
    "streaming": "streaming: insertAll, daily compaction",
    "storage write": "streaming with the Storage Write API instead of insertAll",
}
WORK = {"parse": "parse", "load": "load jobs", "append": "insertAll"}


def _dollars(value: float) -> str:
    return f"${value:,.0f}" if value >= 100 else f"${value:,.2f}"


def _rate(rate: int) -> str:
    return f"{rate:,}"


def assumptions() -> str:
    p = capacity.pricing()
    return "\n".join(
        [
            f"- Rates: {', '.join(map(_rate, capacity.RATES))} visits per minute, steady; a "
            f"month is {capacity.DAYS} days.",
            f"- Workers are planned at {capacity.UTILISATION:.0%} of each vCPU busy.",
            f"- A batch job migrates a day's visits within {capacity.BATCH_HOURS:g} hour.",
            f"- Compaction looks for copies in {capacity.HISTORY_DAYS} days of history.",
            f"- BigQuery prices: [{p['source']}]({p['source']}), quotas: "
            f"[{p['quotas_source']}]({p['quotas_source']}), read on {p['read_on']}. "
            f"{p['note']}",
        ]
    )


def measured() -> str:
    m = capacity.Measured.read()
    lines = [
        f"Measured on {m.measured_on} by `{m.command}` over `{m.input}` ({m.visits:,} visits; "
        f"{m.machine}); the median of the rounds, their range in parentheses.",
        "",
        "| work per visit | CPU µs per visit | visits/s per vCPU |",
        "|---|---:|---:|",
    ]
    for part, seconds in m.cpu_seconds_per_visit.items():
        low, high = m.cpu_seconds_range[part]
        lines.append(
            f"| {WORK[part]} | {seconds * 1e6:,.1f} ({low * 1e6:,.1f}-{high * 1e6:,.1f}) "
            f"| {1 / seconds:,.0f} |"
        )
    lines += [
        "",
        f"A visit is {m.json_bytes_per_visit:,.0f} bytes of JSON and becomes, in BigQuery "
        f"(logical bytes: what storage and on-demand queries bill):",
        "",
        "| table | rows per visit | bytes per row | key bytes per row | JSON bytes per row "
        "(largest) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in m.tables.items():
        lines.append(
            f"| `{name}` | {t.rows_per_visit:.2f} | {t.logical_bytes_per_row:,.0f} "
            f"| {t.key_bytes_per_row:,.0f} | {t.json_bytes_per_row:,.0f} "
            f"({t.largest_json_row:,}) |"
        )
    rows = sum(t.rows_per_visit for t in m.tables.values())
    lines.append(
        f"| all | {rows:.2f} | {m.bytes_per_visit('logical_bytes_per_row'):,.0f} per visit "
        f"| {m.bytes_per_visit('key_bytes_per_row'):,.0f} per visit | |"
    )
    return "\n".join(lines)


def _workers_cell(name: str, rate: int, m: capacity.Measured) -> str:
    need = capacity.workers(name, rate, m)
    if need is None:
        return "not modelled"
    options = templates.dataflow_options(name)
    vcpus = f"{need.vcpus:.2g}" if need.vcpus < 10 else f"{need.vcpus:,.0f}"
    text = f"{need.workers} x {options.machine_type} ({vcpus} vCPUs)"
    return text + (
        f", over max {options.max_workers}" if need.workers > options.max_workers else ""
    )


def workers() -> str:
    m = capacity.Measured.read()
    names = pipelines.names()
    lines = [
        "| template | mode | work per visit | CPU µs per visit |",
        "|---|---|---|---:|",
    ]
    for name in names:
        mode = "streaming" if templates.metadata(name).get("streaming") else "batch"
        cpu = capacity.cpu_seconds(name, m)
        work = " + ".join(WORK[part] for part in capacity.CPU.get(name, ()))
        shown = f"{cpu * 1e6:,.0f}" if cpu is not None else "-"
        lines.append(
            f"| `{name}` | {mode} | {work or cell(capacity.NOT_MODELLED[name])} | {shown} |"
        )
    lines += [
        "",
        "| visits/min | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---:|" + "---|" * len(names),
    ]
    for rate in capacity.RATES:
        cells = " | ".join(_workers_cell(n, rate, m) for n in names)
        lines.append(f"| {_rate(rate)} | {cells} |")
    return "\n".join(lines)


def bigquery() -> str:
    m, p = capacity.Measured.read(), capacity.pricing()
    items = list(capacity.bigquery_month(1, "batch", m, p["prices"]))
    lines = [
        "| visits/min | path | " + " | ".join(items) + " | per month | per million visits |",
        "|---:|---|" + "---:|" * (len(items) + 2),
    ]
    for rate in capacity.RATES:
        for path, label in PATHS.items():
            cost = capacity.bigquery_month(rate, path, m, p["prices"])
            total = sum(cost.values())
            per_million = total / (rate * 60 * 24 * capacity.DAYS) * 1e6
            lines.append(
                f"| {_rate(rate)} | {label} | "
                + " | ".join(_dollars(v) for v in cost.values())
                + f" | **{_dollars(total)}** | {_dollars(per_million)} |"
            )
    quota = p["quotas"]
    ceiling = capacity.load_job_ceiling(m, quota["load_jobs_per_table_per_day"])
    lines += [
        "",
        f"Load jobs of a day's batch migration (at least: {m.rows_per_load:,} rows of a table "
        "per job, and one per bundle), against BigQuery's quotas: above about "
        f"{ceiling:,} visits per minute a day's run needs more load jobs into one staging table "
        "than the quota allows.",
        "",
        f"| visits/min | into the busiest staging table (quota "
        f"{quota['load_jobs_per_table_per_day']:,} per table per day) | in all (quota "
        f"{quota['load_jobs_per_project_per_day']:,} per project per day) |",
        "|---:|---:|---:|",
    ]
    for rate in capacity.RATES:
        busiest, total = capacity.load_jobs(rate, m)
        over_table = busiest > quota["load_jobs_per_table_per_day"]
        over_project = total > quota["load_jobs_per_project_per_day"]
        lines.append(
            f"| {_rate(rate)} | {busiest:,}{' **over quota**' if over_table else ''} "
            f"| {total:,}{' **over quota**' if over_project else ''} |"
        )
    return "\n".join(lines)


def options() -> str:
    m = capacity.Measured.read()
    top = max(capacity.RATES)
    lines = [
        "| template | streaming mode (metadata) | machine type | workers, initial-max "
        f"| Streaming Engine | model at {_rate(top)}/min |",
        "|---|---|---|---|---|---|",
    ]
    reasons = []
    for name in pipelines.names():
        meta, o = templates.metadata(name), templates.dataflow_options(name)
        if meta.get("streaming"):
            supported = [
                mode
                for mode, flag in (("at-least-once", "supportsAtLeastOnce"),
                                   ("exactly-once", "supportsExactlyOnce"))
                if meta.get(flag)
            ]  # fmt: skip
            mode = f"{meta['defaultStreamingMode']} (supports {' and '.join(supported)})"
            engine = "on" if o.streaming_engine else "off"
        else:
            mode, engine = "batch", "-"
        need = capacity.workers(name, top, m)
        model = f"{need.workers} workers" if need else "not modelled"
        lines.append(
            f"| [`{name}`](templates/{name}.md) | {mode} | {o.machine_type} "
            f"| {o.num_workers}-{o.max_workers} | {engine} | {model} |"
        )
        reasons.append(f"- `{name}`")
        reasons += [f"  - {key.replace('_', ' ')}: {text}" for key, text in o.why.items()]
    return "\n".join([*lines, "", *reasons])


SECTIONS = {
    "assumptions": assumptions,
    "measured": measured,
    "workers": workers,
    "bigquery": bigquery,
    "options": options,
}


def page() -> str:
    """docs/capacity.md with its generated sections filled in."""
    return generated.fill(PAGE.read_text(encoding="utf-8"), SECTIONS, COMMAND)


def write(check: bool = False) -> list[str]:
    """Writes docs/capacity.md (with ``check``, only compares); the stale files."""
    return generated.write({PAGE: page()}, capacity.ROOT, check)
