"""A fake Google Cloud project on loopback, over the local stack's emulators: every fake of
``clickstream.fakes`` sharing one project (enabled APIs, service accounts, IAM), the gcloud
stand-in (``stand_ins``), and the functions and VMs it deploys run as local processes. While it
is open, the process's clients (and every process it starts) talk to it
(``CLICKSTREAM_ENDPOINTS``, and the emulator variables pointed at the fronts)."""

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from clickstream.core import names, ports
from clickstream.deploy.settings import Settings
from clickstream.fakes import bigquery, dataplex, eventarc, lineage, monitoring, platform, pubsub
from clickstream.fakes import storage as fake_storage
from clickstream.gcp import clients
from clickstream.project import stand_ins

READY_SECONDS = 60.0
NUMBER = "424242424242"


@dataclasses.dataclass
class Processes:
    """The local processes the stand-in started, with their logs."""

    logs: Path
    started: list[subprocess.Popen] = dataclasses.field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None):
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.started.append(process)
        return process

    def stop(self) -> None:
        """Each process with its children (its own process group)."""
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


class FakeCloud:
    """The fake project ``project_id`` (``work``: its scratch folder). Needs the local stack's
    emulators (their variables in the environment)."""

    def __init__(self, project_id: str, region: str, work: Path, email: str = "oncall@example.com"):
        self.project_id, self.region, self.work, self.email = project_id, region, work, email
        self.airflow_port = ports.free_port()
        self.pull_health = ""  # the pull subscriber's /healthz, once its group runs
        self.processes = Processes(work / "logs")
        self._saved: dict[str, str] = {}
        self._stop = threading.Event()

    def settings(self, **changes) -> Settings:
        """The deployment's settings on this project."""
        return Settings(
            self.project_id,
            self.region,
            self.email,
            project_number=NUMBER,
            members={"analysts": ("group:analysts@example.com",)},
            **changes,
        )

    def __enter__(self) -> "FakeCloud":
        env = os.environ
        self.project = platform.new_project(self.project_id, NUMBER)
        self.platform = platform.FakePlatform(self.project)
        self.pubsub = pubsub.FakePubSub(env["PUBSUB_EMULATOR_HOST"], project=self.project)
        self.storage = fake_storage.FakeStorage(env["STORAGE_EMULATOR_HOST"], self.project)
        self.bigquery = bigquery.FakeBigQuery(env["BIGQUERY_EMULATOR_HOST"], self.project)
        self.monitoring = monitoring.FakeGoogle(project=self.project).__enter__()
        self.dataplex = dataplex.FakeDataplex(self.project)
        self.lineage = lineage.FakeLineage(self.project)
        self.bigquery.on_table = self._list_in_dataplex
        endpoints = {
            "platform": self.platform.server.address,
            "pubsub": self.pubsub.address,
            "storage": self.storage.url,
            "bigquery": self.bigquery.url,
            "monitoring": self.monitoring.endpoint,
            "dataplex": self.dataplex.server.address,
            "lineage": self.lineage.server.address,
        }
        self._saved = {
            key: env.get(key, "")
            for key in (
                clients.ENDPOINTS_ENV,
                "PUBSUB_EMULATOR_HOST",
                "STORAGE_EMULATOR_HOST",
                "BIGQUERY_EMULATOR_HOST",
                "GOOGLE_CLOUD_PROJECT",
                "PATH",
                names.LINEAGE_FILE_ENV,
            )
        }
        env.pop(names.LINEAGE_FILE_ENV, None)  # lineage goes to the fake Data Lineage API
        env.update(
            {
                clients.ENDPOINTS_ENV: json.dumps(endpoints),
                "PUBSUB_EMULATOR_HOST": self.pubsub.address,
                "STORAGE_EMULATOR_HOST": self.storage.url,
                "BIGQUERY_EMULATOR_HOST": self.bigquery.url,
                "GOOGLE_CLOUD_PROJECT": self.project_id,
            }
        )
        gcs = storage.Client(
            project=self.project_id,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.storage.url},
        )
        self.eventarc = eventarc.FakeEventarc(gcs, self.project)
        threading.Thread(target=self.eventarc.run, args=(self._stop,), daemon=True).start()
        self.gcloud = stand_ins.GcloudStandIn(
            self.project,
            self.storage.url,
            self.work / "gcloud",
            self._start_function,
            self._start_pull,
            self.eventarc,
        )
        self.gcloud.airflow_uri = f"http://127.0.0.1:{self.airflow_port}"
        env["PATH"] = f"{self.gcloud.bin}{os.pathsep}{env['PATH']}"  # gcloud: the stand-in
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.gcloud.stop()
        self.processes.stop()
        for fake in (
            self.platform,
            self.pubsub,
            self.storage,
            self.bigquery,
            self.dataplex,
            self.lineage,
        ):
            fake.stop()
        self.monitoring.__exit__()
        for key, value in self._saved.items():
            if value:
                os.environ[key] = value
            else:
                os.environ.pop(key, None)

    def _list_in_dataplex(self, project: str, dataset: str, table: str, columns: list[str]) -> None:
        """Dataplex lists every BigQuery table in the catalog (its ``@bigquery`` entries)."""
        location = self.settings().dataset_location.lower()
        group = f"projects/{project}/locations/{location}/entryGroups/@bigquery"
        path = f"projects/{project}/datasets/{dataset}/tables/{table}"
        self.dataplex.add_table(f"{group}/entries/bigquery.googleapis.com/{path}", columns)

    # What the stand-in deploys, as local processes

    def _wait(self, url: str, process: subprocess.Popen, name: str) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise stand_ins.StandInError(f"{name} exited ({process.returncode})")
            with contextlib.suppress(requests.RequestException):
                requests.get(url, timeout=2)
                return
            time.sleep(0.2)
        raise stand_ins.StandInError(f"{name} did not start in {READY_SECONDS:.0f} s")

    def _start_function(self, name, source, entry_point, kind, environment):
        """A Cloud Run function: the Functions Framework on loopback, its environment as
        deployed but for what only Google Cloud gives (push tokens, Google-authenticated calls
        to Composer's web server), and its event trigger registered with the fake Eventarc."""
        port = ports.free_port()
        local = dict(environment)
        if name == names.PUSH_FUNCTION:  # the emulator pushes without an OIDC token
            local.pop("PUSH_AUDIENCE", None)
            local.pop("PUSH_SERVICE_ACCOUNT", None)
        if name == names.TRIGGER_FUNCTION:  # the local Airflow: Airflow 3, no Google sign-in
            local.update(AIRFLOW_AUTH="none", AIRFLOW_API="v2")
        command = [
            *(sys.executable, "-m", "functions_framework", "--target", entry_point),
            *("--source", str(source / "main.py"), "--signature-type", kind),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]
        process = self.processes.start(name, command, {**os.environ, **local}, cwd=source)
        url = f"http://127.0.0.1:{port}/"
        self._wait(url, process, f"function {name}")
        return url, process

    def _start_pull(self, metadata: dict[str, str]) -> subprocess.Popen:
        """The pull subscriber, as the VMs' startup script runs it."""
        port = ports.free_port()
        command = [
            *(sys.executable, "-m", "clickstream.subscribers.pull", "--project", self.project_id),
            *("--subscription", metadata["clickstream-subscription"]),
            *("--dataset", metadata["clickstream-dataset"], "--health-port", str(port)),
        ]
        process = self.processes.start("pull", command, dict(os.environ))
        self.pull_health = f"http://127.0.0.1:{port}/healthz"
        self._wait(self.pull_health, process, "the pull subscriber")
        return process
