"""Every request body the project builds, checked against Google's REST discovery documents
(``fakes.discovery``): the declarations of every plan (in the JSON their API receives), the
flex-template launch, the template metadata, the tables and views, the lineage calls."""

import datetime
import json
import tempfile
from pathlib import Path

import pytest
from google.cloud import (
    artifactregistry_v1,
    dataplex_v1,
    iam_admin_v1,
    monitoring_dashboard_v1,
    monitoring_v3,
)
from google.cloud.logging_v2.types import LogMetric
from google.cloud.pubsub_v1 import types as pubsub_types

from clickstream import pipelines
from clickstream.core import contract, landing, names, templates
from clickstream.deploy import gcloud, settings
from clickstream.fakes import discovery
from clickstream.gcp import bigquery_tables, iam, lineage, plan, platform, storage, warehouse_plan
from clickstream.gcp import pubsub as pubsub_plan
from clickstream.monitoring import alerting
from clickstream.orchestration import deployment
from clickstream.project import areas

PROJECT, REGION, NUMBER = "my-project", "europe-west1", "123456789012"

# Each kind of declared resource: how its adapter sends it (its API's message, or the JSON
# itself) and its REST schema. Not checked: ``api`` (enabling a service sends no body) and
# ``gcloud`` (commands, checked by tests/test_gcloud_commands.py).
KINDS = {
    pubsub_plan.TOPIC: (pubsub_types.Topic, "pubsub.v1", "Topic"),
    pubsub_plan.SUBSCRIPTION: (pubsub_types.Subscription, "pubsub.v1", "Subscription"),
    alerting.LOG_METRIC: (LogMetric, "logging.v2", "LogMetric"),
    alerting.CHANNEL: (monitoring_v3.NotificationChannel, "monitoring.v3", "NotificationChannel"),
    alerting.POLICY: (monitoring_v3.AlertPolicy, "monitoring.v3", "AlertPolicy"),
    alerting.DASHBOARD: (monitoring_dashboard_v1.Dashboard, "monitoring.v1", "Dashboard"),
    "aspect-type": (dataplex_v1.AspectType, "dataplex.v1", "GoogleCloudDataplexV1AspectType"),
    "lake": (dataplex_v1.Lake, "dataplex.v1", "GoogleCloudDataplexV1Lake"),
    "zone": (dataplex_v1.Zone, "dataplex.v1", "GoogleCloudDataplexV1Zone"),
    "asset": (dataplex_v1.Asset, "dataplex.v1", "GoogleCloudDataplexV1Asset"),
    "entry-aspects": (dataplex_v1.Entry, "dataplex.v1", "GoogleCloudDataplexV1Entry"),
    platform.ACCOUNT: (iam_admin_v1.ServiceAccount, "iam.v1", "ServiceAccount"),
    platform.REPOSITORY: (artifactregistry_v1.Repository, "artifactregistry.v1", "Repository"),
    storage.BUCKET: (None, "storage.v1", "Bucket"),
    warehouse_plan.DATASET: (None, "bigquery.v2", "Dataset"),
    warehouse_plan.TABLE: (None, "bigquery.v2", "Table"),
    warehouse_plan.VIEW: (None, "bigquery.v2", "Table"),
}
UNCHECKED = (platform.API, gcloud.KIND)
SETTINGS = settings.Settings(
    PROJECT, REGION, "oncall@example.com", members={"analysts": ("group:analysts@example.com",)}
)


def declared() -> list[plan.Resource]:
    """Every resource the project declares but its templates' (built with gcloud)."""
    chosen = [area for area in areas.AREAS if area != "templates"]
    with tempfile.TemporaryDirectory() as build:
        found = areas.declare(SETTINGS, NUMBER, Path(build), chosen).resources
    return [*found, platform.repository(PROJECT, REGION, "clickstream", "images")]


def resolved(value):
    """References (names the server assigns) as a name of the right shape."""
    if isinstance(value, plan.Reference):
        return f"projects/{PROJECT}/{value.kind}s/{value.name}"
    if isinstance(value, dict):
        return {key: resolved(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolved(item) for item in value]
    return value


def api_json(message, fields: dict) -> dict:
    """``fields`` as the adapter sends them: parsed into the API's message, in JSON form."""
    if message is None:
        return resolved(fields)
    parsed = message.from_json(json.dumps(resolved(fields)))
    return json.loads(
        message.to_json(
            parsed, use_integers_for_enums=False, always_print_fields_with_no_presence=False
        )
    )


RESOURCES = declared()


def test_every_declared_kind_has_its_schema():
    assert {r.kind for r in RESOURCES} - {iam.KIND, *UNCHECKED} <= set(KINDS)


@pytest.mark.parametrize(
    "resource",
    [r for r in RESOURCES if r.kind not in (iam.KIND, *UNCHECKED)],
    ids=lambda r: r.label,
)
def test_declarations_are_what_their_api_takes(resource):
    message, api, schema = KINDS[resource.kind]
    assert discovery.problems(api_json(message, dict(resource.fields)), api, schema) == []


@pytest.mark.parametrize("resource", [r for r in RESOURCES if r.kind == iam.KIND], ids=str)
def test_iam_bindings_make_a_policy_the_api_takes(resource):
    policy = {
        "bindings": [{"role": r, "members": m} for r, m in resource.fields["bindings"].items()],
        "etag": "BwXhqDTb5Vs=",
        "version": 3,
    }
    assert discovery.problems(policy, "iam.v1", "Policy") == []


def test_the_flex_template_launch_is_what_dataflow_takes():
    file = landing.LandedFile("landing-1", "landing/visits-2024-07-01.jsonl", "42")
    settings = deployment.dag_settings(SETTINGS)
    body = templates.launch_request(
        names.MIGRATION_TEMPLATE,
        file.job_name,
        templates.template_file(names.MIGRATION_TEMPLATE, settings["template_bucket"]),
        {"input": file.url, "dataset": names.DATASET, "bigquery_project": PROJECT},
        settings["environment"],
    )
    assert discovery.problems(body, "dataflow.v1b3", "LaunchFlexTemplateRequest") == []


@pytest.mark.parametrize("name", pipelines.names())
def test_template_metadata_is_dataflows(name):
    assert discovery.problems(templates.metadata(name), "dataflow.v1b3", "TemplateMetadata") == []


@pytest.mark.parametrize("table", [*contract.TABLES, *contract.AGGREGATES])
def test_tables_are_bigquerys(table):
    ref = bigquery_tables.table_ref(f"{names.DATASET}.{table}", PROJECT)
    body = bigquery_tables.table_resource(ref, table).to_api_repr()
    assert discovery.problems(body, "bigquery.v2", "Table") == []


def test_lineage_calls_are_the_lineage_apis():
    moment = datetime.datetime(2024, 7, 1, 9, tzinfo=datetime.UTC)
    calls = lineage.run_calls(
        lineage.migration_process(PROJECT, REGION, None),
        "run-1",
        [("gcs:b.landing/a.jsonl", f"bigquery:{PROJECT}.{names.DATASET}.visits")],
        moment,
        moment,
    )
    bodies = {
        "CreateProcess": ("process", "GoogleCloudDatacatalogLineageV1Process"),
        "CreateRun": ("run", "GoogleCloudDatacatalogLineageV1Run"),
        "CreateLineageEvent": ("lineageEvent", "GoogleCloudDatacatalogLineageV1LineageEvent"),
    }
    assert {call.method for call in calls} == set(bodies)
    for call in calls:
        key, schema = bodies[call.method]
        assert discovery.problems(call.request[key], "datalineage.v1", schema) == [], call.method


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"ackDeadlineSecond": 10}, "Subscription.ackDeadlineSecond: no such field"),
        ({"ackDeadlineSeconds": "ten"}, "a integer"),
        ({"messageRetentionDuration": "7d"}, "google-duration"),
        ({"state": "ACTIVE"}, "output only"),
        ({"expirationPolicy": {"ttl": 86400}}, "Subscription.expirationPolicy.ttl"),
        ({"deadLetterPolicy": {"maxDeliveryAttempts": 5.5}}, "maxDeliveryAttempts"),
    ],
)
def test_the_check_finds_what_google_would_not_take(body, problem):
    found = discovery.problems(body, "pubsub.v1", "Subscription")
    assert found and problem in found[0]


def test_enums_are_checked():
    found = discovery.problems({"severity": "LOUD"}, "monitoring.v3", "AlertPolicy")
    assert found == ["AlertPolicy.severity: 'LOUD' is not one of SEVERITY_UNSPECIFIED, "
                     "CRITICAL, ERROR, WARNING"]  # fmt: skip
