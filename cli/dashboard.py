"""``clickstream dashboard``: serve the dashboard and realtime page, or print a Looker Studio
link (``clickstream/dashboard``)."""

import argparse
import sys

from clickstream.cli.local import use_local_stack
from clickstream.core import names
from clickstream.dashboard.server import (
    CLOCKS,
    LOOKER_DATA_SOURCES,
    MAX_MINUTES,
    DashboardServer,
    Settings,
    Source,
    looker_link,
)


def register(commands) -> None:
    """Add ``dashboard`` to the ``clickstream`` command's subcommands."""
    parser = commands.add_parser(
        "dashboard",
        help="serve the dashboard and realtime page, or print a Looker Studio link",
        description="Serves the lab's dashboard (visits by page, most popular items, sales by "
        "category, visits by device type) at / and a realtime page (clicks by page, page views "
        "per minute; refreshes by itself; lists the DoS drill's incidents) at /realtime, from "
        "the analyst views of the local stack or, with --project, BigQuery. Works offline. "
        "With --looker-link it prints a Looker Studio URL that creates a report on the views "
        "instead.",
    )
    parser.add_argument("--project", help="Google Cloud project (default: the local stack)")
    parser.add_argument("--dataset", default=names.DATASET, help="BigQuery dataset")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8050, help="port to listen on (8050)")
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="now",
        help="where the realtime window ends: now (a live stream), or latest: the latest "
        "minute with page views in the data (replaying past data, such as the lab's 2024 files)",
    )
    parser.add_argument(
        "--minutes",
        type=_minutes,
        default=60,
        help="realtime window in minutes (60; the page's ?minutes=N overrides it)",
    )
    parser.add_argument(
        "--refresh", type=int, default=10, help="seconds between realtime refreshes (10)"
    )
    parser.add_argument(
        "--incidents",
        metavar="FILE",
        help="incidents of the DoS drill to list on the realtime page (default, on the local "
        f"stack: the drill's, STATE/{names.INCIDENTS_FILE})",
    )
    parser.add_argument(
        "--looker-link",
        action="store_true",
        help="print a Looker Studio Linking API URL that creates a report on the views in "
        "--project and --dataset, and exit",
    )
    parser.add_argument(
        "--report-id",
        help="with --looker-link: a template report to copy; its data sources ds0..ds4 are "
        "replaced by the views (default: a blank report)",
    )
    parser.set_defaults(run=_run)


def _minutes(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_MINUTES}")
    return int(text)


def _run(args: argparse.Namespace) -> None:
    if args.looker_link:
        _print_looker_link(args)
    else:
        _serve(args)


def _print_looker_link(args: argparse.Namespace) -> None:
    if args.project is None:
        raise SystemExit(
            "error: --looker-link needs --project: Looker Studio reads BigQuery in Google "
            "Cloud, not the local emulator"
        )
    print(looker_link(args.project, args.dataset, args.report_id))
    report = f"a copy of report {args.report_id}" if args.report_id else "a blank report"
    print(f"Opens Looker Studio with {report} and these BigQuery data sources:", file=sys.stderr)
    for index, name in enumerate(LOOKER_DATA_SOURCES):
        print(f"  ds{index}  {args.project}.{args.dataset}.{name}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> None:
    from pathlib import Path

    from clickstream.gcp import bigquery_tables
    from clickstream.local import emulators

    incidents = Path(args.incidents) if args.incidents else None
    if args.project is None:
        use_local_stack()
        incidents = incidents or emulators.settings().state_dir / names.INCIDENTS_FILE
    source = Source(bigquery_tables.client(args.project), args.dataset)
    missing = source.missing_views()
    if missing:
        where = f" --project {args.project}" if args.project else ""
        raise SystemExit(
            f"error: {source.name} lacks the views {', '.join(missing)}; create them with "
            f"`clickstream views apply{where} --dataset {args.dataset}`"
        )
    settings = Settings(source, args.clock, args.minutes, args.refresh, incidents)
    try:
        server = DashboardServer((args.host, args.port), settings)
    except OSError as error:
        raise SystemExit(
            f"error: cannot listen on {args.host}:{args.port} ({error.strerror}); "
            "choose another --port"
        ) from None
    with server:
        print(f"Dashboard of {source.name} on {server.url}")
        print(f"Realtime page on {server.url}realtime (clock: {args.clock}); Ctrl-C stops")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped")
