"""The plan/apply adapters of the mesh's kinds, on the Dataplex client library
(``google-cloud-dataplex``): ``DataplexServiceClient`` for lakes, zones, assets and their IAM
policies, ``CatalogServiceClient`` for aspect types and the aspects of entries.

- lakes, zones, assets and aspect types: get, create (long-running, ``validate_only``), update
  of the changed top-level fields only (maps and messages merged into what exists, so labels we
  did not set stay; aspect types with their etag), delete;
- IAM policies: ``clickstream.gcp.iam`` (only our members of our roles, merged by etag);
- entry aspects: BigQuery tables' entries are Dataplex's own (``@bigquery``): they cannot be
  created, only waited for (Dataplex lists a new table within minutes); only our aspects are
  read and written (``aspect_keys``), never the others.
"""

import logging
import time
from collections.abc import Mapping

from google.api_core import exceptions
from google.cloud import dataplex_v1
from google.protobuf import field_mask_pb2

from clickstream.gcp import iam, plan

OPERATION_SECONDS = 600  # a long-running create, update or delete
ENTRY_WAIT_SECONDS = 600  # for Dataplex to list a new BigQuery table
ENTRY_POLL_SECONDS = 15

log = logging.getLogger(__name__)


def _merged(current, declared):
    """``declared`` over ``current``: maps merged key by key, anything else declared."""
    if isinstance(current, Mapping) and isinstance(declared, Mapping):
        return {**current, **{k: _merged(current.get(k), v) for k, v in declared.items()}}
    return declared


def _refusal(error: exceptions.GoogleAPICallError) -> str:
    status = error.grpc_status_code.name if error.grpc_status_code else error.code
    return f"{status}: {error.message}"


class Resources:
    """Lakes, zones, assets (``DataplexServiceClient``) or aspect types
    (``CatalogServiceClient``): the same calls, named after ``noun``."""

    def __init__(self, client, noun: str, message):
        self.client, self.noun, self.message = client, noun, message

    def _call(self, verb: str, request: dict):
        return getattr(self.client, f"{verb}_{self.noun}")(request=request)

    def read(self, resource: plan.Resource) -> dict | None:
        try:
            found = self._call("get", {"name": resource.name})
        except exceptions.NotFound:
            return None
        current = plan.fields_of(found)
        spec = current.get("resource_spec", {})
        declared = resource.fields.get("resource_spec", {}).get("name", "")
        if spec.get("name") and _tail(spec["name"]) == _tail(declared):
            spec["name"] = declared  # the API may name the project by number
        return current

    def _create(self, resource: plan.Resource, validate_only: bool):
        parent, _, resource_id = resource.name.rpartition("/")
        return self._call(
            "create",
            {
                "parent": parent.rpartition("/")[0],
                f"{self.noun}_id": resource_id,
                self.noun: self.message(resource.fields),
                "validate_only": validate_only,
            },
        )

    def _update(self, resource, current: dict, fields, validate_only: bool):
        changed = plan.top_level(fields)
        body = {key: _merged(current.get(key), resource.fields[key]) for key in changed}
        body["name"] = resource.name
        if current.get("etag"):
            body["etag"] = current["etag"]
        mask = field_mask_pb2.FieldMask(paths=[key.rstrip("_") for key in changed])
        request = {self.noun: self.message(body), "update_mask": mask}
        return self._call("update", {**request, "validate_only": validate_only})

    def create(self, resource: plan.Resource) -> None:
        self._create(resource, False).result(timeout=OPERATION_SECONDS)

    def update(self, resource: plan.Resource, current: dict, fields: tuple[str, ...]) -> None:
        self._update(resource, current, fields, False).result(timeout=OPERATION_SECONDS)

    def delete(self, resource: plan.Resource, current: dict) -> None:
        request = {"name": resource.name}
        if current.get("etag"):
            request["etag"] = current["etag"]
        self._call("delete", request).result(timeout=OPERATION_SECONDS)

    def validate(self, change: plan.Change) -> str | None:
        """The API's check of the change (``validate_only``): None if it accepts it."""
        try:
            if change.action == plan.CREATE:
                self._create(change.resource, True)
            else:
                self._update(change.resource, change.current or {}, change.fields, True)
        except exceptions.GoogleAPICallError as error:
            return _refusal(error)
        return None


def _tail(name: str) -> str:
    """A resource name without its ``projects/<id or number>/`` head."""
    return name.split("/", 2)[-1] if name.startswith("projects/") else name


class EntryAspects:
    """Our aspects on an entry: the declared ``aspects`` by key (``project.location.type``, with
    ``@path`` for a column's). Keys are compared without their project part, which the API may
    give as a number."""

    def __init__(self, client, wait_seconds=ENTRY_WAIT_SECONDS, poll_seconds=ENTRY_POLL_SECONDS):
        self.client, self.wait_seconds, self.poll_seconds = client, wait_seconds, poll_seconds

    @staticmethod
    def _types(resource: plan.Resource) -> list[str]:
        """The aspect types of the declared aspects, as resource names."""
        found = set()
        for key in resource.fields["aspects"]:
            project, location, type_id = key.split("@")[0].split(".")
            found.add(f"projects/{project}/locations/{location}/aspectTypes/{type_id}")
        return sorted(found)

    def _get(self, resource: plan.Resource):
        return self.client.get_entry(
            request={
                "name": resource.name,
                "view": dataplex_v1.EntryView.CUSTOM,
                "aspect_types": self._types(resource),
            }
        )

    def read(self, resource: plan.Resource) -> dict | None:
        try:
            entry = self._get(resource)
        except exceptions.NotFound:
            return None
        held = {
            key.split(".", 1)[1]: {"data": aspect["data"]}
            for key, aspect in dataplex_v1.Entry.to_dict(entry)["aspects"].items()
        }
        ours = {
            key: held[key.split(".", 1)[1]]
            for key in resource.fields["aspects"]
            if key.split(".", 1)[1] in held
        }
        return {"aspects": ours} if ours else None

    def _write(self, resource: plan.Resource, aspects: dict, delete_missing: bool = False) -> None:
        """Write ``aspects`` to the keys we declare, no others (``aspect_keys``); with
        ``delete_missing``, those of our keys that ``aspects`` lacks are removed: ``entries.patch``
        keeps an existing aspect unless ``delete_missing_aspects`` is set (API reference,
        ``UpdateEntryRequest.aspect_keys`` and ``.delete_missing_aspects``)."""
        self.client.update_entry(
            request={
                "entry": {"name": resource.name, "aspects": aspects},
                "update_mask": field_mask_pb2.FieldMask(paths=["aspects"]),
                "aspect_keys": list(resource.fields["aspects"]),
                "delete_missing_aspects": delete_missing,
            }
        )

    def _exists(self, resource: plan.Resource) -> bool:
        try:
            self._get(resource)
        except exceptions.NotFound:
            return False
        return True

    def create(self, resource: plan.Resource) -> None:
        """Wait for the entry (a new table takes Dataplex minutes to list), then write."""
        deadline = time.monotonic() + self.wait_seconds
        if not self._exists(resource):
            log.info("waiting up to %d s for Dataplex to list %s", self.wait_seconds, resource.name)
        while not self._exists(resource):
            if time.monotonic() > deadline:
                raise exceptions.NotFound(
                    f"no catalog entry {resource.name} after {self.wait_seconds} s: does the "
                    "table exist? (`clickstream migrate --project ...` creates the tables)"
                )
            time.sleep(self.poll_seconds)
        self._write(resource, dict(resource.fields["aspects"]))

    def update(self, resource: plan.Resource, current: dict, fields: tuple[str, ...]) -> None:
        self._write(resource, dict(resource.fields["aspects"]))

    def delete(self, resource: plan.Resource, current: dict) -> None:
        self._write(resource, {}, delete_missing=True)


def adapters(dataplex, catalog, **entry_wait) -> dict[str, plan.Adapter]:
    """The adapter of each kind of ``mesh.resources``, on the two clients."""
    return {
        "aspect-type": Resources(catalog, "aspect_type", dataplex_v1.AspectType),
        "lake": Resources(dataplex, "lake", dataplex_v1.Lake),
        "zone": Resources(dataplex, "zone", dataplex_v1.Zone),
        "asset": Resources(dataplex, "asset", dataplex_v1.Asset),
        iam.KIND: iam.Policies(dataplex),
        "entry-aspects": EntryAspects(catalog, **entry_wait),
    }


def clients() -> tuple[dataplex_v1.DataplexServiceClient, dataplex_v1.CatalogServiceClient]:
    """The two clients, with Application Default Credentials."""
    return dataplex_v1.DataplexServiceClient(), dataplex_v1.CatalogServiceClient()
