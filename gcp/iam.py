"""IAM policies as a ``clickstream.gcp.plan`` adapter, for any client with the
``google.iam.v1.IAMPolicy`` calls (Dataplex's, Pub/Sub's...). A policy is shared with whoever
else grants roles on the resource, so only our members of our roles are read and written, by
read-modify-write with the policy's etag (retried when someone changed it in between); nothing
else in the policy is touched."""

from typing import Any, Protocol

from google.api_core import exceptions
from google.iam.v1 import iam_policy_pb2, policy_pb2

from clickstream.gcp import plan

POLICY_ATTEMPTS = 5  # read-modify-write rounds when others change the policy meanwhile
KIND = "iam-policy"


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


class Policies:
    """The IAM policy of a resource (a lake, a zone, a topic...), as far as ours: declared
    ``bindings`` (role -> members) are read back as the declared members the policy holds."""

    def __init__(self, client: PolicyClient) -> None:
        self.client = client

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        try:
            policy = self._get(resource.name)
        except exceptions.NotFound:
            return None
        held = {binding.role: set(binding.members) for binding in policy.bindings}
        ours = {
            role: sorted(set(members) & held.get(role, set()))
            for role, members in resource.fields["bindings"].items()
        }
        return {"bindings": ours} if any(ours.values()) else None

    def _get(self, name: str) -> policy_pb2.Policy:
        return self.client.get_iam_policy(
            request=iam_policy_pb2.GetIamPolicyRequest(
                resource=name, options={"requested_policy_version": 3}
            )
        )

    def _change(self, resource: plan.Resource, grant: bool) -> None:
        """Add (or remove) our members to (from) our roles, keeping everything else."""
        for attempt in range(1, POLICY_ATTEMPTS + 1):
            policy = self._get(resource.name)  # with its etag
            for role, members in resource.fields["bindings"].items():
                binding = next(
                    (b for b in policy.bindings if b.role == role and not b.HasField("condition")),
                    None,
                )
                if binding is None:
                    binding = policy.bindings.add(role=role)
                held = set(binding.members)
                held = held | set(members) if grant else held - set(members)
                binding.ClearField("members")
                binding.members.extend(sorted(held))
            for empty in [b for b in policy.bindings if not b.members]:
                policy.bindings.remove(empty)
            try:
                self.client.set_iam_policy(
                    request=iam_policy_pb2.SetIamPolicyRequest(
                        resource=resource.name, policy=policy
                    )
                )
                return
            except exceptions.Aborted:  # changed since we read it: read it again
                if attempt == POLICY_ATTEMPTS:
                    raise

    def create(self, resource: plan.Resource) -> None:
        self._change(resource, grant=True)

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        self._change(resource, grant=True)

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self._change(resource, grant=False)
