"""Lab Task 4 end to end on the local stack, with real parts: files uploaded into the storage
emulator, the fake Eventarc's finalize events, the trigger function (Functions Framework) calling a
real Airflow's REST API, the DAG run by Airflow's scheduler with the provider's Dataflow operator
and hook against the fake Dataflow API (its jobs run by Beam's local runner), rows in the BigQuery
emulator, the messages on the Pub/Sub emulator, and ``clickstream subscribe files`` printing and
mailing them (to an SMTP sink)."""

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from aiosmtpd.controller import Controller
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from clickstream.core import landing, names
from clickstream.core.ports import free_ports
from clickstream.fakes import dataflow as fake_dataflow
from clickstream.fakes import eventarc
from clickstream.gcp import bigquery_tables
from clickstream.local import emulators
from clickstream.orchestration import local_airflow

DATASET = "orchestrated"
RUN_TIMEOUT = 300.0
LAB_FILE = "visits-2024-07-01.jsonl"  # 181 visits, 1,019 events
OTHER_FILE = "visits-2024-07-02.jsonl"


class MailSink:
    """An SMTP server on loopback keeping what it receives."""

    def __init__(self):
        self.mails: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture
def mail_sink():
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_ports(1)[0])
    controller.start()
    yield sink, controller.port
    controller.stop()


def wait_for_run(local: local_airflow.Local, file: landing.LandedFile) -> str:
    """The final state of the file's DAG run (it may not exist yet: Eventarc polls)."""
    url = f"{local.airflow_url}/api/v2/dags/{names.FILE_LANDED_DAG}/dagRuns/{file.run_id}"
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        try:  # Airflow's API on SQLite can be slow to answer while runs write: ask again
            response = requests.get(url, timeout=30)
        except requests.Timeout:
            continue
        if response.ok and response.json()["state"] in ("success", "failed"):
            return response.json()["state"]
        time.sleep(1)
    pytest.fail(f"run {file.run_id} did not finish in {RUN_TIMEOUT:.0f} s")


def runs(local: local_airflow.Local) -> list[str]:
    url = f"{local.airflow_url}/api/v2/dags/{names.FILE_LANDED_DAG}/dagRuns?limit=100"
    return sorted(run["dag_run_id"] for run in requests.get(url, timeout=60).json()["dag_runs"])


def upload(client: storage.Client, project: str, path) -> landing.LandedFile:
    [url] = emulators.upload([str(path)])
    blob = client.bucket(project).get_blob(url.removeprefix(f"gs://{project}/"))
    return landing.LandedFile(project, blob.name, blob.generation)


def count(table: str, where: str = "TRUE") -> int:
    bq = bigquery_tables.client()
    query = f"SELECT COUNT(*) FROM `{bq.project}.{DATASET}.{table}` WHERE {where}"
    return next(iter(bq.query(query).result()))[0]


def count_events(lines: list[bytes]) -> int:
    return sum(len(json.loads(line)["events"]) for line in lines)


def test_each_landed_file_runs_once_lands_in_bigquery_and_is_announced(
    stack, airflow_environment, lab_data, mail_sink, tmp_path
):
    sink, smtp_port = mail_sink
    # Visits of another day: 3 good ones, one with a bad event, and 2 lines that are not visits.
    lines = (lab_data / OTHER_FILE).read_bytes().splitlines(keepends=True)
    bad_event = lines[3].replace(b'"page_view"', b'"page_flip"', 1)
    assert bad_event != lines[3]
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_bytes(b"".join([*lines[:3], b"{not json\n", b"[1, 2]\n", bad_event]))
    gcs = storage.Client(project=stack.project, credentials=AnonymousCredentials())
    airflow_port, function_port = free_ports(2)
    local = local_airflow.Local(
        stack.project, tmp_path / "airflow", airflow_port, function_port, DATASET
    )
    with local_airflow.running(local) as dataflow:
        listener = subprocess.Popen(
            [
                *(sys.executable, "-m", "clickstream.cli", "subscribe", "files", "--count", "4"),
                *("--mail-to", "you@example.com", "--smtp-port", str(smtp_port)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        try:
            # A lab file and a malformed one land; an event arrives for an object that is gone.
            good = upload(gcs, stack.project, lab_data / LAB_FILE)
            bad = upload(gcs, stack.project, malformed)
            gone = landing.LandedFile(stack.project, "landing/gone.jsonl", "1")
            gone_data = {"bucket": gone.bucket, "name": gone.object, "generation": "1"}
            assert eventarc.deliver(local.function_url, gone_data) == 200
            assert [wait_for_run(local, f) for f in (good, bad, gone)] == [
                "success",
                "success",
                "failed",
            ]
            assert count("visits") == 181 + 4
            assert count("dead_letter", "level = 'visit'") == 2
            assert count("dead_letter", "level = 'event'") == 1

            # The lab file's event again (a redelivery): Airflow has its run; nothing starts.
            before = runs(local)
            good_data = {"bucket": good.bucket, "name": good.object, "generation": good.generation}
            assert eventarc.deliver(local.function_url, good_data) == 200
            assert runs(local) == before
            # The lab file again (a new generation): a new run, and no row twice.
            again = upload(gcs, stack.project, lab_data / LAB_FILE)
            assert again.generation != good.generation
            assert wait_for_run(local, again) == "success"
            assert runs(local) == sorted([*before, again.run_id])
            assert count("visits") == 181 + 4
            out, err = listener.communicate(timeout=120)
        finally:
            listener.kill()
    assert listener.returncode == 0, err
    told = {line.rsplit("; ", 1)[0] for line in out.splitlines()[1:]}  # without the job id
    processed = f"processed gs://{stack.project}/landing/"
    assert told == {
        f"{processed}{LAB_FILE} (generation {good.generation}): 181 records read, 181 visits "
        "loaded (181 new), 0 rejected; 1,019 events loaded, 0 rejected",
        f"{processed}malformed.jsonl (generation {bad.generation}): 6 records read, 4 visits "
        f"loaded (4 new), 2 rejected; {count_events(lines[:4]) - 1} events loaded, 1 rejected "
        f"(in {stack.project}.{DATASET}.dead_letter)",
        f"FAILED gs://{stack.project}/landing/gone.jsonl (generation 1): migration job "
        f"{gone.job_name} failed or did not start (task run_migration)",
        f"{processed}{LAB_FILE} (generation {again.generation}): 181 records read, 181 visits "
        "loaded (0 new), 0 rejected; 1,019 events loaded, 0 rejected",
    }, out
    assert len(sink.mails) == 4
    assert all("To: you@example.com" in mail for mail in sink.mails)
    # Each launch named the template's image for the workers, and Dataflow ran them on it.
    jobs = list(dataflow.jobs.values())
    assert {job.environment["sdkContainerImage"] for job in jobs} == {local.image}
    assert {job.worker_image for job in jobs} == {local.image}
    states = {f.job_name: set() for f in (good, bad, gone, again)}
    for job in jobs:
        states[job.name].add(job.state)
    assert states == {
        good.job_name: {fake_dataflow.DONE},
        bad.job_name: {fake_dataflow.DONE},
        gone.job_name: {fake_dataflow.FAILED},  # each attempt (the task's retries)
        again.job_name: {fake_dataflow.DONE},
    }
    assert {"flexTemplates.launch", "jobs.get", "jobs.getMetrics"} <= set(dataflow.calls)
