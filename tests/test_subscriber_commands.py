"""``clickstream subscribe``: both subscribers from one command each on the local stack, fed by
``publish``; the deployment's commands (dry run), its staged code and the VM's startup script."""

import os
import re
import shlex
import subprocess
import sys
import tarfile

from google.cloud import pubsub_v1
from subscriber_support import (
    answers,
    expected_rows,
    running,
    subprocess_env,
    visible_counts,
    wait_until,
)

from clickstream.cli import main as cli
from clickstream.core import contract, jsonlines, names
from clickstream.core.ports import free_ports
from clickstream.deploy import access, settings
from clickstream.deploy import subscribers as deployment
from clickstream.gcp import views

PROJECT, REGION = "demo-project", "europe-west1"


def clickstream(*args: str) -> list[str]:
    """The ``clickstream`` command as a process."""
    return [sys.executable, "-m", "clickstream.cli", *args]


def test_both_subscribers_run_with_one_command_each(stack, lab_data, tmp_path):
    visits = tmp_path / "visits.jsonl"
    visits.write_bytes(b"\n".join(list(jsonlines.read([str(lab_data / "*-07-20.jsonl")]))[:20]))
    for dataset in ("cli_push", "cli_pull"):
        views.ensure_analyst_dataset(stack.project, dataset)
    push_port, health_port = free_ports(2)
    # A topic of its own (default: visits), so that no other test's subscription gets these.
    topic = ("--topic", "cli-visits")
    push = clickstream(
        *("subscribe", "push", "--port", str(push_port), "--dataset", "cli_push", *topic),
        *("--subscription", "cli-visits-push"),
    )
    pull = clickstream(
        *("subscribe", "pull", "--health-port", str(health_port), "--dataset", "cli_pull"),
        *(*topic, "--subscription", "cli-visits-pull"),
    )
    env = subprocess_env()
    with (
        running(push, tmp_path / "push.log", env) as pusher,
        running(pull, tmp_path / "pull.log", env) as puller,
    ):
        wait_until(lambda: answers(f"http://127.0.0.1:{push_port}/"), 30, "push to listen")
        wait_until(lambda: "pulling projects/" in (tmp_path / "pull.log").read_text(), 30, "pull")
        published = subprocess.run(
            clickstream("subscribe", "publish", str(visits), *topic),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert published.returncode == 0, published.stderr
        assert published.stdout.strip() == (
            f"published 20 messages to projects/{stack.project}/topics/cli-visits"
        )
        expected = expected_rows(dict(enumerate(visits.read_bytes().splitlines())))
        for dataset in ("cli_push", "cli_pull"):  # one topic, two subscriptions, same rows
            wait_until(lambda d=dataset: visible_counts(d) == expected, 60, f"rows in {dataset}")
        for process in (puller, pusher):
            process.terminate()
            assert process.wait(timeout=60) == 0
    push_log = (tmp_path / "push.log").read_text()
    assert f"push subscription projects/{stack.project}/subscriptions/cli-visits-push" in push_log
    assert f"delivers to http://127.0.0.1:{push_port}/" in push_log
    # Stopped, the push subscription keeps its messages instead of pushing to a closed port.
    assert "cli-visits-push keeps its messages until the next run" in push_log
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(stack.project, "cli-visits-push")
    assert not subscriber.get_subscription(subscription=path).push_config.push_endpoint


def _dry_run(capsys, tmp_path) -> list[str]:
    """The lines `clickstream subscribe deploy ... --dry-run` prints."""
    where = ("--project", PROJECT, "--region", REGION, "--build-dir", str(tmp_path))
    cli.main(["subscribe", "deploy", *where, "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# subscribers: dry run, nothing is run; the gcloud steps:"
    check = subprocess.run(["bash", "-n"], input="\n".join(lines), text=True, capture_output=True)
    assert check.returncode == 0, check.stderr  # every line is a valid shell command
    return lines[1:]


def _command(lines: list[str], *start: str) -> list[str]:
    """The one printed command that begins with ``start``, as its words."""
    found = [shlex.split(line) for line in lines if shlex.split(line)[: len(start)] == [*start]]
    assert len(found) == 1, (start, lines)
    return found[0]


SETTINGS = settings.Settings(PROJECT, REGION)


def test_the_writers_may_append_to_the_six_tables_and_no_more():
    """Least privilege: streaming inserts need Data Editor on each table, not on the dataset,
    and no Job User (they run no query)."""
    grants = access.grants(SETTINGS, "123")
    for writer in (names.PUSH_ACCOUNT, names.PULL_ACCOUNT):
        member = f"serviceAccount:{SETTINGS.account(writer)}"
        held = {(g.role, g.resource) for g in grants if g.member == member}
        tables = {r for role, r in held if role == "roles/bigquery.dataEditor"}
        assert tables == {
            f"projects/{PROJECT}/datasets/clickstream/tables/{table}" for table in contract.TABLES
        }
        assert not any(role == "roles/bigquery.jobUser" for role, _ in held)


def test_deploy_push(capsys, tmp_path):
    lines = _dry_run(capsys, tmp_path)
    url = f"https://{REGION}-{PROJECT}.cloudfunctions.net/clickstream-push"
    runtime = f"clickstream-push@{PROJECT}.iam.gserviceaccount.com"
    invoker = f"clickstream-push-invoker@{PROJECT}.iam.gserviceaccount.com"
    function = _command(lines, "gcloud", "functions", "deploy", "clickstream-push")
    for flag in (
        "--gen2",
        f"--region={REGION}",
        "--runtime=python311",
        "--entry-point=receive",
        "--trigger-http",
        "--no-allow-unauthenticated",
        f"--service-account={runtime}",
        f"--source={tmp_path / 'push-function'}",
    ):
        assert flag in function
    (environment,) = [w for w in function if w.startswith("--set-env-vars=")]
    assert f"PUSH_AUDIENCE={url}" in environment
    assert f"PUSH_SERVICE_ACCOUNT={invoker}" in environment
    assert "CLICKSTREAM_SOURCE=" in environment  # the code's digest: new code, new deployment
    # Who may invoke it and mint its tokens: grants of the plan, from the access table.
    grants = access.grants(SETTINGS, "123")
    function_resource = access.function_resource(SETTINGS, names.PUSH_FUNCTION)
    assert {g.member for g in grants if g.resource == function_resource} == {
        f"serviceAccount:{invoker}"
    }
    invoker_resource = access.account_resource(SETTINGS, names.INVOKER_ACCOUNT)
    assert {(g.role, g.member) for g in grants if g.resource == invoker_resource} == {
        (
            "roles/iam.serviceAccountTokenCreator",
            "serviceAccount:service-123@gcp-sa-pubsub.iam.gserviceaccount.com",
        )
    }


def test_deploy_pull(capsys, tmp_path):
    lines = _dry_run(capsys, tmp_path)
    account = f"clickstream-pull@{PROJECT}.iam.gserviceaccount.com"
    [upload] = [shlex.split(line) for line in lines if line.startswith("gcloud storage cp ")]
    source = upload[4]
    assert re.fullmatch(
        rf"gs://{PROJECT}-ops/subscribers/clickstream-subscribers-[0-9a-f]{{16}}\.tar\.gz", source
    )
    assert upload[3] == str(tmp_path / "clickstream-subscribers.tar.gz")
    template = _command(lines, "gcloud", "compute", "instance-templates", "create")
    assert re.fullmatch(r"clickstream-pull-[0-9a-f]{8}", template[4])  # named by what it holds
    assert f"--metadata-from-file=startup-script={deployment.STARTUP_SCRIPT}" in template
    assert f"--service-account={account}" in template
    (metadata,) = [w for w in template if w.startswith("--metadata=")]
    assert dict(pair.split("=", 1) for pair in metadata.removeprefix("--metadata=").split(",")) == {
        "clickstream-source": source,
        "clickstream-subscription": "visits-pull",
        "clickstream-dataset": "clickstream",
        "clickstream-health-port": "8080",
    }
    check = _command(lines, "gcloud", "compute", "health-checks", "create", "http")
    assert {"--request-path=/healthz", "--port=8080"} <= set(check)
    group = _command(lines, "gcloud", "compute", "instance-groups", "managed", "create")
    assert {f"--region={REGION}", "--health-check=clickstream-pull-health"} <= set(group)
    assert f"--template={template[4]}" in group
    scaler = _command(lines, "gcloud", "compute", "instance-groups", "managed", "set-autoscaling")
    for flag in (
        f"--region={REGION}",
        f"--max-num-replicas={deployment.MAX_REPLICAS}",
        "--update-stackdriver-metric=pubsub.googleapis.com/subscription/num_undelivered_messages",
        '--stackdriver-metric-filter=resource.type = "pubsub_subscription" AND '
        'resource.labels.subscription_id = "visits-pull"',
        "--stackdriver-metric-single-instance-assignment=5000",
    ):
        assert flag in scaler
    firewall = _command(lines, "gcloud", "compute", "firewall-rules", "create")
    assert {"--rules=tcp:8080", "--source-ranges=35.191.0.0/16,130.211.0.0/22"} <= set(firewall)


def test_staging_twice_gives_the_same_archive(tmp_path):
    """The code's archive is named by its digest: the same code must give the same bytes."""
    first = deployment.stage_archive(tmp_path / "a").read_bytes()
    assert deployment.stage_archive(tmp_path / "b").read_bytes() == first


def test_staged_code_runs_on_its_own(tmp_path):
    function = deployment.stage_function(tmp_path)
    pins = (function / "requirements.txt").read_text().split()
    names = {pin.split("==")[0].lower() for pin in pins}
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^=]*", pin) for pin in pins)
    assert {*deployment.RUNTIME_ROOTS, "flask", "google-api-core", "grpcio"} <= names
    # The function's entry point imports from the staged tree alone.
    probe = (
        "import main, clickstream.subscribers.push as p, clickstream.core.visit as v; "
        "import clickstream.metadata as m; "
        "print(main.receive is p.receive, p.__file__, v.__file__, m.__file__)"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=function,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    same, *files = imported.stdout.split()
    assert same == "True", imported.stderr
    assert all(file.startswith(str(function)) for file in files), files
    with tarfile.open(deployment.stage_archive(tmp_path)) as archive:
        members = set(archive.getnames())
    assert {
        "requirements.txt",
        "clickstream/subscribers/pull.py",
        "clickstream/core/visit.py",
        "clickstream/gcp/warehouse.py",
        "clickstream/metadata/tables/visits.json",
    } <= members


def test_startup_script_runs_what_the_template_configures():
    script = deployment.STARTUP_SCRIPT.read_text()
    assert subprocess.run(["bash", "-n", str(deployment.STARTUP_SCRIPT)]).returncode == 0
    for key in ("clickstream-source", "clickstream-subscription", "clickstream-dataset"):
        assert f"instance/attributes/{key}" in script
    assert "-m clickstream.subscribers.pull" in script and "--health-host 0.0.0.0" in script
    assert "KillSignal=SIGTERM" in script and "Restart=always" in script
