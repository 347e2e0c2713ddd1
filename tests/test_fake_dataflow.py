"""The fake Dataflow (``clickstream.fakes.dataflow``) driven by Google's own discovery client,
as Airflow's Dataflow hook drives it: each of its rules, with the launch requests the catalog
builds (``core/templates.launch_request``) and a template file shaped as ``gcloud dataflow
flex-template build`` writes it."""

import json
import threading
import time

import pytest
import requests
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from clickstream.core import names, templates
from clickstream.fakes import dataflow, iam, platform, rules
from clickstream.fakes import project as projects
from clickstream.orchestration import local_airflow

PROJECT, REGION, BUCKET = "my-project", "europe-west1", "my-bucket"
NAME = names.MIGRATION_TEMPLATE
IMAGE = templates.image(NAME, PROJECT, REGION, names.IMAGE_REPOSITORY, "1")
TEMPLATE = templates.template_file(NAME, BUCKET)
INPUT = f"gs://{BUCKET}/landing/visits-2024-07-01.jsonl"
COUNTERS = {names.COUNTER_NAMESPACE: {"records_read": 181, "visits_accepted": 180}}
CALLER = f"composer@{PROJECT}.iam.gserviceaccount.com"
WORKER = f"worker@{PROJECT}.iam.gserviceaccount.com"
OTHER = f"analyst@{PROJECT}.iam.gserviceaccount.com"
WAIT_SECONDS = 10.0
ACTIVE = (dataflow.QUEUED, dataflow.RUNNING)


def template_spec(**changes) -> dict:
    """The template file as gcloud 528 writes it (``BuildAndStoreFlexTemplateFile``: image,
    metadata's name, description and parameters, sdkInfo, defaultEnvironment)."""
    metadata = templates.metadata(NAME)
    spec = {
        "defaultEnvironment": {"maxWorkers": 4, "numWorkers": 1},
        "image": IMAGE,
        "metadata": {key: metadata[key] for key in ("description", "name", "parameters")},
        "sdkInfo": {"language": "PYTHON"},
    }
    return {**spec, **changes}


class Runner:
    """Performs jobs: records them, returns COUNTERS; ``hold`` keeps them running."""

    def __init__(self):
        self.jobs: list[dataflow.Job] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, job: dataflow.Job) -> dataflow.Counters:
        self.jobs.append(job)
        self.release.wait(WAIT_SECONDS)
        return COUNTERS


class Dataflow:
    """The fake with a project, a bucket (``objects``) and a runner; ``client(email)``: the
    discovery client, calling as ``email`` (a fake token) or with a token of no one."""

    def __init__(self, check_callers: bool = False):
        self.project = platform.new_project(PROJECT)
        self.project.enabled |= {dataflow.SERVICE, "compute.googleapis.com"}
        self.project.images.add(IMAGE)
        self.objects = {TEMPLATE: json.dumps(template_spec()).encode()}
        self.runner = Runner()
        self.fake = dataflow.FakeDataflow(
            self.project, self.objects.get, self.runner, check_callers=check_callers
        )
        self.policies = iam.FakePolicies(lambda name: True, self.project)

    def client(self, email: str = ""):
        token = projects.token(email) if email else "ya29.not-a-fake-token"
        options = {"api_endpoint": self.fake.endpoint}
        return build("dataflow", "v1b3", client_options=options, credentials=Credentials(token))

    def launch(self, body: dict, email: str = "") -> dict:
        jobs = self.client(email).projects().locations()
        return jobs.flexTemplates().launch(projectId=PROJECT, location=REGION, body=body).execute()

    def job(self, job_id: str, email: str = "") -> dict:
        jobs = self.client(email).projects().locations().jobs()
        return jobs.get(projectId=PROJECT, location=REGION, jobId=job_id).execute()

    def finished(self, job_id: str, email: str = "") -> dict:
        """The job once it has left the queued and running states (polled like the hook)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while (job := self.job(job_id, email))["currentState"] in ACTIVE:
            assert time.monotonic() < deadline, job
            time.sleep(0.01)
        return job

    def messages(self, job_id: str, email: str = "") -> list[str]:
        jobs = self.client(email).projects().locations().jobs()
        listed = jobs.messages().list(projectId=PROJECT, location=REGION, jobId=job_id).execute()
        return [message["messageText"] for message in listed["jobMessages"]]


@pytest.fixture
def fake():
    served = Dataflow()
    yield served
    served.runner.release.set()
    served.fake.stop()


def request(job_name: str = "migrate-1", parameters=None, environment=None) -> dict:
    """The catalog's launch request (checked by the catalog first)."""
    given = {"input": INPUT} if parameters is None else parameters
    worker = {"sdkContainerImage": IMAGE} if environment is None else environment
    return templates.launch_request(NAME, job_name, TEMPLATE, given, worker)


def unchecked(**launch) -> dict:
    """A launch request the catalog would not build."""
    return {
        "launchParameter": {
            "jobName": "migrate-1",
            "containerSpecGcsPath": TEMPLATE,
            "parameters": {"input": INPUT},
            "environment": {"sdkContainerImage": IMAGE},
            **launch,
        }
    }


def refused(call, status: int, rule: str) -> str:
    """The message of the error ``call`` answers with (its status, naming ``rule``)."""
    with pytest.raises(HttpError) as raised:
        call()
    assert raised.value.status_code == status, raised.value
    message = json.loads(raised.value.content)["error"]["message"]
    assert f"[{rule}]" in message
    return message


def test_a_launch_runs_the_job_with_its_parameters_and_reports_its_counters_as_metrics(fake):
    launched = fake.launch(request(parameters={"input": INPUT, "dataset": "lab"}))["job"]
    assert launched["currentState"] == dataflow.QUEUED
    assert (launched["name"], launched["projectId"]) == ("migrate-1", PROJECT)
    assert fake.finished(launched["id"])["currentState"] == dataflow.DONE
    [job] = fake.runner.jobs
    assert job.parameters == {"input": INPUT, "dataset": "lab"}
    assert (job.template, job.worker_image) == (TEMPLATE, IMAGE)
    jobs = fake.client().projects().locations().jobs()
    metrics = jobs.getMetrics(projectId=PROJECT, location=REGION, jobId=job.id).execute()
    assert templates.job_counters(metrics) == COUNTERS[names.COUNTER_NAMESPACE]
    tentative = [m for m in metrics["metrics"] if m["name"]["context"].get("tentative")]
    assert len(tentative) * 2 == len(metrics["metrics"])  # each counter twice
    assert fake.messages(job.id)[-1] == f"Job state set to {dataflow.DONE}."
    assert fake.fake.calls[0] == "flexTemplates.launch"


def test_without_the_worker_image_the_job_fails_and_never_runs(fake):
    launched = fake.launch(unchecked(environment={}))["job"]
    assert fake.finished(launched["id"])["currentState"] == dataflow.FAILED
    assert fake.runner.jobs == []
    [reason] = [m for m in fake.messages(launched["id"]) if "[dataflow.worker-image]" in m]
    assert "stock Apache Beam SDK container" in reason


def test_the_sdk_container_image_option_names_the_worker_image_undeclared(fake):
    body = unchecked(environment={}, parameters={"input": INPUT, "sdk_container_image": IMAGE})
    launched = fake.launch(body)["job"]
    assert fake.finished(launched["id"])["currentState"] == dataflow.DONE
    [job] = fake.runner.jobs
    assert (job.worker_image, job.options) == (IMAGE, {"sdk_container_image": IMAGE})
    assert job.parameters == {"input": INPUT}


def test_an_unknown_parameter_is_refused(fake):
    body = unchecked(parameters={"input": INPUT, "streaming": "true"})
    message = refused(lambda: fake.launch(body), 400, "dataflow.unrecognized-parameter")
    assert "streaming: Unrecognized parameter" in message


def test_a_required_parameter_missing_is_refused(fake):
    body = unchecked(parameters={"dataset": "lab"})
    message = refused(lambda: fake.launch(body), 400, "dataflow.required-parameter")
    assert "input: Missing required parameter" in message


@pytest.mark.parametrize(
    "parameters",
    [
        {"input": "/tmp/visits.jsonl"},
        {"input": INPUT, "dataset": "my-dataset"},
        {"input": INPUT, "bigquery_project": ""},  # empty: checked too
    ],
)
def test_a_value_that_does_not_match_its_regex_is_refused(fake, parameters):
    body = unchecked(parameters=parameters)
    message = refused(lambda: fake.launch(body), 400, "dataflow.parameter-regex")
    assert "Parameter didn't match regex" in message


def test_a_default_value_is_not_checked_against_the_regexes(fake):
    spec = template_spec()
    for parameter in spec["metadata"]["parameters"]:
        parameter["defaultValue"] = parameter.get("defaultValue", "")  # "" matches none
    fake.objects[TEMPLATE] = json.dumps(spec).encode()
    launched = fake.launch(request())["job"]
    assert fake.finished(launched["id"])["currentState"] == dataflow.DONE


def test_a_second_launch_with_the_name_of_an_active_job_is_refused(fake):
    fake.runner.release.clear()
    first = fake.launch(request())["job"]
    message = refused(lambda: fake.launch(request()), 409, "dataflow.active-name")
    assert "There is already an active job named migrate-1" in message
    fake.launch(request(job_name="migrate-2"))  # another name: fine
    fake.runner.release.set()
    fake.finished(first["id"])
    again = fake.launch(request())["job"]  # the first is done: its name is free
    assert again["id"] != first["id"]


@pytest.mark.parametrize("name", ["Migrate-1", "migrate-", "1-migrate", "migrate_1", ""])
def test_the_job_name_must_match_the_documented_pattern(fake, name):
    refused(lambda: fake.launch(unchecked(jobName=name)), 400, "dataflow.job-name")


@pytest.mark.parametrize(
    "body",
    [
        {"launch_parameter": unchecked()["launchParameter"]},  # not the JSON name
        unchecked(parameters={"input": INPUT, "num_workers": 5}),  # a map of strings
        unchecked(environment={"sdkContainerImage": IMAGE, "workerCount": 2}),
        {"validateOnly": True},  # launchParameter is required
    ],
)
def test_request_bodies_are_checked_against_the_discovery_document(fake, body):
    message = refused(lambda: fake.launch(body), 400, "dataflow.request")
    assert message.startswith("Invalid JSON payload received")
    assert fake.runner.jobs == []


def test_validate_only_checks_the_launch_and_starts_nothing(fake):
    assert fake.launch({**request(), "validateOnly": True}) == {}
    assert fake.fake.jobs == {}
    body = {**unchecked(parameters={}), "validateOnly": True}
    refused(lambda: fake.launch(body), 400, "dataflow.required-parameter")


@pytest.mark.parametrize(
    "stored",
    [
        None,  # no such object
        b"{not json",
        json.dumps(template_spec(sdkInfo={})).encode(),  # the SDK language is required
        json.dumps(template_spec(image="")).encode(),
        json.dumps(template_spec(sdkInfo={"language": "COBOL"})).encode(),
        json.dumps({"template": "classic"}).encode(),
    ],
)
def test_the_template_file_must_exist_and_hold_a_flex_template(fake, stored):
    if stored is None:
        del fake.objects[TEMPLATE]
    else:
        fake.objects[TEMPLATE] = stored
    refused(lambda: fake.launch(request()), 400, "dataflow.template-file")


def test_the_api_must_be_enabled(fake):
    fake.project.enabled.discard(dataflow.SERVICE)
    message = refused(lambda: fake.launch(request()), 403, "serviceusage.disabled")
    assert "dataflow.googleapis.com has not been used" in message


@pytest.mark.parametrize("image", ["launcher", "worker"])
def test_an_image_not_pushed_fails_the_job_pulling_it(fake, image):
    other = IMAGE.replace(":1", ":2")
    if image == "launcher":
        fake.objects[TEMPLATE] = json.dumps(template_spec(image=other)).encode()
        body = request()
    else:
        body = unchecked(environment={"sdkContainerImage": other})
    launched = fake.launch(body)["job"]
    assert fake.finished(launched["id"])["currentState"] == dataflow.FAILED
    assert fake.runner.jobs == []
    assert any(f"{image} image {other}: not found" in m for m in fake.messages(launched["id"]))


# Identities (check_callers): who launches and who works


@pytest.fixture
def guarded():
    served = Dataflow(check_callers=True)
    for account in (CALLER, WORKER):
        served.project.service_accounts[account] = 0.0
    yield served
    served.fake.stop()


def grant(served: Dataflow, *grants: tuple[str, str, str]) -> None:
    """(resource, role, service account) grants."""
    for resource, role, account in grants:
        served.policies.grant(resource, role, f"serviceAccount:{account}")


DEVELOPER = (f"projects/{PROJECT}", "roles/dataflow.developer", CALLER)
ACT_AS = (f"projects/{PROJECT}/serviceAccounts/{WORKER}", "roles/iam.serviceAccountUser", CALLER)
WORKS = (f"projects/{PROJECT}", "roles/dataflow.worker", WORKER)
READS = (platform.repository_of(IMAGE), "roles/artifactregistry.reader", WORKER)
AS_WORKER = {"sdkContainerImage": IMAGE, "serviceAccountEmail": WORKER}


def test_every_call_needs_a_token_naming_its_caller(guarded):
    url = f"{guarded.fake.endpoint}v1b3/projects/{PROJECT}/locations/{REGION}/jobs/1"
    for headers in ({}, {"Authorization": "Bearer ya29.not-a-fake-token"}):
        answer = requests.get(url, headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["error"]["status"] == "UNAUTHENTICATED"


def test_the_caller_needs_to_create_jobs_and_to_read_them(guarded):
    body = request(environment=AS_WORKER)
    message = refused(lambda: guarded.launch(body, CALLER), 403, "dataflow.permission")
    assert "dataflow.jobs.create" in message
    grant(guarded, DEVELOPER, ACT_AS, WORKS, READS)
    launched = guarded.launch(body, CALLER)["job"]
    assert guarded.finished(launched["id"], CALLER)["currentState"] == dataflow.DONE
    refused(lambda: guarded.job(launched["id"], OTHER), 403, "dataflow.permission")


def test_a_caller_who_cannot_act_as_the_worker_account_is_refused(guarded):
    grant(guarded, DEVELOPER)
    body = request(environment=AS_WORKER)
    message = refused(lambda: guarded.launch(body, CALLER), 403, "dataflow.act-as")
    assert f"cannot act as service account {WORKER}" in message
    compute = f"{guarded.project.number}-compute@developer.gserviceaccount.com"
    message = refused(lambda: guarded.launch(request(), CALLER), 403, "dataflow.act-as")
    assert compute in message  # no serviceAccountEmail: Compute Engine's default account


@pytest.mark.parametrize(
    ("missing", "rule"),
    [(WORKS, "dataflow.worker-account"), (READS, "dataflow.image-pull")],
)
def test_a_worker_account_without_its_roles_fails_the_job(guarded, missing, rule):
    grant(guarded, *(g for g in (DEVELOPER, ACT_AS, WORKS, READS) if g != missing))
    launched = guarded.launch(request(environment=AS_WORKER), CALLER)["job"]
    assert guarded.finished(launched["id"], CALLER)["currentState"] == dataflow.FAILED
    assert guarded.runner.jobs == []
    assert any(f"[{rule}]" in m for m in guarded.messages(launched["id"], CALLER))


def test_every_rule_names_where_google_documents_it():
    found = rules.collect(dataflow)
    assert {rule.key for rule in found} == {f"dataflow.{key}" for key in dataflow.RULES}
    assert all(rule.source and rule.gist for rule in found)


# The local stack's template file: gcloud's, and one the fake launches


@pytest.mark.usefixtures("gcloud")
def test_the_local_template_file_is_gclouds_and_launches(fake, tmp_path):
    local = local_airflow.Local(PROJECT, tmp_path)
    written = json.loads(local_airflow.template_spec(local))
    assert written["image"] == local.image
    assert written["metadata"]["parameters"] == templates.metadata(NAME)["parameters"]
    fake.objects[TEMPLATE] = json.dumps(written).encode()
    fake.project.images.add(local.image)
    body = request(environment=local.settings()["environment"])
    launched = fake.launch(body)["job"]
    assert fake.finished(launched["id"])["currentState"] == dataflow.DONE
    assert fake.runner.jobs[0].worker_image == local.image
