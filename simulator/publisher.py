"""Sending a simulation: to a Pub/Sub topic at the planned rate, or to a JSON-lines file.

The rate is held by a deadline schedule: message *i* is due ``i x interval`` after the start,
measured on a monotonic clock, and is sent when due; a late message is sent at once and the
schedule does not shift, so delays never add up. The client (``gcp.pubsub.publisher_client``)
batches and blocks when too many messages are outstanding, so memory stays bounded when Pub/Sub
is slower than the plan. The achieved rate counts the steady messages Pub/Sub confirmed over
the run's length: the planned length, or longer if the last confirmation came later.
"""

import dataclasses
import datetime
import threading
import time
from collections.abc import Callable
from pathlib import Path

from clickstream.gcp import pubsub
from clickstream.simulator import visits

EARLY_ENOUGH = 0.002  # seconds: a message due sooner than this is sent without waiting
CONFIRM_TIMEOUT = 60.0  # seconds to wait for outstanding confirmations at the end


@dataclasses.dataclass
class Report:
    """What a run sent. ``confirmed`` counts messages by kind (visit, malformed, burst)."""

    destination: str
    plan: visits.Plan
    confirmed: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(("visit", "malformed", "burst"), 0)
    )
    failed: int = 0
    first_error: str = ""
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def steady(self) -> int:
        return self.confirmed["visit"] + self.confirmed["malformed"]

    @property
    def achieved_per_minute(self) -> float:
        return self.steady / self.seconds * 60 if self.seconds else 0.0


Progress = Callable[[Report, float], None]  # called about once a second: report, seconds so far


class _Tally:
    """Counts confirmations and failures from the client's callback threads."""

    def __init__(self, report: Report):
        self.report, self.lock = report, threading.Condition()
        self.outstanding, self.last_done = 0, 0.0

    def track(self, future, kind: str) -> None:
        with self.lock:
            self.outstanding += 1
        future.add_done_callback(lambda done: self._done(done, kind))

    def _done(self, future, kind: str) -> None:
        error = future.exception()
        with self.lock:
            if error is None:
                self.report.confirmed[kind] += 1
            else:
                self.report.failed += 1
                self.report.first_error = self.report.first_error or str(error)
            self.outstanding -= 1
            self.last_done = time.monotonic()
            self.lock.notify_all()

    def wait(self, timeout: float) -> None:
        with self.lock:
            self.lock.wait_for(lambda: self.outstanding == 0, timeout)


def publish(
    plan: visits.Plan,
    topic: str,
    *,
    client=None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    start: datetime.datetime | None = None,
) -> Report:
    """Publish the plan's messages to ``topic`` (projects/P/topics/T) at the planned rate until
    the plan ends or ``stop`` is set; returns once every sent message is confirmed or failed."""
    client = client or pubsub.publisher_client()
    stop = stop or threading.Event()
    report = Report(topic, plan)
    tally = _Tally(report)
    began = time.monotonic()
    next_progress = began + 1.0
    start = start or datetime.datetime.now(datetime.UTC)
    for message in visits.messages(plan, start):
        wait = began + message.offset - time.monotonic()
        if (wait > EARLY_ENOUGH and stop.wait(wait)) or stop.is_set():
            report.interrupted = True
            break
        tally.track(client.publish(topic, message.data, **message.attributes), message.kind)
        if progress and time.monotonic() >= next_progress:
            next_progress += 1.0
            progress(report, time.monotonic() - began)
    else:  # the last interval of the schedule belongs to the run too
        if plan.seconds and stop.wait(max(0.0, began + plan.seconds - time.monotonic())):
            report.interrupted = True
    stopped = time.monotonic()
    tally.wait(CONFIRM_TIMEOUT)
    report.seconds = max(stopped, tally.last_done) - began
    return report


def write_lines(plan: visits.Plan, path: Path, start: datetime.datetime | None = None) -> Report:
    """Write the plan's messages to ``path`` as JSON lines at once (no waiting), with event
    timestamps as if they had been sent from ``start`` (default now) at the planned rate: input
    for the batch migration. The plan must end (``count`` or ``duration``)."""
    if plan.seconds is None:  # no total
        raise ValueError("writing to a file needs --count or --duration")
    report = Report(str(path), plan, seconds=plan.seconds)
    start = start or datetime.datetime.now(datetime.UTC)
    with path.open("wb") as out:
        for message in visits.messages(plan, start):
            out.write(message.data + b"\n")
            report.confirmed[message.kind] += 1
    return report
