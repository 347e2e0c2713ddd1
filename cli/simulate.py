"""``clickstream simulate``: send simulated visits to a Pub/Sub topic, or write them to a file."""

import argparse
import datetime
import signal
import sys
import threading
from pathlib import Path

from clickstream.cli.local import use_local_stack
from clickstream.core import names


def _start(text: str | None) -> datetime.datetime | None:
    from clickstream.core.visit import parse_timestamp

    try:
        return parse_timestamp(text) if text else None
    except ValueError as error:
        raise SystemExit(f"error: --start {text!r}: {error}") from None


def _progress(report, seconds: float) -> None:
    line = (
        f"sent {report.steady:,} visits in {seconds:,.0f} s "
        f"({report.steady / seconds * 60 if seconds else 0:,.1f}/min)"
        f", burst {report.confirmed['burst']:,}, failed {report.failed:,}"
    )
    if sys.stderr.isatty():
        print(f"\r{line}", end="", file=sys.stderr, flush=True)
    elif int(seconds) % 10 == 0:
        print(line, file=sys.stderr, flush=True)


def _summary(report, published: bool) -> None:
    plan = report.plan
    if sys.stderr.isatty():
        print(file=sys.stderr)
    verb = "published" if published else "wrote"
    stopped = " (stopped early)" if report.interrupted else ""
    print(f"{verb} {sum(report.confirmed.values()):,} messages to {report.destination}{stopped}")
    print(f"  seed                {plan.seed}")
    print(f"  visits              {report.confirmed['visit']:,}")
    print(f"  malformed           {report.confirmed['malformed']:,}")
    print(f"  burst visits        {report.confirmed['burst']:,}")
    if published:
        off = (report.achieved_per_minute / plan.visits_per_minute - 1) * 100
        print(f"  failed              {report.failed:,}")
        print(f"  took                {report.seconds:,.2f} s")
        print(f"  requested rate      {plan.visits_per_minute:,.1f} visits/min")
        print(f"  achieved rate       {report.achieved_per_minute:,.1f} visits/min ({off:+.2f}%)")
    if report.first_error:
        print(f"  first error         {report.first_error}")


def _simulate(args: argparse.Namespace) -> None:
    import random

    from clickstream.simulator import publisher, visits

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    try:
        plan = visits.Plan(
            args.visits_per_minute,
            args.count,
            args.duration,
            seed,
            args.burst,
            args.burst_at,
            args.malformed_rate,
        )
        if args.output:
            _summary(publisher.write_lines(plan, Path(args.output), _start(args.start)), False)
            return
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    project = args.project
    client = None
    if project is None:
        from clickstream.gcp import pubsub

        project = use_local_stack()
        client = pubsub.publisher_client()
        if pubsub.ensure_topic(project, args.topic):
            print(f"created topic {names.topic_path(project, args.topic)} on the local stack")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    topic = names.topic_path(project, args.topic)
    what = "until stopped" if plan.total is None else f"{plan.total:,} visits"
    print(f"publishing {what} at {plan.visits_per_minute:,.1f}/min to {topic}; Ctrl-C stops")
    report = publisher.publish(
        plan, topic, client=client, stop=stop, progress=_progress, start=_start(args.start)
    )
    _summary(report, True)
    if report.failed:
        raise SystemExit(1)
    if report.interrupted:
        raise SystemExit(130)


def register(commands) -> None:
    """Adds ``simulate`` to the ``clickstream`` command."""
    simulate = commands.add_parser(
        "simulate",
        help="publish simulated visits to Pub/Sub (or write them as JSON lines)",
        description="Generates realistic visits (valid against metadata/visit.schema.json) and "
        "publishes them to a Pub/Sub topic at a steady rate: the local stack's emulator (the "
        "topic is created if missing) or, with --project, Google Cloud. Each message carries "
        "the visit's start in its event_time attribute. The same --seed (and --start) gives "
        "the same visits. Ctrl-C stops cleanly; the summary gives the achieved rate.",
    )
    simulate.add_argument(
        "--topic", default=names.TOPIC, help=f"topic name or path (default: {names.TOPIC})"
    )
    simulate.add_argument("--project", help="Google Cloud project (default: the local stack)")
    simulate.add_argument(
        "--visits-per-minute", type=float, default=60.0, help="steady rate (default: 60)"
    )
    simulate.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    simulate.add_argument("--count", type=int, help="stop after this many steady visits")
    simulate.add_argument("--seed", type=int, help="random seed (default: a random one, printed)")
    simulate.add_argument(
        "--burst",
        type=int,
        default=0,
        metavar="VISITS",
        help="add a denial-of-service-like spike: this many bot visits at once",
    )
    simulate.add_argument(
        "--burst-at", type=float, metavar="SECONDS", help="when the burst goes (default: halfway)"
    )
    simulate.add_argument(
        "--malformed-rate",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of steady messages replaced by malformed ones, e.g. 0.05",
    )
    simulate.add_argument(
        "--output",
        metavar="FILE",
        help="write JSON lines to FILE instead of publishing (input for `clickstream migrate`)",
    )
    simulate.add_argument(
        "--start", metavar="TIME", help="time of the first visit, ISO 8601 (default: now)"
    )
    simulate.set_defaults(run=_simulate)
