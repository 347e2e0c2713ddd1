"""Every resource of the catalog on a Google Cloud project, declared once from the project's
settings, in dependency order, each in its area:

==============  ========================================================================
area            what
==============  ========================================================================
apis            the APIs every other area calls (Service Usage)
identities      the runtime service accounts, their project-level roles and the roles on
                each other (IAM, Resource Manager)
storage         the landing bucket and the ops bucket, and their grants (Cloud Storage)
bigquery        the analyst dataset, tables and views, and their grants (BigQuery)
templates       the images' repository and its grant (Artifact Registry); the catalog's
                package, each template's image (Cloud Build) and file (gcloud dataflow)
pubsub          topics, subscriptions, dead-letter topics and their grants (Pub/Sub)
subscribers     the push function and its invoker, the pull instance group (gcloud)
monitoring      log-based metrics, channel, alert policies, dashboards (Cloud Monitoring)
governance      Dataplex lake, zones, assets, aspects and their grants (Dataplex)
orchestration   the Composer environment, the DAG and its settings, the trigger (gcloud)
==============  ========================================================================

Grants come from ``clickstream.deploy.access`` alone, each placed in the area of the resource
it is on. What a client library can read and change goes through it; the rest is gcloud steps
(``clickstream.deploy.gcloud``), which the same plan reads with a check and runs.
"""

import dataclasses
import functools
import tempfile
from collections.abc import Iterable
from pathlib import Path

from clickstream import pipelines
from clickstream.core import names, templates
from clickstream.deploy import access, gcloud, image, subscribers
from clickstream.deploy import pubsub as pubsub_deployment
from clickstream.deploy.settings import Settings
from clickstream.gcp import iam, plan, platform, storage, warehouse_plan
from clickstream.governance import mesh
from clickstream.monitoring import alerting, production
from clickstream.orchestration import deployment

AREAS = names.DEPLOYMENT_AREAS
APIS = {  # the APIs each area's resources (and what runs on them) call
    "identities": ("iam.googleapis.com", "cloudresourcemanager.googleapis.com"),
    "storage": ("storage.googleapis.com",),
    "bigquery": ("bigquery.googleapis.com",),
    "templates": (
        "artifactregistry.googleapis.com",
        "cloudbuild.googleapis.com",
        "dataflow.googleapis.com",
    ),
    "pubsub": ("pubsub.googleapis.com",),
    "subscribers": (
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "compute.googleapis.com",
    ),
    "monitoring": ("monitoring.googleapis.com", "logging.googleapis.com"),
    "governance": ("dataplex.googleapis.com", "datalineage.googleapis.com"),
    "orchestration": ("composer.googleapis.com", "eventarc.googleapis.com"),
}
APIS_USED = tuple(sorted({api for apis in APIS.values() for api in apis}))
TEMP_PREFIX = "temp/"  # in the ops bucket: Dataflow's temporary files, deleted after a week


class AreaError(ValueError):
    """An area cannot be declared with these settings (the message says what is missing)."""


@dataclasses.dataclass(frozen=True)
class Item:
    area: str
    resource: plan.Resource


@dataclasses.dataclass
class Declaration:
    """The declared resources in order, and the gcloud steps among them (by name)."""

    items: list[Item]
    steps: list[gcloud.Step]

    @property
    def resources(self) -> list[plan.Resource]:
        return [item.resource for item in self.items]

    def area_of(self, resource: plan.Resource) -> str:
        return next(i.area for i in self.items if i.resource.label == resource.label)


def image_tag(settings: Settings) -> str:
    """The tag of the templates' images: the settings', else the digest of the image's build
    context (new code, new tag: the plan rebuilds the images and points everything at them)."""
    if settings.tag:
        return settings.tag
    with tempfile.TemporaryDirectory() as scratch:
        context = image.stage_context(Path(scratch, "context"))
        return f"ctx-{gcloud.content_digest(context)[:12]}"


@functools.cache
def _template_file(build: tuple[str, ...]) -> str:
    try:
        return gcloud.template_file(list(build))
    except gcloud.StepError as error:
        raise AreaError(f"the templates area's files: {error}") from None


def canonical_json_of(url: str, project: str) -> str:
    """A check that prints a JSON object in Cloud Storage in canonical form."""
    return (
        f"gcloud storage cat {url} --project={project} | "
        "python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))'"
    )


def _steps_resources(area: str, steps: Iterable[gcloud.Step]) -> list[Item]:
    return [Item(area, step.resource()) for step in steps]


class _Declarer:
    """Builds the declaration of one deployment."""

    def __init__(self, settings: Settings, number: str, build: Path):
        self.settings, self.number, self.build = settings, number, build
        self.items: list[Item] = []
        self.steps: list[gcloud.Step] = []
        self.grants = access.bindings(access.grants(settings, number))

    def add(self, area: str, *resources: plan.Resource) -> None:
        self.items += [Item(area, resource) for resource in resources]

    def add_steps(self, area: str, steps: list[gcloud.Step]) -> None:
        self.steps += steps
        self.items += _steps_resources(area, steps)

    def add_grants(self, area: str, on: Iterable[str], after: tuple[str, ...] = ()) -> None:
        """The grants on the resources ``on`` (IAM resource names)."""
        for resource in on:
            if resource in self.grants:
                self.add(area, iam.policy(resource, self.grants[resource], after))

    def grants_where(self, prefix: str) -> list[str]:
        return sorted(r for r in self.grants if r.startswith(prefix))

    # The areas, in order

    def apis(self) -> None:
        self.add("apis", *(platform.api(self.settings.project, api) for api in APIS_USED))

    def identities(self) -> None:
        s = self.settings
        for identity in access.ACCOUNTS:
            self.add(
                "identities",
                platform.account(
                    s.project, identity.account, identity.account, identity.description
                ),
            )
        self.add_grants("identities", [f"projects/{s.project}"])
        self.add_grants("identities", self.grants_where(f"projects/{s.project}/serviceAccounts/"))

    def storage(self) -> None:
        s = self.settings
        data = storage.bucket(s.bucket, s.region)
        ops = storage.bucket(s.ops_bucket, s.region, TEMP_PREFIX)
        self.add("storage", data, ops)
        self.add_grants("storage", [access.bucket_resource(s.bucket)], (data.label,))
        self.add_grants("storage", [access.bucket_resource(s.ops_bucket)], (ops.label,))

    def bigquery(self) -> None:
        s = self.settings
        declared = warehouse_plan.resources(s.project, s.dataset, s.dataset_location)
        self.add("bigquery", *declared)
        self.add_grants(
            "bigquery", self.grants_where(f"projects/{s.project}/datasets/"), (declared[0].label,)
        )

    def templates(self) -> None:
        s = self.settings
        repository = platform.repository(
            s.project, s.region, s.repository, "The clickstream catalog's template images"
        )
        self.add("templates", repository)
        self.add_grants("templates", [repository.name], (repository.label,))
        package = image.build_package(self.build / "package")
        url = f"gs://{s.ops_bucket}/templates/{package.name}"
        steps = [
            gcloud.Step(
                f"object {url}",
                templates.package_upload_command(package, s.ops_bucket),
                ["gcloud", "storage", "objects", "describe", url, f"--project={s.project}"],
            )
        ]
        where = (s.project, s.region, s.ops_bucket, s.repository, s.tag)
        for name in pipelines.names():
            build, spec = templates.build_commands(name, *where)
            target = templates.image(name, s.project, s.region, s.repository, s.tag)
            describe = ["gcloud", "artifacts", "docker", "images", "describe", target]
            steps.append(gcloud.Step(f"image {target}", build, describe))
            file = templates.template_file(name, s.ops_bucket)
            steps.append(
                gcloud.Step(
                    f"template-file {file}",
                    spec,
                    canonical_json_of(file, s.project),
                    _template_file(tuple(spec)),
                    undo=["gcloud", "storage", "rm", file, f"--project={s.project}"],
                )
            )
        self.add_steps("templates", steps)

    def pubsub(self) -> None:
        s = self.settings
        on_pubsub = {
            r: roles
            for r, roles in self.grants.items()
            if r.startswith(
                (f"projects/{s.project}/topics/", f"projects/{s.project}/subscriptions/")
            )
        }
        self.add("pubsub", *pubsub_deployment.cloud_resources(s, on_pubsub))

    def subscribers(self) -> None:
        s = self.settings
        steps = subscribers.push_steps(s, subscribers.stage_function(self.build))
        self.add_steps("subscribers", steps)
        function = access.function_resource(s, names.PUSH_FUNCTION)
        self.add_grants("subscribers", [function], (steps[0].resource().label,))
        archive = subscribers.stage_archive(self.build)
        self.add_steps("subscribers", subscribers.pull_steps(s, archive))

    def monitoring(self) -> None:
        s = self.settings
        if not s.email:
            raise AreaError("the monitoring area needs email (where alerts go) in the settings")
        dos = alerting.Alerting(s.project, s.email)
        subscriptions = pubsub_deployment.subscriptions(s)
        self.add("monitoring", *production.resources(dos, subscriptions))

    def governance(self) -> None:
        s = self.settings
        declared = mesh.Mesh(
            s.project,
            s.region,
            bucket=s.bucket,
            dataset=s.dataset,
            dataset_location=s.dataset_location.lower(),
            members=dict(s.members),
        )
        mesh.check(declared)
        self.add("governance", *mesh.resources(declared))

    def orchestration(self) -> None:
        s = self.settings
        build = self.build / "orchestration"
        self.add_steps("orchestration", deployment.environment_steps(s))
        self.add_steps(
            "orchestration", deployment.dags_steps(s, deployment.stage_dags(build / "dags"))
        )
        source = deployment.stage_function(build / "trigger-function")
        steps = deployment.trigger_steps(s, source)
        self.add_steps("orchestration", steps)
        function = access.function_resource(s, names.TRIGGER_FUNCTION)
        self.add_grants("orchestration", [function], (steps[0].resource().label,))


def declare(
    settings: Settings, number: str, build: Path, areas: Iterable[str] = AREAS
) -> Declaration:
    """The declaration of ``areas`` (in their order), the images' tag resolved."""
    chosen = set(areas)
    unknown = sorted(chosen - set(AREAS))
    if unknown:
        raise AreaError(f"unknown area {unknown[0]!r}; areas are {', '.join(AREAS)}")
    settings = dataclasses.replace(settings, tag=image_tag(settings))
    declarer = _Declarer(settings, number, build)
    for area in AREAS:
        if area in chosen:
            getattr(declarer, area)()
    return Declaration(declarer.items, declarer.steps)
