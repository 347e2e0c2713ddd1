"""Who may do what, written down once: every identity the catalog runs as, each call it makes,
the permission Google's reference says that call needs, the predefined role that carries it and
the resources it is needed on. The deployment's grants are derived from this table (``grants``)
and nothing else grants a role; ``tests/test_access.py`` holds the grants against it both ways
(no call without its permission, no grant without a call) and the roles against Google's own
lists of their permissions; ``docs/access.md`` is generated from it.

Sources: the permissions each method needs are from the access-control pages of each product
(e.g. https://cloud.google.com/dataflow/docs/concepts/security-and-permissions,
https://cloud.google.com/pubsub/docs/access-control, https://cloud.google.com/bigquery/docs/
access-control, https://cloud.google.com/eventarc/standard/docs/functions/roles-permissions,
https://cloud.google.com/composer/docs/composer-3/access-control); the roles' permissions from
https://cloud.google.com/iam/docs/roles-permissions (``clickstream.fakes`` keeps them as data).
"""

import dataclasses
from collections.abc import Iterable

from clickstream.core import contract, names
from clickstream.deploy.settings import Settings

# Scopes: where a role is granted, resolved for a deployment by ``resources``.
PROJECT, DATA_BUCKET, OPS_BUCKET, DATASET, TABLES = (
    "project",
    "data-bucket",
    "ops-bucket",
    "dataset",
    "analyst-tables",
)
REPOSITORY, WORKER_ACCOUNT, INVOKER = "image-repository", "worker-account", "invoker-account"
FILES_TOPIC, PULL_SUBSCRIPTION = "files-processed-topic", "pull-subscription"
DATAFLOW_SUBSCRIPTIONS = "streaming-template-subscriptions"
DEAD_LETTER_TOPICS, DEAD_LETTERING = "dead-letter-topics", "dead-lettering-subscriptions"
PUSH_FUNCTION, TRIGGER_FUNCTION = "push-function", "trigger-function"


@dataclasses.dataclass(frozen=True)
class Call:
    """A call an identity makes: what for, the API method, the permission it needs, the role
    granted for it, and where (a scope)."""

    doing: str
    method: str
    permission: str
    role: str
    scope: str


@dataclasses.dataclass(frozen=True)
class Identity:
    """A runtime identity: a service account of the project (``account``: its id), a Google
    service agent (``agent``: its email pattern, ``{number}`` the project number), or the person
    or pipeline that deploys (neither: its roles are documented, not granted)."""

    key: str
    description: str
    calls: tuple[Call, ...]
    account: str = ""
    agent: str = ""

    def member(self, settings: Settings, number: str) -> str:
        if self.account:
            return f"serviceAccount:{settings.account(self.account)}"
        if self.agent:
            return f"serviceAccount:{self.agent.format(number=number)}"
        raise ValueError(f"{self.key} is granted nothing by the deployment")


def _writer(doing: str) -> Call:
    return Call(
        doing,
        "bigquery.tabledata.insertAll",
        "bigquery.tables.updateData",
        "roles/bigquery.dataEditor",
        TABLES,
    )


IDENTITIES = (
    Identity(
        "dataflow-workers",
        "The Dataflow workers of every template, and its flex-template launcher (Dataflow runs "
        "the launcher as the job's worker service account)",
        (
            Call(
                "run the job's work items",
                "Dataflow worker API",
                "dataflow.workItems.lease",
                "roles/dataflow.worker",
                PROJECT,
            ),
            Call(
                "write the denial-of-service detector's log entries",
                "logging.entries.write",
                "logging.logEntries.create",
                "roles/dataflow.worker",
                PROJECT,
            ),
            Call(
                "pull the template's image (launcher and workers)",
                "Artifact Registry image pull",
                "artifactregistry.repositories.downloadArtifacts",
                "roles/artifactregistry.reader",
                REPOSITORY,
            ),
            Call(
                "read the landed visit files",
                "storage.objects.get",
                "storage.objects.get",
                "roles/storage.objectUser",
                DATA_BUCKET,
            ),
            Call(
                "expand the input glob",
                "storage.objects.list",
                "storage.objects.list",
                "roles/storage.objectUser",
                DATA_BUCKET,
            ),
            Call(
                "write the raw archive's files (raw_to_gcs)",
                "storage.objects.insert",
                "storage.objects.create",
                "roles/storage.objectUser",
                DATA_BUCKET,
            ),
            Call(
                "remove the raw archive's temporary files",
                "storage.objects.delete",
                "storage.objects.delete",
                "roles/storage.objectUser",
                DATA_BUCKET,
            ),
            Call(
                "stage and clean up temporary files",
                "storage.objects.insert, storage.objects.delete",
                "storage.objects.delete",
                "roles/storage.objectUser",
                OPS_BUCKET,
            ),
            Call(
                "run load jobs and MERGE queries",
                "bigquery.jobs.insert",
                "bigquery.jobs.create",
                "roles/bigquery.jobUser",
                PROJECT,
            ),
            Call(
                "create the staging and missing analyst tables",
                "bigquery.tables.insert",
                "bigquery.tables.create",
                "roles/bigquery.dataEditor",
                DATASET,
            ),
            Call(
                "write rows (loads, MERGE, streaming inserts)",
                "bigquery.jobs.insert, bigquery.tabledata.insertAll",
                "bigquery.tables.updateData",
                "roles/bigquery.dataEditor",
                DATASET,
            ),
            Call(
                "read the streaming templates' subscriptions",
                "pubsub.subscriptions.pull",
                "pubsub.subscriptions.consume",
                "roles/pubsub.subscriber",
                DATAFLOW_SUBSCRIPTIONS,
            ),
        ),
        account=names.DATAFLOW_ACCOUNT,
    ),
    Identity(
        "composer",
        "The Cloud Composer environment: Airflow's scheduler and workers run the DAG",
        (
            Call(
                "run the environment (Composer requires its service account to hold it)",
                "Composer environment operation",
                "composer.environments.get",
                "roles/composer.worker",
                PROJECT,
            ),
            Call(
                "launch the migration's flex template",
                "dataflow.projects.locations.flexTemplates.launch",
                "dataflow.jobs.create",
                "roles/dataflow.developer",
                PROJECT,
            ),
            Call(
                "wait for the job",
                "dataflow.projects.locations.jobs.get",
                "dataflow.jobs.get",
                "roles/dataflow.developer",
                PROJECT,
            ),
            Call(
                "read the job's counters",
                "dataflow.projects.locations.jobs.getMetrics",
                "dataflow.metrics.get",
                "roles/dataflow.developer",
                PROJECT,
            ),
            Call(
                "start the job as the workers' service account",
                "dataflow.projects.locations.flexTemplates.launch",
                "iam.serviceAccounts.actAs",
                "roles/iam.serviceAccountUser",
                WORKER_ACCOUNT,
            ),
            Call(
                "read the template file (Dataflow reads it as the caller)",
                "storage.objects.get",
                "storage.objects.get",
                "roles/storage.objectViewer",
                OPS_BUCKET,
            ),
            Call(
                "announce each processed file",
                "pubsub.topics.publish",
                "pubsub.topics.publish",
                "roles/pubsub.publisher",
                FILES_TOPIC,
            ),
            *(
                Call(
                    "record the run's lineage",
                    f"datalineage.{method}",
                    f"datalineage.{permission}.create",
                    "roles/datalineage.producer",
                    PROJECT,
                )
                for method, permission in (
                    ("processes.create", "processes"),
                    ("processes.runs.create", "runs"),
                    ("processes.runs.lineageEvents.create", "events"),
                )
            ),
        ),
        account=names.COMPOSER_ACCOUNT,
    ),
    Identity(
        "trigger",
        "The storage trigger: the Cloud Run function that starts a DAG run per landed file",
        (
            Call(
                "receive the bucket's finalize events (Eventarc, direct Cloud Storage events)",
                "Eventarc event delivery",
                "eventarc.events.receiveEvent",
                "roles/eventarc.eventReceiver",
                PROJECT,
            ),
            Call(
                "be invoked by Eventarc",
                "Cloud Run request",
                "run.routes.invoke",
                "roles/run.invoker",
                TRIGGER_FUNCTION,
            ),
            Call(
                "call the Airflow REST API of the environment (then Airflow's role Op)",
                "Composer web server request",
                "composer.environments.get",
                "roles/composer.user",
                PROJECT,
            ),
        ),
        account=names.TRIGGER_ACCOUNT,
    ),
    Identity(
        "push",
        "The push subscriber's Cloud Run function, at run time",
        (_writer("append pushed visits to the analyst tables"),),
        account=names.PUSH_ACCOUNT,
    ),
    Identity(
        "push-invoker",
        "The identity in the push subscription's OIDC token",
        (
            Call(
                "deliver pushed messages to the function",
                "Cloud Run request",
                "run.routes.invoke",
                "roles/run.invoker",
                PUSH_FUNCTION,
            ),
        ),
        account=names.INVOKER_ACCOUNT,
    ),
    Identity(
        "pull",
        "The pull subscriber's VMs (a managed instance group)",
        (
            Call(
                "pull and acknowledge visits",
                "pubsub.subscriptions.streamingPull",
                "pubsub.subscriptions.consume",
                "roles/pubsub.subscriber",
                PULL_SUBSCRIPTION,
            ),
            _writer("append pulled visits to the analyst tables"),
            Call(
                "download its code at start-up",
                "storage.objects.get",
                "storage.objects.get",
                "roles/storage.objectViewer",
                OPS_BUCKET,
            ),
        ),
        account=names.PULL_ACCOUNT,
    ),
    Identity(
        "pubsub-agent",
        "Pub/Sub's service agent: dead-lettering and push tokens",
        (
            Call(
                "move undeliverable messages to the dead-letter topic",
                "pubsub.topics.publish",
                "pubsub.topics.publish",
                "roles/pubsub.publisher",
                DEAD_LETTER_TOPICS,
            ),
            Call(
                "acknowledge the messages it dead-letters",
                "pubsub.subscriptions.acknowledge",
                "pubsub.subscriptions.consume",
                "roles/pubsub.subscriber",
                DEAD_LETTERING,
            ),
            Call(
                "mint the push subscription's OIDC token (needed where the agent predates "
                "8 April 2021; harmless after)",
                "iamcredentials.generateIdToken",
                "iam.serviceAccounts.getOpenIdToken",
                "roles/iam.serviceAccountTokenCreator",
                INVOKER,
            ),
        ),
        agent="service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com",
    ),
    Identity(
        "storage-agent",
        "Cloud Storage's service agent: publishes the bucket's events that Eventarc delivers",
        (
            Call(
                "publish the bucket's finalize events",
                "pubsub.topics.publish",
                "pubsub.topics.publish",
                "roles/pubsub.publisher",
                PROJECT,
            ),
        ),
        agent="service-{number}@gs-project-accounts.iam.gserviceaccount.com",
    ),
)
DEPLOYER = Identity(
    "deployer",
    "Whoever runs `clickstream apply` (a person or a CI pipeline's account): it grants itself "
    "nothing; these are the roles to hold on the project (Owner holds them all)",
    tuple(
        Call(doing, method, permission, role, PROJECT)
        for doing, method, permission, role in (
            (
                "enable the APIs",
                "serviceusage.services.enable",
                "serviceusage.services.enable",
                "roles/serviceusage.serviceUsageAdmin",
            ),
            (
                "create the service accounts",
                "iam.projects.serviceAccounts.create",
                "iam.serviceAccounts.create",
                "roles/iam.serviceAccountAdmin",
            ),
            (
                "grant roles on service accounts",
                "iam.projects.serviceAccounts.setIamPolicy",
                "iam.serviceAccounts.setIamPolicy",
                "roles/iam.serviceAccountAdmin",
            ),
            (
                "deploy functions, VMs and Composer that run as the catalog's accounts",
                "cloudfunctions, compute, composer: create",
                "iam.serviceAccounts.actAs",
                "roles/iam.serviceAccountUser",
            ),
            (
                "grant roles on the project",
                "cloudresourcemanager.projects.setIamPolicy",
                "resourcemanager.projects.setIamPolicy",
                "roles/resourcemanager.projectIamAdmin",
            ),
            (
                "create the buckets",
                "storage.buckets.insert",
                "storage.buckets.create",
                "roles/storage.admin",
            ),
            (
                "grant roles on the buckets",
                "storage.buckets.setIamPolicy",
                "storage.buckets.setIamPolicy",
                "roles/storage.admin",
            ),
            (
                "upload code, packages and template files",
                "storage.objects.insert",
                "storage.objects.create",
                "roles/storage.admin",
            ),
            (
                "create the dataset",
                "bigquery.datasets.insert",
                "bigquery.datasets.create",
                "roles/bigquery.dataOwner",
            ),
            (
                "create tables and views",
                "bigquery.tables.insert",
                "bigquery.tables.create",
                "roles/bigquery.dataOwner",
            ),
            (
                "grant roles on the dataset",
                "bigquery.datasets.patch",
                "bigquery.datasets.update",
                "roles/bigquery.dataOwner",
            ),
            (
                "grant roles on tables",
                "bigquery.tables.setIamPolicy",
                "bigquery.tables.setIamPolicy",
                "roles/bigquery.dataOwner",
            ),
            (
                "create the images' repository",
                "artifactregistry.repositories.create",
                "artifactregistry.repositories.create",
                "roles/artifactregistry.admin",
            ),
            (
                "grant roles on it",
                "artifactregistry.repositories.setIamPolicy",
                "artifactregistry.repositories.setIamPolicy",
                "roles/artifactregistry.admin",
            ),
            (
                "build the images",
                "cloudbuild.builds.create",
                "cloudbuild.builds.create",
                "roles/cloudbuild.builds.editor",
            ),
            ("create topics", "pubsub.topics.create", "pubsub.topics.create", "roles/pubsub.admin"),
            (
                "create subscriptions",
                "pubsub.subscriptions.create",
                "pubsub.subscriptions.create",
                "roles/pubsub.admin",
            ),
            (
                "grant roles on topics and subscriptions",
                "pubsub.*.setIamPolicy",
                "pubsub.subscriptions.setIamPolicy",
                "roles/pubsub.admin",
            ),
            (
                "deploy the functions",
                "cloudfunctions.functions.create",
                "cloudfunctions.functions.create",
                "roles/cloudfunctions.admin",
            ),
            (
                "let their callers invoke them",
                "run.services.setIamPolicy",
                "run.services.setIamPolicy",
                "roles/cloudfunctions.admin",
            ),
            (
                "create the trigger on the bucket's events",
                "eventarc.triggers.create",
                "eventarc.triggers.create",
                "roles/cloudfunctions.admin",
            ),
            (
                "create the instance template and group",
                "compute.instanceTemplates.insert",
                "compute.instanceTemplates.create",
                "roles/compute.instanceAdmin.v1",
            ),
            (
                "autoscale the group",
                "compute.autoscalers.insert",
                "compute.autoscalers.create",
                "roles/compute.instanceAdmin.v1",
            ),
            (
                "let Google's health checkers in",
                "compute.firewalls.insert",
                "compute.firewalls.create",
                "roles/compute.securityAdmin",
            ),
            (
                "create the health check",
                "compute.healthChecks.insert",
                "compute.healthChecks.create",
                "roles/compute.networkAdmin",
            ),
            (
                "create alert policies",
                "monitoring.projects.alertPolicies.create",
                "monitoring.alertPolicies.create",
                "roles/monitoring.editor",
            ),
            (
                "create the notification channel",
                "monitoring.projects.notificationChannels.create",
                "monitoring.notificationChannels.create",
                "roles/monitoring.editor",
            ),
            (
                "create dashboards",
                "monitoring.projects.dashboards.create",
                "monitoring.dashboards.create",
                "roles/monitoring.editor",
            ),
            (
                "create log-based metrics",
                "logging.projects.metrics.create",
                "logging.logMetrics.create",
                "roles/logging.configWriter",
            ),
            (
                "create the lake, zones and assets",
                "dataplex.projects.locations.lakes.create",
                "dataplex.lakes.create",
                "roles/dataplex.admin",
            ),
            (
                "grant roles on the lake and zones",
                "dataplex.*.setIamPolicy",
                "dataplex.lakes.setIamPolicy",
                "roles/dataplex.admin",
            ),
            (
                "create the aspect types",
                "dataplex.projects.locations.aspectTypes.create",
                "dataplex.aspectTypes.create",
                "roles/dataplex.catalogEditor",
            ),
            (
                "write aspects on the tables' entries",
                "dataplex.projects.locations.entryGroups.entries.patch",
                "dataplex.entries.update",
                "roles/dataplex.catalogEditor",
            ),
            (
                "create the Composer environment",
                "composer.projects.locations.environments.create",
                "composer.environments.create",
                "roles/composer.admin",
            ),
            (
                "set its packages, variable and DAGs",
                "composer.projects.locations.environments.patch",
                "composer.environments.update",
                "roles/composer.admin",
            ),
        )
    ),
)
GRANTED = tuple(identity for identity in IDENTITIES if identity.account or identity.agent)
ACCOUNTS = tuple(identity for identity in IDENTITIES if identity.account)


def resources(scope: str, settings: Settings) -> list[str]:
    """The IAM resource names of ``scope`` in the deployment ``settings`` describes."""
    from clickstream.deploy import pubsub  # the declared subscriptions and topics

    project, region = settings.project, settings.region
    topics = pubsub.declared(settings)
    found = {
        PROJECT: [f"projects/{project}"],
        DATA_BUCKET: [bucket_resource(settings.bucket)],
        OPS_BUCKET: [bucket_resource(settings.ops_bucket)],
        DATASET: [f"projects/{project}/datasets/{settings.dataset}"],
        TABLES: [
            f"projects/{project}/datasets/{settings.dataset}/tables/{table}"
            for table in contract.TABLES
        ],
        REPOSITORY: [f"projects/{project}/locations/{region}/repositories/{settings.repository}"],
        WORKER_ACCOUNT: [account_resource(settings, names.DATAFLOW_ACCOUNT)],
        INVOKER: [account_resource(settings, names.INVOKER_ACCOUNT)],
        FILES_TOPIC: [names.topic_path(project, names.FILES_PROCESSED_TOPIC)],
        PULL_SUBSCRIPTION: [names.subscription_path(project, names.PULL_SUBSCRIPTION)],
        DATAFLOW_SUBSCRIPTIONS: topics.dataflow_subscriptions,
        DEAD_LETTER_TOPICS: topics.dead_letter_topics,
        DEAD_LETTERING: topics.dead_lettering,
        PUSH_FUNCTION: [function_resource(settings, names.PUSH_FUNCTION)],
        TRIGGER_FUNCTION: [function_resource(settings, names.TRIGGER_FUNCTION)],
    }
    return found[scope]


def bucket_resource(bucket: str) -> str:
    return f"projects/_/buckets/{bucket}"


def account_resource(settings: Settings, account: str) -> str:
    return f"projects/{settings.project}/serviceAccounts/{settings.account(account)}"


def function_resource(settings: Settings, function: str) -> str:
    """A Cloud Run function (2nd gen) is a Cloud Run service of the same name."""
    return f"projects/{settings.project}/locations/{settings.region}/services/{function}"


@dataclasses.dataclass(frozen=True, order=True)
class Grant:
    """A role granted to a member on a resource."""

    resource: str
    role: str
    member: str


def grants(
    settings: Settings, number: str, identities: Iterable[Identity] = GRANTED
) -> list[Grant]:
    """Every grant the calls of ``identities`` need, each once, sorted."""
    found = {
        Grant(resource, call.role, identity.member(settings, number))
        for identity in identities
        for call in identity.calls
        for resource in resources(call.scope, settings)
    }
    return sorted(found)


def bindings(grants_: Iterable[Grant]) -> dict[str, dict[str, list[str]]]:
    """Grants as resource -> role -> members."""
    found: dict[str, dict[str, list[str]]] = {}
    for grant in grants_:
        found.setdefault(grant.resource, {}).setdefault(grant.role, []).append(grant.member)
    return {r: {role: sorted(ms) for role, ms in roles.items()} for r, roles in found.items()}
