"""``clickstream migrate``: run the batch migration spec and reconcile what it did."""

import logging
import time

from clickstream.core import contract, templates, visit
from clickstream.gcp import bigquery_tables, views
from clickstream.pipelines import catalog
from clickstream.transforms import visit_lines


class MigrationError(RuntimeError):
    """The migration could not run (bad input path, stack not up, ...)."""


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
            name: counters.get(f"{name}.rows_inserted", 0) for name in contract.TABLES
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
    views.ensure_analyst_dataset(client.project, dataset)
    given = {"input": input_path, "dataset": dataset, "bigquery_project": client.project}
    if dead_letter_table:
        given["dead_letter_table"] = dead_letter_table
    # Unlike the template (Cloud Storage only), migrate also reads local files.
    variables = templates.variables("batch_migration", given, unchecked=("input",))
    started = time.perf_counter()
    counters = catalog.run_and_wait("batch_migration", variables, list(beam_args))
    seconds = time.perf_counter() - started
    tables = {
        name: bigquery_tables.row_count(client, f"{client.project}.{dataset}.{name}")
        for name in contract.TABLES
    }
    return build_report(counters, tables, seconds)
