"""The orchestration on Google Cloud, as gcloud steps of the one plan
(``clickstream.deploy.gcloud``; ``clickstream plan --only orchestration``): what goes into the
Composer environment's DAGs folder, the trigger function's source, and the steps that put them
there.

Composer installs no package of ours: the DAG imports the catalog's core and its lineage client,
so the DAGs folder gets them beside the DAG file, as the package layout has it
(``clickstream/core``, ``clickstream/metadata``, ``clickstream/gcp``; ``.airflowignore`` keeps the
scheduler from parsing them as DAGs), with a digest of what is staged, which the plan compares.
The local Airflow reads the same staged folder (``local_airflow.py``).

The files-processed topic and the subscription ``clickstream subscribe files`` reads are part of
the catalog's Pub/Sub plan, and who may do what (the environment's account launching Dataflow
jobs that run as the workers' account, publishing to the topic, recording lineage; the trigger's
account receiving the bucket's events, invoking the function, calling Airflow) is
``clickstream.deploy.access``, from which the plan grants it. The steps, in order:

- ``environment_steps``: the Composer environment, running as its own service account, with the
  lineage client library the DAG uses;
- ``dags_steps``: the DAG's settings (Airflow variable ``clickstream_orchestration``), then the
  DAG and the core it imports;
- ``trigger_steps``: the trigger function (Cloud Run functions, gen2) on the bucket's finalize
  events with retries, and its account's Airflow role (``Op``: may trigger DAG runs).
"""

import json
import shutil
from pathlib import Path

from clickstream.core import landing, names, shell, templates
from clickstream.deploy import subscribers
from clickstream.deploy.gcloud import Step, content_digest
from clickstream.deploy.settings import Settings

HERE = Path(__file__).resolve().parent
DAG_FILE = HERE / "dags" / f"{names.FILE_LANDED_DAG}.py"
LOCAL_DATAFLOW = HERE / "dags" / "local_dataflow.py"
AIRFLOW_IGNORE = HERE / "dags" / ".airflowignore"
DAG_PACKAGES = ("core", "metadata", "gcp")  # what the DAG imports: Beam-free
TRIGGER = HERE / "trigger.py"
FUNCTION_ROOTS = ("functions-framework", "google-auth", "requests")
DAG_IMPORTS = (".airflowignore", "clickstream", f"{names.FILE_LANDED_DAG}.py")  # the DAG last
DIGEST_FILE = "clickstream/STAGED_DIGEST"  # in the DAGs folder: the digest of what was staged
SETTINGS_VARIABLE = "clickstream_orchestration"
PYPI_PACKAGES = ("google-cloud-datacatalog-lineage==0.7.1",)  # what the DAG needs beyond Composer


def worker_image(settings: Settings) -> str:
    """The migration template's image, which its workers must run (the launch's
    ``sdkContainerImage``): the stock Beam container lacks the catalog."""
    where = (settings.project, settings.region, settings.repository, settings.tag)
    return templates.image(names.MIGRATION_TEMPLATE, *where)


def dag_settings(settings: Settings) -> dict:
    """The DAG's ``clickstream_orchestration`` variable: where the template file is, and the
    launch's environment: the workers' image and account, and where they keep temporary files."""
    return {
        "project": settings.project,
        "region": settings.region,
        "template_bucket": settings.ops_bucket,
        "dataset": settings.dataset,
        "topic": names.FILES_PROCESSED_TOPIC,
        "composer_environment": settings.composer_environment,
        "environment": {
            "sdkContainerImage": worker_image(settings),
            "serviceAccountEmail": settings.account(names.DATAFLOW_ACCOUNT),
            "tempLocation": f"gs://{settings.ops_bucket}/temp/",
        },
    }


def _gcloud(settings: Settings, *args: str) -> list[str]:
    """A gcloud command in the project (the flag before a ``--``: what follows is Airflow's)."""
    end = args.index("--") if "--" in args else len(args)
    return ["gcloud", *args[:end], f"--project={settings.project}", *args[end:]]


def _where(settings: Settings) -> tuple[str, str]:
    return settings.composer_environment, f"--location={settings.region}"


def _describe(settings: Settings, field: str) -> str:
    """A field of the environment, read by the shell when the step runs."""
    environment, location = _where(settings)
    return (
        f"$(gcloud composer environments describe {environment} {location} "
        f"--project={settings.project} --format='value({field})')"
    )


def airflow_api(settings: Settings) -> str:
    """The Airflow REST API's version of the environment's image: v1 (Airflow 2), v2 (3)."""
    return "v2" if "-airflow-3" in settings.composer_image else "v1"


def environment_steps(settings: Settings) -> list[Step]:
    environment, location = _where(settings)
    describe = ("composer", "environments", "describe", environment, location)
    return [
        Step(
            f"composer-environment {environment}",
            _gcloud(
                settings,
                *("composer", "environments", "create", environment, location),
                f"--image-version={settings.composer_image}",
                f"--service-account={settings.account(names.COMPOSER_ACCOUNT)}",
            ),
            _gcloud(settings, *describe, "--format=value(state)"),
            "RUNNING",
            undo=_gcloud(
                settings, "composer", "environments", "delete", environment, location, "--quiet"
            ),
        ),
        Step(
            f"composer-packages {environment}",
            _gcloud(
                settings,
                *("composer", "environments", "update", environment, location),
                *(f"--update-pypi-package={package}" for package in PYPI_PACKAGES),
            ),
            shell.line(_gcloud(settings, *describe, "--format=value(config.softwareConfig)"))
            + "".join(f" | grep -qF {p.split('==')[0]}" for p in PYPI_PACKAGES),
        ),
    ]


def dags_steps(settings: Settings, dags: Path) -> list[Step]:
    """``dags``: the folder from ``stage_dags``."""
    environment, location = _where(settings)
    run = ("composer", "environments", "run", environment, location)
    value = json.dumps(dag_settings(settings), sort_keys=True)
    prefix = _describe(settings, "config.dagGcsPrefix")
    imports = [
        _gcloud(
            settings,
            *("composer", "environments", "storage", "dags", "import"),
            f"--environment={environment}",
            location,
            f"--source={dags / name}",
        )
        for name in DAG_IMPORTS
    ]
    return [
        Step(
            f"airflow-variable {SETTINGS_VARIABLE}",
            _gcloud(settings, *run, "variables", "set", "--", SETTINGS_VARIABLE, value),
            _gcloud(settings, *run, "variables", "get", "--", SETTINGS_VARIABLE),
            value,
        ),
        *(
            Step(
                f"dags {name}",
                command,
                f"gcloud storage cat {prefix}/{DIGEST_FILE} --project={settings.project}",
                (dags / DIGEST_FILE).read_text(),
            )
            for name, command in zip(DAG_IMPORTS, imports, strict=True)
        ),
    ]


def trigger_steps(settings: Settings, source: Path) -> list[Step]:
    """``source``: the function's directory, from ``stage_function``."""
    account = settings.account(names.TRIGGER_ACCOUNT)
    environment = {
        "AIRFLOW_URL": _describe(settings, "config.airflowUri"),
        "AIRFLOW_API": airflow_api(settings),
        "AIRFLOW_AUTH": "google",
        "LANDING_PREFIX": names.LANDING_PREFIX,
        "DAG_ID": names.FILE_LANDED_DAG,
    }
    flags = [
        "--entry-point=on_file_landed",
        f"--trigger-event-filters=type={landing.FINALIZED}",
        f"--trigger-event-filters=bucket={settings.bucket}",
        *("--retry", f"--service-account={account}", f"--trigger-service-account={account}"),
        *("--memory=256Mi", "--timeout=60s", "--max-instances=10"),
    ]
    environment_name, location = _where(settings)
    run = ("composer", "environments", "run", environment_name, location)
    return [
        *subscribers.function_steps(settings, names.TRIGGER_FUNCTION, source, flags, environment),
        Step(  # Airflow's own access control: may trigger DAG runs
            f"airflow-role Op {account}",
            _gcloud(settings, *run, "users", "add-role", "--", "-e", account, "-r", "Op"),
            shell.line(_gcloud(settings, *run, "users", "list", "--", "-o", "plain"))
            + f" | grep -w {account} | grep -qw Op",
        ),
    ]


def stage_dags(destination: Path, local: bool = False) -> Path:
    """The DAGs folder's contents in ``destination`` (emptied first): the DAG, the core it
    imports, ``.airflowignore``; ``local`` adds the Dataflow stand-in."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    for source in (DAG_FILE, AIRFLOW_IGNORE, *([LOCAL_DATAFLOW] if local else [])):
        shutil.copy2(source, destination / source.name)
    subscribers.copy_packages(destination, DAG_PACKAGES)
    (destination / DIGEST_FILE).write_text(content_digest(destination)[:16])
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
