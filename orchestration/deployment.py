"""The orchestration on Google Cloud: what goes into the Composer environment's DAGs folder, the
trigger function's source, and the gcloud commands that put them there (printed by
``clickstream orchestrate deploy --dry-run``, run by it otherwise, stopping at the first failure).

Composer installs no package of ours: the DAG imports the catalog's Beam-free core, so the DAGs
folder gets it beside the DAG file, as the package layout has it (``clickstream/core``,
``clickstream/metadata``; ``.airflowignore`` keeps the scheduler from parsing them as DAGs).
The local Airflow reads the same staged folder (``local_airflow.py``), with the Dataflow
stand-in added.

The files-processed topic and the subscription ``clickstream subscribe files`` reads are part of
the catalog's Pub/Sub plan (``clickstream pubsub apply``, ``clickstream.deploy.pubsub``), which
comes first. Then two steps, in order:

- ``dags_commands``: the DAG's settings (Airflow variable ``clickstream_orchestration``), the
  Composer environment's service account's rights (launch Dataflow jobs that run as the worker
  account, publish to the topic), then ``gcloud composer environments storage dags import``.
- ``trigger_commands``: the trigger function (Cloud Run functions, gen2) on the bucket's
  finalize events with retries, its service account allowed to receive the events
  (``roles/eventarc.eventReceiver``: Eventarc requires it of a trigger on direct events other
  than Pub/Sub's), to be invoked by Eventarc (``roles/run.invoker``) and to call the Airflow
  REST API (``roles/composer.user`` and Airflow's ``Op`` role), and the Cloud Storage service
  agent's right to publish the events.
"""

import dataclasses
import json
import shutil
from pathlib import Path

from clickstream.core import landing, names, templates
from clickstream.deploy import subscribers

HERE = Path(__file__).resolve().parent
DAG_FILE = HERE / "dags" / f"{names.FILE_LANDED_DAG}.py"
LOCAL_DATAFLOW = HERE / "dags" / "local_dataflow.py"
AIRFLOW_IGNORE = HERE / "dags" / ".airflowignore"
DAG_PACKAGES = ("core", "metadata")  # what the DAG imports, Beam-free
TRIGGER = HERE / "trigger.py"
FUNCTION_ROOTS = ("functions-framework", "google-auth", "requests")
FUNCTION = "clickstream-file-landed"
TRIGGER_ACCOUNT = "clickstream-trigger"
DAG_IMPORTS = (".airflowignore", "clickstream", f"{names.FILE_LANDED_DAG}.py")  # the DAG last


@dataclasses.dataclass(frozen=True)
class Target:
    """The Composer environment, the bucket files land in, and where the template file is."""

    project: str
    region: str
    environment: str
    bucket: str  # files landing under names.LANDING_PREFIX start a run (no gs://)
    template_bucket: str  # holds templates/batch_migration.json (clickstream template build)
    dataset: str = names.DATASET
    topic: str = names.FILES_PROCESSED_TOPIC
    airflow_api: str = "v2"  # v2: Airflow 3; v1: Airflow 2
    worker_account: str = ""  # the Dataflow workers' service account (default: Compute's)
    repository: str = names.IMAGE_REPOSITORY  # Artifact Registry repository of the image
    tag: str = names.IMAGE_TAG  # the template image's tag (clickstream template build --tag)

    def __post_init__(self):
        if self.airflow_api not in ("v1", "v2"):
            raise ValueError(f"airflow API {self.airflow_api!r}: v2 (Airflow 3) or v1 (Airflow 2)")

    def gcloud(self, *args: str) -> list[str]:
        """A gcloud command in the project (the flag before a ``--``: what follows is not
        gcloud's)."""
        end = args.index("--") if "--" in args else len(args)
        return ["gcloud", *args[:end], f"--project={self.project}", *args[end:]]

    def describe(self, field: str) -> str:
        """A field of the environment, read by the shell when the command runs."""
        return (
            f"$(gcloud composer environments describe {self.environment} "
            f"--location={self.region} --project={self.project} --format='value({field})')"
        )

    @property
    def composer_account(self) -> str:
        return self.describe("config.nodeConfig.serviceAccount")

    @property
    def trigger_account(self) -> str:
        return f"{TRIGGER_ACCOUNT}@{self.project}.iam.gserviceaccount.com"

    @property
    def worker_image(self) -> str:
        """The migration template's image, which its workers must run (the launch's
        ``sdkContainerImage``): the stock Beam container lacks the catalog."""
        where = (self.project, self.region, self.repository, self.tag)
        return templates.image(names.MIGRATION_TEMPLATE, *where)

    def settings(self) -> dict:
        """The DAG's ``clickstream_orchestration`` variable."""
        environment = {"sdkContainerImage": self.worker_image}
        if self.worker_account:
            environment["serviceAccountEmail"] = self.worker_account
        return {
            "project": self.project,
            "region": self.region,
            "template_bucket": self.template_bucket,
            "dataset": self.dataset,
            "topic": self.topic,
            "environment": environment,
        }


def stage_dags(destination: Path, local: bool = False) -> Path:
    """The DAGs folder's contents in ``destination`` (emptied first): the DAG, the core it
    imports, ``.airflowignore``; ``local`` adds the Dataflow stand-in."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    for source in (DAG_FILE, AIRFLOW_IGNORE, *([LOCAL_DATAFLOW] if local else [])):
        shutil.copy2(source, destination / source.name)
    subscribers.copy_packages(destination, DAG_PACKAGES)
    return destination


def stage_function(destination: Path) -> Path:
    """The trigger function's source directory: ``main.py`` exposing ``on_file_landed``, the
    packages it imports and their pinned requirements."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    subscribers.copy_packages(destination, ("core",))
    package = destination / "clickstream" / "orchestration"
    package.mkdir()
    for source in (HERE / "__init__.py", TRIGGER):
        shutil.copy2(source, package / source.name)
    requirements = subscribers.runtime_requirements(FUNCTION_ROOTS)
    (destination / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (destination / "main.py").write_text(
        '"""Entry point of the Cloud Run function: the orchestration trigger."""\n\n'
        "from clickstream.orchestration.trigger import on_file_landed\n\n"
        '__all__ = ["on_file_landed"]\n'
    )
    return destination


def dags_commands(target: Target, dags: Path) -> list[list[str]]:
    """``dags``: the folder from ``stage_dags``."""
    where = (f"--environment={target.environment}", f"--location={target.region}")
    member = f"--member=serviceAccount:{target.composer_account}"
    worker = target.worker_account or (
        f"$(gcloud projects describe {target.project} --format='value(projectNumber)')"
        "-compute@developer.gserviceaccount.com"
    )
    return [
        target.gcloud(
            *("composer", "environments", "run", target.environment),
            f"--location={target.region}",
            *("variables", "set", "--", "clickstream_orchestration"),
            json.dumps(target.settings(), sort_keys=True),
        ),
        target.gcloud(
            *("projects", "add-iam-policy-binding", target.project, member),
            *("--role=roles/dataflow.developer", "--condition=None"),
        ),
        target.gcloud(
            *("iam", "service-accounts", "add-iam-policy-binding", worker, member),
            "--role=roles/iam.serviceAccountUser",
        ),
        target.gcloud(
            *("pubsub", "topics", "add-iam-policy-binding", target.topic, member),
            "--role=roles/pubsub.publisher",
        ),
        *(
            target.gcloud(
                *("composer", "environments", "storage", "dags", "import", *where), source
            )
            for source in (f"--source={dags / name}" for name in DAG_IMPORTS)
        ),
    ]


def trigger_commands(target: Target, source: Path) -> list[list[str]]:
    """``source``: the function's directory, from ``stage_function``."""
    account = target.trigger_account
    environment = {
        "AIRFLOW_URL": target.describe("config.airflowUri"),
        "AIRFLOW_API": target.airflow_api,
        "AIRFLOW_AUTH": "google",
        "LANDING_PREFIX": names.LANDING_PREFIX,
        "DAG_ID": names.FILE_LANDED_DAG,
    }
    storage_agent = f"$(gcloud storage service-agent --project={target.project})"
    return [
        target.gcloud(
            *("iam", "service-accounts", "create", TRIGGER_ACCOUNT),
            "--display-name=clickstream orchestration trigger",
        ),
        target.gcloud(
            *("projects", "add-iam-policy-binding", target.project),
            *(f"--member=serviceAccount:{account}", "--role=roles/composer.user"),
            "--condition=None",
        ),
        target.gcloud(  # Eventarc delivers to the function as this account
            *("projects", "add-iam-policy-binding", target.project),
            *(f"--member=serviceAccount:{account}", "--role=roles/run.invoker"),
            "--condition=None",
        ),
        target.gcloud(  # ...and receives the bucket's events as it (direct events need it)
            *("projects", "add-iam-policy-binding", target.project),
            *(f"--member=serviceAccount:{account}", "--role=roles/eventarc.eventReceiver"),
            "--condition=None",
        ),
        target.gcloud(  # Airflow's own access control: may trigger DAG runs
            *("composer", "environments", "run", target.environment),
            f"--location={target.region}",
            *("users", "add-role", "--", "-e", account, "-r", "Op"),
        ),
        target.gcloud(
            *("projects", "add-iam-policy-binding", target.project),
            f"--member=serviceAccount:{storage_agent}",
            *("--role=roles/pubsub.publisher", "--condition=None"),
        ),
        target.gcloud(
            *("functions", "deploy", FUNCTION, "--gen2", f"--region={target.region}"),
            *("--runtime=python311", f"--source={source}", "--entry-point=on_file_landed"),
            f"--trigger-event-filters=type={landing.FINALIZED}",
            f"--trigger-event-filters=bucket={target.bucket}",
            *("--retry", f"--service-account={account}", f"--trigger-service-account={account}"),
            "--set-env-vars=" + ",".join(f"{k}={v}" for k, v in environment.items()),
            *("--memory=256Mi", "--timeout=60s", "--max-instances=10"),
        ),
    ]
