"""``clickstream migrate``: run the batch migration spec, reconcile what it did and record its
lineage (``gcp/lineage.py``: one run, from the input files to the tables)."""

import datetime
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions
from google.auth import exceptions as auth_exceptions

from clickstream.core import contract, names, templates
from clickstream.gcp import bigquery_tables, lineage, views
from clickstream.pipelines import catalog
from clickstream.transforms import visit_lines


class MigrationError(RuntimeError):
    """The migration could not run (bad input path, stack not up, ...)."""


def build_report(counters: dict[str, int], tables: dict[str, int], seconds: float) -> dict:
    """The migration report; ``reconciled`` checks the invariants between the counts."""
    report: dict[str, Any] = {
        "records_read": counters.get("records_read", 0),
        "visits_loaded": counters.get("visits_accepted", 0),
        "visits_rejected": counters.get("visits_rejected", 0),
        "events_loaded": counters.get("events_accepted", 0),
        "events_rejected": counters.get("events_rejected", 0),
        "events_in_loaded_visits": counters.get("events_in_loaded_visits", 0),
        "events_by_type": {kind: counters.get(kind, 0) for kind in names.EVENT_TABLES},
        "rows_inserted": {
            name: counters.get(f"{name}.rows_inserted", 0) for name in contract.TABLES
        },
        "tables": tables,
        "files_read": counters.get("files_read", 0),
        "seconds": round(seconds, 2),
        # Summed over workers: loading rows into staging tables, merging them into the tables.
        "seconds_staging": counters.get("staging_ms", 0) / 1000,
        "seconds_merging": counters.get("merge_ms", 0) / 1000,
    }
    report["visits_per_second"] = round(report["records_read"] / seconds) if seconds else 0
    report["reconciled"] = templates.counts_reconcile(counters)
    return report


def migrate(
    input_path: str,
    dataset: str,
    project: str | None = None,
    dead_letter_table: str | None = None,
    beam_args: Sequence[str] = (),
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
    started, began = time.perf_counter(), datetime.datetime.now(datetime.UTC)
    record_lineage = functools.partial(
        _record_lineage,
        client.project,
        (client.get_dataset(dataset).location or "US").lower(),  # lineage lives with the data
        f"migration-{began:%Y%m%dT%H%M%S%fZ}",
        [f.path for f in files],
        lineage.migration_tables(client.project, dataset, dead_letter_table),
        began,
    )
    try:
        counters = catalog.run_and_wait("batch_migration", variables, list(beam_args))
    except BaseException:  # failed or stopped: a FAILED run, then the error as it was
        record_lineage(succeeded=False)
        raise
    seconds = time.perf_counter() - started
    tables = {
        name: bigquery_tables.row_count(client, f"{client.project}.{dataset}.{name}")
        for name in contract.TABLES
    }
    report = build_report(counters, tables, seconds)
    report["lineage"] = record_lineage(attributes={k: report[k] for k in LINEAGE_ATTRIBUTES})
    return report


LINEAGE_ATTRIBUTES = ("records_read", "visits_loaded", "visits_rejected", "events_loaded")


def _record_lineage(
    project: str,
    location: str,
    run_id: str,
    files: list[str],
    targets: list[str],
    began: datetime.datetime,
    succeeded: bool = True,
    attributes: dict | None = None,
) -> dict:
    """Record the run's lineage; what was recorded, or why not. The data is loaded either way,
    so a lineage failure is reported rather than raised."""
    ended = datetime.datetime.now(datetime.UTC)
    try:
        calls = lineage.record_migration(
            project, location, run_id, files, targets, began, ended, succeeded, attributes
        )
    except (
        exceptions.GoogleAPICallError,
        auth_exceptions.GoogleAuthError,
        OSError,
        ImportError,  # the Lineage client is in the ops extra
    ) as error:
        logging.getLogger(__name__).warning("lineage not recorded: %s", error)
        return {"error": str(error)}
    run = next(c.request["run"]["name"] for c in calls if c.method == "CreateRun")
    events = sum(c.method == "CreateLineageEvent" for c in calls)
    return {"run": run, "events": events}
