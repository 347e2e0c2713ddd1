"""``clickstream migrate``: load JSON-lines visits into the analyst tables and print the
report."""

import argparse
import json
from pathlib import Path

from clickstream.cli.local import use_local_stack
from clickstream.core import names


def _print_report(report: dict) -> None:
    loaded, rejected = report["visits_loaded"], report["visits_rejected"]
    print("\nMigration report")
    print(f"  records read      {report['records_read']:>9,}  ({report['files_read']} files)")
    print(f"  visits loaded     {loaded:>9,}  rejected {rejected:,}")
    print(
        f"  events loaded     {report['events_loaded']:>9,}  rejected {report['events_rejected']:,}"
    )
    for kind, count in report["events_by_type"].items():
        print(f"    {kind:<16}{count:>9,}")
    print("  tables            rows now  new this run")
    for name, rows in report["tables"].items():
        print(f"    {name:<16}{rows:>9,}  {report['rows_inserted'][name]:>12,}")
    print(
        f"  took {report['seconds']} s ({report['visits_per_second']:,} records/s); "
        f"staging {report['seconds_staging']:.1f} s, merging {report['seconds_merging']:.1f} s"
    )
    print(f"  reconciled        {'yes' if report['reconciled'] else 'NO'}")
    lineage = report.get("lineage", {})
    if "run" in lineage:
        print(f"  lineage           run {lineage['run']} ({lineage['events']} events)")
    elif lineage:
        print(f"  lineage           not recorded: {lineage['error']}")


def _migrate(args: argparse.Namespace) -> None:
    from clickstream.pipelines import migration

    if args.project is None:
        use_local_stack()
    try:
        report = migration.migrate(
            args.input, args.dataset, args.project, args.dead_letter_table, args.beam_args
        )
    except (migration.MigrationError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    _print_report(report)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"  report written to {args.report}")
    if not report["reconciled"]:
        raise SystemExit("error: the counts do not reconcile; see the report")


def register(commands) -> None:
    """Adds ``migrate`` to the ``clickstream`` command."""
    migrate = commands.add_parser(
        "migrate",
        help="load JSON-lines visits into the analyst tables (pipelines/batch_migration.yaml)",
        description="Runs pipelines/batch_migration.yaml on Beam's local runner, against the "
        "local stack or, with --project, BigQuery, then prints a report. Re-running the same "
        "input adds no row. Arguments after `--` go to Beam (e.g. -- --runner=DataflowRunner "
        "--region=europe-west1 --temp_location=gs://BUCKET/tmp).",
    )
    migrate.add_argument("--input", required=True, help="file, glob or gs:// path of JSON lines")
    migrate.add_argument("--dataset", default=names.DATASET, help="BigQuery dataset")
    migrate.add_argument("--project", help="Google Cloud project (default: the local stack)")
    migrate.add_argument(
        "--dead-letter-table", help="[project.]dataset.table (default: DATASET.dead_letter)"
    )
    migrate.add_argument("--report", help="also write the report as JSON to this file")
    migrate.add_argument("beam_args", nargs="*", help=argparse.SUPPRESS)
    migrate.set_defaults(run=_migrate)
