"""The subscribers on Google Cloud, as gcloud steps of the one plan (``clickstream.deploy.gcloud``;
the project's plan, ``clickstream plan --only subscribers``, orders them after the Pub/Sub
subscriptions they read):

- ``push_steps``: the push subscriber as a Cloud Run function (HTTP, no unauthenticated access),
  its source's digest in its environment, so a change of code is a change of the plan;
- ``pull_steps``: the pull subscriber on a regional managed instance group: its code in the ops
  bucket (named by its digest), an instance template whose startup script
  (``deploy/startup.sh``) installs that code and runs it under systemd (named by the digest of
  everything it holds, so new code or settings are a new template the group rolls to),
  autohealing with an HTTP health check on ``/healthz``, and an autoscaler on the subscription's
  backlog (``num_undelivered_messages``).

Who may do what (the service accounts, the writers' Data Editor on the six analyst tables, the
invoker's Cloud Run Invoker on the function, the pull subscriber's Subscriber role on its
subscription and Storage Object Viewer on the ops bucket, the Pub/Sub service agent's Token
Creator on the invoker) is in ``clickstream.deploy.access``, from which the plan grants it.
"""

import gzip
import hashlib
import importlib.metadata
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement

from clickstream.core import names
from clickstream.deploy.gcloud import Step, content_digest
from clickstream.deploy.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SCRIPT = Path(__file__).with_name("startup.sh")
SOURCE_PACKAGES = ("core", "gcp", "metadata", "subscribers")  # what the subscribers import
RUNTIME_ROOTS = (
    "fastjsonschema",
    "functions-framework",
    "google-cloud-bigquery",
    "google-cloud-pubsub",
    "jsonschema_rs",  # the distribution's own spelling, as its pin reads
    "orjson",
)
GROUP = names.PULL_GROUP  # instance group, base instance name and network tag
HEALTH_CHECK = "clickstream-pull-health"
HEALTH_PORT = 8080
HEALTH_CHECKER_RANGES = ("35.191.0.0/16", "130.211.0.0/22")  # Google's health checkers
BACKLOG_METRIC = "pubsub.googleapis.com/subscription/num_undelivered_messages"
MACHINE_TYPE = "e2-small"
MAX_REPLICAS = 5
BACKLOG_PER_INSTANCE = 5000  # undelivered messages one VM is expected to handle
FUNCTION_MAX_INSTANCES = 20
NETWORK = "default"
SOURCE_VARIABLE = "CLICKSTREAM_SOURCE"  # a function's environment: the digest of its source


def _gcloud(settings: Settings, *args: str) -> list[str]:
    return ["gcloud", *args, f"--project={settings.project}"]


def function_steps(
    settings: Settings,
    function: str,
    source: Path,
    flags: list[str],
    environment: dict[str, str],
) -> list[Step]:
    """A Cloud Run function deployed from ``source`` (2nd generation): deployed again when the
    digest of its source or its flags change, deleted with the deployment."""
    region = f"--region={settings.region}"
    digest = content_digest(source)[:16]
    variables = {**environment, SOURCE_VARIABLE: digest}
    command = _gcloud(
        settings,
        *("functions", "deploy", function, "--gen2", region, "--runtime=python311"),
        f"--source={source}",
        *flags,
        "--set-env-vars=" + ",".join(f"{k}={v}" for k, v in variables.items()),
    )
    field = f"serviceConfig.environmentVariables.{SOURCE_VARIABLE}"
    check = _gcloud(
        settings, "functions", "describe", function, "--gen2", region, f"--format=value({field})"
    )
    undo = _gcloud(settings, "functions", "delete", function, "--gen2", region, "--quiet")
    return [Step(f"function {function}", command, check, digest, undo)]


def push_steps(settings: Settings, source: Path) -> list[Step]:
    """``source``: the function's directory, from ``stage_function``."""
    url = f"https://{settings.region}-{settings.project}.cloudfunctions.net/{names.PUSH_FUNCTION}"
    environment = {
        "BIGQUERY_PROJECT": settings.project,
        "BIGQUERY_DATASET": settings.dataset,
        "PUSH_AUDIENCE": url,
        "PUSH_SERVICE_ACCOUNT": settings.account(names.INVOKER_ACCOUNT),
        "THREADS": "8",  # the Functions Framework's request threads: match the concurrency
    }
    flags = [
        *("--entry-point=receive", "--trigger-http", "--no-allow-unauthenticated"),
        f"--service-account={settings.account(names.PUSH_ACCOUNT)}",
        *("--memory=512Mi", "--cpu=1", "--concurrency=8", "--timeout=60s"),
        f"--max-instances={FUNCTION_MAX_INSTANCES}",
    ]
    return function_steps(settings, names.PUSH_FUNCTION, source, flags, environment)


def pull_steps(settings: Settings, archive: Path) -> list[Step]:
    """``archive``: the code as a tar.gz, from ``stage_archive``."""
    region, subscription = f"--region={settings.region}", names.PULL_SUBSCRIPTION
    code_digest = content_digest(archive)[:16]
    source = f"gs://{settings.ops_bucket}/subscribers/clickstream-subscribers-{code_digest}.tar.gz"
    metadata = {
        "clickstream-source": source,
        "clickstream-subscription": subscription,
        "clickstream-dataset": settings.dataset,
        "clickstream-health-port": HEALTH_PORT,
    }
    template_flags = [
        f"--machine-type={MACHINE_TYPE}",
        f"--network={NETWORK}",
        *("--image-family=debian-12", "--image-project=debian-cloud"),
        f"--service-account={settings.account(names.PULL_ACCOUNT)}",
        *("--scopes=cloud-platform", f"--tags={GROUP}", "--shielded-secure-boot"),
        f"--metadata-from-file=startup-script={STARTUP_SCRIPT}",
        "--metadata=" + ",".join(f"{k}={v}" for k, v in metadata.items()),
    ]
    held = "\n".join([*template_flags, STARTUP_SCRIPT.read_text()])
    template = f"{GROUP}-{hashlib.sha256(held.encode()).hexdigest()[:8]}"
    metric_filter = (
        'resource.type = "pubsub_subscription" AND '
        f'resource.labels.subscription_id = "{subscription}"'
    )
    compute = ("compute",)
    group = ("instance-groups", "managed")
    return [
        Step(
            f"object {source}",
            _gcloud(settings, "storage", "cp", str(archive), source),
            _gcloud(settings, "storage", "objects", "describe", source, "--format=value(name)"),
        ),
        Step(
            f"firewall {GROUP}-health-checks",
            _gcloud(
                settings,
                *compute,
                *("firewall-rules", "create", f"{GROUP}-health-checks"),
                *(f"--network={NETWORK}", "--direction=INGRESS", "--action=ALLOW"),
                f"--rules=tcp:{HEALTH_PORT}",
                f"--source-ranges={','.join(HEALTH_CHECKER_RANGES)}",
                f"--target-tags={GROUP}",
            ),
            _gcloud(settings, *compute, "firewall-rules", "describe", f"{GROUP}-health-checks"),
            undo=_gcloud(
                settings, *compute, "firewall-rules", "delete", f"{GROUP}-health-checks", "--quiet"
            ),
        ),
        Step(
            f"health-check {HEALTH_CHECK}",
            _gcloud(
                settings,
                *compute,
                *("health-checks", "create", "http", HEALTH_CHECK),
                *(f"--port={HEALTH_PORT}", "--request-path=/healthz", "--check-interval=10s"),
                *("--timeout=5s", "--healthy-threshold=1", "--unhealthy-threshold=3"),
            ),
            _gcloud(settings, *compute, "health-checks", "describe", HEALTH_CHECK),
            undo=_gcloud(settings, *compute, "health-checks", "delete", HEALTH_CHECK, "--quiet"),
        ),
        Step(
            f"instance-template {template}",
            _gcloud(settings, *compute, "instance-templates", "create", template, *template_flags),
            _gcloud(settings, *compute, "instance-templates", "describe", template),
            undo=_gcloud(settings, *compute, "instance-templates", "delete", template, "--quiet"),
        ),
        Step(
            f"instance-group {GROUP}",
            _gcloud(
                settings,
                *compute,
                *group,
                *("create", GROUP, region, f"--template={template}", "--size=1"),
                *(f"--base-instance-name={GROUP}", f"--health-check={HEALTH_CHECK}"),
                "--initial-delay=300",  # the startup script installs Python packages first
            ),
            _gcloud(
                settings,
                *compute,
                *group,
                *("describe", GROUP, region, "--format=value(instanceTemplate.basename())"),
            ),
            template,
            undo=_gcloud(settings, *compute, *group, "delete", GROUP, region, "--quiet"),
            update=_gcloud(
                settings,
                *compute,
                *group,
                *("rolling-action", "start-update", GROUP, region),
                f"--version=template={template}",
            ),
        ),
        Step(
            f"autoscaling {GROUP}",
            _gcloud(
                settings,
                *compute,
                *group,
                *("set-autoscaling", GROUP, region, "--min-num-replicas=1"),
                f"--max-num-replicas={MAX_REPLICAS}",
                f"--update-stackdriver-metric={BACKLOG_METRIC}",
                f"--stackdriver-metric-filter={metric_filter}",
                f"--stackdriver-metric-single-instance-assignment={BACKLOG_PER_INSTANCE}",
                "--cool-down-period=300",
            ),
            _gcloud(
                settings,
                *compute,
                *group,
                *("describe", GROUP, region),
                "--format=value(autoscaler.autoscalingPolicy.maxNumReplicas)",
            ),
            str(MAX_REPLICAS),
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
    with (
        gzip.GzipFile(archive, "wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w") as tar,
    ):
        for path in sorted(staging.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(staging)), recursive=False, filter=_same)
    return archive


def _same(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A member whose bytes depend on its content alone (the archive's digest names it)."""
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info
