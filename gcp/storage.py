"""Cloud Storage buckets as ``clickstream.gcp.plan`` resources, through
``google-cloud-storage``: declared in the JSON API's form (``location``, ``labels``,
``iamConfiguration``, ``lifecycle``); the location cannot change (a bucket elsewhere is another
bucket: the plan says replace, which apply refuses for a bucket holding data)."""

from typing import Any

from google.cloud import storage

from clickstream.gcp import plan

BUCKET = "bucket"  # the kind
LABELS = {"managed-by": "clickstream"}


def bucket(
    name: str, location: str, temporary_prefix: str = "", keep_days: int = 7
) -> plan.Resource:
    """A bucket in ``location`` (a region): uniform bucket-level access, public access prevented;
    objects under ``temporary_prefix`` deleted after ``keep_days``."""
    fields: dict[str, Any] = {
        "location": location.upper(),
        "labels": dict(LABELS),
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": True},
            "publicAccessPrevention": "enforced",
        },
    }
    if temporary_prefix:
        rule = {
            "action": {"type": "Delete"},
            "condition": {"age": keep_days, "matchesPrefix": [temporary_prefix]},
        }
        fields["lifecycle"] = {"rule": [rule]}
    return plan.Resource(BUCKET, name, fields, immutable=("location",))


def _set(target: storage.Bucket, fields: dict[str, Any]) -> None:
    """The declared fields through the client's own properties."""
    if "labels" in fields:
        target.labels = dict(fields["labels"])
    if "lifecycle" in fields:
        target.lifecycle_rules = list(fields["lifecycle"]["rule"])
    access = fields.get("iamConfiguration", {})
    if "uniformBucketLevelAccess" in access:
        enabled = access["uniformBucketLevelAccess"]["enabled"]
        target.iam_configuration.uniform_bucket_level_access_enabled = enabled
    if "publicAccessPrevention" in access:
        target.iam_configuration.public_access_prevention = access["publicAccessPrevention"]


def _fields(found: storage.Bucket) -> dict[str, Any]:
    """A bucket in the declarations' form."""
    rules = [dict(rule) for rule in found.lifecycle_rules]
    return {
        "location": found.location,
        "labels": dict(found.labels),
        "iamConfiguration": dict(found.iam_configuration),
        **({"lifecycle": {"rule": rules}} if rules else {}),
    }


class Buckets:
    """Buckets by name."""

    def __init__(self, client: storage.Client):
        self.client = client

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        found = self.client.lookup_bucket(resource.name)
        return None if found is None else _fields(found)

    def create(self, resource: plan.Resource) -> dict[str, Any]:
        target = self.client.bucket(resource.name)
        _set(target, dict(resource.fields))
        return _fields(self.client.create_bucket(target, location=resource.fields["location"]))

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        target = self.client.bucket(resource.name)
        _set(target, {key: resource.fields[key] for key in plan.top_level(fields)})
        target.patch()

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self.client.bucket(resource.name).delete()  # refused while it holds objects
