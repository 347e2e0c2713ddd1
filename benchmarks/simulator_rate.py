"""The simulator's achieved rate against the Pub/Sub emulator, at 60 and 60,000 visits per minute.

Each rate runs for ``--seconds`` (default 60) through the simulator's own publisher (deadline
schedule, client batching, flow control) to a fresh topic of the local stack's emulator, and
prints the visits Pub/Sub confirmed, the run's length and the achieved rate with its deviation
from the requested one (target: within 1%). Uses the running local stack, or starts one and
stops it afterwards.

Usage: python benchmarks/simulator_rate.py [--seconds S] [--rates R ...]
"""

import argparse
import os
import uuid

from clickstream.gcp import pubsub
from clickstream.local import emulators
from clickstream.simulator import publisher, visits


def measure(rate: float, seconds: float, project: str) -> publisher.Report:
    client = pubsub.publisher_client()
    topic = f"projects/{project}/topics/bench-{uuid.uuid4().hex[:8]}"
    pubsub.ensure_topic(project, topic)
    try:
        plan = visits.Plan(rate, duration=seconds, seed=1)
        return publisher.publish(plan, topic, client=client)
    finally:
        client.delete_topic(topic=topic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rates", type=float, nargs="+", default=[60.0, 60_000.0])
    args = parser.parse_args()
    started = not emulators.status()["pubsub"]["answers"]
    if started:
        emulators.up()
    os.environ.update(emulators.emulator_env())
    try:
        print(f"{'requested/min':>14}{'confirmed':>11}{'seconds':>9}{'achieved/min':>14}{'off':>8}")
        for rate in args.rates:
            report = measure(rate, args.seconds, emulators.settings().project)
            off = (report.achieved_per_minute / rate - 1) * 100
            print(
                f"{rate:>14,.0f}{report.steady:>11,}{report.seconds:>9.2f}"
                f"{report.achieved_per_minute:>14,.1f}{off:>+7.2f}%"
                + (f"  failed {report.failed}: {report.first_error}" if report.failed else "")
            )
    finally:
        if started:
            emulators.down()


if __name__ == "__main__":
    main()
