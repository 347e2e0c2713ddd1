"""JSON lines, the visits' file format: one record per non-blank line.

Every reader of visit files uses ``records`` (the batch migration's Beam read, ``clickstream
subscribe publish``, the tests), so they agree on what a record is: a file may start with a UTF-8
byte order mark and use CRLF line endings; blank lines are not records.
"""

import glob
from collections.abc import Iterable, Iterator
from typing import BinaryIO

BOM = b"\xef\xbb\xbf"


def records(handle: BinaryIO | Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, record) of each non-blank line of a binary file or of its lines, without
    the byte order mark and the line ending."""
    for number, line in enumerate(handle, start=1):
        if number == 1:
            line = line.removeprefix(BOM)
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield number, line


def split(data: bytes) -> list[bytes]:
    """The records of a whole file's bytes."""
    return [record for _, record in records(data.splitlines(keepends=True))]


def read(patterns: Iterable[str]) -> Iterator[bytes]:
    """The records of the local files matching ``patterns`` (globs), file by file in name
    order. A pattern that matches nothing raises FileNotFoundError."""
    for pattern in patterns:
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise FileNotFoundError(f"no file matches {pattern}")
        for path in paths:
            with open(path, "rb") as handle:
                yield from (record for _, record in records(handle))
