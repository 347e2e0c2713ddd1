"""The subscribers on Google Cloud: the gcloud and bq commands that deploy them.

Three steps of commands (``execute`` prints them, and runs them unless it is a dry run, stopping
at the first failure; a create whose resource exists already is kept as it is), and the Pub/Sub
plan between the first and the others:

- ``accounts_commands``: the APIs, the three service accounts and the writers' BigQuery grants.
- ``clickstream pubsub apply`` (``clickstream.deploy.pubsub``): the topics, subscriptions,
  dead-letter topics and their IAM, planned and applied.
- ``push_commands``: the push subscriber as a Cloud Run function (HTTP, no unauthenticated
  access) that the push subscription's OIDC token may invoke.
- ``pull_commands``: the pull subscriber on a regional managed instance group: an instance
  template whose startup script (``deploy/startup.sh``) installs the code from Cloud Storage and
  runs it under systemd, autohealing with an HTTP health check on ``/healthz``, and an autoscaler
  on the subscription's backlog (``num_undelivered_messages``).

Least privilege: each identity gets only what it uses, on the narrowest resource.

- ``clickstream-push`` (the function's runtime) and ``clickstream-pull`` (the VMs): BigQuery Data
  Editor on the six analyst tables only (streaming inserts; they run no query, so no Job User).
  ``clickstream-pull`` also: Pub/Sub Subscriber on its subscription only (the Pub/Sub plan),
  Storage Object Viewer on the code bucket.
- ``clickstream-push-invoker`` (the identity in the push token): Cloud Run Invoker on the function
  only; it holds no other role, and the function accepts no other identity.
- The Pub/Sub service agent: Token Creator on the invoker account (to mint the push token), and
  (the Pub/Sub plan) Publisher on the dead-letter topics and Subscriber on each subscription
  that dead-letters (to move messages there).

The analyst tables must exist: ``clickstream migrate --project P`` (or the batch template)
creates them from ``metadata/tables``.
"""

import dataclasses
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement

from clickstream.core import contract, names, shell

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SCRIPT = Path(__file__).with_name("startup.sh")
SOURCE_PACKAGES = ("core", "gcp", "metadata", "subscribers")  # what the subscribers import
RUNTIME_ROOTS = (
    "fastjsonschema",
    "functions-framework",
    "google-cloud-bigquery",
    "google-cloud-pubsub",
    "orjson",
)
FUNCTION = "clickstream-push"
PUSH_ACCOUNT, INVOKER_ACCOUNT, PULL_ACCOUNT = (
    "clickstream-push",
    "clickstream-push-invoker",
    "clickstream-pull",
)
GROUP = "clickstream-pull"  # instance template, group, base instance name and network tag
HEALTH_CHECK = "clickstream-pull-health"
HEALTH_PORT = 8080
HEALTH_CHECKER_RANGES = ("35.191.0.0/16", "130.211.0.0/22")  # Google's health checkers
BACKLOG_METRIC = "pubsub.googleapis.com/subscription/num_undelivered_messages"
APIS = (
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "compute.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how big. ``bucket`` (no gs://) holds the pull subscriber's code."""

    project: str
    region: str
    dataset: str = names.DATASET
    topic: str = names.TOPIC
    bucket: str | None = None
    network: str = "default"
    machine_type: str = "e2-small"
    max_replicas: int = 5
    backlog_per_instance: int = 5000  # undelivered messages one VM is expected to handle
    function_max_instances: int = 20

    def account(self, name: str) -> str:
        return f"{name}@{self.project}.iam.gserviceaccount.com"

    @property
    def function_url(self) -> str:
        """The function's URL, known before it exists: push endpoint and token audience."""
        return f"https://{self.region}-{self.project}.cloudfunctions.net/{FUNCTION}"

    @property
    def pubsub_agent(self) -> str:
        """The Pub/Sub service agent, its project number left for the shell to find."""
        return pubsub_agent(
            f"$(gcloud projects describe {self.project} --format='value(projectNumber)')"
        )


def pubsub_agent(project_number: str) -> str:
    """The Pub/Sub service agent of the project of that number, as an IAM member."""
    return f"serviceAccount:service-{project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"


def _gcloud(target: Target, *args: str) -> list[str]:
    return ["gcloud", *args, f"--project={target.project}"]


def _writer_grants(target: Target, account: str) -> list[list[str]]:
    """Data Editor on each analyst table: streaming inserts run no job, so no Job User."""
    member = f"--member=serviceAccount:{account}"
    return [
        [
            *("bq", "add-iam-policy-binding", member, "--role=roles/bigquery.dataEditor"),
            *("-t", f"{target.project}:{target.dataset}.{table}"),
        ]
        for table in contract.TABLES
    ]


def _service_account(target: Target, name: str, description: str) -> list[str]:
    return _gcloud(
        target, "iam", "service-accounts", "create", name, f"--display-name={description}"
    )


def accounts_commands(target: Target) -> list[list[str]]:
    """The APIs, the service accounts, and the writers' BigQuery grants."""
    return [
        _gcloud(target, "services", "enable", *APIS),
        _service_account(target, PUSH_ACCOUNT, "clickstream push subscriber (runtime)"),
        _service_account(target, INVOKER_ACCOUNT, "clickstream push subscription (invoker)"),
        _service_account(target, PULL_ACCOUNT, "clickstream pull subscriber (VMs)"),
        *_writer_grants(target, target.account(PUSH_ACCOUNT)),
        *_writer_grants(target, target.account(PULL_ACCOUNT)),
    ]


def push_commands(target: Target, source: Path) -> list[list[str]]:
    """``source``: the function's directory, from ``stage_function``."""
    runtime, invoker = target.account(PUSH_ACCOUNT), target.account(INVOKER_ACCOUNT)
    url = target.function_url
    environment = {
        "BIGQUERY_PROJECT": target.project,
        "BIGQUERY_DATASET": target.dataset,
        "PUSH_AUDIENCE": url,
        "PUSH_SERVICE_ACCOUNT": invoker,
        "THREADS": "8",  # the Functions Framework's request threads: match the concurrency
    }
    return [
        _gcloud(
            target,
            *("functions", "deploy", FUNCTION, "--gen2", f"--region={target.region}"),
            *("--runtime=python311", f"--source={source}", "--entry-point=receive"),
            *("--trigger-http", "--no-allow-unauthenticated", f"--service-account={runtime}"),
            "--set-env-vars=" + ",".join(f"{k}={v}" for k, v in environment.items()),
            *("--memory=512Mi", "--cpu=1", "--concurrency=8", "--timeout=60s"),
            f"--max-instances={target.function_max_instances}",
        ),
        _gcloud(
            target,
            *("functions", "add-invoker-policy-binding", FUNCTION, f"--region={target.region}"),
            f"--member=serviceAccount:{invoker}",
        ),
        _gcloud(
            target,
            *("iam", "service-accounts", "add-iam-policy-binding", invoker),
            *(f"--member={target.pubsub_agent}", "--role=roles/iam.serviceAccountTokenCreator"),
        ),
    ]


def pull_commands(target: Target, archive: Path) -> list[list[str]]:
    """``archive``: the code as a tar.gz, from ``stage_archive``."""
    if not target.bucket:
        raise ValueError("the pull subscriber needs a bucket for its code (--bucket)")
    account, subscription = target.account(PULL_ACCOUNT), names.PULL_SUBSCRIPTION
    source = f"gs://{target.bucket}/subscribers/{archive.name}"
    settings = {
        "clickstream-source": source,
        "clickstream-subscription": subscription,
        "clickstream-dataset": target.dataset,
        "clickstream-health-port": HEALTH_PORT,
    }
    metric_filter = (
        'resource.type = "pubsub_subscription" AND '
        f'resource.labels.subscription_id = "{subscription}"'
    )
    return [
        _gcloud(target, "storage", "cp", str(archive), source),
        _gcloud(
            target,
            *("storage", "buckets", "add-iam-policy-binding", f"gs://{target.bucket}"),
            *(f"--member=serviceAccount:{account}", "--role=roles/storage.objectViewer"),
        ),
        _gcloud(
            target,
            *("compute", "firewall-rules", "create", f"{GROUP}-health-checks"),
            *(f"--network={target.network}", "--direction=INGRESS", "--action=ALLOW"),
            *(f"--rules=tcp:{HEALTH_PORT}", f"--source-ranges={','.join(HEALTH_CHECKER_RANGES)}"),
            f"--target-tags={GROUP}",
        ),
        _gcloud(
            target,
            *("compute", "health-checks", "create", "http", HEALTH_CHECK),
            *(f"--port={HEALTH_PORT}", "--request-path=/healthz", "--check-interval=10s"),
            *("--timeout=5s", "--healthy-threshold=1", "--unhealthy-threshold=3"),
        ),
        _gcloud(
            target,
            *("compute", "instance-templates", "create", GROUP),
            *(f"--machine-type={target.machine_type}", f"--network={target.network}"),
            *("--image-family=debian-12", "--image-project=debian-cloud"),
            *(f"--service-account={account}", "--scopes=cloud-platform", f"--tags={GROUP}"),
            "--shielded-secure-boot",
            f"--metadata-from-file=startup-script={STARTUP_SCRIPT}",
            "--metadata=" + ",".join(f"{k}={v}" for k, v in settings.items()),
        ),
        _gcloud(
            target,
            *("compute", "instance-groups", "managed", "create", GROUP),
            *(f"--region={target.region}", f"--template={GROUP}", "--size=1"),
            *(f"--base-instance-name={GROUP}", f"--health-check={HEALTH_CHECK}"),
            "--initial-delay=300",  # the startup script installs Python packages first
        ),
        _gcloud(
            target,
            *("compute", "instance-groups", "managed", "set-autoscaling", GROUP),
            *(f"--region={target.region}", "--min-num-replicas=1"),
            f"--max-num-replicas={target.max_replicas}",
            f"--update-stackdriver-metric={BACKLOG_METRIC}",
            f"--stackdriver-metric-filter={metric_filter}",
            f"--stackdriver-metric-single-instance-assignment={target.backlog_per_instance}",
            "--cool-down-period=300",
        ),
    ]


def runtime_requirements(roots: Iterable[str] = RUNTIME_ROOTS) -> list[str]:
    """Exact pins (``name==version``, from this environment, installed from the lock) of
    ``roots`` and everything they need on Linux with this Python, extras included."""
    pins: dict[str, str] = {}
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset()) for root in roots]
    seen: set[tuple[str, frozenset]] = set()
    while pending:
        name, extras = pending.pop()
        if (name.lower(), extras) in seen:
            continue
        seen.add((name.lower(), extras))
        dist = importlib.metadata.distribution(name)
        pins[dist.metadata["Name"].lower()] = f"{dist.metadata['Name']}=={dist.version}"
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return sorted(pins.values(), key=str.lower)


def copy_packages(destination: Path, packages: Iterable[str]) -> None:
    """The packages as installed: folder ``<name>/`` is ``clickstream.<name>`` (setup.py)."""
    for package in packages:
        shutil.copytree(
            ROOT / package,
            destination / "clickstream" / package,
            ignore=shutil.ignore_patterns("__pycache__"),
            dirs_exist_ok=True,
        )


def _copy_sources(destination: Path) -> None:
    copy_packages(destination, SOURCE_PACKAGES)
    (destination / "requirements.txt").write_text("\n".join(runtime_requirements()) + "\n")


def stage_function(build_dir: Path) -> Path:
    """The Cloud Run function's source directory: the packages, requirements.txt and a
    ``main.py`` exposing ``receive``."""
    destination = build_dir / "push-function"
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    _copy_sources(destination)
    (destination / "main.py").write_text(
        '"""Entry point of the Cloud Run function: the push subscriber."""\n\n'
        "from clickstream.subscribers.push import receive\n\n"
        '__all__ = ["receive"]\n'
    )
    return destination


def stage_archive(build_dir: Path) -> Path:
    """The pull subscriber's code for the VMs: the packages and requirements.txt, as tar.gz."""
    staging = build_dir / "pull-source"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _copy_sources(staging)
    archive = build_dir / "clickstream-subscribers.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(staging.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


class DeployError(RuntimeError):
    """A deployment command failed."""


def execute(commands: Iterable[list[str]], dry_run: bool) -> None:
    """Print each command as a shell line; unless ``dry_run``, run that very line with bash,
    stopping at the first failure (``DeployError``) but for a create whose resource exists
    already (kept as it is: a second deployment goes on past it)."""
    for command in commands:
        text = shell.line(command)
        print(text, flush=True)
        if dry_run:
            continue
        run = subprocess.run(["bash", "-c", text], stderr=subprocess.PIPE, text=True)
        sys.stderr.write(run.stderr)
        if run.returncode and "create" in command and "already exists" in run.stderr.lower():
            print("# exists already: kept as it is", flush=True)
        elif run.returncode:
            raise DeployError(f"this command failed (exit {run.returncode}): {text}")
