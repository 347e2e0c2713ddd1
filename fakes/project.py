"""One fake Google Cloud project that the fakes share: its id and number, and which APIs are
enabled (Service Usage). A fake given a project refuses a call to an API that is not enabled, as
Google does."""

import dataclasses

import grpc

from clickstream.fakes.rules import Broken, Rule

RULES = {
    "service-disabled": Rule(
        "serviceusage.disabled",
        "Service Usage",
        "a call to an API the project has not enabled is refused (PERMISSION_DENIED, reason "
        "SERVICE_DISABLED) until the API is enabled",
        "https://cloud.google.com/service-usage/docs/enable-disable",
    ),
}


@dataclasses.dataclass
class FakeProject:
    """A project: ``enabled`` holds the service names of the enabled APIs."""

    project_id: str
    number: str = "123456789012"
    enabled: set[str] = dataclasses.field(default_factory=set)

    def require(self, service: str) -> None:
        """Refuse a call to ``service`` (e.g. ``pubsub.googleapis.com``) unless enabled."""
        if service not in self.enabled:
            raise Broken(
                RULES["service-disabled"],
                f"{service} has not been used in project {self.number} before or it is "
                "disabled: enable it first;",
                grpc.StatusCode.PERMISSION_DENIED,
            )
