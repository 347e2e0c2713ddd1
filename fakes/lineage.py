"""A fake Data Lineage API on loopback for the real ``google-cloud-datacatalog-lineage`` client:
processes, runs and lineage events with client-chosen names; a request id makes a create
idempotent (the same request again returns what the first made), a name taken by another request
is ALREADY_EXISTS; parents must exist; ids, fully qualified names and link counts are checked as
the API documents them."""

import re

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import datacatalog_lineage_v1 as lineage_v1
from google.cloud.datacatalog_lineage_v1.services.lineage.transports import LineageGrpcTransport

from clickstream.fakes.rules import Rule
from clickstream.fakes.server import FakeServer, Fault

_SERVICE = "google.cloud.datacatalog.lineage.v1.Lineage"
_ID = re.compile(r"^[A-Za-z0-9_\-:.]{1,200}$")
_FQN = re.compile(r"^[a-z_]+:\S.*$")
MAX_LINKS = 100
_REFERENCE = "https://cloud.google.com/data-catalog/docs/reference/data-lineage/rest"
RULES = {
    "request-id": Rule(
        "lineage.request-id",
        "Data Lineage",
        "a create with the request id of an earlier one returns what that one made; a request "
        "id is at most 36 characters",
        f"{_REFERENCE}/v1/projects.locations.processes/create (requestId)",
    ),
    "links": Rule(
        "lineage.links",
        "Data Lineage",
        "a lineage event has at most 100 links, each between fully qualified names of the form "
        "system:name",
        f"{_REFERENCE}/v1/projects.locations.processes.runs.lineageEvents (links)",
    ),
    "parents": Rule(
        "lineage.parents",
        "Data Lineage",
        "a run belongs to an existing process, an event to an existing run",
        f"{_REFERENCE}/v1/projects.locations.processes.runs/create",
    ),
}


def _invalid(message: str) -> Fault:
    return Fault(grpc.StatusCode.INVALID_ARGUMENT, message)


class FakeLineage:
    """The fake's state: ``processes``, ``runs`` and ``events`` by name; ``server.calls``."""

    def __init__(self, project=None):
        """``project`` (``clickstream.fakes.project.FakeProject``): the API must be enabled."""
        self.processes: dict[str, lineage_v1.Process] = {}
        self.runs: dict[str, lineage_v1.Run] = {}
        self.events: dict[str, lineage_v1.LineageEvent] = {}
        self._requests: dict[str, tuple[bytes, object]] = {}  # request id -> (request, result)
        methods = {
            f"{_SERVICE}/CreateProcess": (
                self.create_process,
                lineage_v1.CreateProcessRequest,
                lineage_v1.Process,
            ),
            f"{_SERVICE}/CreateRun": (self.create_run, lineage_v1.CreateRunRequest, lineage_v1.Run),
            f"{_SERVICE}/CreateLineageEvent": (
                self.create_event,
                lineage_v1.CreateLineageEventRequest,
                lineage_v1.LineageEvent,
            ),
            f"{_SERVICE}/GetProcess": (
                lambda r: self._get(self.processes, r.name),
                lineage_v1.GetProcessRequest,
                lineage_v1.Process,
            ),
            f"{_SERVICE}/ListRuns": (
                lambda r: lineage_v1.ListRunsResponse(runs=self._children(self.runs, r.parent)),
                lineage_v1.ListRunsRequest,
                lineage_v1.ListRunsResponse,
            ),
            f"{_SERVICE}/ListLineageEvents": (
                lambda r: lineage_v1.ListLineageEventsResponse(
                    lineage_events=self._children(self.events, r.parent)
                ),
                lineage_v1.ListLineageEventsRequest,
                lineage_v1.ListLineageEventsResponse,
            ),
        }
        gate = (lambda path: project.require("datalineage.googleapis.com")) if project else None
        self.server = FakeServer(methods, gate)

    def client(self) -> lineage_v1.LineageClient:
        channel = self.server.channel()
        transport = LineageGrpcTransport(channel=channel, credentials=AnonymousCredentials())
        return lineage_v1.LineageClient(transport=transport)

    @staticmethod
    def _get(store: dict, name: str):
        if name not in store:
            raise Fault(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        return store[name]

    @staticmethod
    def _children(store: dict, parent: str) -> list:
        return [item for name, item in store.items() if name.rsplit("/", 2)[0] == parent]

    def _create(self, request, store: dict, parent_store: dict | None, item, collection: str):
        """Create ``item`` under ``request.parent``, idempotently by request id."""
        if len(request.request_id) > 36:
            raise _invalid("request_id is longer than 36 characters")
        if request.request_id in self._requests:
            sent, result = self._requests[request.request_id]
            if sent != type(request).serialize(request):
                raise _invalid(f"request id {request.request_id} was used for another request")
            return result
        if parent_store is not None:
            self._get(parent_store, request.parent)
        parent, _, item_id = item.name.rpartition(f"/{collection}/")
        if parent != request.parent or not _ID.fullmatch(item_id):
            raise _invalid(f"bad name {item.name!r} under {request.parent}")
        if item.name in store:
            raise Fault(grpc.StatusCode.ALREADY_EXISTS, f"{item.name} already exists")
        store[item.name] = item
        if request.request_id:
            self._requests[request.request_id] = (type(request).serialize(request), item)
        return item

    def create_process(self, request: lineage_v1.CreateProcessRequest) -> lineage_v1.Process:
        return self._create(request, self.processes, None, request.process, "processes")

    def create_run(self, request: lineage_v1.CreateRunRequest) -> lineage_v1.Run:
        if not request.run.start_time or not request.run.state:
            raise _invalid("run.start_time and run.state are required")
        return self._create(request, self.runs, self.processes, request.run, "runs")

    def create_event(self, request: lineage_v1.CreateLineageEventRequest):
        event = request.lineage_event
        if not event.start_time:
            raise _invalid("lineage_event.start_time is required")
        if len(event.links) > MAX_LINKS:
            raise _invalid(f"an event has at most {MAX_LINKS} links, not {len(event.links)}")
        for link in event.links:
            for end in (link.source, link.target):
                if not _FQN.fullmatch(end.fully_qualified_name):
                    raise _invalid(f"bad fully qualified name {end.fully_qualified_name!r}")
        return self._create(request, self.events, self.runs, event, "lineageEvents")

    def stop(self) -> None:
        self.server.stop()
