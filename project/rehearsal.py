"""The whole deployment rehearsed before anyone owns a project (``clickstream rehearse``), on a
fake Google Cloud project (``fake_cloud``) over the local stack:

1. plan on an empty project, apply every area, apply again (nothing changes), verify;
2. the lab's files land in the landing bucket and go through the whole chain: the bucket's
   finalize events (the fake Eventarc, checking the trigger's roles) reach the trigger
   function, which starts a run of the DAG in Airflow (which runs as the Composer
   environment's account), whose provider operator launches the batch migration's flex
   template on the fake Dataflow (checking the caller's roles, the worker account's, the
   template file and the worker image); the job runs in Beam's local runner, in this process:
   **that is where the rehearsal hands over from Google Cloud's fakes to the local runner**;
   then the DAG reads the job's counters, records lineage (the fake Data Lineage API) and
   announces the file on the files-processed topic;
3. traffic: the lab's visits published to the visits topic, through the push subscription
   (the Pub/Sub fake's relay, checking the invoker's role, to the push function) and the pull
   subscriber (the instance group's stand-in);
4. the counts, which must be the lab's (8,804 visits; 35,422 page views, 8,999 cart adds and
   2,213 purchases), however many paths the visits took;
5. verify (nothing missing or drifted), destroy, and verify again (everything gone).

The DoS alert's burst is the DoS drill's (``clickstream monitoring drill``, on the local stack).
"""

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path

import requests
from google.api_core.exceptions import NotFound
from google.cloud import pubsub_v1, storage

from clickstream.core import jsonlines, landing, names
from clickstream.fakes import dataflow
from clickstream.fakes import project as projects
from clickstream.gcp import bigquery_tables, plan, pubsub
from clickstream.local import metadata_server
from clickstream.orchestration import deployment as deployment_steps
from clickstream.orchestration import local_airflow
from clickstream.project import clients, fake_cloud, lifecycle

REGION = "europe-west1"
LAB = {"visits": 8804, "page_views": 35422, "cart_adds": 8999, "purchases": 2213}
RUN_TIMEOUT = 1800.0  # seconds for every landed file's run
TRAFFIC_FILES = 3  # lab files published as live traffic
DRAIN_TIMEOUT = 300.0


class RehearsalError(RuntimeError):
    """The rehearsal could not go on: what failed, in one line."""


@dataclasses.dataclass
class Report:
    counts: dict[str, int] = dataclasses.field(default_factory=dict)  # one row per key
    steps: list[tuple[str, bool]] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok in self.steps) and self.counts == LAB


def _serve_identity(project: str, email: str) -> str:
    """A metadata-server stand-in whose token names ``email`` to the fakes; its host:port."""
    handler = metadata_server.handler(project, email=email, access_token=projects.token(email))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"127.0.0.1:{server.server_port}"


_BEAM = threading.Lock()  # one job at a time in this process: Beam's local runner


def run_job(job: dataflow.Job) -> dataflow.Counters:
    """A job of the fake Dataflow, handed over to Beam's local runner in this process: the
    template's spec with the job's parameters (checked as its launcher checks them)."""
    from clickstream.core import templates
    from clickstream.pipelines import catalog

    name = Path(job.template).stem
    with _BEAM:
        counters = catalog.run_and_wait(name, templates.variables(name, job.parameters), [])
    return {names.COUNTER_NAMESPACE: counters}


def _count(settings, table: str) -> int:
    bq = clients.bigquery_client(settings.project)
    return bigquery_tables.row_count(bq, f"{settings.project}.{settings.dataset}.{table}_unique")


def _wait(what: str, done: Callable[[], bool], timeout: float, say: Callable[[str], None]) -> None:
    deadline, last = time.monotonic() + timeout, 0.0
    while not done():
        if time.monotonic() > deadline:
            raise RehearsalError(f"{what}: not done after {timeout:.0f} s")
        if time.monotonic() - last > 30:
            say(f"   ... waiting: {what}")
            last = time.monotonic()
        time.sleep(2)


def _runs(airflow_url: str) -> list[dict] | None:
    """The DAG's runs; None while Airflow's API does not answer (busy with the runs)."""
    url = f"{airflow_url}/api/v2/dags/{names.FILE_LANDED_DAG}/dagRuns?limit=200"
    try:
        return requests.get(url, timeout=60).json().get("dag_runs", [])
    except requests.RequestException:
        return None


def _pull_all(project: str, subscription: str, count: int) -> list[bytes]:
    path = names.subscription_path(project, subscription)
    found: list[bytes] = []
    with pubsub_v1.SubscriberClient() as subscriber:
        deadline = time.monotonic() + 120
        while len(found) < count and time.monotonic() < deadline:
            answer = subscriber.pull(subscription=path, max_messages=100, timeout=10)
            if answer.received_messages:
                found += [m.message.data for m in answer.received_messages]
                ids = [m.ack_id for m in answer.received_messages]
                subscriber.acknowledge(subscription=path, ack_ids=ids)
    return found


def run(lab_data: Path, build: Path, say: Callable[[str], None] = print) -> Report:
    """The rehearsal (see the module); the clients must point at the local stack."""
    files = sorted(lab_data.glob("*.jsonl"))
    if not files:
        raise RehearsalError(f"no lab files in {lab_data} (*.jsonl)")
    report = Report()

    def step(text: str, ok: bool) -> None:
        report.steps.append((text, ok))
        say(f"{'ok ' if ok else 'FAILED'} {text}")

    project_id = f"rehearsal-{int(time.time()) % 100000:05d}"
    with fake_cloud.FakeCloud(project_id, REGION, build / "cloud") as cloud:
        settings = cloud.settings()
        say(f"1. The deployment, on the empty fake project {project_id}")
        deployment = lifecycle.Deployment.of(settings, build / "deploy")
        changes = deployment.planned()
        created = sum(c.action == plan.CREATE for c in changes)
        say(f"   plan: {created} to create of {len(changes)} (the rest: APIs on by default)")
        done = deployment.apply(changes, performed=lambda c: None)
        step(f"apply made {len(done)} changes", len(done) == created)
        again = lifecycle.Deployment.of(settings, build / "deploy").planned()
        unchanged = all(c.action == plan.UNCHANGED for c in again)
        step(f"a second plan: {len(again)} unchanged", unchanged)
        _verified(deployment, step, say)

        say("2. The lab's files through the chain (Eventarc, trigger, Airflow, Dataflow)")
        composer = cloud.gcloud.composer
        if composer is None:
            raise RehearsalError("the Composer environment was not created")
        dag_settings = json.loads(composer.variables[deployment_steps.SETTINGS_VARIABLE])
        gcs = clients.storage_client(project_id)

        def read(url: str) -> bytes | None:
            try:
                return storage.Blob.from_uri(url, gcs).download_as_bytes()
            except NotFound:
                return None

        jobs = dataflow.FakeDataflow(cloud.project, read, run_job, check_callers=True)
        identity = _serve_identity(project_id, composer.service_account)
        local = local_airflow.Local(project_id, build / "airflow", cloud.airflow_port)
        environment = {"GCE_METADATA_HOST": identity, "GCE_METADATA_IP": identity}
        try:
            with local_airflow.airflow(local, jobs.endpoint, dag_settings, environment) as alive:
                started = time.monotonic()
                for path in files:
                    name = f"{names.LANDING_PREFIX}{path.name}"
                    gcs.bucket(settings.bucket).blob(name).upload_from_filename(str(path))
                say(
                    f"   {len(files)} files landed in gs://{settings.bucket}/{names.LANDING_PREFIX}"
                )

                def finished() -> bool:
                    alive()
                    runs = _runs(local.airflow_url)
                    return (
                        runs is not None
                        and len(runs) == len(files)
                        and all(r["state"] in ("success", "failed") for r in runs)
                    )

                _wait("every landed file's DAG run", finished, RUN_TIMEOUT, say)
                runs = _runs(local.airflow_url) or []
                succeeded = sum(r["state"] == "success" for r in runs)
                took = time.monotonic() - started
                step(f"{succeeded} of {len(files)} DAG runs succeeded ({took:.0f} s)",
                     succeeded == len(files))  # fmt: skip
        finally:
            jobs.stop()
        images = {job.worker_image for job in jobs.jobs.values()}
        step(f"{len(jobs.jobs)} flex-template jobs, workers on {sorted(map(str, images))}",
             len(jobs.jobs) == len(files) and None not in images)  # fmt: skip
        messages = _pull_all(project_id, names.FILES_PROCESSED_SUBSCRIPTION, len(files))
        bodies = [landing.read_notification(m) for m in messages]
        processed = sum(b["state"] == landing.PROCESSED and b["reconciled"] for b in bodies)
        step(f"{processed} files announced processed, their counts reconciled",
             processed == len(files))  # fmt: skip
        lineage_runs = len(cloud.lineage.runs)
        step(f"{lineage_runs} lineage runs recorded", lineage_runs == len(files))
        step("no Eventarc delivery refused", not cloud.eventarc.refused)

        say("3. Live traffic: the lab's visits through the push and pull subscribers")
        traffic = [
            line for path in files[:TRAFFIC_FILES] for line in jsonlines.split(path.read_bytes())
        ]
        rows_before = _raw_visits(settings)
        pubsub.publish(project_id, traffic)
        push = names.subscription_path(project_id, names.PUSH_SUBSCRIPTION)

        def written() -> bool:  # the subscribers' own counts: no query while they write
            acked = requests.get(cloud.pull_health, timeout=30).json().get("acked", 0)
            return acked >= len(traffic) and cloud.pubsub.pushed.get(push, 0) >= len(traffic)

        _wait("the subscribers' writes", written, DRAIN_TIMEOUT, say)
        # Both subscriptions get every message: the tables get each visit twice more, the
        # one-row-per-key views none.
        step(f"{len(traffic)} visits published, written by the push and the pull subscriber",
             _raw_visits(settings) == rows_before + 2 * len(traffic)
             and not cloud.pubsub.refused_pushes)  # fmt: skip

        say("4. The counts (one row per key)")
        report.counts = {table: _count(settings, table) for table in LAB}
        for table, count in report.counts.items():
            step(f"{table:<11} {count:>7,} (the lab's: {LAB[table]:,})", count == LAB[table])

        say("5. Verify, destroy, verify")
        deployment = lifecycle.Deployment.of(settings, build / "deploy")
        _verified(deployment, step, say)
        deletions = deployment.destroy_plan()
        deployment.destroy(deletions, delete_data=True)
        gone = lifecycle.Deployment.of(settings, build / "deploy").verify()
        left = [
            c.resource.label
            for c in gone.changes
            if c.action != plan.CREATE and c.resource.kind not in lifecycle.KEPT_ON_DESTROY
        ]
        step(f"destroy deleted {len(deletions)}; verify finds all gone but the APIs", not left)
        if left:
            say("   left: " + ", ".join(left))
    return report


def _verified(
    deployment: lifecycle.Deployment,
    step: Callable[[str, bool], None],
    say: Callable[[str], None],
) -> None:
    """Verify's step, with what it found when the project is not as declared."""
    found = deployment.verify()
    step("verify: as declared", found.clean)
    if not found.clean:
        say(found.render())


def _raw_visits(settings) -> int:
    bq = clients.bigquery_client(settings.project)
    return bigquery_tables.row_count(bq, f"{settings.project}.{settings.dataset}.visits")
