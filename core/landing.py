"""Files landing in Cloud Storage, as the orchestration sees them, defined once for the trigger
function, the DAG and the subscriber (all Beam-free; the DAG runs in Cloud Composer, which has
no catalog installed):

- a ``LandedFile`` is one object generation (bucket, object, generation): what a finalize event
  announces and what a DAG run processes. Its ``run_id`` is derived from those three alone, so a
  redelivered event starts no second run; its Dataflow ``job_name`` is derived the same way;
- which objects are visit files (``is_visit_file``);
- the message on the files-processed topic: ``notification`` builds it, ``read_notification``
  reads it back, ``describe`` says it in one line.
"""

import dataclasses
import hashlib
import json
import re
from typing import Any

from clickstream.core import names, templates

FINALIZED = "google.cloud.storage.object.v1.finalized"  # the CloudEvent of a written object
VISIT_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.bz2")  # the batch migration reads these
PROCESSED, FAILED = "processed", "failed"
# The batch migration's counters (Beam, namespace names.COUNTER_NAMESPACE) a message carries:
# records read, visits and events loaded and rejected, and how many visit rows were new.
COUNTERS = (
    "records_read",
    "visits_accepted",
    "visits_rejected",
    "events_accepted",
    "events_rejected",
    "visits.rows_inserted",
)
_BUCKET = re.compile(r"[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9]")
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~+-]+")  # Airflow's default allowed_run_id_pattern
_JOB_NAME_UNSAFE = re.compile(r"[^a-z0-9]+")
_GLOB = re.compile(r"[*?\[\]]")
JOB_PREFIX = "clickstream-migrate-"
# In the line of a processed file whose counts do not add up (``templates.counts_reconcile``):
# the DAG logs it as an error, a log-based metric counts those lines (``monitoring.production``).
UNRECONCILED = "THE MIGRATION DID NOT RECONCILE"


class LandingError(ValueError):
    """Not a landed file: a bucket, object or generation is missing or malformed."""


@dataclasses.dataclass(frozen=True)
class LandedFile:
    bucket: str
    object: str
    generation: str  # decimal, as Cloud Storage writes it in JSON

    def __post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not _BUCKET.fullmatch(self.bucket):
            raise LandingError(f"bucket {self.bucket!r} is not a Cloud Storage bucket name")
        if not isinstance(self.object, str) or not self.object or "\n" in self.object:
            raise LandingError(f"object {self.object!r} is not an object name")
        if not re.fullmatch(r"[0-9]{1,19}", str(self.generation)):
            raise LandingError(f"generation {self.generation!r} is not an object generation")
        object.__setattr__(self, "generation", str(self.generation))

    @classmethod
    def from_conf(cls, conf: dict[str, Any]) -> "LandedFile":
        """From a DAG run's configuration: ``{"bucket", "object", "generation"}``."""
        missing = [key for key in ("bucket", "object", "generation") if key not in (conf or {})]
        if missing:
            raise LandingError(f"the run's configuration lacks {', '.join(missing)}")
        return cls(conf["bucket"], conf["object"], conf["generation"])

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> "LandedFile":
        """From the data of a Cloud Storage event (StorageObjectData: bucket, name, generation)."""
        missing = [key for key in ("bucket", "name", "generation") if not (data or {}).get(key)]
        if missing:
            raise LandingError(f"the event's object data lacks {', '.join(missing)}")
        return cls(data["bucket"], data["name"], data["generation"])

    def conf(self) -> dict[str, str]:
        """The DAG run's configuration."""
        return {"bucket": self.bucket, "object": self.object, "generation": self.generation}

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.object}"

    @property
    def _digest(self) -> str:
        key = f"{self.url}#{self.generation}".encode()
        return hashlib.sha256(key).hexdigest()[:16]

    @property
    def _basename(self) -> str:
        return self.object.rstrip("/").rsplit("/", 1)[-1]

    @property
    def run_id(self) -> str:
        """The DAG run's id: readable, and the same for the same object generation only."""
        readable = _RUN_ID_UNSAFE.sub("-", self._basename)[:80]
        return f"landed__{readable}__{self.generation}__{self._digest}"

    @property
    def job_name(self) -> str:
        """The Dataflow job's name (at most 63 characters), derived like the run id."""
        readable = _JOB_NAME_UNSAFE.sub("-", self._basename.lower()).strip("-")[:29].strip("-")
        return f"{JOB_PREFIX}{readable + '-' if readable else ''}{self._digest[:12]}"


def is_visit_file(name: str, prefix: str = names.LANDING_PREFIX) -> bool:
    """Whether object ``name`` is a visit file to migrate: a JSON-lines file under ``prefix``,
    without glob characters (the migration would read its ``input`` as a pattern)."""
    return name.startswith(prefix) and name.endswith(VISIT_SUFFIXES) and not _GLOB.search(name)


def notification(
    file: LandedFile,
    state: str,
    job_id: str = "",
    counters: dict[str, int] | None = None,
    dead_letter_table: str = "",
    error: str = "",
) -> tuple[bytes, dict[str, str]]:
    """The files-processed message (JSON data, attributes) that ``file`` was processed, with the
    migration's counters, whether they reconcile, and where its rejected records went, or that
    it failed, and why."""
    if state not in (PROCESSED, FAILED):
        raise ValueError(f"state {state!r}: {PROCESSED} or {FAILED}")
    body: dict[str, Any] = {
        "state": state,
        "file": file.url,
        **file.conf(),
        "job_id": job_id,
        "counts": {key: int((counters or {}).get(key, 0)) for key in COUNTERS},
        "dead_letter_table": dead_letter_table,
        "error": error,
    }
    if state == PROCESSED:
        body["reconciled"] = templates.counts_reconcile(counters or {})
    attributes = {"state": state, **file.conf(), "job_id": job_id}
    return json.dumps(body, sort_keys=True).encode(), attributes


def read_notification(data: bytes) -> dict[str, Any]:
    """A files-processed message's data as a dict; ValueError if it is not one."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not a files-processed message: not JSON") from None
    if not isinstance(body, dict) or body.get("state") not in (PROCESSED, FAILED):
        raise ValueError("not a files-processed message: no state processed or failed")
    LandedFile.from_conf(body)
    return body


def describe(body: dict[str, Any]) -> str:
    """A files-processed message in one line, for a person."""
    where = f"{body['file']} (generation {body['generation']})"
    job = f"job {body['job_id']}" if body.get("job_id") else "no job"
    if body["state"] == FAILED:
        return f"FAILED {where}: {body.get('error') or 'see the DAG run'}; {job}"
    counts = body["counts"]
    rejected = counts["visits_rejected"] + counts["events_rejected"]
    dead = (
        f" (in {body['dead_letter_table']})" if rejected and body.get("dead_letter_table") else ""
    )
    unreconciled = f"{UNRECONCILED}; " if body.get("reconciled") is False else ""
    return (
        f"processed {where}: {unreconciled}{counts['records_read']:,} records read, "
        f"{counts['visits_accepted']:,} visits loaded ({counts['visits.rows_inserted']:,} new), "
        f"{counts['visits_rejected']:,} rejected; "
        f"{counts['events_accepted']:,} events loaded, {counts['events_rejected']:,} rejected"
        f"{dead}; {job}"
    )
