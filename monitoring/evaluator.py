"""Alert policies' local twin: it evaluates a declared policy (``alerting``, ``production``)
against points observed on this machine, opens and closes incidents, and emails the channel's
address through an SMTP server. The points come from the DoS detector's local log (``watch``,
the log-based metric's selection) or from samplers of the emulators (``samplers``).

What it takes from the declared policy, as Cloud Monitoring would (the semantics of the
aggregations are those of the API reference's Aligner and Reducer enums):

- each point in the series of its labels, at the time it is observed;
- periods of the alignment period, aligned to the epoch; when a period has ended, each
  aggregation in order: its aligner per series (``ALIGN_SUM`` merges a distribution's values,
  ``ALIGN_MAX`` ...), its reducer across the series of each ``group_by_fields`` group
  (``REDUCE_MEAN`` of distributions is the mean of their values), then the comparison of each
  resulting series with the threshold;
- an incident per resulting series: it opens when the series has violated the threshold for the
  condition's duration (at least one period) and closes when a period does not; a period without
  points changes nothing (``EVALUATION_MISSING_DATA_NO_OP``, also when unspecified) or counts as
  not violating (``EVALUATION_MISSING_DATA_INACTIVE``); ``auto_close`` seconds without points
  close an open incident;
- notifications for the policy's prompts (``OPENED``): the documentation's subject and content.

It differs from Cloud Monitoring in evaluating fixed periods rather than a window sliding every
minute, and it evaluates only what the declared policies use (anything else is refused).
"""

import dataclasses
import datetime
import json
import logging
import math
import operator
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from clickstream.core import dos, incidents
from clickstream.monitoring import alerting, mail

LOG = logging.getLogger(__name__)
POLL_SECONDS = 0.2
COMPARISONS = {"COMPARISON_GT": operator.gt, "COMPARISON_LT": operator.lt}
MISSING_DATA = {  # how a period without points counts
    "EVALUATION_MISSING_DATA_UNSPECIFIED": None,  # the same as NO_OP (the reference)
    "EVALUATION_MISSING_DATA_NO_OP": None,
    "EVALUATION_MISSING_DATA_INACTIVE": False,
}
Series = tuple[tuple[str, str], ...]  # a time series' labels, sorted


class Distribution(tuple):
    """The values of a distribution-valued point: merging distributions keeps them all."""


def _values(points: Iterable) -> list[float]:
    """The numbers in ``points``, a distribution's values each."""
    return [v for p in points for v in (p if isinstance(p, Distribution) else (p,))]


def _sum(points: list):
    if any(isinstance(point, Distribution) for point in points):
        return Distribution(_values(points))
    return sum(points)


def _numeric(function: Callable) -> Callable:
    def aligned(points: list) -> float:
        if any(isinstance(point, Distribution) for point in points):
            raise ValueError(f"{function.__name__} takes numbers, not distributions")
        return function(points)

    return aligned


# Aligner and Reducer of the API reference, those the declared policies use.
ALIGNERS = {
    "ALIGN_SUM": _sum,
    "ALIGN_MAX": _numeric(max),
    "ALIGN_MIN": _numeric(min),
    "ALIGN_MEAN": _numeric(statistics.fmean),
}
REDUCERS = {
    "REDUCE_NONE": None,
    "REDUCE_SUM": _sum,
    "REDUCE_MAX": _numeric(max),
    "REDUCE_MIN": _numeric(min),
    "REDUCE_MEAN": lambda points: statistics.fmean(_values(points)),
}


def _seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def _time(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()


def series(labels: Mapping[str, str]) -> Series:
    """A series' key from its labels (``metric.label.timing``, ``resource.label....``)."""
    return tuple(sorted(labels.items()))


@dataclasses.dataclass(frozen=True)
class Aggregation:
    """One of a condition's aggregations: the aligner per series, then the reducer (None:
    REDUCE_NONE) across the series of each group of the ``group_by`` labels."""

    aligner: Callable
    reducer: Callable | None
    group_by: tuple[str, ...]

    @classmethod
    def of(cls, fields: Mapping) -> "Aggregation":
        reducer = fields.get("cross_series_reducer", "REDUCE_NONE")
        return cls(
            ALIGNERS[fields["per_series_aligner"]],
            REDUCERS[reducer],
            tuple(fields.get("group_by_fields", ())),
        )

    def apply(self, points: dict[Series, list]) -> dict[Series, list]:
        aligned = {key: self.aligner(values) for key, values in points.items()}
        if self.reducer is None:
            return {key: [value] for key, value in aligned.items()}
        groups: dict[Series, list] = {}
        for key, value in aligned.items():
            group = tuple((label, v) for label, v in key if label in self.group_by)
            groups.setdefault(group, []).append(value)
        return {group: [self.reducer(values)] for group, values in groups.items()}


@dataclasses.dataclass(frozen=True)
class Condition:
    """A declared policy's one condition, notification and documentation, as evaluated here."""

    policy: str
    name: str  # the condition's display name
    metric_type: str
    period: float
    aggregations: tuple[Aggregation, ...]
    comparison: str
    threshold: float
    duration: float
    missing: bool | None  # how a period without points counts (None: no change)
    auto_close: float
    notify_on_open: bool
    notify_on_close: bool
    recipients: tuple[str, ...]
    subject: str
    content: str

    @classmethod
    def of(cls, policy: Mapping, recipients: tuple[str, ...]) -> "Condition":
        """The condition of a declared policy's fields, emailed to ``recipients``; ValueError
        for what is not evaluated here."""
        (condition,) = policy["conditions"]
        threshold = condition["condition_threshold"]
        periods = {_seconds(a["alignment_period"]) for a in threshold["aggregations"]}
        missing = threshold.get("evaluation_missing_data", "EVALUATION_MISSING_DATA_UNSPECIFIED")
        if len(periods) != 1 or threshold.get("trigger", {"count": 1}) != {"count": 1}:
            raise ValueError("the local evaluator evaluates one period and a trigger of 1")
        (metric_type,) = alerting.METRIC_TYPE.findall(threshold["filter"])
        prompts = policy["alert_strategy"]["notification_prompts"]
        return cls(
            policy=policy["display_name"],
            name=condition["display_name"],
            metric_type=metric_type,
            period=periods.pop(),
            aggregations=tuple(Aggregation.of(a) for a in threshold["aggregations"]),
            comparison=threshold["comparison"],
            threshold=threshold["threshold_value"],
            duration=_seconds(threshold["duration"]),
            missing=MISSING_DATA[missing],
            auto_close=_seconds(policy["alert_strategy"]["auto_close"]),
            notify_on_open="OPENED" in prompts,
            notify_on_close="CLOSED" in prompts,
            recipients=recipients,
            subject=policy["documentation"]["subject"],
            content=policy["documentation"]["content"],
        )

    def violated(self, value: float) -> bool:
        return COMPARISONS[self.comparison](value, self.threshold)

    @property
    def periods_needed(self) -> int:
        """Consecutive violating periods that make the duration (one at least)."""
        return max(1, math.ceil(self.duration / self.period))


def dos_condition(definition: alerting.Alerting) -> Condition:
    """The condition of the denial-of-service policy, emailed to its channel's address."""
    email = definition.channel().fields["labels"]["email_address"]
    return Condition.of(definition.policy().fields, (email,))


class Evaluator:
    """Incidents of ``condition`` from the points observed; ``notify`` sends an incident's
    notification and returns the addresses it reached; ``record`` keeps each change."""

    def __init__(
        self,
        condition: Condition,
        notify: Callable[[incidents.Incident], tuple[str, ...]],
        record: Callable[[incidents.Incident], None],
        start: float,
    ):
        self.condition, self.notify, self.record = condition, notify, record
        self.points: dict[int, dict[Series, list]] = {}  # period -> series -> points
        self.next_period = int(start // condition.period)
        self.last_point = start
        self.open: dict[Series, incidents.Incident] = {}
        self.streaks: dict[Series, int] = {}  # consecutive violating periods, per series
        self.history: list[incidents.Incident] = []
        self.notifications = 0  # that reached an address

    def observe(self, labels: Mapping[str, str], value, at: float) -> None:
        """Take a point of the condition's metric, observed at ``at``."""
        period = max(int(at // self.condition.period), self.next_period)
        self.points.setdefault(period, {}).setdefault(series(labels), []).append(value)
        self.last_point = at

    def advance(self, now: float) -> None:
        """Evaluate every period that ended by ``now``."""
        ended = int(now // self.condition.period)
        for period in range(self.next_period, ended):
            self._evaluate(period)
        self.next_period = max(self.next_period, ended)
        if self.open and now - self.last_point >= self.condition.auto_close:
            for key in list(self.open):
                self._close(key, now, f"no data for {self.condition.auto_close:g} s")

    def finish(self, now: float) -> None:
        """Evaluate the periods still open as if they had ended (the points are complete)."""
        self.advance(now)
        for period in sorted(self.points):
            self._evaluate(period)

    def _evaluate(self, period: int) -> None:
        c = self.condition
        points = self.points.pop(period, {})
        for aggregation in c.aggregations:
            points = aggregation.apply(points)
        values = {key: found[0] for key, found in points.items()}
        end = (period + 1) * c.period
        for key in set(self.open) | set(self.streaks) | set(values):
            if key in values:
                violated = c.violated(values[key])
            elif c.missing is None:
                continue  # no data: no change
            else:
                violated = c.missing
            self.streaks[key] = self.streaks.get(key, 0) + 1 if violated else 0
            if violated and key not in self.open and self.streaks[key] >= c.periods_needed:
                self._open(key, end, values[key])
            elif not violated and key in self.open:
                value = f"{values[key]:g}" if key in values else "no data"
                self._close(key, end, f"{value}, not beyond {c.threshold:g}")
            if not self.streaks[key]:
                del self.streaks[key]

    def _open(self, key: Series, moment: float, value: float) -> None:
        c = self.condition
        where = ", ".join(f"{label} {v}" for label, v in key)
        side = "above" if c.comparison == "COMPARISON_GT" else "below"
        summary = (
            f"{c.name}: {value:g} (per {c.period:g} s{'; ' + where if where else ''}) "
            f"is {side} the threshold {c.threshold:g}"
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
        self._change(key, incident)

    def _close(self, key: Series, moment: float, why: str) -> None:
        opened = self.open[key]
        incident = dataclasses.replace(
            opened,
            state=incidents.CLOSED,
            closed_at=_time(moment),
            summary=f"{opened.summary}; closed: {why}",
        )
        if self.condition.notify_on_close:
            incident = self._notified(incident)
        self._change(key, incident)

    def _notified(self, incident: incidents.Incident) -> incidents.Incident:
        reached = self.notify(incident)
        self.notifications += bool(reached)
        return dataclasses.replace(incident, notified=reached)

    def _change(self, key: Series, incident: incidents.Incident) -> None:
        if incident.state == incidents.OPEN:
            self.open[key] = incident
        else:
            self.open.pop(key, None)
        self.history.append(incident)
        self.record(incident)

    @property
    def latest(self) -> list[incidents.Incident]:
        """Each incident in its latest state."""
        return list({incident.id: incident for incident in self.history}.values())


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


def entry_point(metric: alerting.LogMetric, payload: Mapping) -> tuple[dict, object] | None:
    """The point a log entry (the ``jsonPayload`` of its Cloud Logging twin) gives the
    log-based ``metric``: its labels and its value (a distribution's value, or 1 counted);
    None when the metric does not select it."""
    if not metric.selection.matches(payload):
        return None
    labels = {f"metric.label.{label}": payload.get(label) for label in dos.SERIES_LABELS}
    if metric.value_field is None:
        return labels, 1
    value = payload.get(metric.value_field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return labels, Distribution((value,))


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
    """Feed ``evaluator`` the points of its log-based metric in the entries of ``log`` as
    they arrive until ``stop`` is set, then evaluate what is left."""
    metric = alerting.metric_of_type(evaluator.condition.metric_type)
    tail = LogTail(log)
    while True:
        stopping = stop.is_set()
        for line in tail.lines():
            try:
                payload = json.loads(line)
            except ValueError:
                LOG.warning("not a JSON entry in %s: %r", log, line[:80])
                continue
            point = entry_point(metric, payload) if isinstance(payload, dict) else None
            if point:
                evaluator.observe(*point, clock())
        if stopping:
            evaluator.finish(clock())
            return
        evaluator.advance(clock())
        stop.wait(POLL_SECONDS)
