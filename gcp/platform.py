"""The project itself as ``clickstream.gcp.plan`` adapters: its APIs (Service Usage) and its
service accounts (IAM), through the client libraries; and its number (Resource Manager), which
names the Google service agents.

- ``api``: a service of the project, ``projects/P/services/NAME``; created means enabled
  (disabling is left to ``delete``: another deployment may use the API).
- ``service-account``: ``projects/P/serviceAccounts/EMAIL`` with its display name and
  description; Google gives it an email from its id, which cannot change;
- ``repository``: an Artifact Registry repository (``projects/P/locations/L/repositories/R``)
  of Docker images, which cannot change format.
"""

from typing import Any

from google.api_core import exceptions
from google.cloud import artifactregistry_v1, iam_admin_v1, resourcemanager_v3, service_usage_v1

from clickstream.gcp import plan

API, ACCOUNT, REPOSITORY = "api", "service-account", "repository"  # the kinds
OPERATION_SECONDS = 300


def api(project: str, service: str) -> plan.Resource:
    return plan.Resource(API, f"projects/{project}/services/{service}", {"state": "ENABLED"})


def account(project: str, account_id: str, display_name: str, description: str) -> plan.Resource:
    email = f"{account_id}@{project}.iam.gserviceaccount.com"
    fields = {"display_name": display_name, "description": description}
    return plan.Resource(ACCOUNT, f"projects/{project}/serviceAccounts/{email}", fields)


def repository(project: str, location: str, repository_id: str, description: str) -> plan.Resource:
    name = f"projects/{project}/locations/{location}/repositories/{repository_id}"
    fields = {
        "format_": "DOCKER",
        "description": description,
        "labels": {"managed-by": "clickstream"},
    }
    return plan.Resource(REPOSITORY, name, fields, immutable=("format_",))


def project_number(client: resourcemanager_v3.ProjectsClient, project: str) -> str:
    """The number of ``project`` (``projects/NUMBER`` is its Resource Manager name)."""
    return client.get_project(name=f"projects/{project}").name.rsplit("/", 1)[-1]


class Services:
    """The project's APIs: read their state; enable (create) or disable (delete) them."""

    def __init__(self, client: service_usage_v1.ServiceUsageClient):
        self.client = client

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        found = self.client.get_service(request={"name": resource.name})
        if found.state != service_usage_v1.State.ENABLED:
            return None
        return {"state": "ENABLED"}

    def create(self, resource: plan.Resource) -> dict[str, Any]:
        self.client.enable_service(request={"name": resource.name}).result(OPERATION_SECONDS)
        return {"state": "ENABLED"}

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        self.create(resource)

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self.client.disable_service(request={"name": resource.name}).result(OPERATION_SECONDS)


class Accounts:
    """The project's service accounts, by their resource name."""

    def __init__(self, client: iam_admin_v1.IAMClient):
        self.client = client

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        try:
            found = self.client.get_service_account(request={"name": resource.name})
        except exceptions.NotFound:
            return None
        return {"display_name": found.display_name, "description": found.description}

    def create(self, resource: plan.Resource) -> dict[str, Any]:
        parent, _, email = resource.name.partition("/serviceAccounts/")
        self.client.create_service_account(
            request={
                "name": parent,
                "account_id": email.split("@", 1)[0],
                "service_account": dict(resource.fields),
            }
        )
        return dict(resource.fields)

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        self.client.patch_service_account(
            request={
                "service_account": {"name": resource.name, **resource.fields},
                "update_mask": {"paths": plan.top_level(fields)},
            }
        )

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self.client.delete_service_account(request={"name": resource.name})


class Repositories:
    """Artifact Registry repositories, by resource name."""

    def __init__(self, client: artifactregistry_v1.ArtifactRegistryClient):
        self.client = client

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        try:
            return plan.fields_of(self.client.get_repository(request={"name": resource.name}))
        except exceptions.NotFound:
            return None

    def create(self, resource: plan.Resource) -> None:
        parent, _, repository_id = resource.name.rpartition("/repositories/")
        body = artifactregistry_v1.Repository(resource.fields)
        request = {"parent": parent, "repository_id": repository_id, "repository": body}
        self.client.create_repository(request=request).result(OPERATION_SECONDS)

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        body = artifactregistry_v1.Repository({**resource.fields, "name": resource.name})
        mask = {"paths": plan.top_level(fields)}
        self.client.update_repository(request={"repository": body, "update_mask": mask})

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self.client.delete_repository(request={"name": resource.name}).result(OPERATION_SECONDS)
