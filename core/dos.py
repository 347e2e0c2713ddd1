"""The denial-of-service log entry, defined once: what ``dos_detection`` writes per window, and the
selections of entries that the log-based metrics count (rendered as Cloud Logging filters) and
that the local alert evaluator applies to the local log (evaluated here, on the same clauses).

An entry reports one pane of one window: ``pane_index`` 0 is the window's first result (when the
watermark passed its end, or its first late page view); a late page view repeats the window
with its count so far (``pane_index`` + 1). The metrics and the alert take the **first pane** of
each window: one value per window, so a window is counted once and its late updates neither
re-open nor hold open an incident. Late updates stay in the log.
"""

import dataclasses
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

WINDOW_START = "window_start"
WINDOW_END = "window_end"
PAGE_VIEWS = "page_views"
THRESHOLD = "threshold"
OVER_THRESHOLD = "over_threshold"
SEVERITY = "severity"
TIMING = "timing"  # ON_TIME or LATE (Beam's pane timing)
PANE_INDEX = "pane_index"
RESOURCE_TYPE = "global"  # the monitored resource of the entries in Cloud Logging
SERIES_LABELS = (TIMING,)  # entry fields that label the metrics' time series


def entry(
    window_start: str,
    window_end: str,
    page_views: int,
    threshold: int,
    timing: str,
    pane_index: int,
) -> dict[str, Any]:
    """The log entry of one pane of a window's site-wide page view count: flagged
    ``over_threshold`` (severity WARNING) when ``page_views`` is above ``threshold``."""
    over = page_views > threshold
    return {
        WINDOW_START: window_start,
        WINDOW_END: window_end,
        PAGE_VIEWS: page_views,
        THRESHOLD: threshold,
        OVER_THRESHOLD: over,
        SEVERITY: "WARNING" if over else "INFO",
        TIMING: timing,
        PANE_INDEX: pane_index,
    }


@dataclasses.dataclass(frozen=True)
class Clause:
    """An entry field equal to a JSON value (``jsonPayload.<field>`` in Cloud Logging)."""

    field: str
    value: bool | int | str

    def matches(self, payload: Mapping[str, Any]) -> bool:
        found = payload.get(self.field)
        return type(found) is type(self.value) and found == self.value

    @property
    def query(self) -> str:
        return f"jsonPayload.{self.field}={json.dumps(self.value)}"


@dataclasses.dataclass(frozen=True)
class Selection:
    """The entries of the DoS log that match every clause."""

    clauses: tuple[Clause, ...] = ()

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Whether a local entry (the ``jsonPayload`` of its Cloud Logging twin) is selected."""
        return all(clause.matches(payload) for clause in self.clauses)

    def logging_filter(self, project: str, log_name: str) -> str:
        """The selection as a Cloud Logging query over the log ``log_name`` of ``project``."""
        scope = (f'logName="{log_path(project, log_name)}"', f'resource.type="{RESOURCE_TYPE}"')
        return " AND ".join(scope + tuple(clause.query for clause in self.clauses))


EVERY_ENTRY = Selection()  # windows, their late updates, rejected messages
FIRST_PANES = Selection((Clause(PANE_INDEX, 0),))  # one entry per window
FLAGGED_WINDOWS = Selection((Clause(PANE_INDEX, 0), Clause(OVER_THRESHOLD, True)))


def log_path(project: str, log_name: str) -> str:
    """The log's resource name, as Cloud Logging filters spell it (the id URL-encoded)."""
    return f"projects/{project}/logs/{quote(log_name, safe='')}"


def extractor(field: str) -> str:
    """A log-based metric's extractor of an entry field."""
    return f"EXTRACT(jsonPayload.{field})"
