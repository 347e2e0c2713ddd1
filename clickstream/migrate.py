"""``clickstream migrate``: run the batch migration spec and reconcile what it did."""

import json
import logging
import time

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.yaml import main as yaml_main

import metadata
import pipelines
from transforms import bigquery_tables, visit, visit_lines


class MigrationError(RuntimeError):
    """The migration could not run (bad input path, stack not up, ...)."""


def pipeline_argv(spec: str, variables: dict, beam_args: list[str]) -> list[str]:
    """Arguments of ``python -m apache_beam.yaml.main`` for a spec of the catalog."""
    has_runner = any(arg.startswith("--runner") for arg in beam_args)
    return [
        f"--yaml_pipeline_file={pipelines.spec_path(spec)}",
        f"--jinja_variables={json.dumps(variables)}",
        *([] if has_runner else ["--runner=FnApiRunner"]),
        *beam_args,
    ]


def run_spec(spec: str, variables: dict, beam_args: list[str]) -> dict[str, int]:
    """Runs a spec to completion; returns its ``clickstream`` counters summed over steps."""
    options, construct, _ = yaml_main.build_pipeline_components_from_argv(
        pipeline_argv(spec, variables, beam_args)
    )
    pipeline = beam.Pipeline(options=options)
    construct(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace("clickstream"))
    for counter in query["counters"]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + (counter.committed or counter.attempted or 0)
    return counters


def build_report(counters: dict[str, int], tables: dict[str, int], seconds: float) -> dict:
    """The migration report; ``reconciled`` checks the invariants between the counts."""
    report = {
        "records_read": counters.get("records_read", 0),
        "visits_loaded": counters.get("visits_accepted", 0),
        "visits_rejected": counters.get("visits_rejected", 0),
        "events_loaded": counters.get("events_accepted", 0),
        "events_rejected": counters.get("events_rejected", 0),
        "events_in_loaded_visits": counters.get("events_in_loaded_visits", 0),
        "events_by_type": {kind: counters.get(kind, 0) for kind in visit.EVENT_TABLES},
        "rows_inserted": {
            name: counters.get(f"{name}.rows_inserted", 0) for name in metadata.TABLES
        },
        "tables": tables,
        "files_read": counters.get("files_read", 0),
        "seconds": round(seconds, 2),
    }
    report["visits_per_second"] = round(report["records_read"] / seconds) if seconds else 0
    report["reconciled"] = (
        report["records_read"] == report["visits_loaded"] + report["visits_rejected"]
        and report["events_in_loaded_visits"] == report["events_loaded"] + report["events_rejected"]
        and report["events_loaded"] == sum(report["events_by_type"].values())
    )
    return report


def migrate(
    input_path: str,
    dataset: str,
    project: str | None = None,
    dead_letter_table: str | None = None,
    beam_args: list[str] = (),
) -> dict:
    """Migrates JSON-lines visits into ``dataset`` and returns the report."""
    files = visit_lines.matching_files(input_path)
    if not files:
        raise MigrationError(f"no file matches {input_path!r}")
    megabytes = sum(f.size_in_bytes for f in files) / 1e6
    logging.getLogger(__name__).info(
        "migrating %d files (%.1f MB) from %s into %s", len(files), megabytes, input_path, dataset
    )
    client = bigquery_tables.client(project)
    bigquery_tables.ensure_tables(client.project, dataset)
    variables = {"input": input_path, "dataset": dataset, "project": client.project}
    if dead_letter_table:
        variables["dead_letter_table"] = dead_letter_table
    started = time.perf_counter()
    counters = run_spec("batch_migration", variables, list(beam_args))
    seconds = time.perf_counter() - started
    tables = {
        name: bigquery_tables.row_count(client, f"{client.project}.{dataset}.{name}")
        for name in metadata.TABLES
    }
    return build_report(counters, tables, seconds)
