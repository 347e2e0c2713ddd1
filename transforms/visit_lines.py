"""Reading visits stored as JSON lines (local files or Cloud Storage)."""

import logging
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from clickstream.core import jsonlines, names
from clickstream.transforms.rows import as_row

_LOG = logging.getLogger(__name__)


def _records(readable: fileio.ReadableFile) -> Iterator[beam.Row]:
    """Rows (payload, "path:line"), one per record of the file (``core.jsonlines``)."""
    path = readable.metadata.path
    count = 0
    with readable.open(compression_type=CompressionTypes.AUTO) as handle:
        for number, record in jsonlines.records(handle):
            count += 1
            yield as_row({"payload": record, "source": f"{path}:{number}"})
    beam.metrics.Metrics.counter(names.COUNTER_NAMESPACE, "records_read").inc(count)
    beam.metrics.Metrics.counter(names.COUNTER_NAMESPACE, "files_read").inc()
    _LOG.info("read %s: %d records", path, count)


class ReadVisitLines(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[Any]]):
    """Reads visits from JSON-lines files: one record per non-blank line.

    Takes a file, a glob or a ``gs://`` path; files ending in .gz or .bz2 are decompressed. Input
    may start with a UTF-8 byte order mark and use CRLF line endings; blank lines are skipped.
    A path that matches no file fails the run.

    Outputs rows with ``payload`` (the line's bytes) and ``source`` (``file:line``), the input of
    ``ParseVisits``.

    Args:
      path: The file, glob or ``gs://`` path to read.
    """

    def __init__(self, path: str):
        super().__init__()
        if not path:
            raise ValueError("path is required: a file, a glob or a gs:// path of JSON lines")
        self.path = path

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[Any]:
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.path, fileio.EmptyMatchTreatment.DISALLOW)
            | "Spread" >> beam.Reshuffle()
            | "Open" >> fileio.ReadMatches()
            | "Lines" >> beam.FlatMap(_records)
        )


def matching_files(path: str) -> list[Any]:
    """The files a path or glob matches (local or gs://), as Beam FileMetadata."""
    files: list[Any] = FileSystems.match([path])[0].metadata_list
    return files
