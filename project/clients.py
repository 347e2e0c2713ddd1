"""The adapter of every kind the project declares, on the client libraries: Google Cloud with
Application Default Credentials, or the stand-ins ``CLICKSTREAM_ENDPOINTS`` names
(``clickstream.gcp.clients``)."""

from google.auth.credentials import AnonymousCredentials
from google.cloud import (
    artifactregistry_v1,
    bigquery,
    dataplex_v1,
    iam_admin_v1,
    pubsub_v1,
    resourcemanager_v3,
    run_v2,
    service_usage_v1,
    storage,
)

from clickstream.deploy import gcloud
from clickstream.gcp import clients, iam, plan, platform, pubsub, warehouse_plan
from clickstream.gcp import storage as buckets
from clickstream.governance import dataplex
from clickstream.monitoring import adapters as monitoring


def storage_client(project: str) -> storage.Client:
    url = clients.endpoint("storage")
    if url is None:
        return storage.Client(project=project)
    options = {"api_endpoint": url}
    return storage.Client(
        project=project, credentials=AnonymousCredentials(), client_options=options
    )


def bigquery_client(project: str) -> bigquery.Client:
    url = clients.endpoint("bigquery")
    if url is None:
        return bigquery.Client(project=project)
    options = {"api_endpoint": url}
    return bigquery.Client(
        project=project, credentials=AnonymousCredentials(), client_options=options
    )


def projects_client() -> resourcemanager_v3.ProjectsClient:
    return clients.gapic(resourcemanager_v3.ProjectsClient, "platform")


def _dotted(name: str) -> str:
    """``projects/P/datasets/D/tables/T`` as ``P.D.T``."""
    parts = name.split("/")
    return ".".join(parts[1::2])


def adapters(project: str, steps: list[gcloud.Step], runner: gcloud.Runner) -> dict:
    """An adapter per kind, every client made once."""
    publisher = clients.gapic(pubsub_v1.PublisherClient, "pubsub")
    subscriber = clients.gapic(pubsub_v1.SubscriberClient, "pubsub")
    gcs, bq = storage_client(project), bigquery_client(project)
    registry = clients.gapic(artifactregistry_v1.ArtifactRegistryClient, "platform")
    lakes = clients.gapic(dataplex_v1.DataplexServiceClient, "dataplex")
    catalog = clients.gapic(dataplex_v1.CatalogServiceClient, "dataplex")
    tables = warehouse_plan.Tables(bq)
    router = iam.Router(
        [
            (r"projects/[^/]+", iam.Policies(projects_client())),
            (
                r"projects/[^/]+/serviceAccounts/.+",
                iam.Policies(clients.gapic(iam_admin_v1.IAMClient, "platform")),
            ),
            (r"projects/[^/]+/(topics|subscriptions)/[^/]+", iam.Policies(publisher)),
            (
                r"projects/_/buckets/[^/]+",
                iam.JsonPolicies(
                    lambda name: gcs.bucket(name.rsplit("/", 1)[-1]).get_iam_policy(
                        requested_policy_version=3
                    ),
                    lambda name, policy: gcs.bucket(name.rsplit("/", 1)[-1]).set_iam_policy(policy),
                ),
            ),
            (r"projects/[^/]+/datasets/[^/]+", iam.DatasetAccess(bq)),
            (
                r"projects/[^/]+/datasets/[^/]+/tables/[^/]+",
                iam.JsonPolicies(
                    lambda name: bq.get_iam_policy(_dotted(name)),
                    lambda name, policy: bq.set_iam_policy(_dotted(name), policy),
                ),
            ),
            (r"projects/[^/]+/locations/[^/]+/repositories/[^/]+", iam.Policies(registry)),
            (
                r"projects/[^/]+/locations/[^/]+/services/[^/]+",
                iam.Policies(clients.gapic(run_v2.ServicesClient, "platform")),
            ),
            (r"projects/[^/]+/locations/[^/]+/lakes/.+", iam.Policies(lakes)),
        ]
    )
    monitored = monitoring.Clients(clients.endpoint("monitoring"))
    return {
        platform.API: platform.Services(
            clients.gapic(service_usage_v1.ServiceUsageClient, "platform")
        ),
        platform.ACCOUNT: platform.Accounts(clients.gapic(iam_admin_v1.IAMClient, "platform")),
        platform.REPOSITORY: platform.Repositories(registry),
        buckets.BUCKET: buckets.Buckets(gcs),
        warehouse_plan.DATASET: warehouse_plan.Datasets(bq),
        warehouse_plan.TABLE: tables,
        warehouse_plan.VIEW: tables,
        **pubsub.adapters(publisher, subscriber),
        **monitoring.adapters(monitored, project),
        **dataplex.adapters(lakes, catalog),
        gcloud.KIND: gcloud.Steps(steps, runner),
        iam.KIND: router,  # last: over the areas' own
    }


__all__ = ["adapters", "bigquery_client", "plan", "projects_client", "storage_client"]
