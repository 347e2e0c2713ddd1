"""Every benchmark target in one run: the batch side (benchmarks/batch_migration.py) and the
subscribers (benchmarks/subscriber_throughput.py), then each target with PASS or FAIL. With
``--readme``, the README's benchmark table is rewritten from this run. Needs the local stack
(``make up``). Exits 1 when a target is not met.

Usage: python benchmarks/run.py [--readme] [options of both scripts]
"""

import argparse
import datetime
import os
from pathlib import Path

import batch_migration
import subscriber_throughput
from targets import finish, markdown

from clickstream.core import generated

README = Path(__file__).resolve().parents[1] / "README.md"
COMMAND = "make bench"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        conflict_handler="resolve",  # both take --input
    )
    parser.add_argument("--readme", action="store_true", help="rewrite the README's table")
    batch_migration.add_arguments(parser)
    subscriber_throughput.add_arguments(parser)
    args = parser.parse_args()
    measured, loaded = [], os.getloadavg()[0]
    for script in (batch_migration, subscriber_throughput):
        print(f"\n== {Path(script.__file__).name}")
        measured += script.measure(args)
    if args.readme:
        when = f"{datetime.date.today():%Y-%m-%d}, {os.cpu_count()} cores"
        load = ", ".join(f"{value:.1f}" for value in (loaded, os.getloadavg()[0]))
        table = (
            f"Measured {when} (load average {load} at start and end), one run of `{COMMAND}`: "
            f"the median of {args.rounds} alternating rounds and their spread, on process CPU "
            f"time unless the basis is wall:\n\n{markdown(measured)}"
        )
        text = generated.fill(
            README.read_text(encoding="utf-8"), {"benchmark": lambda: table}, COMMAND
        )
        README.write_text(text, encoding="utf-8")
        print(f"wrote the table into {README.name}")
    finish(measured)


if __name__ == "__main__":
    main()
