"""A fake Dataplex on loopback for the real ``google-cloud-dataplex`` clients: the
DataplexService calls of lakes, zones and assets (long-running, ``validate_only``, update masks
with immutable fields refused, deletes refused while children exist), their IAM policies
(etags: a stale one is ABORTED, as on Google Cloud), and the CatalogService calls of aspect types
(etags) and of the entries Dataplex keeps for BigQuery tables (system entries: only aspects can
change; aspect data checked against its type's template and column paths against the table's
schema; a new table's entry shows up only after a delay)."""

import copy
import itertools
import re

import grpc
import proto
from google.auth.credentials import AnonymousCredentials
from google.cloud import dataplex_v1
from google.cloud.dataplex_v1.services.catalog_service.transports import CatalogServiceGrpcTransport
from google.cloud.dataplex_v1.services.dataplex_service.transports import (
    DataplexServiceGrpcTransport,
)
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, timestamp_pb2

from clickstream.fakes.iam import FakePolicies
from clickstream.fakes.rules import Rule
from clickstream.fakes.server import FakeServer, Fault, Operations

MUTATING = ("Create", "Update", "Delete", "SetIamPolicy")  # prefixes of the calls that change
_REFERENCE = "https://cloud.google.com/dataplex/docs/reference/rest"
RULES = {
    "delete-missing-aspects": Rule(
        "dataplex.delete-missing-aspects",
        "Dataplex",
        "entries.patch keeps an existing aspect that aspect_keys names but the request lacks, "
        "unless delete_missing_aspects is set",
        "dataplex.v1 API reference, entries.patch: aspectKeys and deleteMissingAspects",
    ),
    "immutable": Rule(
        "dataplex.immutable",
        "Dataplex",
        "a zone's type and resource spec, and an asset's resource spec, cannot be updated",
        f"{_REFERENCE}/v1/projects.locations.lakes.zones (Zone.type, Zone.resourceSpec: Immutable)",
    ),
    "children": Rule(
        "dataplex.children",
        "Dataplex",
        "a lake with zones, or a zone with assets, cannot be deleted",
        f"{_REFERENCE}/v1/projects.locations.lakes/delete",
    ),
    "system-entries": Rule(
        "dataplex.system-entries",
        "Dataplex",
        "the entries Dataplex keeps for BigQuery tables (@bigquery) take aspects only; a new "
        "table's entry appears some time after the table",
        "https://cloud.google.com/dataplex/docs/ingest-custom-sources (system entry groups)",
    ),
    "aspect-data": Rule(
        "dataplex.aspect-data",
        "Dataplex",
        "an aspect's data must fit its aspect type's metadata template (fields, types, "
        "required fields, enum values)",
        f"{_REFERENCE}/v1/projects.locations.aspectTypes (metadataTemplate)",
    ),
}
PROJECT_NUMBER = "123456789012"
_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DATAPLEX = "google.cloud.dataplex.v1.DataplexService"
_CATALOG = "google.cloud.dataplex.v1.CatalogService"
# Per resource noun: its message, the parent's noun (None: a location), what cannot change.
NOUNS = {
    "lake": (dataplex_v1.Lake, None, ()),
    "zone": (dataplex_v1.Zone, "lake", ("type", "resource_spec")),
    "asset": (dataplex_v1.Asset, "zone", ("resource_spec",)),
    "aspect_type": (dataplex_v1.AspectType, None, ()),
}
_REQUESTS = {
    (verb, noun): getattr(
        dataplex_v1, f"{verb}{''.join(p.title() for p in noun.split('_'))}Request"
    )
    for verb in ("Get", "Create", "Update", "Delete")
    for noun in NOUNS
}


def _invalid(message: str) -> Fault:
    return Fault(grpc.StatusCode.INVALID_ARGUMENT, message)


def _now() -> timestamp_pb2.Timestamp:
    moment = timestamp_pb2.Timestamp()
    moment.GetCurrentTime()
    return moment


class FakeDataplex:
    """The fake's state: resources by name, IAM policies, BigQuery entries; ``server.calls``."""

    def __init__(self, project=None):
        """``project`` (``clickstream.fakes.project.FakeProject``): the API must be enabled."""
        self.resources: dict[str, proto.Message] = {}  # lakes, zones, assets, aspect types by name
        self.iam = FakePolicies(lambda name: name in self.resources)
        self.policies = self.iam.policies
        self.entries: dict[str, dataplex_v1.Entry] = {}
        self.columns: dict[str, set[str]] = {}  # entry name -> its table's columns
        self.hidden: dict[str, int] = {}  # entry name -> GetEntry calls it stays unseen
        self.before_set_policy = self.iam.before_set_policy
        self._etags = itertools.count(1)
        self.operations = Operations("projects/-/locations/-")
        methods = {**self.operations.methods()}
        for noun in NOUNS:
            service = _CATALOG if noun == "aspect_type" else _DATAPLEX
            message = NOUNS[noun][0]
            title = "".join(p.title() for p in noun.split("_"))
            lro = operations_pb2.Operation
            methods[f"{service}/Get{title}"] = (self._getter(noun), _REQUESTS["Get", noun], message)
            for verb, handler in (
                ("Create", self._creator(noun)),
                ("Update", self._updater(noun)),
                ("Delete", self._deleter(noun)),
            ):
                methods[f"{service}/{verb}{title}"] = (handler, _REQUESTS[verb, noun], lro)
        methods.update(self.iam.methods())
        methods[f"{_CATALOG}/GetEntry"] = (
            self.get_entry,
            dataplex_v1.GetEntryRequest,
            dataplex_v1.Entry,
        )
        methods[f"{_CATALOG}/UpdateEntry"] = (
            self.update_entry,
            dataplex_v1.UpdateEntryRequest,
            dataplex_v1.Entry,
        )
        gate = (lambda path: project.require("dataplex.googleapis.com")) if project else None
        self.server = FakeServer(methods, gate)

    # The clients, as the code under test builds them, on a channel to this fake.
    def clients(self):
        def transport(kind):
            return kind(channel=self.server.channel(), credentials=AnonymousCredentials())

        return (
            dataplex_v1.DataplexServiceClient(transport=transport(DataplexServiceGrpcTransport)),
            dataplex_v1.CatalogServiceClient(transport=transport(CatalogServiceGrpcTransport)),
        )

    def mutations(self) -> list[str]:
        """The calls so far that change something."""
        return [c for c in self.server.calls if c.split("/")[1].startswith(MUTATING)]

    # Lakes, zones, assets, aspect types.
    def _parent(self, noun: str, parent: str) -> None:
        parent_noun = NOUNS[noun][1]
        if parent_noun and parent not in self.resources:
            raise Fault(grpc.StatusCode.NOT_FOUND, f"{parent_noun} {parent} not found")
        if not parent_noun and not re.fullmatch(r"projects/[^/]+/locations/[^/]+", parent):
            raise _invalid(f"bad parent {parent}")

    @staticmethod
    def _check(noun: str, resource) -> None:
        """What the API refuses in a resource to create."""
        if noun == "zone":
            if not resource.type_:
                raise _invalid("zone.type is required")
            if not resource.resource_spec.location_type:
                raise _invalid("zone.resource_spec.location_type is required")
        if noun == "asset" and not (resource.resource_spec.name and resource.resource_spec.type_):
            raise _invalid("asset.resource_spec.name and type are required")
        if noun == "aspect_type":
            template = resource.metadata_template
            if template.type_ != "record" or not template.record_fields:
                raise _invalid("aspect_type.metadata_template must be a record with fields")
            indexes = [field.index for field in template.record_fields]
            if sorted(indexes) != sorted(set(indexes)) or min(indexes) < 1:
                raise _invalid("record field indexes must be unique and positive")

    def _getter(self, noun):
        def get(request):
            if request.name not in self.resources:
                raise Fault(grpc.StatusCode.NOT_FOUND, f"{noun} {request.name} not found")
            return self.resources[request.name]

        return get

    def _creator(self, noun):
        def create(request):
            resource_id, resource = getattr(request, f"{noun}_id"), getattr(request, noun)
            if not _ID.fullmatch(resource_id):
                raise _invalid(f"bad {noun} id {resource_id!r}")
            self._parent(noun, request.parent)
            prefix = {"lake": "lakes", "zone": "zones", "asset": "assets"}.get(noun, "aspectTypes")
            name = f"{request.parent}/{prefix}/{resource_id}"
            if name in self.resources:
                raise Fault(grpc.StatusCode.ALREADY_EXISTS, f"{noun} {name} already exists")
            self._check(noun, resource)
            if request.validate_only:
                return self.operations.done(type(resource)())
            stored = copy.deepcopy(resource)
            stored.name, stored.uid = name, f"uid-{len(self.resources) + 1}"
            stored.create_time = stored.update_time = _now()
            if noun != "aspect_type":
                stored.state = dataplex_v1.State.ACTIVE
            else:
                stored.etag = f"etag-{next(self._etags)}"
            if noun == "asset":  # named by project number, as the API documents it
                bucket_or_dataset = stored.resource_spec.name.split("/", 2)[2]
                stored.resource_spec.name = f"projects/{PROJECT_NUMBER}/{bucket_or_dataset}"
            self.resources[name] = stored
            return self.operations.done(stored)

        return create

    def _updater(self, noun):
        def update(request):
            change = getattr(request, noun)
            if change.name not in self.resources:
                raise Fault(grpc.StatusCode.NOT_FOUND, f"{noun} {change.name} not found")
            stored = self.resources[change.name]
            paths = list(request.update_mask.paths)
            if not paths:
                raise _invalid("update_mask is required")
            fields = type(stored).meta.fields
            for path in paths:
                if path in NOUNS[noun][2]:
                    raise _invalid(f"{noun}.{path} cannot be updated")
                if path not in fields and f"{path}_" not in fields:
                    raise _invalid(f"{noun} has no top-level field {path}")
            if noun == "aspect_type" and change.etag and change.etag != stored.etag:
                raise Fault(grpc.StatusCode.ABORTED, "etag mismatch: the aspect type changed")
            if request.validate_only:
                return self.operations.done(type(stored)())
            updated = copy.deepcopy(stored)
            for path in paths:
                field = path if path in fields else f"{path}_"
                setattr(updated, field, getattr(change, field))
            updated.update_time = _now()
            if noun == "aspect_type":
                updated.etag = f"etag-{next(self._etags)}"
            self.resources[change.name] = updated
            return self.operations.done(updated)

        return update

    def _deleter(self, noun):
        def delete(request):
            if request.name not in self.resources:
                raise Fault(grpc.StatusCode.NOT_FOUND, f"{noun} {request.name} not found")
            children = [n for n in self.resources if n.startswith(f"{request.name}/")]
            if children:
                raise Fault(grpc.StatusCode.FAILED_PRECONDITION, f"{noun} has {children[0]}")
            if noun == "aspect_type" and any(
                aspect.aspect_type == request.name
                for entry in self.entries.values()
                for aspect in entry.aspects.values()
            ):
                raise Fault(grpc.StatusCode.FAILED_PRECONDITION, "aspect type in use")
            del self.resources[request.name]
            self.policies.pop(request.name, None)
            return self.operations.done(empty_pb2.Empty())

        return delete

    def grant(self, resource: str, role: str, member: str) -> None:
        """Someone else grants a role on a lake or zone (a change the code must keep)."""
        self.iam.grant(resource, role, member)

    # Entries of BigQuery tables.
    def add_table(self, entry_name: str, columns, hidden_for: int = 0) -> None:
        """Dataplex lists a BigQuery table; ``hidden_for`` GetEntry calls do not see it yet."""
        self.entries[entry_name] = dataplex_v1.Entry(
            name=entry_name,
            entry_type="projects/dataplex-types/locations/global/entryTypes/bigquery-table",
            fully_qualified_name="bigquery:" + ".".join(entry_name.split("/")[-5::2]),
            aspects={
                "dataplex-types.global.schema": dataplex_v1.Aspect(
                    aspect_type="projects/dataplex-types/locations/global/aspectTypes/schema",
                    data={"fields": [{"name": column} for column in columns]},
                )
            },
        )
        self.columns[entry_name] = set(columns)
        self.hidden[entry_name] = hidden_for

    def _entry(self, name: str) -> dataplex_v1.Entry:
        if self.hidden.get(name, 0) > 0:
            self.hidden[name] -= 1
            raise Fault(grpc.StatusCode.NOT_FOUND, f"entry {name} not found")
        if name not in self.entries:
            raise Fault(grpc.StatusCode.NOT_FOUND, f"entry {name} not found")
        return self.entries[name]

    def get_entry(self, request: dataplex_v1.GetEntryRequest) -> dataplex_v1.Entry:
        entry = copy.deepcopy(self._entry(request.name))
        if request.view == dataplex_v1.EntryView.CUSTOM:
            wanted = set(request.aspect_types)
            for key in [k for k, a in entry.aspects.items() if a.aspect_type not in wanted]:
                del entry.aspects[key]
        return entry

    def _aspect_type(self, key: str) -> tuple[str, dataplex_v1.AspectType, str]:
        """The aspect type name, type and path of an aspect key."""
        type_key, _, path = key.partition("@")
        project, location, type_id = type_key.split(".")
        name = f"projects/{project}/locations/{location}/aspectTypes/{type_id}"
        if name not in self.resources:
            raise _invalid(f"aspect type {name} of {key} not found")
        return name, self.resources[name], path

    def update_entry(self, request: dataplex_v1.UpdateEntryRequest) -> dataplex_v1.Entry:
        entry = self._entry(request.entry.name)
        if list(request.update_mask.paths) != ["aspects"]:
            raise _invalid("only aspects can be updated on entries of @bigquery")
        updated = copy.deepcopy(entry)
        for key in request.aspect_keys:
            type_name, aspect_type, path = self._aspect_type(key)
            if path and path.removeprefix("Schema.") not in self.columns[entry.name]:
                raise _invalid(f"aspect {key}: {path} is not a column of {entry.name}")
            if key not in request.entry.aspects:
                # entries.patch keeps an existing aspect that aspect_keys names but the entry
                # lacks, unless delete_missing_aspects (API reference, UpdateEntryRequest).
                if request.delete_missing_aspects:
                    updated.aspects.pop(key, None)
                continue
            aspect = request.entry.aspects[key]
            _check_data(
                key, aspect_type.metadata_template, dataplex_v1.Aspect.to_dict(aspect)["data"]
            )
            updated.aspects[key] = dataplex_v1.Aspect(
                aspect_type=type_name, path=path, data=aspect.data
            )
        self.entries[entry.name] = updated
        return updated

    def stop(self) -> None:
        self.server.stop()


def _check_data(key: str, template, data: dict) -> None:
    """Refuse aspect data that does not fit its type's record template."""
    fields = {field.name: field for field in template.record_fields}
    for name in data:
        if name not in fields:
            raise _invalid(f"aspect {key}: no field {name} in its type")
    for name, field in fields.items():
        if name not in data:
            if field.constraints.required:
                raise _invalid(f"aspect {key}: required field {name} missing")
            continue
        value = data[name]
        if field.type_ == "string" and not isinstance(value, str):
            raise _invalid(f"aspect {key}: {name} must be a string")
        if field.type_ == "array" and not (
            isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        ):
            raise _invalid(f"aspect {key}: {name} must be an array of strings")
        if field.type_ == "enum" and value not in {v.name for v in field.enum_values}:
            raise _invalid(f"aspect {key}: {name} {value!r} is not one of its values")
