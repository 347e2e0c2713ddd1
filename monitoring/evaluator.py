"""The alert policy's local twin: it evaluates the policy that ``alerting`` declares against the
DoS detector's local log (JSON lines) as entries arrive, opens and closes incidents, and emails
the channel's address through an SMTP server.

What it takes from the declared policy and its log-based metric, as Cloud Monitoring would:

- points: each entry the metric's selection (``core/dos.py``) matches, its value field, in the
  series of its labels, at the time the entry is read (Cloud Logging stamps an entry when it is
  written);
- periods of the alignment period, aligned to the epoch; when a period has ended, the aligner
  (``ALIGN_MEAN``) per series, the reducer (``REDUCE_MAX``) across them, then the comparison
  with the threshold;
- an incident opens when a period is over the threshold and closes when one is not; a period
  without points changes nothing (``EVALUATION_MISSING_DATA_NO_OP``), but ``auto_close`` seconds
  without points close an open incident;
- notifications for the policy's prompts (``OPENED``): the documentation's subject and content.

It differs from Cloud Monitoring in evaluating fixed periods rather than a window sliding every
minute, and it evaluates only what the declared policy uses (anything else is refused).
"""

import dataclasses
import datetime
import json
import logging
import operator
import re
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from clickstream.core import dos, incidents
from clickstream.monitoring import alerting, mail

LOG = logging.getLogger(__name__)
ALIGNERS = {"ALIGN_MEAN": statistics.fmean}
REDUCERS = {"REDUCE_MAX": max}
COMPARISONS = {"COMPARISON_GT": operator.gt}
METRIC_TYPE = re.compile(r'metric\.type = "([^"]+)"')
POLL_SECONDS = 0.2


def _seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def _time(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


@dataclasses.dataclass(frozen=True)
class Condition:
    """The declared policy's condition, notification and documentation, as evaluated here."""

    policy: str
    metric: alerting.LogMetric
    period: float
    aligner: Callable
    reducer: Callable
    comparison: Callable
    threshold: float
    auto_close: float
    notify_on_open: bool
    notify_on_close: bool
    recipients: tuple[str, ...]
    subject: str
    content: str

    @classmethod
    def of(cls, definition: alerting.Alerting) -> "Condition":
        """The condition of ``definition``'s policy; ValueError for what is not evaluated here."""
        policy = definition.policy().fields
        (condition,) = policy["conditions"]
        threshold = condition["condition_threshold"]
        (aggregation,) = threshold["aggregations"]
        if (
            threshold["evaluation_missing_data"] != "EVALUATION_MISSING_DATA_NO_OP"
            or _seconds(threshold["duration"])
            or threshold["trigger"] != {"count": 1}
        ):
            raise ValueError("the local evaluator evaluates NO_OP, 0s, one-period conditions")
        (metric_type,) = METRIC_TYPE.findall(threshold["filter"])
        prompts = policy["alert_strategy"]["notification_prompts"]
        return cls(
            policy=policy["display_name"],
            metric=alerting.metric_of_type(metric_type),
            period=_seconds(aggregation["alignment_period"]),
            aligner=ALIGNERS[aggregation["per_series_aligner"]],
            reducer=REDUCERS[aggregation["cross_series_reducer"]],
            comparison=COMPARISONS[threshold["comparison"]],
            threshold=threshold["threshold_value"],
            auto_close=_seconds(policy["alert_strategy"]["auto_close"]),
            notify_on_open="OPENED" in prompts,
            notify_on_close="CLOSED" in prompts,
            recipients=(definition.channel().fields["labels"]["email_address"],),
            subject=policy["documentation"]["subject"],
            content=policy["documentation"]["content"],
        )


class Evaluator:
    """Incidents of ``condition`` from the entries observed; ``notify`` sends an incident's
    notification and returns the addresses it reached; ``record`` keeps each change."""

    def __init__(
        self,
        condition: Condition,
        notify: Callable[[incidents.Incident], tuple[str, ...]],
        record: Callable[[incidents.Incident], None],
        start: float,
    ):
        self.condition, self.notify, self.record = condition, notify, record
        self.points: dict[int, dict[tuple, list[float]]] = {}  # period -> series -> values
        self.next_period = int(start // condition.period)
        self.last_point = start
        self.open: incidents.Incident | None = None
        self.history: list[incidents.Incident] = []
        self.notifications = 0  # that reached an address

    def observe(self, payload: dict, at: float) -> bool:
        """Take an entry read at ``at``; whether it is a point of the condition's metric."""
        metric = self.condition.metric
        value = payload.get(metric.value_field)
        if not metric.selection.matches(payload) or isinstance(value, bool):
            return False
        if not isinstance(value, int | float):
            return False
        series = tuple(payload.get(label) for label in dos.SERIES_LABELS)
        period = max(int(at // self.condition.period), self.next_period)
        self.points.setdefault(period, {}).setdefault(series, []).append(value)
        self.last_point = at
        return True

    def advance(self, now: float) -> None:
        """Evaluate every period that ended by ``now``."""
        ended = int(now // self.condition.period)
        for period in range(self.next_period, ended):
            self._evaluate(period)
        self.next_period = max(self.next_period, ended)
        if self.open and now - self.last_point >= self.condition.auto_close:
            self._close(now, f"no data for {self.condition.auto_close:g} s")

    def finish(self, now: float) -> None:
        """Evaluate the periods still open as if they had ended (the log is complete)."""
        self.advance(now)
        for period in sorted(self.points):
            self._evaluate(period)

    def _evaluate(self, period: int) -> None:
        series = self.points.pop(period, None)
        if not series:
            return  # no data: no change
        c = self.condition
        value = c.reducer(c.aligner(values) for values in series.values())
        end = (period + 1) * c.period
        if c.comparison(value, c.threshold) and self.open is None:
            self._open(end, value)
        elif not c.comparison(value, c.threshold) and self.open is not None:
            self._close(end, f"{value:g} page views per window, not above {c.threshold:g}")

    def _open(self, moment: float, value: float) -> None:
        c = self.condition
        summary = (
            f"{c.metric.display_name}: {value:g} (mean over {c.period:g} s, highest series) "
            f"is above the threshold {c.threshold:g}"
        )
        incident = incidents.Incident(
            id=f"{int(moment)}-{len(self.history) + 1}",
            policy=c.policy,
            state=incidents.OPEN,
            opened_at=_time(moment),
            value=value,
            threshold=c.threshold,
            summary=summary,
        )
        if c.notify_on_open:
            incident = self._notified(incident)
        self._change(incident)

    def _close(self, moment: float, why: str) -> None:
        assert self.open is not None, "closing needs an open incident"
        incident = dataclasses.replace(
            self.open,
            state=incidents.CLOSED,
            closed_at=_time(moment),
            summary=f"{self.open.summary}; closed: {why}",
        )
        if self.condition.notify_on_close:
            incident = self._notified(incident)
        self._change(incident)

    def _notified(self, incident: incidents.Incident) -> incidents.Incident:
        reached = self.notify(incident)
        self.notifications += bool(reached)
        return dataclasses.replace(incident, notified=reached)

    def _change(self, incident: incidents.Incident) -> None:
        self.open = incident if incident.state == incidents.OPEN else None
        self.history.append(incident)
        self.record(incident)


def email(condition: Condition, server: tuple[str, int]) -> Callable:
    """A ``notify`` that emails the condition's recipients through the SMTP ``server``, as
    Cloud Monitoring's email channel would; a failure is logged and reaches nobody."""

    def notify(incident: incidents.Incident) -> tuple[str, ...]:
        state = "opened" if incident.state == incidents.OPEN else "closed"
        body = "\n".join(
            [
                f"Incident {incident.id} {state} for the policy {incident.policy!r}.",
                "",
                incident.summary + ".",
                f"Opened at {incident.opened_at}."
                + (f" Closed at {incident.closed_at}." if incident.closed_at else ""),
                "",
                condition.content,
            ]
        )
        try:
            mail.send(server, condition.recipients, condition.subject, body)
        except OSError as error:
            LOG.warning("could not email incident %s to %s: %s", incident.id, server, error)
            return ()
        return condition.recipients

    return notify


class LogTail:
    """The whole lines appended to a file since the last call (a line still being written
    waits for its newline); the file may not exist yet."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, b""

    def lines(self) -> list[bytes]:
        if not self.path.is_file():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        *whole, self.partial = (self.partial + data).split(b"\n")
        return [line for line in whole if line.strip()]


def watch(
    evaluator: Evaluator,
    log: Path,
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
) -> None:
    """Feed ``evaluator`` the entries of ``log`` as they arrive until ``stop`` is set, then
    evaluate what is left."""
    tail = LogTail(log)
    while True:
        stopping = stop.is_set()
        for line in tail.lines():
            try:
                payload = json.loads(line)
            except ValueError:
                LOG.warning("not a JSON entry in %s: %r", log, line[:80])
                continue
            if isinstance(payload, dict):
                evaluator.observe(payload, clock())
        if stopping:
            evaluator.finish(clock())
            return
        evaluator.advance(clock())
        stop.wait(POLL_SECONDS)
