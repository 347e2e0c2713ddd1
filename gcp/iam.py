"""IAM policies as a ``clickstream.gcp.plan`` adapter. A policy is shared with whoever else
grants roles on the resource, so only our members of our roles are read and written, by
read-modify-write with the policy's etag (retried when someone changed it in between); nothing
else in the policy is touched.

One kind, ``iam-policy``, whatever the resource: ``Router`` sends each declaration to the
adapter of its resource's service, by the shape of its name:

- ``Policies``: clients with the ``google.iam.v1.IAMPolicy`` calls (Pub/Sub, Dataplex, Resource
  Manager for ``projects/P``, IAM for ``projects/P/serviceAccounts/E``);
- ``JsonPolicies``: clients with ``get_iam_policy``/``set_iam_policy`` of ``api_core`` policies
  (Cloud Storage buckets, ``projects/_/buckets/B``; BigQuery tables,
  ``projects/P/datasets/D/tables/T``);
- ``DatasetAccess``: a BigQuery dataset's access entries (``projects/P/datasets/D``), which is
  how BigQuery grants a role on a dataset.
"""

import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from google.api_core import exceptions
from google.api_core import iam as api_core_iam
from google.iam.v1 import iam_policy_pb2, policy_pb2

from clickstream.gcp import plan

if TYPE_CHECKING:  # for the annotations; DatasetAccess._put imports it where it is used
    from google.cloud import bigquery

POLICY_ATTEMPTS = 5  # read-modify-write rounds when others change the policy meanwhile
NEW_MEMBER_ATTEMPTS = 6  # a new service account can take a while to be usable in a policy
NEW_MEMBER_DELAY = 10.0  # seconds, doubled each time
KIND = "iam-policy"
Bindings = dict[str, set[str]]  # role -> members


def policy(name: str, bindings: dict[str, list[str]], after: tuple[str, ...] = ()) -> plan.Resource:
    """The declaration: on resource ``name``, ``bindings`` (role -> members) held."""
    return plan.Resource(KIND, name, {"bindings": bindings}, after=after)


class PolicyClient(Protocol):
    """A client with the ``google.iam.v1.IAMPolicy`` calls."""

    def get_iam_policy(
        self, *, request: iam_policy_pb2.GetIamPolicyRequest
    ) -> policy_pb2.Policy: ...

    def set_iam_policy(
        self, *, request: iam_policy_pb2.SetIamPolicyRequest
    ) -> policy_pb2.Policy: ...


def _member_not_yet(error: Exception) -> bool:
    """IAM refusing a member that does not exist yet (a service account just created)."""
    return isinstance(error, exceptions.BadRequest | exceptions.InvalidArgument) and (
        "does not exist" in str(error)
    )


class _Merged:
    """Read and change our members of our roles in a policy, keeping everything else; the
    service's own reads and writes are ``_fetch`` (a policy with its etag) and ``_store``."""

    new_member_delay = NEW_MEMBER_DELAY

    def _fetch(self, name: str) -> Any: ...

    def _store(self, name: str, policy: Any) -> None: ...

    @staticmethod
    def _bindings(policy: Any) -> Bindings: ...  # type: ignore[empty-body]  # each service's

    @staticmethod
    def _put(policy: Any, role: str, members: set[str]) -> None:
        """Set the unconditional binding of ``role`` to ``members`` (none: no binding)."""

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        try:
            held = self._bindings(self._fetch(resource.name))
        except exceptions.NotFound:
            return None
        ours = {
            role: sorted(set(members) & held.get(role, set()))
            for role, members in resource.fields["bindings"].items()
        }
        return {"bindings": ours} if any(ours.values()) else None

    def extras(self, resource: plan.Resource) -> list[tuple[str, str]]:
        """(role, member) of the members holding our roles whom we do not declare: someone
        else's grants, which apply leaves alone and verify reports."""
        try:
            held = self._bindings(self._fetch(resource.name))
        except exceptions.NotFound:
            return []
        return [
            (role, member)
            for role, members in resource.fields["bindings"].items()
            for member in sorted(held.get(role, set()) - set(members))
        ]

    def _change(self, resource: plan.Resource, grant: bool) -> None:
        """Add (or remove) our members to (from) our roles, keeping everything else."""
        waited = 0
        attempt = 0
        while True:
            attempt += 1
            policy = self._fetch(resource.name)  # with its etag
            held = self._bindings(policy)
            for role, members in resource.fields["bindings"].items():
                current = held.get(role, set())
                self._put(policy, role, current | set(members) if grant else current - set(members))
            try:
                self._store(resource.name, policy)
                return
            except (exceptions.Aborted, exceptions.PreconditionFailed, exceptions.Conflict):
                if attempt >= POLICY_ATTEMPTS:  # changed since we read it: read it again
                    raise
            except exceptions.GoogleAPICallError as error:
                if not _member_not_yet(error) or waited >= NEW_MEMBER_ATTEMPTS:
                    raise
                time.sleep(self.new_member_delay * 2**waited)
                waited += 1

    def create(self, resource: plan.Resource) -> None:
        self._change(resource, grant=True)

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        self._change(resource, grant=True)

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self._change(resource, grant=False)


class Policies(_Merged):
    """Through a client with the ``google.iam.v1.IAMPolicy`` calls."""

    def __init__(self, client: PolicyClient) -> None:
        self.client = client

    def _fetch(self, name: str) -> policy_pb2.Policy:
        return self.client.get_iam_policy(
            request=iam_policy_pb2.GetIamPolicyRequest(
                resource=name, options={"requested_policy_version": 3}
            )
        )

    def _store(self, name: str, policy: policy_pb2.Policy) -> None:
        request = iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy)
        self.client.set_iam_policy(request=request)

    @staticmethod
    def _bindings(policy: policy_pb2.Policy) -> Bindings:
        return {b.role: set(b.members) for b in policy.bindings if not b.HasField("condition")}

    @staticmethod
    def _put(policy: policy_pb2.Policy, role: str, members: set[str]) -> None:
        binding = next(
            (b for b in policy.bindings if b.role == role and not b.HasField("condition")), None
        )
        if binding is None:
            binding = policy.bindings.add(role=role)
        binding.ClearField("members")
        binding.members.extend(sorted(members))
        if not members:
            policy.bindings.remove(binding)


class JsonPolicies(_Merged):
    """Through ``get(name)`` and ``set(name, policy)`` of ``google.api_core.iam.Policy``
    objects (version 3: bindings as a list)."""

    def __init__(
        self,
        get: Callable[[str], api_core_iam.Policy],
        set_: Callable[[str, api_core_iam.Policy], object],
    ) -> None:
        self.get, self.set = get, set_

    def _fetch(self, name: str) -> api_core_iam.Policy:
        return self.get(name)

    def _store(self, name: str, policy: api_core_iam.Policy) -> None:
        self.set(name, policy)

    @staticmethod
    def _bindings(policy: api_core_iam.Policy) -> Bindings:
        return {b["role"]: set(b["members"]) for b in policy.bindings if not b.get("condition")}

    @staticmethod
    def _put(policy: api_core_iam.Policy, role: str, members: set[str]) -> None:
        kept = [b for b in policy.bindings if b["role"] != role or b.get("condition")]
        policy.bindings = kept + ([{"role": role, "members": set(members)}] if members else [])


_LEGACY_DATASET_ROLES = {  # BigQuery reads some roles back by their legacy names
    "READER": "roles/bigquery.dataViewer",
    "WRITER": "roles/bigquery.dataEditor",
    "OWNER": "roles/bigquery.dataOwner",
}
_ENTITY = {"user": "userByEmail", "serviceAccount": "userByEmail", "group": "groupByEmail"}


class DatasetAccess(_Merged):
    """A BigQuery dataset's access entries (``projects/P/datasets/D``), through the BigQuery
    client: roles by email, written back with the dataset's etag."""

    def __init__(self, client: "bigquery.Client") -> None:
        self.client = client

    def _fetch(self, name: str) -> "bigquery.Dataset":
        _, project, _, dataset = name.split("/")
        return self.client.get_dataset(f"{project}.{dataset}")

    def _store(self, name: str, dataset: "bigquery.Dataset") -> None:
        self.client.update_dataset(dataset, ["access_entries"])

    @staticmethod
    def _bindings(dataset: "bigquery.Dataset") -> Bindings:
        held: Bindings = {}
        for entry in dataset.access_entries:
            if entry.entity_type in ("userByEmail", "groupByEmail"):
                role = _LEGACY_DATASET_ROLES.get(entry.role, entry.role)
                kind = "group" if entry.entity_type == "groupByEmail" else "serviceAccount"
                if kind == "serviceAccount" and not entry.entity_id.endswith(
                    ".gserviceaccount.com"
                ):
                    kind = "user"
                held.setdefault(role, set()).add(f"{kind}:{entry.entity_id}")
        return held

    @staticmethod
    def _put(dataset: "bigquery.Dataset", role: str, members: set[str]) -> None:
        from google.cloud import bigquery

        legacy = {v: k for k, v in _LEGACY_DATASET_ROLES.items()}
        kept = [
            e
            for e in dataset.access_entries
            if _LEGACY_DATASET_ROLES.get(e.role, e.role) != role
            or e.entity_type not in ("userByEmail", "groupByEmail")
        ]
        added = [
            bigquery.AccessEntry(
                legacy.get(role, role), _ENTITY[m.split(":", 1)[0]], m.split(":", 1)[1]
            )
            for m in sorted(members)
        ]
        dataset.access_entries = kept + added


class Router:
    """The adapter of each IAM resource, chosen by the first pattern its name matches."""

    def __init__(self, routes: Iterable[tuple[str, _Merged]]) -> None:
        self.routes = [(re.compile(pattern), adapter) for pattern, adapter in routes]

    def _adapter(self, resource: plan.Resource) -> _Merged:
        for pattern, adapter in self.routes:
            if pattern.fullmatch(resource.name):
                return adapter
        raise plan.PlanError(f"no IAM adapter for {resource.name}")

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        return self._adapter(resource).read(resource)

    def create(self, resource: plan.Resource) -> None:
        self._adapter(resource).create(resource)

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        self._adapter(resource).update(resource, current, fields)

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self._adapter(resource).delete(resource, current)

    def extras(self, resource: plan.Resource) -> list[tuple[str, str]]:
        return self._adapter(resource).extras(resource)
