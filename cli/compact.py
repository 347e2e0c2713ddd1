"""``clickstream compact``: remove the extra copies streamed rows may leave in the analyst
tables (``gcp/warehouse.py``, append strategy); run it daily, after midnight UTC."""

import argparse
import datetime

from clickstream.cli.local import use_local_stack
from clickstream.core import contract, names


def register(commands) -> None:
    """Add ``compact`` to the ``clickstream`` command's subcommands."""
    parser = commands.add_parser(
        "compact",
        help="rewrite the days of the analyst tables that hold a key twice (daily maintenance)",
        description="Streaming writes (the streaming specs, the push and pull subscribers) "
        "append rows with insert ids; a repeat later than BigQuery's dedup window is a second "
        "copy, which analysts never see (they read the <table>_unique views) but which costs "
        "storage. This rewrites each day holding copies as one row per key (the highest "
        "version), one MERGE per day, for days before --before (rows streamed in the last half "
        "hour cannot be changed, so the current day waits). A day that fails is left for the "
        "next run and the command exits 1. Idempotent: a second run finds nothing to do.",
    )
    parser.add_argument("--dataset", default=names.DATASET, help="BigQuery dataset")
    parser.add_argument("--project", help="Google Cloud project (default: the local stack)")
    parser.add_argument(
        "--before",
        type=datetime.date.fromisoformat,
        help="compact days before this date, YYYY-MM-DD (default: today, UTC)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    from clickstream.gcp import bigquery_tables, warehouse

    if args.project is None:
        use_local_stack()
    bq = bigquery_tables.client(args.project)
    before = args.before or datetime.datetime.now(datetime.UTC).date()
    failed = 0
    for table in contract.TABLES + contract.AGGREGATES:
        table_id = f"{bq.project}.{args.dataset}.{table}"
        done = warehouse.compact(bq, table_id, table, before)
        for day, outcome in done.items():
            failed += isinstance(outcome, str)
            what = outcome if isinstance(outcome, str) else f"{outcome:,} copies removed"
            print(f"{table_id} {day or '(no day)'}: {what}")
        if not done:
            print(f"{table_id}: nothing to compact before {before}")
    if failed:
        raise SystemExit(f"error: {failed} day(s) not compacted; they are left for the next run")
