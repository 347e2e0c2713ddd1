"""The local alert evaluator's incidents as a file of JSON lines: one line each time an incident
opens or closes, so the file is its history and an incident's latest line is its state. The
evaluator (``clickstream monitoring drill``) appends; the realtime page reads."""

import dataclasses
import json
from pathlib import Path

from clickstream.core import jsonlines

OPEN, CLOSED = "open", "closed"


@dataclasses.dataclass(frozen=True)
class Incident:
    id: str
    policy: str  # the alert policy's display name
    state: str  # OPEN or CLOSED
    opened_at: str  # RFC 3339
    value: float  # the aggregated value that opened it
    threshold: float
    summary: str
    closed_at: str | None = None
    notified: tuple[str, ...] = ()  # addresses the notification reached


def append(path: Path, incident: Incident) -> None:
    """Record a change of ``incident`` (one whole line per write)."""
    line = json.dumps(dataclasses.asdict(incident), sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as out:
        out.write(line)


def read(path: Path) -> list[Incident]:
    """Each incident in its latest state, the latest opened first; none when the file does not
    exist. A line that is not a whole record (one being written) is skipped."""
    latest: dict[str, Incident] = {}
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        for _, record in jsonlines.records(handle):
            try:
                fields = json.loads(record)
                incident = Incident(**{**fields, "notified": tuple(fields.get("notified", ()))})
            except (ValueError, TypeError):
                continue
            latest[incident.id] = incident
    return sorted(latest.values(), key=lambda i: (i.opened_at, i.id), reverse=True)
