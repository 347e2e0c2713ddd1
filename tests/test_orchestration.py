"""The orchestration's parts that need neither emulators nor Airflow: landed files (run id, job
name, which objects), the files-processed message, the launch request and the Dataflow job
counters, the trigger function (the real Functions Framework against a fake Airflow REST API on
loopback), the deployment's staging and commands, and the CLI's refusals."""

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import functions_framework
import pytest

from clickstream.core import landing, names, templates
from clickstream.deploy import access, settings
from clickstream.fakes import eventarc
from clickstream.orchestration import deployment, docs_page, trigger

FILE = landing.LandedFile("my-bucket", "landing/visits-2024-07-01.jsonl", "1719824400000000")
AIRFLOW_RUN_ID = re.compile(r"^[A-Za-z0-9_.~:+-]+$")  # Airflow's default allowed_run_id_pattern


# Landed files


def test_the_run_id_is_the_object_generations_and_airflow_accepts_it():
    again = landing.LandedFile(FILE.bucket, FILE.object, int(FILE.generation))
    assert again.run_id == FILE.run_id and AIRFLOW_RUN_ID.match(FILE.run_id)
    assert "visits-2024-07-01.jsonl" in FILE.run_id
    others = [
        landing.LandedFile(FILE.bucket, FILE.object, "1719824400000001"),
        landing.LandedFile("other-bucket", FILE.object, FILE.generation),
        landing.LandedFile(FILE.bucket, "landing/visits-2024-07-02.jsonl", FILE.generation),
    ]
    assert len({FILE.run_id, *(other.run_id for other in others)}) == 4


@pytest.mark.parametrize(
    "name",
    ["landing/visits.jsonl", "landing/Ünïcode fïle (1).jsonl", "landing/---.jsonl", "x" * 900],
)
def test_job_names_are_what_dataflow_accepts(name):
    file = landing.LandedFile("b-1", name, "7")
    assert templates.JOB_NAME.fullmatch(file.job_name) and len(file.job_name) <= 63
    assert AIRFLOW_RUN_ID.match(file.run_id) and len(file.run_id) <= 250
    assert file.job_name == landing.LandedFile("b-1", name, "7").job_name
    assert file.job_name != landing.LandedFile("b-1", name, "8").job_name


@pytest.mark.parametrize(
    "conf, problem",
    [
        ({}, "lacks bucket, object, generation"),
        ({"bucket": "b-1", "object": "landing/a.jsonl"}, "lacks generation"),
        ({"bucket": "Bad_Bucket", "object": "a", "generation": "1"}, "bucket"),
        ({"bucket": "b-1", "object": "", "generation": "1"}, "object"),
        ({"bucket": "b-1", "object": "a\nb", "generation": "1"}, "object"),
        ({"bucket": "b-1", "object": "a", "generation": "-1"}, "generation"),
        ({"bucket": "b-1", "object": "a", "generation": "1e6"}, "generation"),
    ],
)
def test_a_bad_configuration_is_refused_with_its_reason(conf, problem):
    with pytest.raises(landing.LandingError, match=problem):
        landing.LandedFile.from_conf(conf)


def test_from_an_event():
    data = {"bucket": "my-bucket", "name": FILE.object, "generation": FILE.generation}
    assert landing.LandedFile.from_event(data) == FILE
    with pytest.raises(landing.LandingError, match="lacks generation"):
        landing.LandedFile.from_event({"bucket": "my-bucket", "name": FILE.object})


@pytest.mark.parametrize(
    "name, visit_file",
    [
        ("landing/visits.jsonl", True),
        ("landing/2024/07/visits.jsonl.gz", True),
        ("landing/visits.jsonl.bz2", True),
        ("visits.jsonl", False),  # not under the prefix
        ("landing/visits.csv", False),
        ("landing/", False),
        ("landing/visits[1].jsonl", False),  # read as a pattern, not as this file
        ("landing/*.jsonl", False),
        ("templates/batch_migration.json", False),
    ],
)
def test_which_objects_are_visit_files(name, visit_file):
    assert landing.is_visit_file(name) is visit_file


# The files-processed message


def test_a_processed_message_round_trips_and_says_where_rejects_went():
    counters = {
        "records_read": 12,
        "visits_accepted": 10,
        "visits_rejected": 2,
        "events_accepted": 30,
        "events_rejected": 1,
        "events_in_loaded_visits": 31,
        "page_view": 30,
        "visits.rows_inserted": 10,
        "files_read": 1,  # not part of the message
    }
    data, attributes = landing.notification(
        FILE, landing.PROCESSED, "job-1", counters, "p.clickstream.dead_letter"
    )
    assert attributes == {"state": "processed", **FILE.conf(), "job_id": "job-1"}
    assert all(isinstance(value, str) for value in attributes.values())
    body = landing.read_notification(data)
    assert body["file"] == FILE.url and body["counts"]["visits_rejected"] == 2
    assert "files_read" not in body["counts"]
    assert landing.describe(body) == (
        f"processed {FILE.url} (generation {FILE.generation}): 12 records read, 10 visits "
        "loaded (10 new), 2 rejected; 30 events loaded, 1 rejected "
        "(in p.clickstream.dead_letter); job job-1"
    )


def test_counts_that_do_not_add_up_are_said_in_the_message_and_its_line():
    counters = {"records_read": 12, "visits_accepted": 10, "visits_rejected": 1}  # one lost
    data, _ = landing.notification(FILE, landing.PROCESSED, "job-1", counters)
    body = landing.read_notification(data)
    assert body["reconciled"] is False
    assert landing.describe(body).startswith(
        f"processed {FILE.url} (generation {FILE.generation}): {landing.UNRECONCILED}; 12 records"
    )
    events = {"events_in_loaded_visits": 3, "events_accepted": 3, "purchase": 2}  # one untyped
    assert not templates.counts_reconcile({**counters, "visits_rejected": 2, **events})
    assert templates.counts_reconcile({**counters, "visits_rejected": 2, **events, "page_view": 1})


def test_a_clean_file_names_no_dead_letter_table_and_a_failure_says_why():
    counters = dict.fromkeys(landing.COUNTERS, 0)
    data, _ = landing.notification(FILE, landing.PROCESSED, "j", counters, "p.d.dead_letter")
    assert "dead_letter" not in landing.describe(landing.read_notification(data))
    data, attributes = landing.notification(FILE, landing.FAILED, error="job failed")
    assert attributes["state"] == "failed"
    line = landing.describe(landing.read_notification(data))
    assert line.startswith(f"FAILED {FILE.url}") and "job failed; no job" in line


@pytest.mark.parametrize(
    "data", [b"not json", b"\xff", b"[]", b'{"state": "done"}', b'{"state": "processed"}']
)
def test_a_foreign_message_is_not_read_as_one(data):
    with pytest.raises(ValueError, match=r"files-processed message|lacks"):
        landing.read_notification(data)


def test_an_unknown_state_is_refused():
    with pytest.raises(ValueError, match="state"):
        landing.notification(FILE, "done")


# The launch request and the job's counters

WORKERS = {"sdkContainerImage": "europe-docker.pkg.dev/p/r/clickstream-batch_migration:1"}


def test_the_launch_request_carries_exactly_the_file_and_checked_parameters():
    parameters = {"input": FILE.url, "dataset": "clickstream", "bigquery_project": "my-project"}
    body = templates.launch_request(
        "batch_migration",
        FILE.job_name,
        templates.template_file("batch_migration", "tpl-bucket"),
        parameters,
        {"sdkContainerImage": "europe-docker.pkg.dev/p/r/clickstream-batch_migration:1"},
    )
    assert body == {
        "launchParameter": {
            "jobName": FILE.job_name,
            "containerSpecGcsPath": "gs://tpl-bucket/templates/batch_migration.json",
            "parameters": parameters,
            "environment": {
                "sdkContainerImage": "europe-docker.pkg.dev/p/r/clickstream-batch_migration:1"
            },
        }
    }


@pytest.mark.parametrize(
    "parameters, problem",
    [
        ({"input": "landing/visits.jsonl"}, "'input'"),
        ({"input": FILE.url, "dataset": "click-stream"}, "'dataset'"),
        ({"input": FILE.url, "table": "x"}, "unknown parameter 'table'"),
        ({"dataset": "clickstream"}, "'input' is required"),
    ],
)
def test_the_launch_request_refuses_what_the_template_would(parameters, problem):
    with pytest.raises(templates.ParameterError, match=problem):
        templates.launch_request("batch_migration", "job", "gs://b/t.json", parameters, WORKERS)


def test_the_launch_request_refuses_a_job_name_dataflow_would():
    with pytest.raises(templates.ParameterError, match="job name"):
        templates.launch_request(
            "batch_migration", "Job_1", "gs://b/t.json", {"input": FILE.url}, WORKERS
        )


@pytest.mark.parametrize(
    "environment",
    [{}, {"serviceAccountEmail": "w@p.iam.gserviceaccount.com"}, {"sdkContainerImage": "r/x:1"}],
)
def test_the_launch_request_refuses_workers_without_the_templates_image(environment):
    """Dataflow's workers run the stock Beam SDK container unless the launch names one
    (FlexTemplateRuntimeEnvironment.sdkContainerImage), and that one lacks the catalog."""
    with pytest.raises(templates.ParameterError, match="sdkContainerImage"):
        templates.launch_request(
            "batch_migration", "job", "gs://b/t.json", {"input": FILE.url}, environment
        )


def test_job_counters_are_the_committed_clickstream_ones_summed_over_steps():
    def update(name, scalar, namespace="clickstream", tentative=False, origin="user"):
        context = {"namespace": namespace, "step": "s1"}
        if tentative:
            context["tentative"] = "true"
        return {"name": {"origin": origin, "name": name, "context": context}, "scalar": scalar}

    metrics = {
        "metricTime": "2024-07-01T09:10:00Z",
        "metrics": [
            update("records_read", 100),
            update("records_read", 100, tentative=True),
            update("visits_accepted", 60),
            update("visits_accepted", 38),  # a second step
            update("visits_rejected", 2),
            update("records_read", 7, namespace="__main__.Other"),
            update("ElementCount", 999, origin="dataflow/v1b3"),
        ],
    }
    assert templates.job_counters(metrics) == {
        "records_read": 100,
        "visits_accepted": 98,
        "visits_rejected": 2,
    }
    assert templates.job_counters({}) == {}


# The trigger function, against a fake Airflow REST API


class FakeAirflow:
    """Airflow's ``POST /api/{v}/dags/{dag}/dagRuns`` on loopback: 409 for a taken run id,
    or a fixed ``status`` when set."""

    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.requests: list[tuple[str, dict]] = []
        self.status: int | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                status = fake.status or (409 if body["dag_run_id"] in fake.runs else 200)
                if status == 200:
                    fake.runs[body["dag_run_id"]] = body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"detail": "..."}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        serve = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        serve.start()


@pytest.fixture
def airflow(monkeypatch):
    fake = FakeAirflow()
    monkeypatch.setenv("AIRFLOW_URL", fake.url)
    monkeypatch.setenv("AIRFLOW_AUTH", "none")
    monkeypatch.delenv("AIRFLOW_API", raising=False)
    yield fake
    fake.server.shutdown()


@pytest.fixture
def function():
    app = functions_framework.create_app("on_file_landed", trigger.__file__, "cloudevent")
    return app.test_client()


def finalize(client, name=FILE.object, generation=FILE.generation, bucket=FILE.bucket):
    """POST the finalize event of an object, as Eventarc delivers it (binary mode)."""
    headers, body = eventarc.cloud_event({"bucket": bucket, "name": name, "generation": generation})
    return client.post("/", data=body, headers=headers)


def test_an_event_starts_the_run_of_that_object_generation(airflow, function):
    assert finalize(function).status_code == 200
    [(path, body)] = airflow.requests
    assert path == f"/api/v2/dags/{names.FILE_LANDED_DAG}/dagRuns"
    assert body == {"dag_run_id": FILE.run_id, "conf": FILE.conf(), "logical_date": None}


def test_a_redelivered_event_starts_nothing_and_a_new_generation_does(airflow, function):
    for _ in range(3):
        assert finalize(function).status_code == 200  # acknowledged: no retry
    assert len(airflow.requests) == 3 and list(airflow.runs) == [FILE.run_id]
    assert finalize(function, generation="1719824400000999").status_code == 200
    assert len(airflow.runs) == 2


def test_objects_that_are_not_visit_files_or_not_objects_start_nothing(airflow, function):
    assert finalize(function, name="templates/batch_migration.json").status_code == 200
    assert finalize(function, name="landing/a[1].jsonl").status_code == 200
    assert finalize(function, generation="").status_code == 200  # malformed: retrying won't help
    assert airflow.requests == []


def test_airflow_failing_fails_the_event_so_that_it_is_retried(airflow, function):
    airflow.status = 503
    assert finalize(function).status_code == 500
    airflow.status = None
    assert finalize(function).status_code == 200 and list(airflow.runs) == [FILE.run_id]


def test_airflow_2_gets_its_api(airflow, function, monkeypatch):
    monkeypatch.setenv("AIRFLOW_API", "v1")
    assert finalize(function).status_code == 200
    [(path, body)] = airflow.requests
    assert path.startswith("/api/v1/") and "logical_date" not in body


# Deployment


def test_the_dags_folder_holds_the_dag_and_the_beam_free_core_it_imports(tmp_path):
    dags = deployment.stage_dags(tmp_path / "dags")
    assert (dags / f"{names.FILE_LANDED_DAG}.py").is_file()
    assert (dags / "clickstream" / "core" / "templates.py").is_file()
    assert (dags / "clickstream" / "metadata" / "batch_migration.json").is_file()
    assert (dags / "clickstream" / "gcp" / "lineage.py").is_file()  # the DAG records lineage
    assert (dags / deployment.DIGEST_FILE).read_text()  # the plan compares it
    assert not (dags / "clickstream" / "__init__.py").exists()  # a namespace, as installed
    assert not (dags / "local_dataflow.py").exists()
    assert (dags / ".airflowignore").read_text().split() == ["clickstream/", "local_dataflow.py"]
    assert sorted(p.name for p in dags.iterdir()) == sorted(deployment.DAG_IMPORTS)
    assert (deployment.stage_dags(tmp_path / "dags", local=True) / "local_dataflow.py").is_file()


def test_the_function_source_runs_the_trigger_with_pinned_requirements(tmp_path):
    source = deployment.stage_function(tmp_path / "function")
    assert (
        "from clickstream.orchestration.trigger import on_file_landed"
        in (source / "main.py").read_text()
    )
    assert sorted(p.name for p in (source / "clickstream" / "orchestration").iterdir()) == [
        "__init__.py",
        "trigger.py",
    ]
    requirements = (source / "requirements.txt").read_text().split()
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^=]+", line) for line in requirements)
    assert any(line.startswith("functions-framework==") for line in requirements)
    code = "import main; print(main.on_file_landed.__name__)"
    ran = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True)
    assert ran.stdout.strip() == "on_file_landed", ran.stderr


SETTINGS = settings.Settings("my-project", "europe-west1", bucket="landing-bucket")


def steps(tmp_path, chosen=SETTINGS) -> list:
    return [
        *deployment.environment_steps(chosen),
        *deployment.dags_steps(chosen, deployment.stage_dags(tmp_path / "dags")),
        *deployment.trigger_steps(chosen, deployment.stage_function(tmp_path / "function")),
    ]


def test_the_steps_put_the_project_before_what_goes_to_airflow(tmp_path):
    for step in steps(tmp_path):
        for command in (step.command, step.update, step.undo):
            if isinstance(command, list):
                end = command.index("--") if "--" in command else len(command)
                assert "--project=my-project" in command[:end], command
    variable = next(s for s in steps(tmp_path) if "variables" in s.command)
    environment = json.loads(variable.command[-1])["environment"]
    assert environment == {  # the workers run the template's image, as its account
        "sdkContainerImage": templates.image(
            names.MIGRATION_TEMPLATE, "my-project", "europe-west1", "clickstream", ""
        ),
        "serviceAccountEmail": "clickstream-dataflow@my-project.iam.gserviceaccount.com",
        "tempLocation": "gs://my-project-ops/temp/",
    }
    assert variable.expect == variable.command[-1]  # the check reads the variable back
    imports = [s.command[-2] for s in steps(tmp_path) if "import" in s.command]
    assert imports[-1].endswith(f"{names.FILE_LANDED_DAG}.py")  # the DAG after its core


def test_the_function_is_triggered_by_the_buckets_finalize_events_with_retries(tmp_path):
    [deploy] = [s.command for s in steps(tmp_path) if "deploy" in s.command]
    assert f"--trigger-event-filters=type={landing.FINALIZED}" in deploy
    assert "--trigger-event-filters=bucket=landing-bucket" in deploy
    assert "--retry" in deploy and "--entry-point=on_file_landed" in deploy
    [variables] = [c for c in deploy if c.startswith("--set-env-vars=")]
    assert "AIRFLOW_API=v1" in variables and "AIRFLOW_AUTH=google" in variables  # Airflow 2
    assert "value(config.airflowUri)" in variables


def test_a_changed_source_is_a_changed_function(tmp_path):
    [before] = [s for s in steps(tmp_path) if s.name.startswith("function ")]
    trigger = tmp_path / "function" / "clickstream" / "orchestration" / "trigger.py"
    trigger.write_text(trigger.read_text() + "\n# changed\n")
    [after] = deployment.trigger_steps(SETTINGS, tmp_path / "function")[:1]
    assert before.expect != after.expect  # the plan sees new code and deploys it


def test_the_triggers_account_may_receive_the_buckets_events_and_invoke_the_function():
    """Eventarc delivers a Cloud Storage (direct) event only to a trigger whose service account
    holds roles/eventarc.eventReceiver, and invokes the function as it (roles/run.invoker)."""
    member = f"serviceAccount:{SETTINGS.account(names.TRIGGER_ACCOUNT)}"
    held = {(g.role, g.resource) for g in access.grants(SETTINGS, "1") if g.member == member}
    function = access.function_resource(SETTINGS, names.TRIGGER_FUNCTION)
    assert ("roles/eventarc.eventReceiver", "projects/my-project") in held
    assert ("roles/run.invoker", function) in held


def test_a_bad_composer_image_is_refused():
    with pytest.raises(settings.SettingsError, match="composer_image"):
        settings.Settings("my-project", "europe-west1", composer_image="airflow-3")


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "clickstream.cli", *args], capture_output=True, text=True
    )


def test_cli_deploy_dry_run_prints_and_runs_nothing(tmp_path):
    result = _cli(
        *("orchestrate", "deploy", "--project", "my-project", "--region", "europe-west9"),
        *("--bucket", "b-1", "--dry-run", "--build-dir", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert "# orchestration: dry run, nothing is run" in result.stdout
    assert "gcloud functions deploy clickstream-file-landed" in result.stdout
    assert (
        '"sdkContainerImage": "europe-west9-docker.pkg.dev/my-project/clickstream/' in result.stdout
    )


def test_cli_refuses_a_bad_count_in_one_line():
    result = _cli("subscribe", "files", "--count", "0")
    assert result.returncode != 0
    assert result.stderr.strip() == "error: --count takes a positive number, not 0"
    assert "Traceback" not in result.stderr


def test_the_docs_page_is_fresh():
    assert not docs_page.write(check=True), "run `clickstream orchestrate docs`"
    assert docs_page.render("<!-- generated: message -->\nold\n<!-- end generated -->") != (
        "<!-- generated: message -->\nold\n<!-- end generated -->"
    )
