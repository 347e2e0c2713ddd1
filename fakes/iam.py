"""A fake of ``google.iam.v1.IAMPolicy`` for the fakes of services that serve it (Dataplex,
Pub/Sub, Resource Manager, IAM): a policy per existing resource (NOT_FOUND for a missing one),
etags that change with every write, ABORTED for a write made with a stale etag, and, with a
project, the policies kept in the project (where the other fakes check permissions) and members
that must exist."""

import itertools
from collections.abc import Callable

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2

from clickstream.fakes import project as projects
from clickstream.fakes.rules import Broken, Rule
from clickstream.fakes.server import Fault

RULES = {
    "member-exists": Rule(
        "iam.member-exists",
        "IAM",
        "a policy may not name a service account that does not exist; a new service account "
        "may take a while before it can be used in a policy (creation is eventually "
        "consistent: retry)",
        "https://cloud.google.com/iam/docs/service-accounts-create",
    ),
    "stale-etag": Rule(
        "iam.etag",
        "IAM",
        "setIamPolicy with the etag of an older policy fails (ABORTED): read, modify, write again",
        "https://cloud.google.com/iam/docs/policies#etag",
    ),
}


class FakePolicies:
    """The IAM policies of the resources ``exists`` knows, kept in ``project`` when given."""

    def __init__(self, exists: Callable[[str], bool], project: projects.FakeProject | None = None):
        self.exists, self.project = exists, project
        self.policies: dict[str, policy_pb2.Policy] = project.policies if project else {}
        # resource -> called once before the next SetIamPolicy of it is handled (someone else)
        self.before_set_policy: dict[str, Callable[[], None]] = {}
        self._etags = itertools.count(1)

    def methods(self) -> dict:
        """The calls, for ``server.FakeServer``."""
        return {
            f"google.iam.v1.IAMPolicy/{verb}IamPolicy": (handler, request, policy_pb2.Policy)
            for verb, handler, request in (
                ("Get", self.get_policy, iam_policy_pb2.GetIamPolicyRequest),
                ("Set", self.set_policy, iam_policy_pb2.SetIamPolicyRequest),
            )
        }

    def _policy(self, name: str) -> policy_pb2.Policy:
        if not self.exists(name):
            raise Fault(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        return self.policies.setdefault(name, policy_pb2.Policy(version=1, etag=b"etag-0"))

    def get_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        return self._policy(request.resource)

    def set_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        interloper = self.before_set_policy.pop(request.resource, None)
        if interloper:
            interloper()
        current = self._policy(request.resource)
        if request.policy.etag and request.policy.etag != current.etag:
            raise Broken(
                RULES["stale-etag"],
                "There were concurrent policy changes;",
                grpc.StatusCode.ABORTED,
            )
        if self.project is not None:
            for binding in request.policy.bindings:
                for member in binding.members:
                    kind, _, email = member.partition(":")
                    if kind == "serviceAccount" and not self.project.account_usable(email):
                        raise Broken(
                            RULES["member-exists"], f"Service account {email} does not exist;"
                        )
        stored = policy_pb2.Policy()
        stored.CopyFrom(request.policy)
        stored.etag = f"etag-{next(self._etags)}".encode()
        self.policies[request.resource] = stored
        return stored

    def grant(self, resource: str, role: str, member: str) -> None:
        """Someone else grants a role (a change the code must keep)."""
        policy = self._policy(resource)
        binding = next((b for b in policy.bindings if b.role == role), None)
        binding = binding or policy.bindings.add(role=role)
        binding.members.append(member)
        policy.etag = f"etag-{next(self._etags)}".encode()

    def members(self, resource: str, role: str) -> set[str]:
        policy = self.policies.get(resource, policy_pb2.Policy())
        return {m for b in policy.bindings if b.role == role for m in b.members}
