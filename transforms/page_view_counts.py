"""Page views per window by event time, with the catalog's lateness policy."""

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.utils.windowed_value import PaneInfoTiming

from clickstream.core import visit
from clickstream.transforms import lateness

ALL_PAGES = "*"  # the page_path of a window's site-wide total


class _CountRow(beam.DoFn):
    def process(
        self,
        keyed: tuple[str, int],
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[Any]:
        page_path, page_views = keyed
        yield beam.Row(
            window_start=lateness.iso(window.start),
            window_end=lateness.iso(window.end),
            page_path=page_path,
            page_views=page_views,
            timing=PaneInfoTiming.to_string(pane.timing),
            pane_index=pane.index,
        )


class PageViewCounts(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Counts page views per fixed window of event time, per page and for the whole site.

    Input: ``page_views`` rows (``ParseVisits.page_views``); a page view's event time is its
    ``event_timestamp``. Windows follow ``transforms/lateness.py``: a window's counts come when
    the watermark passes its end (timing ON_TIME, pane_index 0); each late page view within
    ``allowed_lateness_seconds`` brings an update of the whole window so far (timing LATE,
    pane_index + 1), so writing the row with the highest pane_index per key gives the count
    (``WriteToBigQueryTable`` with ``version_column: pane_index``); a page view later than that
    goes to ``too_late``. Windows without page views have no row.

    Outputs ``counts`` (rows of the ``page_view_counts`` table: window_start, window_end,
    page_path (``*`` for all pages), page_views, timing, pane_index) and ``too_late``
    (``dead_letter`` rows, level ``late``, with the page view as payload and the reason).

    Args:
      window_seconds: Window length (60: page views per minute).
      allowed_lateness_seconds: How long after a window's end late page views still count.
      per_page: Count every page as well as the site's total (``*``); false: the total only.
    """

    def __init__(
        self, window_seconds: int = 60, allowed_lateness_seconds: int = 600, per_page: bool = True
    ):
        super().__init__()
        self.window_seconds = int(window_seconds)
        self.allowed_lateness_seconds = int(allowed_lateness_seconds)
        self.per_page = per_page

    def _keys(self, row: Any) -> Iterator[tuple[str, int]]:
        yield ALL_PAGES, 1
        if self.per_page:
            yield row.page_path, 1

    def _dead_letter(self, row: Any) -> beam.Row:
        moment = lateness.event_time(row.event_timestamp)
        missed = lateness.fixed_window(moment, self.window_seconds)
        bounds = f"{lateness.iso(missed.start)}/{lateness.iso(missed.end)}"
        return beam.Row(
            **visit.dead_letter_row(
                orjson.dumps(row._asdict()),
                f"window:{bounds}",
                f"page view at {row.event_timestamp} came after its window {bounds} closed "
                f"(allowed lateness {self.allowed_lateness_seconds} s)",
                visit_id=row.visit_id,
                event_index=row.event_index,
                level="late",
            )
        )

    # -> Any: Beam reads the annotation as a type hint, and warns on a dict of outputs.
    def expand(self, page_views: beam.PCollection[Any]) -> Any:
        windows = page_views | "Window" >> lateness.WindowWithLateness(
            "event_timestamp", self.window_seconds, self.allowed_lateness_seconds, accumulate=True
        )
        counts = (
            windows["windowed"]
            | "Keys" >> beam.FlatMap(self._keys)
            | "Count" >> beam.CombinePerKey(sum)
            # A DoFn without __init__ of its own has Beam's, which is not annotated.
            | "Rows" >> beam.ParDo(_CountRow())  # type: ignore[no-untyped-call]
        )
        too_late = windows["too_late"] | "DeadLetters" >> beam.Map(self._dead_letter)
        return {"counts": counts, "too_late": too_late}
