"""The ``clickstream`` command line.

Without ``--project`` every command works on the local stack (emulators on 127.0.0.1, no cloud
account); with ``--project`` it works on Google Cloud with Application Default Credentials.
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from clickstream import dashboard, stream_commands, subscriber_commands, template_commands, views
from simulator import cli as simulator_cli

DEFAULT_DATASET = "clickstream"


def use_local_stack() -> None:
    """Point the clients at the emulators, failing clearly when the stack is not up."""
    from clickstream import local_stack

    os.environ.update(local_stack.emulator_env())
    if not local_stack.status()["bigquery"]["answers"]:
        raise SystemExit(
            "error: the local stack is not running (BigQuery emulator not answering on "
            f"{os.environ['BIGQUERY_EMULATOR_HOST']}); start it with `clickstream local up`, "
            "or pass --project to use Google Cloud"
        )


def _local(args: argparse.Namespace) -> None:
    from clickstream import local_stack

    try:
        if args.action == "up":
            local_stack.up(args.dataset)
        elif args.action == "down":
            local_stack.down()
        elif args.action == "upload":
            for url in local_stack.upload(args.paths, args.prefix):
                print(url)
        elif args.action == "env":
            for name, value in local_stack.emulator_env().items():
                print(f"export {name}={value}")
        else:
            local_stack.print_status()
    except local_stack.StackError as error:
        raise SystemExit(f"error: {error}") from None


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
    print(f"  took {report['seconds']} s ({report['visits_per_second']:,} records/s)")
    print(f"  reconciled        {'yes' if report['reconciled'] else 'NO'}")


def _migrate(args: argparse.Namespace) -> None:
    from clickstream import migrate

    if args.project is None:
        use_local_stack()
    try:
        report = migrate.migrate(
            args.input, args.dataset, args.project, args.dead_letter_table, args.beam_args
        )
    except (migrate.MigrationError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    _print_report(report)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"  report written to {args.report}")
    if not report["reconciled"]:
        raise SystemExit("error: the counts do not reconcile; see the report")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clickstream",
        description="Clickstream pipeline catalog: local stack, batch migration and more.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local = commands.add_parser(
        "local",
        help="start, stop or inspect the local emulators",
        description="The local stack: the Pub/Sub emulator, the BigQuery emulator (bqemulator) "
        "and the Cloud Storage emulator on 127.0.0.1, in the background. `up` also creates "
        "the bucket, the dataset and every table from metadata/. Idempotent. `upload` copies "
        "local files into the stack's bucket (gs://PROJECT/PREFIX...) and prints their URLs.",
    )
    local.add_argument("action", choices=["up", "down", "status", "env", "upload"])
    local.add_argument("paths", nargs="*", help="upload: local files or globs to copy")
    local.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset to create (up)")
    local.add_argument(
        "--prefix", default="landing/", help="upload: object prefix in the stack's bucket"
    )
    local.set_defaults(run=_local)

    migrate = commands.add_parser(
        "migrate",
        help="load JSON-lines visits into the analyst tables (pipelines/batch_migration.yaml)",
        description="Runs pipelines/batch_migration.yaml on Beam's local runner, against the "
        "local stack or, with --project, BigQuery, then prints a report. Re-running the same "
        "input adds no row. Arguments after `--` go to Beam (e.g. -- --runner=DataflowRunner "
        "--region=europe-west1 --temp_location=gs://BUCKET/tmp).",
    )
    migrate.add_argument("--input", required=True, help="file, glob or gs:// path of JSON lines")
    migrate.add_argument("--dataset", default=DEFAULT_DATASET, help="BigQuery dataset")
    migrate.add_argument("--project", help="Google Cloud project (default: the local stack)")
    migrate.add_argument(
        "--dead-letter-table", help="[project.]dataset.table (default: DATASET.dead_letter)"
    )
    migrate.add_argument("--report", help="also write the report as JSON to this file")
    migrate.add_argument("beam_args", nargs="*", help=argparse.SUPPRESS)
    migrate.set_defaults(run=_migrate)

    template_commands.register(commands)
    views.register(commands)
    dashboard.register(commands)
    simulator_cli.register(commands)
    stream_commands.register(commands)
    subscriber_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    # The root logger at ERROR hides what libraries log there at import (Beam YAML warns about
    # optional ML modules); Beam's own loggers still show warnings, ours show progress.
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for name in ("clickstream", "transforms"):
        logging.getLogger(name).setLevel(logging.INFO)
    args = _parser().parse_args(argv)
    args.run(args)
