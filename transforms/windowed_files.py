"""Raw messages to files, per window pane and shard, named after the window."""

import json
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import IntervalWindow
from apache_beam.utils.windowed_value import PaneInfoTiming

from clickstream.core import names
from clickstream.transforms import lateness


def line(payload: bytes | str) -> bytes:
    """A message as one line: its bytes as they came, or, when they contain a line break, the
    JSON string of them (``json.loads`` then ``.encode('utf-8', 'surrogateescape')`` gives the
    bytes back), so that one line is always one message."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    if b"\n" not in data and b"\r" not in data:
        return data
    return json.dumps(data.decode("utf-8", "surrogateescape")).encode("ascii")


def file_name(
    prefix: str, window: IntervalWindow, pane_index: int, shard: int, shards: int, suffix: str
) -> str:
    """e.g. ``visits-20240701T090000Z-20240701T090100Z-pane-0-00001-of-00004.jsonl``."""
    start, end = (
        t.to_utc_datetime().strftime("%Y%m%dT%H%M%SZ") for t in (window.start, window.end)
    )
    return f"{prefix}-{start}-{end}-pane-{pane_index}-{shard:05d}-of-{shards:05d}{suffix}"


def shard_of(data: bytes, shards: int) -> int:
    """A message's shard: the same message always goes to the same file of its window pane."""
    return zlib.crc32(data) % shards


class _WriteFile(beam.DoFn):
    def __init__(self, path: str, prefix: str, suffix: str, shards: int) -> None:
        self.path, self.prefix, self.suffix, self.shards = path, prefix, suffix, shards

    def process(
        self,
        keyed: tuple[int, Iterable[bytes]],
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[Any]:
        shard, lines = keyed
        name = file_name(self.prefix, window, pane.index, shard, self.shards, self.suffix)
        path = FileSystems.join(self.path, name)
        records = 0
        # A retried pane rewrites the same file with the same lines.
        with FileSystems.create(path, mime_type="application/x-ndjson") as out:
            for data in lines:
                out.write(data + b"\n")
                records += 1
        beam.metrics.Metrics.counter(names.COUNTER_NAMESPACE, "raw_records_written").inc(records)
        yield beam.Row(
            file=path,
            window_start=lateness.iso(window.start),
            window_end=lateness.iso(window.end),
            timing=PaneInfoTiming.to_string(pane.timing),
            pane_index=pane.index,
            records=records,
        )


class WriteWindowedFiles(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """Writes the ``payload`` of windowed rows to files, one per window pane, one message per
    line (see ``line``).

    Files are named after their window, pane and shard, e.g. under ``gs://bucket/raw/``:
    ``visits-20240701T090000Z-20240701T090100Z-pane-0-00001-of-00004.jsonl`` for the minute from
    09:00 UTC, ``...-pane-1-...`` for late messages of that minute. A window's messages are
    spread over ``shards`` files (by a hash of the message), so that several workers write them.
    Each file is written once its pane fires (with ``WindowWithLateness``: when the watermark
    passes the window's end, then for each late arrival). Lines of visits are the batch
    migration's input as they are.

    Outputs one row per file: file, window_start, window_end, timing, pane_index, records.

    Args:
      path: Folder to write to: ``gs://bucket/folder/`` or a local directory.
      prefix: File name prefix.
      suffix: File name suffix.
      shards: Files per window pane, written in parallel.
    """

    def __init__(
        self, path: str, prefix: str = "visits", suffix: str = ".jsonl", shards: int = 4
    ) -> None:
        super().__init__()
        if not path:
            raise ValueError("path is required: a gs:// folder or a local directory")
        if not 1 <= int(shards) <= 999:
            raise ValueError(f"shards must be between 1 and 999, not {shards}")
        self.path, self.prefix, self.suffix, self.shards = path, prefix, suffix, int(shards)

    def expand(self, rows: beam.PCollection[Any]) -> beam.PCollection[Any]:
        return (
            rows
            | "Lines"
            >> beam.Map(lambda row, n=self.shards: (shard_of(data := line(row.payload), n), data))
            | "PerPane" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteFile(self.path, self.prefix, self.suffix, self.shards))
        )
