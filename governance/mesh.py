"""The data mesh as declared resources (``clickstream.gcp.plan``), from ``metadata/``:

- a Dataplex lake with a raw zone (the landing bucket as an asset, discovery on for the
  JSON-lines visit files) and a curated zone (the analyst dataset as an asset);
- security: for each audience (analysts, engineers, pipelines) the roles it holds on the lake
  and each zone, merged into the existing IAM policies;
- metadata: the aspect types and every curated table's aspects (``aspects.py``).

Resources are declared in dependency order; ``after`` names what each needs.
"""

import dataclasses
import re
from collections.abc import Mapping

from clickstream.core import contract, names, templates
from clickstream.gcp import iam, plan
from clickstream.governance import aspects

LABELS = {"managed-by": "clickstream"}  # on what this code creates
MULTI_REGIONS = ("us", "eu")  # BigQuery multi-regions: a zone holding such a dataset spans them


def _parameter_check(name: str) -> re.Pattern:
    """The check of a batch migration parameter (``metadata/batch_migration.json``)."""
    (parameter,) = [
        p for p in templates.metadata("batch_migration")["parameters"] if p["name"] == name
    ]
    return re.compile(parameter["regexes"][0])


_PROJECT = _parameter_check("bigquery_project")
_DATASET = _parameter_check("dataset")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")  # e.g. europe-west1: lakes are regional
_LOCATION = re.compile(r"^[a-z]+(-[a-z]+[0-9]+)?$")  # a region, or a multi-region (us, eu)
_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # lake ids
_BUCKET = re.compile(r"^[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9]$")
_MEMBER = re.compile(r"^(user|group|serviceAccount|domain|principal|principalSet):\S+$")


@dataclasses.dataclass(frozen=True)
class Mesh:
    """Where the mesh lives and who is in each audience (``metadata/governance.json``)."""

    project: str
    location: str  # the lake's region
    lake: str = names.LAKE
    bucket: str = ""  # the landing bucket; default: named after the project
    dataset: str = names.DATASET
    dataset_location: str = ""  # the dataset's location in lower case (us); default: the lake's
    members: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "bucket", self.bucket or self.project)
        object.__setattr__(self, "dataset_location", self.dataset_location or self.location)

    @property
    def lake_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/lakes/{self.lake}"

    def zone_name(self, zone: str) -> str:
        return f"{self.lake_name}/zones/{zone}"

    def asset_name(self, zone: str) -> str:
        return (
            f"{self.zone_name(zone)}/assets/{contract.governance()['zones'][zone]['asset']['id']}"
        )

    def aspect_type_name(self, type_id: str) -> str:
        return f"projects/{self.project}/locations/{aspects.LOCATION}/aspectTypes/{type_id}"

    def entry_name(self, table: str) -> str:
        """The table's entry, which Dataplex creates for every BigQuery table."""
        group = f"projects/{self.project}/locations/{self.dataset_location}/entryGroups/@bigquery"
        table_path = f"projects/{self.project}/datasets/{self.dataset}/tables/{table}"
        return f"{group}/entries/bigquery.googleapis.com/{table_path}"


def check(mesh: Mesh) -> None:
    """Raise ValueError, naming the value, for anything the APIs would refuse."""
    checks = [
        ("project", mesh.project, _PROJECT),
        ("location", mesh.location, _REGION),
        ("lake", mesh.lake, _ID),
        ("bucket", mesh.bucket, _BUCKET),
        ("dataset", mesh.dataset, _DATASET),
        ("dataset location", mesh.dataset_location, _LOCATION),
    ]
    checks += [(f"--{audience}", m, _MEMBER) for audience, ms in mesh.members.items() for m in ms]
    for what, value, pattern in checks:
        if not pattern.fullmatch(value):
            raise ValueError(f"{what} {value!r} is not valid (expected {pattern.pattern})")
    unknown = sorted(set(mesh.members) - set(contract.governance()["audiences"]))
    if unknown:
        raise ValueError(f"unknown audience {unknown[0]!r}")


def zone_fields(mesh: Mesh, zone: str, spec: dict) -> dict:
    if zone == "curated" and mesh.dataset_location in MULTI_REGIONS:
        location_type = "MULTI_REGION"
    else:
        location_type = "SINGLE_REGION"
    if spec["type"] == "RAW":
        prefixes = (names.LANDING_PREFIX, names.RAW_ARCHIVE_PREFIX)
        discovery = {
            "enabled": True,
            "include_patterns": [f"{prefix}**" for prefix in prefixes],
            "json_options": {"encoding": "UTF-8"},
        }
    else:
        discovery = {"enabled": False}  # BigQuery tables are in the catalog already
    return {
        "display_name": spec["displayName"],
        "description": spec["description"],
        "labels": LABELS,
        "type_": spec["type"],
        "resource_spec": {"location_type": location_type},
        "discovery_spec": discovery,
    }


def asset_fields(mesh: Mesh, zone: str, spec: dict) -> dict:
    if spec["type"] == "RAW":
        resource = {
            "name": f"projects/{mesh.project}/buckets/{mesh.bucket}",
            "type_": "STORAGE_BUCKET",
        }
    else:
        resource = {
            "name": f"projects/{mesh.project}/datasets/{mesh.dataset}",
            "type_": "BIGQUERY_DATASET",
        }
    asset = spec["asset"]
    return {
        "display_name": asset["displayName"],
        "description": asset["description"],
        "labels": LABELS,
        "resource_spec": resource,
    }


def grants(mesh: Mesh) -> dict[str, dict[str, list[str]]]:
    """Per place (``lake`` or a zone): each role and the members who get it there."""
    found: dict[str, dict[str, list[str]]] = {}
    for audience, spec in contract.governance()["audiences"].items():
        for place, roles in spec["grants"].items():
            for role in roles:
                members = found.setdefault(place, {}).setdefault(role, [])
                members += mesh.members.get(audience, ())
    return {
        place: {role: sorted(set(ms)) for role, ms in sorted(roles.items()) if ms}
        for place, roles in found.items()
        if any(roles.values())
    }


def resources(mesh: Mesh) -> list[plan.Resource]:
    """Every resource of the mesh, dependencies first."""
    definition = contract.governance()
    access = grants(mesh)
    types = [
        plan.Resource("aspect-type", mesh.aspect_type_name(type_id), {**fields, "labels": LABELS})
        for type_id, fields in aspects.aspect_types().items()
    ]
    lake = plan.Resource(
        "lake",
        mesh.lake_name,
        {
            "display_name": definition["lake"]["displayName"],
            "description": definition["lake"]["description"],
            "labels": LABELS,
        },
    )
    declared = [*types, lake]
    if "lake" in access:
        declared.append(iam.policy(mesh.lake_name, access["lake"], (lake.label,)))
    for zone, spec in definition["zones"].items():
        resource = plan.Resource(
            "zone",
            mesh.zone_name(zone),
            zone_fields(mesh, zone, spec),
            immutable=("type_", "resource_spec"),
            after=(lake.label,),
        )
        declared.append(resource)
        if zone in access:
            declared.append(iam.policy(resource.name, access[zone], (resource.label,)))
        declared.append(
            plan.Resource(
                "asset",
                mesh.asset_name(zone),
                asset_fields(mesh, zone, spec),
                immutable=("resource_spec",),
                after=(resource.label,),
            )
        )
    for table in aspects.TABLES:
        declared.append(
            plan.Resource(
                "entry-aspects",
                mesh.entry_name(table),
                {"aspects": aspects.aspects(mesh.project, table)},
                after=tuple(t.label for t in types),
            )
        )
    return declared


def fresh_plan(mesh: Mesh) -> list[plan.Change]:
    """The plan for a project where none of the mesh exists: every resource created."""
    return [plan.Change(plan.CREATE, resource) for resource in resources(mesh)]
