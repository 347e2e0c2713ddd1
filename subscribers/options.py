"""Command-line options of the subscribers, shared by ``python -m clickstream.subscribers.pull`` and
``clickstream subscribe`` (free of heavy imports, so that the command line starts fast)."""

import argparse

from clickstream.core import names


def add_pull_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--subscription",
        default=names.PULL_SUBSCRIPTION,
        help="subscription name or projects/P/subscriptions/S (default: %(default)s)",
    )
    parser.add_argument("--project", help="Google Cloud project (default: the local stack)")
    parser.add_argument("--dataset", default=names.DATASET, help="BigQuery dataset")
    parser.add_argument("--batch-size", type=int, default=500, help="messages per write")
    parser.add_argument(
        "--max-latency", type=float, default=1.0, help="seconds a batch waits to fill"
    )
    parser.add_argument(
        "--writers", type=int, default=2, help="batches written at the same time (default: 2)"
    )
    parser.add_argument(
        "--max-messages",
        type=int,
        help="messages held at most (default: (writers + 1) x batch size)",
    )
    parser.add_argument(
        "--max-lease-seconds",
        type=int,
        default=0,
        help="cap of each lease extension: redelivery time after a crash (0: library default)",
    )
    parser.add_argument("--health-host", default="127.0.0.1", help="0.0.0.0 on a VM")
    parser.add_argument("--health-port", type=int, default=8080)
    parser.add_argument(
        "--stall-after", type=float, default=60.0, help="seconds without progress: unhealthy"
    )
    parser.add_argument(
        "--write-deadline", type=float, default=30.0, help="seconds one batch write may take"
    )
