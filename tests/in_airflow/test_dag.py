"""The orchestration DAG as Composer loads it (Airflow's own DagBag, the Google provider), in the
Airflow environment: it imports without work or errors, its settings, its shape, and the
requests its tasks build. (tests/test_orchestration_chain.py runs it for real.)"""

import itertools
import json
import socket
import time
import types

import pytest
from airflow.models import DagBag

DAG_ID = "clickstream_file_landed"
CONF = {"bucket": "my-bucket", "object": "landing/visits-2024-07-01.jsonl", "generation": "42"}
IMAGE = "europe-west1-docker.pkg.dev/my-project/clickstream/clickstream-batch_migration:1"
SETTINGS = {
    "project": "my-project",
    "region": "europe-west1",
    "template_bucket": "tpl-bucket",
    "environment": {"sdkContainerImage": IMAGE},
}


class NoNetwork(AssertionError):
    pass


@pytest.fixture
def bag(dags_folder, monkeypatch):
    """A DagBag of the staged folder, filled with the network off and no variable set."""
    monkeypatch.delenv("CLICKSTREAM_LOCAL_DATAFLOW", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_CLICKSTREAM_ORCHESTRATION", raising=False)

    def refuse(*args, **kwargs):
        raise NoNetwork(f"the DAG file connects to {args[1:]} when parsed")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    started = time.perf_counter()
    bag = DagBag(dag_folder=str(dags_folder))
    bag.parse_seconds = time.perf_counter() - started
    return bag


def test_the_dag_imports_quickly_without_errors_or_work(bag):
    assert bag.import_errors == {}
    assert list(bag.dag_ids) == [DAG_ID]  # the core beside it is not parsed (.airflowignore)
    assert bag.parse_seconds < 20


def test_owner_tags_retries_and_no_schedule(bag):
    dag = bag.dags[DAG_ID]
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: runs per file
    assert {"clickstream", "lab-task-4"} <= set(dag.tags)
    assert not dag.catchup
    for task in dag.tasks:
        assert task.owner == "clickstream"
        assert task.retries >= 1, task.task_id


def test_the_steps_and_the_failure_announcement(bag):
    dag = bag.dags[DAG_ID]
    order = ["landed_file", "launch_request", "run_migration", "migration_counts"]
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert dag.get_task("announce_processed").upstream_task_ids == {
        "landed_file",
        "run_migration",
        "migration_counts",
    }
    failure = dag.get_task("announce_failure")
    assert failure.trigger_rule == "one_failed"
    assert failure.upstream_task_ids == set(order)
    assert [t.task_id for t in dag.topological_sort()][-1] in {
        "announce_processed",
        "announce_failure",
    }


def test_on_composer_the_job_is_the_providers_flex_template_operator(bag):
    run = bag.dags[DAG_ID].get_task("run_migration")
    assert type(run).__name__ == "DataflowStartFlexTemplateOperator"
    assert run.append_job_name is False  # a retried launch meets the running job by name
    assert "var.json.clickstream_orchestration.project" in run.project_id
    assert "var.json.clickstream_orchestration.region" in run.location


LOCAL_DATAFLOW = "http://127.0.0.1:8092/"  # the local stack's Dataflow API


@pytest.fixture
def local(dags_folder, monkeypatch):
    """The DAG as the local stack stages it: its Dataflow at LOCAL_DATAFLOW."""
    monkeypatch.setenv("CLICKSTREAM_LOCAL_DATAFLOW", LOCAL_DATAFLOW)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", '{"conn_type": "google_cloud_platform"}'
    )
    bag = DagBag(dag_folder=str(dags_folder))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def test_locally_the_providers_operator_and_hook_talk_to_the_local_dataflow(local):
    from airflow.providers.google.cloud.hooks.dataflow import DataflowHook
    from airflow.providers.google.cloud.operators.dataflow import (
        DataflowStartFlexTemplateOperator,
    )

    run = local.get_task("run_migration")
    assert isinstance(run, DataflowStartFlexTemplateOperator)
    assert run.append_job_name is False and run.deferrable is False
    assert "var.json.clickstream_orchestration.project" in run.project_id
    assert isinstance(run.hook, DataflowHook)
    assert run.hook.get_client_options().api_endpoint == LOCAL_DATAFLOW
    import clickstream_file_landed  # the counts: the provider's hook too, on the same API

    hook = clickstream_file_landed.dataflow_hook()
    assert isinstance(hook, DataflowHook)
    assert hook.get_client_options().api_endpoint == LOCAL_DATAFLOW


@pytest.fixture
def dag_module(bag, monkeypatch):
    import clickstream_file_landed

    monkeypatch.setenv("AIRFLOW_VAR_CLICKSTREAM_ORCHESTRATION", json.dumps(SETTINGS))
    return clickstream_file_landed


def test_the_launch_request_is_for_exactly_the_landed_file(dag_module):
    from clickstream.core import landing

    body = dag_module.launch_request.function(CONF)
    launch = body["launchParameter"]
    assert launch["parameters"] == {
        "input": "gs://my-bucket/landing/visits-2024-07-01.jsonl",
        "dataset": "clickstream",
        "bigquery_project": "my-project",
    }
    assert launch["jobName"] == landing.LandedFile.from_conf(CONF).job_name
    assert launch["containerSpecGcsPath"] == "gs://tpl-bucket/templates/batch_migration.json"
    assert launch["environment"] == {"sdkContainerImage": IMAGE}  # the workers have the catalog


def test_missing_settings_fail_without_retries(dag_module, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_VAR_CLICKSTREAM_ORCHESTRATION", json.dumps({"project": "p"}))
    with pytest.raises(AirflowFailException, match="lacks region, template_bucket, environment"):
        dag_module.launch_request.function(CONF)
    without_image = {
        **SETTINGS,
        "environment": {"serviceAccountEmail": "w@p.iam.gserviceaccount.com"},
    }
    monkeypatch.setenv("AIRFLOW_VAR_CLICKSTREAM_ORCHESTRATION", json.dumps(without_image))
    with pytest.raises(AirflowFailException, match="sdkContainerImage"):
        dag_module.launch_request.function(CONF)


def test_a_bad_configuration_fails_without_retries(dag_module):
    from airflow.sdk.exceptions import AirflowFailException

    run = types.SimpleNamespace(conf={"bucket": "my-bucket", "object": "landing/a.jsonl"})
    with pytest.raises(AirflowFailException, match="lacks generation"):
        dag_module.landed_file.function(dag_run=run)
