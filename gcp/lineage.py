"""Data lineage of the batch migration, for Dataplex's lineage graph: one process, one run per
migration (or orchestration DAG run), and lineage events from the raw files (``gcs:`` fully
qualified names) to the curated tables (``bigquery:``).

The calls are built as the Data Lineage API's requests in their JSON form (proto3 JSON, as its
REST API takes them), with names chosen here and request ids derived from the names, so that
sending them again creates nothing twice. Where they go:

- with ``CLICKSTREAM_LINEAGE_FILE`` set (the local stack sets it: no Lineage emulator exists), to
  that file, one call per line; ``clickstream governance lineage`` prints the graph from it;
- otherwise to the Data Lineage API (``google-cloud-datacatalog-lineage``, in the ``ops`` extra).

Beam-free: the orchestration DAG records the runs it launches with ``record_migration`` too.
"""

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickstream.core import contract, names, templates
from clickstream.gcp import bigquery_tables, clients

if TYPE_CHECKING:  # the ops extra's client library, imported when a call is made
    import proto
    from google.cloud import datacatalog_lineage_v1

MAX_LINKS = 100  # source-target pairs per lineage event: the API refuses more
MAX_ID = 200  # characters of a process, run or event id
_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9_\-:.]")  # what an id may not contain
_RESERVED = re.compile(r"[:\s.]")  # what puts a name segment in backticks
_REQUESTS = uuid.UUID("5b0c5e0a-4f4e-4c4b-9b8e-6c696e656167")  # namespace of the request ids
CUSTOM_ORIGIN = {"sourceType": "CUSTOM", "name": "clickstream migrate"}

log = logging.getLogger(__name__)


def fqn(system: str, *segments: str) -> str:
    """A fully qualified name, e.g. ``bigquery:project.dataset.table``: a segment holding a
    colon, a dot or whitespace goes in backticks (``gcs:bucket.`landing/visits.jsonl```)."""
    wrapped = (f"`{s}`" if _RESERVED.search(s) else s for s in segments)
    return f"{system}:{'.'.join(wrapped)}"


def storage_fqn(url: str) -> str | None:
    """``gs://bucket/path`` as ``gcs:bucket.path``; None for a path outside Cloud Storage."""
    if not url.startswith("gs://"):
        return None
    bucket, _, path = url.removeprefix("gs://").partition("/")
    return fqn("gcs", bucket, path) if path else fqn("gcs", bucket)


def bigquery_fqn(table_id: str) -> str:
    """``project.dataset.table`` as ``bigquery:project.dataset.table``."""
    project, dataset, table = table_id.rsplit(".", 2)
    return fqn("bigquery", project, dataset, table)


def resource_id(text: str) -> str:
    """``text`` as a process, run or event id: characters the API refuses become ``-``."""
    return _ID_CHARACTERS.sub("-", text)[:MAX_ID]


def request_id(name: str) -> str:
    """The request id of the call that creates ``name``: the same on every retry."""
    return str(uuid.uuid5(_REQUESTS, name))


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of the Data Lineage API: its method and its request in JSON form."""

    method: str  # CreateProcess, CreateRun or CreateLineageEvent
    request: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Process:
    """A lineage process: what runs (a spec, a DAG), in a project and location."""

    project: str
    location: str
    process_id: str
    display_name: str
    attributes: Mapping[str, object] = dataclasses.field(default_factory=dict)
    origin: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(CUSTOM_ORIGIN))

    @property
    def name(self) -> str:
        location = f"projects/{self.project}/locations/{self.location}"
        return f"{location}/processes/{resource_id(self.process_id)}"


def run_calls(
    process: Process,
    run_id: str,
    links: Iterable[tuple[str, str]],
    started: datetime.datetime,
    ended: datetime.datetime,
    state: str = "COMPLETED",
    attributes: Mapping[str, object] | None = None,
) -> list[Call]:
    """The calls that record one run of ``process``: the process (created once), the run, and
    its lineage events: one per target with at most ``MAX_LINKS`` sources each, more when there
    are more sources. ``links`` are (source, target) fully qualified names."""
    run = f"{process.name}/runs/{resource_id(run_id)}"
    parent = process.name.split("/processes/")[0]
    calls = [
        Call(
            "CreateProcess",
            {
                "parent": parent,
                "process": {
                    "name": process.name,
                    "displayName": process.display_name,
                    "attributes": dict(process.attributes),
                    "origin": dict(process.origin),
                },
                "requestId": request_id(process.name),
            },
        ),
        Call(
            "CreateRun",
            {
                "parent": process.name,
                "run": {
                    "name": run,
                    "displayName": run_id,
                    "attributes": dict(attributes or {}),
                    "startTime": _timestamp(started),
                    "endTime": _timestamp(ended),
                    "state": state,
                },
                "requestId": request_id(run),
            },
        ),
    ]
    sources_of: dict[str, list[str]] = {}
    for source, target in links:
        if source not in sources_of.setdefault(target, []):
            sources_of[target].append(source)
    for target, sources in sources_of.items():
        for chunk, first in enumerate(range(0, len(sources), MAX_LINKS)):
            event = f"{run}/lineageEvents/{resource_id(target.split(':', 1)[1])}-{chunk}"
            calls.append(
                Call(
                    "CreateLineageEvent",
                    {
                        "parent": run,
                        "lineageEvent": {
                            "name": event,
                            "links": [
                                {
                                    "source": {"fullyQualifiedName": source},
                                    "target": {"fullyQualifiedName": target},
                                }
                                for source in sources[first : first + MAX_LINKS]
                            ],
                            "startTime": _timestamp(started),
                            "endTime": _timestamp(ended),
                        },
                        "requestId": request_id(event),
                    },
                )
            )
    return calls


def migration_process(project: str, location: str, origin: Mapping[str, str] | None) -> Process:
    """The batch migration's process (``pipelines/batch_migration.yaml``)."""
    return Process(
        project,
        location,
        names.MIGRATION_PROCESS,
        templates.metadata("batch_migration")["name"],
        {"spec": "pipelines/batch_migration.yaml", "template": "batch_migration"},
        origin or CUSTOM_ORIGIN,
    )


def migration_tables(project: str, dataset: str, dead_letter_table: str | None = None) -> list[str]:
    """The tables the batch migration writes, as project.dataset.table (``dead_letter_table``:
    its template parameter, ``[project.]dataset.table``, when not the dataset's own)."""
    tables = [f"{project}.{dataset}.{name}" for name in contract.TABLES if name != "dead_letter"]
    return [
        *tables,
        bigquery_tables.table_id(dead_letter_table or f"{dataset}.dead_letter", project),
    ]


def record_migration(
    project: str,
    location: str,
    run_id: str,
    input_files: Iterable[str],
    tables: Iterable[str],
    started: datetime.datetime,
    ended: datetime.datetime,
    succeeded: bool = True,
    attributes: Mapping[str, object] | None = None,
    origin: Mapping[str, str] | None = None,
    client: "datacatalog_lineage_v1.LineageClient | None" = None,
) -> list[Call]:
    """Record one batch migration run: from each of ``input_files`` (gs:// URLs) to each of
    ``tables`` (``project.dataset.table``). A failed run is recorded without events. Files not in
    Cloud Storage have no fully qualified name: they are counted in the run's attributes
    (``unnamed_sources``), not linked. ``origin`` is who ran it (default: ``clickstream
    migrate``; the DAG passes ``{"sourceType": "COMPOSER", "name": <environment>}``); ``tables``
    from ``migration_tables``. Returns the calls made (see ``record``)."""
    files = list(input_files)
    sources = [name for name in map(storage_fqn, files) if name]
    targets = [bigquery_fqn(table) for table in tables]
    links = [(s, t) for t in targets for s in sources] if succeeded else []
    details = {**(attributes or {}), "input_files": len(files)}
    if len(sources) < len(files):
        details["unnamed_sources"] = len(files) - len(sources)
        log.warning(
            "lineage: %d of %d input files are not in Cloud Storage and are not linked "
            "(upload them to the raw zone's bucket to trace them)",
            len(files) - len(sources),
            len(files),
        )
    calls = run_calls(
        migration_process(project, location, origin),
        run_id,
        links,
        started,
        ended,
        "COMPLETED" if succeeded else "FAILED",
        details,
    )
    record(calls, client)
    return calls


def record(calls: list[Call], client: "datacatalog_lineage_v1.LineageClient | None" = None) -> None:
    """Append the calls to ``$CLICKSTREAM_LINEAGE_FILE`` when it is set, else make them with the
    Data Lineage API (``client``, or a ``LineageClient`` with Application Default Credentials).
    A call whose resource exists already (an earlier attempt) is skipped."""
    local = os.environ.get(names.LINEAGE_FILE_ENV)
    if local:
        path = Path(local)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as lines:
            for call in calls:
                lines.write(json.dumps({"method": call.method, "request": call.request}) + "\n")
        return
    from google.api_core import exceptions
    from google.cloud import datacatalog_lineage_v1 as lineage_v1

    client = client or clients.gapic(lineage_v1.LineageClient, "lineage")
    methods: dict[str, tuple[Callable[..., object], type[proto.Message]]] = {
        "CreateProcess": (client.create_process, lineage_v1.CreateProcessRequest),
        "CreateRun": (client.create_run, lineage_v1.CreateRunRequest),
        "CreateLineageEvent": (client.create_lineage_event, lineage_v1.CreateLineageEventRequest),
    }
    for call in calls:
        method, request_type = methods[call.method]
        with contextlib.suppress(exceptions.AlreadyExists):  # an earlier attempt made it
            method(request=request_type.from_json(json.dumps(call.request)))


def read_file(path: str | Path) -> list[Call]:
    """The calls recorded in a lineage file (``$CLICKSTREAM_LINEAGE_FILE``)."""
    text = Path(path).read_text(encoding="utf-8")
    return [Call(**json.loads(line)) for line in text.splitlines() if line.strip()]
