"""Fixed windows with the catalog's lateness policy: late data updates its window, later data is
routed, nothing is dropped silently.

The policy, for a window ``[start, end)`` and an allowed lateness ``L``:

- **On time**: elements that arrive before the watermark passes ``end`` are in the window's first
  result (the ON_TIME pane), fired when the watermark passes ``end``.
- **Late**: an element that arrives after that but before the watermark passes ``end + L``
  fires an update at once (a LATE pane; with ``accumulate`` it carries the whole window so far,
  so a keyed upsert of the latest pane is the right count).
- **Too late**: an element arriving after the watermark passed ``end + L`` would be dropped by
  Beam without a trace. A gate in front of the window sends it to the ``too_late`` output
  instead (and counts it), or, with ``too_late="arrival"``, re-times it to its arrival so that
  it lands in the current window (for archives and loads, where a record must not be lost and
  its window is only a batch).

The gate is keyed by window: the first element of a window sets an event-time timer at
``end + L``; once it fires, the window is closed and later elements of it are too late. The
windows themselves keep their state ``GRACE`` longer than ``L``, so an element the gate let
through just before closing is still counted. The gate keeps one small closed-flag per window
for the life of the job (about 16 MB per year of one-minute windows).

Only elements whose window could have closed pass through the gate. The watermark of a Pub/Sub
read does not run ahead of the wall clock (it follows publish times, or event-time attributes
from publishers whose clocks are right within ``GRACE``), so an element whose ``end + L`` is
still ``GRACE`` or more ahead of the wall clock cannot be too late: it goes straight to its
window. Live traffic therefore never meets the
gate's single key per window, which would otherwise carry a whole minute's stream on one worker;
the gate sees late data and replays of old data.

Empty windows fire nothing. The watermark of the local runner follows the wall clock, so there
data read from a backlog is late (or too late) where on Dataflow it would be on time.
"""

import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import trigger, userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Duration, Timestamp

from clickstream.core import names, visit

GRACE = 60  # seconds a window outlives its gate
_MICROS = 1_000_000
_NEW, _OPEN, _CLOSED = 0, 1, 2
TOO_LATE = "too_late"


_STATUS = beam.DoFn.StateParam(userstate.ReadModifyWriteStateSpec("status", VarIntCoder()))
_CLOSE = beam.DoFn.TimerParam(userstate.TimerSpec("close", TimeDomain.WATERMARK))


class _Gate(beam.DoFn):
    """Passes (window start, element) pairs until the watermark passes the window's end plus
    the allowed lateness; after that, emits them on ``too_late``."""

    def __init__(self, window_seconds: int, allowed_lateness_seconds: int) -> None:
        self.close_after = (window_seconds + allowed_lateness_seconds) * _MICROS

    def setup(self) -> None:
        self.too_late = beam.metrics.Metrics.counter(names.COUNTER_NAMESPACE, "too_late")

    def process(
        self, keyed: tuple[int, Any], status: Any = _STATUS, close: Any = _CLOSE
    ) -> Iterator[Any]:
        start, element = keyed
        state = status.read() or _NEW
        if state == _CLOSED:
            self.too_late.inc()
            yield beam.pvalue.TaggedOutput(TOO_LATE, element)
            return
        if state == _NEW:
            close.set(Timestamp(micros=start + self.close_after))
            status.write(_OPEN)
        yield element

    @userstate.on_timer(_CLOSE.timer_spec)
    def closed(self, status: Any = _STATUS) -> None:
        status.write(_CLOSED)


def fixed_window(moment: Timestamp, seconds: int) -> window.IntervalWindow:
    """The fixed window of ``seconds`` that holds ``moment``, as Beam's FixedWindows assigns."""
    size = seconds * _MICROS
    start = moment.micros - moment.micros % size
    return window.IntervalWindow(Timestamp(micros=start), Timestamp(micros=start + size))


def iso(moment: Timestamp) -> str:
    """A Beam timestamp as UTC ISO 8601 text, as the BigQuery rows have them."""
    return moment.to_utc_datetime(has_tz=True).isoformat()


def event_time(text: str) -> Timestamp:
    """ISO 8601 text (no zone: UTC) as a Beam timestamp."""
    return Timestamp.from_utc_datetime(visit.parse_timestamp(text))


_RECENT = "recent"


class _Route(beam.DoFn):
    """Puts each row at its event time; keyed by its window's start for the gate, or, when its
    window cannot have closed yet (see the module), on ``recent``, past the gate."""

    clock: Callable[[], float] = time.time  # the wall clock; tests may substitute one

    def __init__(
        self, timestamp_field: str, window_seconds: int, allowed_lateness_seconds: int
    ) -> None:
        self.timestamp_field, self.window_seconds = timestamp_field, window_seconds
        self.open_for = (window_seconds + allowed_lateness_seconds - GRACE) * _MICROS

    def setup(self) -> None:
        counter = beam.metrics.Metrics.counter
        self.gated = counter(names.COUNTER_NAMESPACE, "lateness_gated")
        self.recent = counter(names.COUNTER_NAMESPACE, "lateness_recent")

    def process(self, row: Any) -> Iterator[Any]:
        moment = event_time(getattr(row, self.timestamp_field))
        start = fixed_window(moment, self.window_seconds).start.micros
        if start + self.open_for > self.clock() * _MICROS:
            self.recent.inc()
            yield beam.pvalue.TaggedOutput(_RECENT, window.TimestampedValue(row, moment))
            return
        self.gated.inc()
        yield window.TimestampedValue((start, row), moment)


def _at_arrival(element: Any) -> window.TimestampedValue[Any]:
    beam.metrics.Metrics.counter(names.COUNTER_NAMESPACE, "too_late_retimed").inc()
    return window.TimestampedValue(element, Timestamp.now())


class WindowWithLateness(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Assigns rows to fixed event-time windows under the catalog's lateness policy (see the
    module): on-time results when the watermark passes a window's end, an update for each late
    arrival up to ``allowed_lateness_seconds`` later, and no silent drop after that.

    Each row's event time is its ``timestamp_field`` (ISO 8601 text, no zone meaning UTC).

    Outputs ``windowed`` (the rows in their windows, trigger AfterWatermark with late firings)
    and ``too_late`` (rows that came after their window closed, in the global window; with
    ``too_late="arrival"`` they are also in ``windowed``, re-timed to their arrival).

    Args:
      timestamp_field: The row field with the event time, e.g. ``event_timestamp``.
      window_seconds: Window length.
      allowed_lateness_seconds: How long after a window's end late rows still update it.
      accumulate: Late panes carry the whole window so far (ACCUMULATING) rather than only the
        new rows (DISCARDING).
      too_late: ``output`` (only on ``too_late``) or ``arrival`` (also re-timed into
        ``windowed``).
    """

    def __init__(
        self,
        timestamp_field: str,
        window_seconds: int = 60,
        allowed_lateness_seconds: int = 600,
        accumulate: bool = False,
        too_late: str = "output",
    ) -> None:
        super().__init__()
        if window_seconds < 1 or allowed_lateness_seconds < 0:
            raise ValueError("window_seconds must be positive, allowed lateness not negative")
        if too_late not in ("output", "arrival"):
            raise ValueError(f"too_late must be 'output' or 'arrival', not {too_late!r}")
        self.timestamp_field = timestamp_field
        self.window_seconds = int(window_seconds)
        self.allowed_lateness_seconds = int(allowed_lateness_seconds)
        self.accumulate = accumulate
        self.too_late = too_late

    # -> Any: Beam reads the annotation as a type hint, and warns on a dict of outputs.
    def expand(self, rows: beam.PCollection[Any]) -> Any:
        route = _Route(self.timestamp_field, self.window_seconds, self.allowed_lateness_seconds)
        routed = rows | "EventTime" >> beam.ParDo(route).with_output_types(
            tuple[int, Any]
        ).with_outputs(_RECENT, main="keyed")
        gated = routed.keyed | "Gate" >> beam.ParDo(
            _Gate(self.window_seconds, self.allowed_lateness_seconds)
        ).with_outputs(TOO_LATE, main="open")
        too_late = gated[TOO_LATE]
        open_rows = (gated.open, routed[_RECENT]) | "OpenRows" >> beam.Flatten()
        if self.too_late == "arrival":
            retimed = too_late | "AtArrival" >> beam.Map(_at_arrival)
            open_rows = (open_rows, retimed) | "WithRetimed" >> beam.Flatten()
        mode = trigger.AccumulationMode
        windowed = open_rows | "Window" >> beam.WindowInto(
            window.FixedWindows(self.window_seconds),
            trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
            accumulation_mode=mode.ACCUMULATING if self.accumulate else mode.DISCARDING,
            allowed_lateness=Duration(seconds=self.allowed_lateness_seconds + GRACE),
        )
        return {"windowed": windowed, "too_late": too_late}
