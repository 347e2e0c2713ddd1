"""The orchestration on the local stack, end to end with real parts: Airflow (its api-server,
scheduler and dag-processor, from ``.venv-airflow``, on SQLite in a home of its own) reading the
staged DAGs folder, the trigger function served by the Functions Framework, and the fake Eventarc
trigger that turns new objects in the local bucket into finalize events for it.

What stands in for Google Cloud: the emulators (Pub/Sub, BigQuery, Cloud Storage), the fake Eventarc
(``clickstream.fakes.eventarc``, no identities checked), the fake Dataflow API
(``clickstream.fakes.dataflow``, in this process: the DAG's provider operator and hook talk to it,
``dags/local_dataflow.py``), and Airflow's simple auth manager with everyone an admin (the function
sends no token; Composer's web server takes a Google one). The fake Dataflow checks each launch as
Dataflow does (the template file, which gcloud writes as ``flex-template build`` does, its
parameters, the worker image) and runs each job with Beam's local runner (``clickstream template
run``); it checks no identities.

``running`` starts them all, waits until the DAG is parsed, and stops them on exit; the clients must
already point at the emulators (``clickstream.cli.local.use_local_stack``)."""

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import cast

import requests
from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from clickstream.core import names, templates
from clickstream.deploy import gcloud
from clickstream.fakes import dataflow, eventarc, platform
from clickstream.gcp import bigquery_tables, pubsub
from clickstream.orchestration import deployment

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = ROOT / ".venv-airflow"  # make airflow
TRIGGER_SOURCE = Path(__file__).with_name("trigger.py")
READY_TIMEOUT = 180.0  # seconds until the api-server answers and the DAG is parsed
STOP_TIMEOUT = 15.0
POLL = 0.5
COMPONENTS = ("api-server", "scheduler", "dag-processor")
# An Airflow component exits on a database error it does not handle (the scheduler on SQLite's
# "database is locked" under many runs); Composer's Kubernetes starts it again, so does this.
RESTARTS = 3
REGION = "local"  # the Dataflow region of the local stack
IMAGE_TAG = "local"  # the template image's tag: locally, the image is the checked-out code
OUTPUT_TAIL = 3000  # characters of a failed command's output in its error
PARALLELISM = 4  # Airflow's tasks at a time


class OrchestrationError(RuntimeError):
    """The local orchestration could not start (no Airflow environment, a DAG import error...)."""


@dataclasses.dataclass(frozen=True)
class Local:
    """Where the local orchestration runs."""

    project: str
    home: Path  # AIRFLOW_HOME: the SQLite database, the staged DAGs, logs
    airflow_port: int = 8090
    function_port: int = 8091
    dataset: str = names.DATASET
    airflow_venv: Path = AIRFLOW_VENV

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def function_url(self) -> str:
        return f"http://127.0.0.1:{self.function_port}/"

    @property
    def dags(self) -> Path:
        return self.home / "dags"

    @property
    def database(self) -> Path:
        return self.home / "airflow.db"

    @property
    def image(self) -> str:
        """The migration template's image, named as on Google Cloud; locally, the checked-out
        code (``clickstream template run``) is that image."""
        where = (self.project, REGION, names.IMAGE_REPOSITORY, IMAGE_TAG)
        return templates.image(names.MIGRATION_TEMPLATE, *where)

    def settings(self) -> dict:
        """The DAG's variable: the local project, its bucket holds the template file, the
        workers run the template's image."""
        return {
            "project": self.project,
            "region": REGION,
            "template_bucket": self.project,
            "dataset": self.dataset,
            "environment": {"sdkContainerImage": self.image},
        }

    def airflow_env(self, dataflow_endpoint: str, settings: dict | None = None) -> dict[str, str]:
        """Airflow's configuration (environment variables), on top of the current environment
        (which points the clients at the emulators), with the local Dataflow's endpoint and the
        DAG's ``settings`` (default: the local stack's)."""
        return {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # SQLite under many runs: writers wait for the lock instead of failing at once;
            # few tasks at a time on a laptop's cores.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.database}?timeout=120",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            # ... and the tasks wait for the API server as long (default 5 s: a task whose
            # report times out while SQLite is locked fails for nothing).
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "120",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",  # seconds; Composer's default: 300
            "AIRFLOW__API__PORT": str(self.airflow_port),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW_VAR_CLICKSTREAM_ORCHESTRATION": json.dumps(settings or self.settings()),
            # Google's hooks find the stand-in metadata server's credentials (emulator_env).
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                {"conn_type": "google_cloud_platform", "extra": {"project": self.project}}
            ),
            "CLICKSTREAM_LOCAL_DATAFLOW": dataflow_endpoint,
        }

    def function_env(self) -> dict[str, str]:
        return {**os.environ, "AIRFLOW_URL": self.airflow_url, "AIRFLOW_AUTH": "none"}


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as handle:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its children
        )


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _alive(local: Local, processes: list[subprocess.Popen]) -> None:
    """Raise OrchestrationError when a component has exited."""
    for process in processes:
        if process.poll() is not None:
            raise OrchestrationError(
                f"{' '.join(cast(list[str], process.args)[:3])} exited ({process.returncode}); see "
                f"{local.home / 'logs'}"
            )


def _wait_for_server(local: Local, process: subprocess.Popen, url: str) -> None:
    """Until ``process`` answers HTTP at ``url`` (any status); raise if it exits or is late."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        _alive(local, [process])
        with contextlib.suppress(requests.RequestException):  # not listening yet, or slow
            requests.get(url, timeout=5)
            return
        time.sleep(POLL)
    raise OrchestrationError(f"{url} did not answer after {READY_TIMEOUT:.0f} s")


def _wait_for_dag(local: Local, processes: list[subprocess.Popen]) -> None:
    """Until the api-server lists the DAG; raise with the import error or a dead component."""
    deadline = time.monotonic() + READY_TIMEOUT
    api = f"{local.airflow_url}/api/v2"
    while time.monotonic() < deadline:
        _alive(local, processes)
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{api}/dags/{names.FILE_LANDED_DAG}", timeout=5).ok:
                return
            errors = requests.get(f"{api}/importErrors", timeout=5).json()
            if errors.get("import_errors"):
                raise OrchestrationError(
                    "the DAG does not import: " + errors["import_errors"][0]["stack_trace"]
                )
        time.sleep(POLL)
    raise OrchestrationError(f"the DAG was not ready after {READY_TIMEOUT:.0f} s")


def template_spec(local: Local) -> bytes:
    """The migration template's file for the local image, as ``gcloud dataflow flex-template
    build`` writes it."""
    where = (local.project, REGION, local.project, names.IMAGE_REPOSITORY, IMAGE_TAG)
    try:
        return gcloud.template_file(
            templates.build_commands(names.MIGRATION_TEMPLATE, *where)[-1]
        ).encode()
    except gcloud.StepError as error:
        raise OrchestrationError(str(error)) from None


def run_job(job: dataflow.Job, logs: Path) -> dataflow.Counters:
    """A job of the local Dataflow, run by Beam's local runner: ``clickstream template run``
    with the template's parameters (its output in ``logs/JOB_ID.log``); its counters."""
    name = PurePosixPath(job.template).stem  # gs://BUCKET/templates/NAME.json
    log = logs / f"{job.id}.log"
    with tempfile.TemporaryDirectory() as scratch:
        counters = Path(scratch, "counters.json")
        command = [sys.executable, "-m", "clickstream.cli", "template", "run", name]
        command += ["--counters", str(counters)]
        for key, value in job.parameters.items():
            command += ["--param", f"{key}={value}"]
        with log.open("w") as output:
            run = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT)
        if run.returncode:
            tail = log.read_text(errors="replace")[-OUTPUT_TAIL:]
            raise RuntimeError(f"clickstream template run {name} exited {run.returncode}: {tail}")
        return {names.COUNTER_NAMESPACE: json.loads(counters.read_text())}


@contextlib.contextmanager
def local_dataflow(local: Local, client: storage.Client) -> Iterator[dataflow.FakeDataflow]:
    """The fake Dataflow API of the local project, with the migration template's file in the
    local bucket and its image pushed; its jobs run with ``run_job``."""
    project = platform.new_project(local.project)
    project.enabled.add(dataflow.SERVICE)
    project.images.add(local.image)
    path = templates.template_file(names.MIGRATION_TEMPLATE, local.project)
    storage.Blob.from_uri(path, client).upload_from_string(template_spec(local))
    logs = local.home / "logs" / "dataflow"
    logs.mkdir(parents=True, exist_ok=True)

    def read(url: str) -> bytes | None:
        try:
            return storage.Blob.from_uri(url, client).download_as_bytes()
        except NotFound:
            return None

    fake = dataflow.FakeDataflow(project, read, lambda job: run_job(job, logs))
    try:
        yield fake
    finally:
        fake.stop()


@contextlib.contextmanager
def airflow(
    local: Local,
    dataflow_endpoint: str,
    settings: dict | None = None,
    environment: dict[str, str] | None = None,
) -> Iterator[Callable[[], None]]:
    """Airflow on the staged DAGs folder, its DAG's variable ``settings`` (default: the local
    stack's), its Dataflow at ``dataflow_endpoint``, with ``environment`` over its own (e.g.
    who it runs as); stopped on exit. Yields a check that raises OrchestrationError once a
    component has died."""
    command = local.airflow_venv / "bin" / "airflow"
    if not command.is_file():
        raise OrchestrationError(
            f"no Airflow environment at {local.airflow_venv}: run `make airflow`"
        )
    logs = local.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    deployment.stage_dags(local.dags, local=True)
    env = {**local.airflow_env(dataflow_endpoint, settings), **(environment or {})}
    migrate = subprocess.run(
        [str(command), "db", "migrate"], env=env, capture_output=True, text=True
    )
    if migrate.returncode:
        raise OrchestrationError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}")
    # Write-ahead logging (kept in the file): readers and the one writer stop blocking each other.
    with contextlib.closing(sqlite3.connect(local.database)) as database:
        database.execute("PRAGMA journal_mode=WAL")
    processes = [
        _start([str(command), component], env, logs / f"{component}.log")
        for component in COMPONENTS
    ]
    restarts = dict.fromkeys(COMPONENTS, 0)

    def revive() -> None:
        """Start again a component that exited (``RESTARTS`` times each at most)."""
        for index, process in enumerate(processes):
            args = cast(list[str], process.args)
            if process.poll() is None or restarts[args[1]] == RESTARTS:
                continue
            restarts[args[1]] += 1
            processes[index] = _start(args, env, logs / f"{args[1]}.log")
        _alive(local, processes)

    try:
        _wait_for_dag(local, processes)
        yield revive
    finally:
        _stop(processes)


@contextlib.contextmanager
def running(local: Local) -> Iterator[dataflow.FakeDataflow]:
    """Stage the DAGs, start the local Dataflow, Airflow, the trigger function and the bucket's
    Eventarc trigger; stop them on exit. Yields the local Dataflow (its jobs)."""
    bigquery_tables.ensure_tables(local.project, local.dataset)
    pubsub.ensure_subscription(
        local.project, names.FILES_PROCESSED_SUBSCRIPTION, names.FILES_PROCESSED_TOPIC
    )
    client = storage.Client(project=local.project, credentials=AnonymousCredentials())
    with local_dataflow(local, client) as jobs, airflow(local, jobs.endpoint):
        command = [  # the Functions Framework's server, as on Cloud Run
            *(sys.executable, "-m", "functions_framework", "--target", "on_file_landed"),
            *("--source", str(TRIGGER_SOURCE), "--signature-type", "cloudevent"),
            *("--host", "127.0.0.1", "--port", str(local.function_port)),
        ]
        function = _start(command, local.function_env(), local.home / "logs" / "trigger.log")
        stop = threading.Event()
        try:
            _wait_for_server(local, function, local.function_url)
            triggers = eventarc.FakeEventarc(client)
            triggers.add(eventarc.Trigger(local.project, local.function_url))
            threading.Thread(target=triggers.run, args=(stop,), daemon=True).start()
            yield jobs
        finally:
            stop.set()
            _stop([function])
