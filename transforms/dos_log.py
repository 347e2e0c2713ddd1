"""Denial-of-service detection: page views per window as structured log entries, flagged above
a threshold, for a Cloud Logging log-based metric and alert (see docs/dos-drill.md)."""

import sys
import threading
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import orjson

from clickstream.core import dos, names
from clickstream.transforms.page_view_counts import ALL_PAGES

_STDOUT = threading.Lock()


def entry(count: Any, threshold: int) -> beam.Row:
    """The log entry (``core/dos.py``) of one window's site-wide count (a ``PageViewCounts``
    row)."""
    return beam.Row(
        **dos.entry(
            count.window_start,
            count.window_end,
            count.page_views,
            threshold,
            count.timing,
            count.pane_index,
        )
    )


class DosEntries(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """One structured log entry per window (and per late update of it) from ``PageViewCounts``
    rows: window_start, window_end, page_views (all pages), threshold, over_threshold (page
    views above the threshold), severity (WARNING when over, else INFO), timing and
    pane_index (a late update repeats the window with its count so far).

    Args:
      threshold: Page views per window above which a window is flagged.
    """

    def __init__(self, threshold: int) -> None:
        super().__init__()
        if threshold < 0:
            raise ValueError(f"threshold must not be negative, not {threshold}")
        self.threshold = int(threshold)

    def expand(self, counts: beam.PCollection[Any]) -> beam.PCollection[Any]:
        return (
            counts
            | "SiteTotals" >> beam.Filter(lambda row: row.page_path == ALL_PAGES)
            | "Entries" >> beam.Map(entry, self.threshold)
        )


class _WriteEntries(beam.DoFn):
    def __init__(self, log_name: str, log_file: str, severity: str, project: str | None) -> None:
        self.log_name, self.log_file = log_name, log_file
        self.severity, self.project = severity, project

    def setup(self) -> None:
        self.logger = None
        if not self.log_file:
            from google.cloud import logging as cloud_logging
            from google.cloud.logging import Resource

            self.logger = cloud_logging.Client(project=self.project).logger(
                self.log_name, resource=Resource(type=dos.RESOURCE_TYPE, labels={})
            )

    def start_bundle(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def process(self, row: Any) -> Iterator[Any]:
        payload = row._asdict()
        payload.setdefault("severity", self.severity)
        self.entries.append(payload)
        yield row

    def finish_bundle(self) -> None:
        if not self.entries:
            return
        if self.logger is not None:
            batch = self.logger.batch()
            for payload in self.entries:
                batch.log_struct(payload, severity=payload["severity"])
            batch.commit()
            return
        lines = b"".join(orjson.dumps(payload) + b"\n" for payload in self.entries)
        if self.log_file == "-":
            with _STDOUT:
                sys.stdout.buffer.write(lines)
                sys.stdout.flush()
            return
        with open(self.log_file, "ab") as out:  # one append per bundle: lines stay whole
            out.write(lines)


class WriteLogEntries(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """Writes rows as structured log entries, one per row, and passes the rows on.

    On Google Cloud each row becomes a Cloud Logging entry in log ``log_name`` whose
    ``jsonPayload`` is the row, with the row's ``severity`` (or ``severity``); a log-based metric
    can count or extract its fields. Locally (``log_file`` set) each row is one JSON line
    appended to ``log_file``, or written to standard output for ``-``.

    Args:
      log_name: Cloud Logging log id, e.g. ``clickstream-dos``.
      log_file: A file (or ``-``) to write to instead of Cloud Logging.
      severity: Severity of rows that have no ``severity`` field.
      project: Project of the log; defaults to the client's default project.
    """

    def __init__(
        self,
        log_name: str = names.DOS_LOG,
        log_file: str = "",
        severity: str = "INFO",
        project: str | None = None,
    ):
        super().__init__()
        self.log_name, self.log_file = log_name, log_file
        self.severity, self.project = severity, project or None

    def expand(self, rows: beam.PCollection[Any]) -> beam.PCollection[Any]:
        return rows | "Log" >> beam.ParDo(
            _WriteEntries(self.log_name, self.log_file, self.severity, self.project)
        )
