"""The project itself, on one loopback port for the real client libraries: Service Usage (which
APIs are enabled), Resource Manager (the project, its IAM policy), IAM (service accounts and
their own IAM policies), Artifact Registry (repositories and their IAM policies) and Cloud Run
(the IAM policies of services, which gcloud deploys), over ``clickstream.fakes.project``."""

import re

import grpc
from google.cloud import (
    artifactregistry_v1,
    iam_admin_v1,
    resourcemanager_v3,
    service_usage_v1,
)
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2

from clickstream.fakes import iam
from clickstream.fakes import project as projects
from clickstream.fakes.rules import Broken, Rule
from clickstream.fakes.server import FakeServer, Fault, Operations

IAM_API = "iam.googleapis.com"
REGISTRY_API = "artifactregistry.googleapis.com"
RUN_API = "run.googleapis.com"
# Enabled in every new project (https://cloud.google.com/service-usage/docs/enabled-service,
# "Services enabled by default"), as far as the catalog uses them.
ENABLED_BY_DEFAULT = (
    "bigquery.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
)
ACCOUNT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
RULES = {
    "account-id": Rule(
        "iam.account-id",
        "IAM",
        "a service account id is 6 to 30 lowercase letters, digits and hyphens, starting with a "
        "letter and not ending with a hyphen",
        "https://cloud.google.com/iam/docs/service-accounts-create",
    ),
}
_SERVICE_NAME = re.compile(r"projects/([^/]+)/services/([a-z0-9.-]+\.googleapis\.com)")


def new_project(project_id: str, number: str = "123456789012", **settings) -> projects.FakeProject:
    """A new project, with the APIs Google enables by default."""
    return projects.FakeProject(project_id, number, set(ENABLED_BY_DEFAULT), **settings)


class FakePlatform:
    """Service Usage, Resource Manager and IAM of ``project`` at ``server.address``."""

    def __init__(self, project: projects.FakeProject):
        self.project = project
        self.operations = Operations(project.name)
        self.repositories: dict[str, artifactregistry_v1.Repository] = {}
        self.accounts: dict[str, dict[str, str]] = {}  # email -> display name, description
        self.project_iam = iam.FakePolicies(self._is_project, project)
        self.account_iam = iam.FakePolicies(self._is_account, project)
        methods = {**self.operations.methods()}
        usage = "google.api.serviceusage.v1.ServiceUsage"
        lro = operations_pb2.Operation
        methods[f"{usage}/EnableService"] = (
            self.enable,
            service_usage_v1.EnableServiceRequest,
            lro,
        )
        methods[f"{usage}/DisableService"] = (
            self.disable,
            service_usage_v1.DisableServiceRequest,
            lro,
        )
        methods[f"{usage}/GetService"] = (
            self.get_service,
            service_usage_v1.GetServiceRequest,
            service_usage_v1.Service,
        )
        manager = "google.cloud.resourcemanager.v3.Projects"
        methods[f"{manager}/GetProject"] = (
            self.get_project,
            resourcemanager_v3.GetProjectRequest,
            resourcemanager_v3.Project,
        )
        admin = "google.iam.admin.v1.IAM"
        for service, policies in ((manager, self.project_iam), (admin, self.account_iam)):
            for verb, handler, request in (
                ("Get", policies.get_policy, iam_policy_pb2.GetIamPolicyRequest),
                ("Set", policies.set_policy, iam_policy_pb2.SetIamPolicyRequest),
            ):
                methods[f"{service}/{verb}IamPolicy"] = (
                    self._guarded(handler),
                    request,
                    policy_pb2.Policy,
                )
        for method, handler, request, response in (
            (
                "CreateServiceAccount",
                self.create_account,
                iam_admin_v1.CreateServiceAccountRequest,
                iam_admin_v1.ServiceAccount,
            ),
            (
                "GetServiceAccount",
                self.get_account,
                iam_admin_v1.GetServiceAccountRequest,
                iam_admin_v1.ServiceAccount,
            ),
            (
                "PatchServiceAccount",
                self.patch_account,
                iam_admin_v1.PatchServiceAccountRequest,
                iam_admin_v1.ServiceAccount,
            ),
            (
                "DeleteServiceAccount",
                self.delete_account,
                iam_admin_v1.DeleteServiceAccountRequest,
                empty_pb2.Empty,
            ),
        ):
            methods[f"{admin}/{method}"] = (handler, request, response)
        registry = "google.devtools.artifactregistry.v1.ArtifactRegistry"
        for method, handler, request, response in (
            (
                "CreateRepository",
                self.create_repository,
                artifactregistry_v1.CreateRepositoryRequest,
                lro,
            ),
            (
                "GetRepository",
                self.get_repository,
                artifactregistry_v1.GetRepositoryRequest,
                artifactregistry_v1.Repository,
            ),
            (
                "DeleteRepository",
                self.delete_repository,
                artifactregistry_v1.DeleteRepositoryRequest,
                lro,
            ),
        ):
            methods[f"{registry}/{method}"] = (handler, request, response)
        self.registry_iam = iam.FakePolicies(self._is_repository, project)
        self.run_iam = iam.FakePolicies(lambda name: name in project.run_services, project)
        for service, policies, api in (
            (registry, self.registry_iam, REGISTRY_API),
            ("google.cloud.run.v2.Services", self.run_iam, RUN_API),
        ):
            for verb, handler, request in (
                ("Get", policies.get_policy, iam_policy_pb2.GetIamPolicyRequest),
                ("Set", policies.set_policy, iam_policy_pb2.SetIamPolicyRequest),
            ):
                methods[f"{service}/{verb}IamPolicy"] = (
                    self._requiring(api, handler),
                    request,
                    policy_pb2.Policy,
                )
        self.server = FakeServer(methods)

    # Resource Manager

    def _is_project(self, name: str) -> bool:
        return name in (self.project.name, f"projects/{self.project.number}")

    def get_project(self, request):
        if not self._is_project(request.name):
            raise Fault(grpc.StatusCode.PERMISSION_DENIED, f"no access to {request.name}")
        return resourcemanager_v3.Project(
            name=f"projects/{self.project.number}",
            project_id=self.project.project_id,
            state=resourcemanager_v3.Project.State.ACTIVE,
        )

    def _guarded(self, handler):
        def serve(request):
            if request.resource.startswith("projects/") and "/serviceAccounts/" in request.resource:
                self.project.require(IAM_API)
            return handler(request)

        return serve

    def _requiring(self, api: str, handler):
        def serve(request):
            self.project.require(api)
            return handler(request)

        return serve

    # Artifact Registry

    def _is_repository(self, name: str) -> bool:
        return name in self.project.repositories

    def create_repository(self, request):
        self.project.require(REGISTRY_API)
        name = f"{request.parent}/repositories/{request.repository_id}"
        if name in self.project.repositories:
            raise Fault(grpc.StatusCode.ALREADY_EXISTS, f"the repository {name} already exists")
        self.project.repositories.add(name)
        stored = artifactregistry_v1.Repository(request.repository)
        stored.name = name
        self.repositories[name] = stored
        return self.operations.done(stored)

    def get_repository(self, request):
        self.project.require(REGISTRY_API)
        if request.name not in self.project.repositories:
            raise Fault(
                grpc.StatusCode.NOT_FOUND, f"Requested entity was not found: {request.name}"
            )
        return self.repositories[request.name]

    def delete_repository(self, request):
        self.project.require(REGISTRY_API)
        if request.name not in self.project.repositories:
            raise Fault(
                grpc.StatusCode.NOT_FOUND, f"Requested entity was not found: {request.name}"
            )
        self.project.repositories.discard(request.name)
        del self.repositories[request.name]
        self.project.images = {i for i in self.project.images if repository_of(i) != request.name}
        return self.operations.done(empty_pb2.Empty())

    # IAM: service accounts

    def _email(self, name: str) -> str:
        """The email of ``projects/{project or -}/serviceAccounts/{email}``."""
        return name.rsplit("/", 1)[-1]

    def _is_account(self, name: str) -> bool:
        return self.project.account_usable(self._email(name))

    def _account(self, email: str) -> iam_admin_v1.ServiceAccount:
        return iam_admin_v1.ServiceAccount(
            name=f"{self.project.name}/serviceAccounts/{email}",
            project_id=self.project.project_id,
            email=email,
            unique_id=str(abs(hash(email)) % 10**21),
            **self.accounts.get(email, {}),
        )

    def create_account(self, request):
        self.project.require(IAM_API)
        if not ACCOUNT_ID.fullmatch(request.account_id):
            raise Broken(RULES["account-id"], f"invalid account id {request.account_id!r};")
        email = f"{request.account_id}@{self.project.project_id}.iam.gserviceaccount.com"
        if email in self.project.service_accounts:
            raise Fault(grpc.StatusCode.ALREADY_EXISTS, f"Service account {email} already exists")
        self.project.service_accounts[email] = self.project.clock()
        self.accounts[email] = {
            "display_name": request.service_account.display_name,
            "description": request.service_account.description,
        }
        return self._account(email)

    def patch_account(self, request):
        self.project.require(IAM_API)
        email = self._email(request.service_account.name)
        if email not in self.project.service_accounts:
            raise Fault(grpc.StatusCode.NOT_FOUND, f"Service account {email} does not exist")
        for path in request.update_mask.paths:
            self.accounts[email][path] = getattr(request.service_account, path)
        return self._account(email)

    def get_account(self, request):
        self.project.require(IAM_API)
        email = self._email(request.name)
        if email not in self.project.service_accounts:
            raise Fault(grpc.StatusCode.NOT_FOUND, f"Service account {email} does not exist")
        return self._account(email)

    def delete_account(self, request):
        self.project.require(IAM_API)
        email = self._email(request.name)
        if self.project.service_accounts.pop(email, None) is None:
            raise Fault(grpc.StatusCode.NOT_FOUND, f"Service account {email} does not exist")
        self.project.policies.pop(f"{self.project.name}/serviceAccounts/{email}", None)
        return empty_pb2.Empty()

    # Service Usage

    def _service(self, name: str) -> service_usage_v1.Service:
        match = _SERVICE_NAME.fullmatch(name)
        if not match or not self._is_project(f"projects/{match.group(1)}"):
            raise Fault(grpc.StatusCode.INVALID_ARGUMENT, f"bad service name {name}")
        state = service_usage_v1.State
        enabled = match.group(2) in self.project.enabled
        return service_usage_v1.Service(
            name=f"projects/{self.project.number}/services/{match.group(2)}",
            parent=f"projects/{self.project.number}",
            state=state.ENABLED if enabled else state.DISABLED,
        )

    def get_service(self, request):
        return self._service(request.name)

    def enable(self, request):
        service = self._service(request.name)
        self.project.enabled.add(service.name.rsplit("/", 1)[-1])
        return self.operations.done(
            service_usage_v1.EnableServiceResponse(service=self._service(request.name))
        )

    def disable(self, request):
        service = self._service(request.name)
        self.project.enabled.discard(service.name.rsplit("/", 1)[-1])
        return self.operations.done(
            service_usage_v1.DisableServiceResponse(service=self._service(request.name))
        )

    def stop(self) -> None:
        self.server.stop()


def repository_of(image: str) -> str:
    """The Artifact Registry repository of a Docker image (``LOCATION-docker.pkg.dev/PROJECT/
    REPOSITORY/NAME:TAG``), as a resource name."""
    host, project, repository = image.split("/")[:3]
    location = host.removesuffix("-docker.pkg.dev")
    return f"projects/{project}/locations/{location}/repositories/{repository}"
