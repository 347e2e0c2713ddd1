"""One fake Google Cloud project that the fakes share: its id and number, which APIs are enabled
(Service Usage), its service accounts and service agents, every IAM policy (on the project and on
its resources), and the images pushed to Artifact Registry.

Permissions are Google's: a role grants what Google's IAM reference lists for it
(``roles.json``), and a policy on the project applies to every resource in it. A fake that
checks who may do something asks ``check``.
"""

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from google.iam.v1 import policy_pb2

from clickstream.fakes.rules import Broken, Rule

ROLES_FILE = Path(__file__).with_name("roles.json")
RULES = {
    "service-disabled": Rule(
        "serviceusage.disabled",
        "Service Usage",
        "a call to an API the project has not enabled is refused (PERMISSION_DENIED, reason "
        "SERVICE_DISABLED) until the API is enabled",
        "https://cloud.google.com/service-usage/docs/enable-disable",
    ),
    "permission": Rule(
        "iam.permission",
        "IAM",
        "a principal may make a call only if a role granted to it on the resource, or on the "
        "project above it, contains the call's permission (the roles' permissions as the IAM "
        "roles reference lists them)",
        "https://cloud.google.com/iam/docs/overview and "
        "https://cloud.google.com/iam/docs/roles-permissions",
    ),
    "service-agent": Rule(
        "iam.service-agent",
        "IAM",
        "a service agent (service-NUMBER@gcp-sa-....iam.gserviceaccount.com) exists once its "
        "API is enabled in the project; before that it cannot be granted a role",
        "https://cloud.google.com/iam/docs/service-agents",
    ),
}
# Service agents and default accounts, created when their API is enabled.
AGENTS = {
    "pubsub.googleapis.com": "service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com",
    "storage.googleapis.com": "service-{number}@gs-project-accounts.iam.gserviceaccount.com",
    "dataflow.googleapis.com": "service-{number}@dataflow-service-producer-prod.iam"
    ".gserviceaccount.com",
    "eventarc.googleapis.com": "service-{number}@gcp-sa-eventarc.iam.gserviceaccount.com",
    "compute.googleapis.com": "{number}-compute@developer.gserviceaccount.com",
}


@functools.cache
def role_permissions() -> dict[str, frozenset[str]]:
    """Each predefined role's permissions, from ``roles.json``."""
    roles = json.loads(ROLES_FILE.read_text())["roles"]
    return {name: frozenset(role["permissions"]) for name, role in roles.items()}


@dataclasses.dataclass
class FakeProject:
    """A project. ``account_delay``: seconds after its creation before a service account can be
    used in a policy (Google documents creation as eventually consistent); ``clock``: the time."""

    project_id: str
    number: str = "123456789012"
    enabled: set[str] = dataclasses.field(default_factory=set)
    policies: dict[str, policy_pb2.Policy] = dataclasses.field(default_factory=dict)
    service_accounts: dict[str, float] = dataclasses.field(default_factory=dict)
    images: set[str] = dataclasses.field(default_factory=set)
    repositories: set[str] = dataclasses.field(default_factory=set)  # Artifact Registry's
    # Cloud Run services (functions of the 2nd generation are ones): name -> where it serves
    run_services: dict[str, str] = dataclasses.field(default_factory=dict)
    account_delay: float = 0.0
    clock: Callable[[], float] = time.monotonic

    @property
    def name(self) -> str:
        return f"projects/{self.project_id}"

    def require(self, service: str) -> None:
        """Refuse a call to ``service`` (e.g. ``pubsub.googleapis.com``) unless enabled."""
        if service not in self.enabled:
            raise Broken(
                RULES["service-disabled"],
                f"{service} has not been used in project {self.number} before or it is "
                "disabled: enable it first;",
                grpc.StatusCode.PERMISSION_DENIED,
            )

    def agents(self) -> set[str]:
        """The service agents (emails) of the enabled APIs."""
        return {
            pattern.format(number=self.number)
            for service, pattern in AGENTS.items()
            if service in self.enabled
        }

    def account_usable(self, email: str) -> bool:
        """Whether a service account exists and its creation has propagated."""
        if email in self.agents():
            return True
        created = self.service_accounts.get(email)
        return created is not None and self.clock() >= created + self.account_delay

    def roles_of(self, member: str, resource: str) -> set[str]:
        """The roles ``member`` holds on ``resource``, directly or on the project."""
        held = set()
        for name in {resource, self.name}:
            policy = self.policies.get(name)
            for binding in policy.bindings if policy else ():
                if member in binding.members and not binding.HasField("condition"):
                    held.add(binding.role)
        return held

    def allows(self, member: str, permission: str, resource: str) -> bool:
        permissions = role_permissions()
        return any(permission in permissions.get(r, ()) for r in self.roles_of(member, resource))

    def check(self, member: str, permission: str, resource: str, doing: str) -> None:
        """Refuse (PERMISSION_DENIED) unless ``member`` may use ``permission`` on ``resource``."""
        if not self.allows(member, permission, resource):
            raise Broken(
                RULES["permission"],
                f"{member} lacks {permission} on {resource} ({doing});",
                grpc.StatusCode.PERMISSION_DENIED,
            )


# Who calls: the fakes' convention for access tokens (Google's are opaque, and the service asks
# Google's identity backend whose they are). A fake token names its service account.
TOKEN_PREFIX = "fake-token:"


def token(email: str) -> str:
    """The access token that names service account ``email`` to the fakes
    (``fake-token:EMAIL``), for a test's credentials or a metadata-server stand-in."""
    return f"{TOKEN_PREFIX}{email}"


def caller(authorization: str | None) -> str | None:
    """The IAM member (``serviceAccount:EMAIL``) an ``Authorization: Bearer`` header's token
    names, or None (no header, or a token that follows no convention of the fakes)."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.startswith(TOKEN_PREFIX):
        return None
    return f"serviceAccount:{value.removeprefix(TOKEN_PREFIX)}"
