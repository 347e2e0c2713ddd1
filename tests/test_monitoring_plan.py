"""``clickstream monitoring plan`` and ``apply``, as a user runs them, through the real client
libraries against fakes of the four Google services on loopback
(``clickstream.fakes.monitoring``)."""

import json

import pytest
from google.api_core import exceptions
from google.cloud import monitoring_dashboard_v1, monitoring_v3
from google.cloud.logging_v2.types import LogMetric

from clickstream.cli import main
from clickstream.core import names
from clickstream.deploy import pubsub
from clickstream.fakes.monitoring import FakeGoogle
from clickstream.gcp import plan
from clickstream.monitoring import adapters, alerting, drill_docs, production

PROJECT, EMAIL = "my-project", "oncall@example.com"
DECLARED = production.resources(
    alerting.Alerting(PROJECT, EMAIL), pubsub.subscriptions(streaming=True)
)
COUNT = len(DECLARED)  # the DoS drill's 5 resources and the production alerting's
MESSAGES = {
    alerting.LOG_METRIC: LogMetric,
    alerting.CHANNEL: monitoring_v3.NotificationChannel,
    alerting.POLICY: monitoring_v3.AlertPolicy,
    alerting.DASHBOARD: monitoring_dashboard_v1.Dashboard,
}


@pytest.fixture
def google():
    with FakeGoogle() as fake:
        yield fake


def labelled(items: dict, key: str):
    """The one resource of ``items`` (a fake's policies or dashboards) labelled ``key``."""
    (found,) = [item for item in items.values() if item_label(item) == key]
    return found


def item_label(item) -> str:
    labels = item.user_labels if hasattr(item, "user_labels") else item.labels
    return labels[names.RESOURCE_LABEL]


def monitoring(capsys, action: str, fake: FakeGoogle | None, *flags: str) -> str:
    """Run ``clickstream monitoring ACTION``; its output (SystemExit propagates)."""
    endpoint = ["--endpoint", fake.endpoint] if fake else []
    capsys.readouterr()
    main.main(["monitoring", action, "--project", PROJECT, "--email", EMAIL, *endpoint, *flags])
    return capsys.readouterr().out


def refused(capsys, argv: list[str]) -> str:
    """The one line a refused command prints."""
    with pytest.raises(SystemExit) as stopped:
        main.main(argv)
    message = str(stopped.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


def test_declared_fields_are_what_the_apis_give_back():
    """Each resource, read back through its message type, holds exactly the declared values, so
    a resource that apply made plans as unchanged."""
    for resource in DECLARED:
        # A reference as the name Google would give: projects/P/alert_policys/1 will do.
        text = json.dumps(resource.fields, default=lambda ref: f"projects/{PROJECT}/{ref.kind}s/1")
        named = json.loads(text)
        message = MESSAGES[resource.kind].from_json(text)
        back = type(message).to_dict(message, use_integers_for_enums=False)
        assert plan.differences(named, back) == [], resource.label


def test_plan_of_a_fresh_project_is_the_documented_one(capsys, google):
    """The DoS resources as docs/dos-drill.md shows them, then a policy per alert of
    docs/alerts.md and their dashboard."""
    printed = monitoring(capsys, "plan", google)
    dos = drill_docs.fresh_plan().splitlines()[:-1]
    assert printed.splitlines()[: len(dos)] == dos
    created = [line for line in printed.splitlines() if line.startswith("  + create")]
    watches = production.Production(PROJECT, tuple(pubsub.subscriptions(streaming=True))).watches()
    assert created[5:] == [
        f"  + create    log_metric {production.UNRECONCILED_METRIC}",
        *(f"  + create    alert_policy {watch.key}" for watch in watches),
        "  + create    dashboard production-dashboard",
    ]
    assert printed.splitlines()[-1] == (
        f"Plan: {COUNT} to create, 0 to update, 0 to replace, 0 unchanged."
    )
    assert google.mutating_calls() == []


def test_every_template_and_subscriber_has_its_policies():
    keys = {resource.name for resource in DECLARED if resource.kind == alerting.POLICY}
    for template in ("raw_to_gcs", "streaming_to_bigquery", "page_views_per_minute"):
        assert {f"{template}-failed", f"{template}-system-lag", f"{template}-watermark-age"} < keys
    assert "batch_migration-failed" in keys and "batch_migration-system-lag" not in keys
    for subscription in (
        names.PUSH_SUBSCRIPTION,
        names.PULL_SUBSCRIPTION,
        "files-processed-notify",
    ):
        assert {f"{subscription}-backlog-age", f"{subscription}-backlog-size"} < keys
    assert {"visits-dead-letter-messages", "files-processed-dead-letter-messages"} < keys
    assert {"push-errors", "pull-group-empty", "dead-letter-rows", "dos-policy"} < keys
    channels = {
        json.dumps(resource.fields["notification_channels"], default=str)
        for resource in DECLARED
        if resource.kind == alerting.POLICY
    }
    assert channels == {json.dumps([plan.Reference(alerting.CHANNEL, alerting.EMAIL)], default=str)}
    for resource in DECLARED:
        if resource.kind == alerting.POLICY:
            assert "Runbook: docs/" in resource.fields["documentation"]["content"]


def test_apply_then_plan_is_all_unchanged_and_writes_nothing_more(capsys, google):
    applied = monitoring(capsys, "apply", google)
    done = [line for line in applied.splitlines() if line.startswith("done: ")]
    assert done[:5] == [
        "done: + create log_metric clickstream_dos_page_views",
        "done: + create log_metric clickstream_dos_windows_over_threshold",
        "done: + create notification_channel dos-email",
        "done: + create alert_policy dos-policy",
        "done: + create dashboard dos-dashboard",
    ]
    assert len(done) == COUNT and applied.splitlines()[-1] == f"Applied {COUNT} changes."
    policy = labelled(google.policies, "dos-policy")
    (channel,) = google.channels.values()
    dashboard = labelled(google.dashboards, "dos-dashboard")
    assert {tuple(p.notification_channels) for p in google.policies.values()} == {(channel.name,)}
    tiles = labelled(google.dashboards, "production-dashboard").grid_layout.widgets
    assert {tile.alert_chart.name for tile in tiles} | {policy.name} == set(google.policies)
    assert list(policy.notification_channels) == [channel.name]
    assert dashboard.grid_layout.widgets[0].alert_chart.name == policy.name
    assert policy.conditions[0].condition_threshold.threshold_value == 1000
    writes = len(google.mutating_calls())
    again = monitoring(capsys, "apply", google)
    assert again.splitlines()[-2:] == [
        f"Plan: 0 to create, 0 to update, 0 to replace, {COUNT} unchanged.",
        "Nothing to apply.",
    ]
    assert len(google.mutating_calls()) == writes == COUNT


def test_a_new_threshold_is_one_update_of_the_policy_with_its_field_mask(capsys, google):
    monitoring(capsys, "apply", google)
    writes = len(google.mutating_calls())
    planned = monitoring(capsys, "plan", google, "--threshold", "1500")
    assert planned.splitlines()[:7] == [
        "  = unchanged log_metric clickstream_dos_page_views",
        "  = unchanged log_metric clickstream_dos_windows_over_threshold",
        "  = unchanged notification_channel dos-email",
        "  ~ update    alert_policy dos-policy",
        "      conditions.0.condition_threshold.threshold_value: 1500",
        "  = unchanged dashboard dos-dashboard",
        f"  = unchanged log_metric {production.UNRECONCILED_METRIC}",
    ]
    assert planned.splitlines()[-1] == (
        f"Plan: 0 to create, 1 to update, 0 to replace, {COUNT - 1} unchanged."
    )
    monitoring(capsys, "apply", google, "--threshold", "1500")
    ((method, request),) = google.mutating_calls()[writes:]
    assert method == "UpdateAlertPolicy"
    assert list(request.update_mask.paths) == ["conditions"]
    policy = labelled(google.policies, "dos-policy")
    assert policy.conditions[0].condition_threshold.threshold_value == 1500
    assert f"{COUNT} unchanged" in monitoring(capsys, "plan", google, "--threshold", "1500")


def test_a_production_threshold_is_a_parameter(capsys, google):
    monitoring(capsys, "apply", google)
    writes = len(google.mutating_calls())
    flags = ("--alert-threshold", "backlog_age=900")
    planned = monitoring(capsys, "plan", google, *flags).splitlines()
    updates = [line for line in planned if line.startswith("  ~ update")]
    subscriptions = [s.name for s in pubsub.subscriptions(streaming=True)]
    assert updates == [f"  ~ update    alert_policy {name}-backlog-age" for name in subscriptions]
    monitoring(capsys, "apply", google, *flags)
    assert len(google.mutating_calls()) == writes + len(subscriptions)
    policy = labelled(google.policies, "visits-pull-backlog-age")
    assert policy.conditions[0].condition_threshold.threshold_value == 900


def test_a_changed_metric_descriptor_is_a_replace(capsys, google):
    """The counter the hand-pasted gcloud commands of old made: no labels, another filter."""
    clients = adapters.Clients(google.endpoint)
    old = {
        "name": "clickstream_dos_windows_over_threshold",
        "filter": f'logName="projects/{PROJECT}/logs/clickstream-dos" '
        "AND jsonPayload.over_threshold=true",
        "metric_descriptor": {"metric_kind": "DELTA", "value_type": "INT64"},
    }
    clients.metrics.create_log_metric(
        parent=f"projects/{PROJECT}", metric=LogMetric.from_json(json.dumps(old))
    )
    clients.close()
    planned = monitoring(capsys, "plan", google).splitlines()
    at = planned.index("-/+ replace   log_metric clickstream_dos_windows_over_threshold")
    frozen = " (cannot change in place)"
    assert [
        line.split(":")[0].strip() + (frozen if frozen in line else "")
        for line in planned[at + 1 : at + 7]
    ] == [
        "description",
        "filter",
        "metric_descriptor.unit" + frozen,
        "metric_descriptor.display_name" + frozen,
        "metric_descriptor.labels" + frozen,
        "label_extractors.timing",
    ]
    assert planned[at + 7] == "  + create    notification_channel dos-email"
    applied = monitoring(capsys, "apply", google)
    assert "done: -/+ replace log_metric clickstream_dos_windows_over_threshold" in applied
    methods = [method for method, _ in google.mutating_calls()]
    assert methods[1:4] == [
        "DeleteLogMetric",
        "CreateLogMetric",
        "CreateLogMetric",
    ]  # deletions first
    assert f"{COUNT} unchanged" in monitoring(capsys, "plan", google)


def test_a_new_email_updates_the_channel_in_place(capsys, google):
    monitoring(capsys, "apply", google)
    (before,) = google.channels
    writes = len(google.mutating_calls())
    endpoint = ["--endpoint", google.endpoint]
    main.main(
        ["monitoring", "apply", "--project", PROJECT, "--email", "sre@example.com", *endpoint]
    )
    ((method, request),) = google.mutating_calls()[writes:]
    assert (method, list(request.update_mask.paths)) == ("UpdateNotificationChannel", ["labels"])
    assert list(google.channels) == [before]
    assert google.channels[before].labels["email_address"] == "sre@example.com"


def test_apply_waits_for_a_new_metric_to_reach_monitoring(capsys):
    with FakeGoogle(metric_delay=0.4) as google:
        applied = monitoring(capsys, "apply", google, "--wait-for-metrics", "4")
        refusals = [r for r in google.refusals if r[0] == "CreateAlertPolicy"]
    assert refusals and all("Cannot find metric(s)" in message for *_, message in refusals)
    assert "waiting for a new log-based metric to reach Cloud Monitoring" in applied
    assert applied.splitlines()[-1] == f"Applied {COUNT} changes."


def test_apply_gives_up_after_waiting_and_a_rerun_finishes(capsys):
    with FakeGoogle(metric_delay=3600.0) as google:
        with pytest.raises(SystemExit) as stopped:
            monitoring(capsys, "apply", google, "--wait-for-metrics", "0.5")
        assert str(stopped.value.code).startswith("error: Timeout of 0.5s exceeded")
        assert len(google.metrics) == 2 and google.channels and not google.policies
        google.metric_delay = 0.0
        google.metric_visible_at = dict.fromkeys(google.metric_visible_at, 0.0)
        rerun = monitoring(capsys, "apply", google)
    assert "3 unchanged" in rerun and rerun.splitlines()[-1] == f"Applied {COUNT - 3} changes."


def test_a_deleted_policy_is_created_again_and_the_dashboard_pointed_at_it(capsys, google):
    monitoring(capsys, "apply", google)
    google.policies.clear()
    planned = monitoring(capsys, "plan", google).splitlines()
    assert "  + create    alert_policy dos-policy" in planned
    at = planned.index("  ~ update    dashboard dos-dashboard")
    assert planned[at + 1] == (
        "      grid_layout.widgets.0.alert_chart.name: "
        '"(name of alert_policy dos-policy, known after apply)"'
    )
    monitoring(capsys, "apply", google)
    policy = labelled(google.policies, "dos-policy")
    dashboard = labelled(google.dashboards, "dos-dashboard")
    assert dashboard.grid_layout.widgets[0].alert_chart.name == policy.name


def test_a_dashboard_changed_since_the_plan_is_not_overwritten(capsys, google):
    monitoring(capsys, "apply", google)
    clients = adapters.Clients(google.endpoint)
    api = adapters.adapters(clients, PROJECT)
    changes = plan.plan(alerting.Alerting(PROJECT, EMAIL, log_name="other-log").resources(), api)
    dashboard = labelled(google.dashboards, "dos-dashboard")
    edited = monitoring_dashboard_v1.Dashboard(dashboard)
    edited.display_name = "edited in the console"
    clients.dashboards.update_dashboard(request={"dashboard": edited})
    with pytest.raises(exceptions.Aborted, match="was changed since it was read"):
        plan.apply(changes, api)
    clients.close()
    assert google.dashboards[dashboard.name].display_name == "edited in the console"


def test_two_resources_with_one_label_are_refused_by_name(capsys, google):
    monitoring(capsys, "apply", google)
    clients = adapters.Clients(google.endpoint)
    (channel,) = google.channels.values()
    copy = monitoring_v3.NotificationChannel(channel)
    copy.name = ""
    clients.channels.create_notification_channel(
        name=f"projects/{PROJECT}", notification_channel=copy
    )
    clients.close()
    message = refused(
        capsys,
        [
            "monitoring",
            "plan",
            "--project",
            PROJECT,
            "--email",
            EMAIL,
            "--endpoint",
            google.endpoint,
        ],
    )
    assert "2 notification_channels of projects/my-project carry the label" in message
    assert "delete all but one" in message


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--email", "not-an-address"], "'not-an-address' is not an email address"),
        (["--email", "a@b"], "'a@b' is not an email address"),
        (["--threshold", "0"], "threshold must be a positive number of page views, not '0'"),
        (["--threshold", "-5"], "not '-5'"),
        (["--threshold", "many"], "not 'many'"),
        (["--threshold", "nan"], "not 'nan'"),
        (["--project", "My_Project"], "'My_Project' is not a Google Cloud project id"),
        (["--log-name", "bad log"], "'bad log' is not a log name"),
        (["--window-seconds", "0"], "window must be a whole number of seconds from 1 to 99999"),
        (["--window-seconds", "1m"], "not '1m'"),
    ],
)
def test_bad_input_is_one_line_and_touches_nothing(capsys, google, flags, says):
    argv = ["monitoring", "apply", "--project", PROJECT, "--email", EMAIL]
    argv += ["--endpoint", google.endpoint, *flags]
    assert says in refused(capsys, argv)
    assert google.calls == []


def test_without_credentials_or_project_it_says_what_is_missing(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    message = refused(capsys, ["monitoring", "plan", "--project", PROJECT, "--email", EMAIL])
    assert message.startswith("error: no Google Cloud credentials")
    message = refused(capsys, ["monitoring", "apply", "--email", EMAIL])
    assert "need --project" in message and "clickstream monitoring drill" in message


def test_the_drill_page_is_fresh():
    assert drill_docs.write(pubsub.subscriptions(streaming=True), check=True) == [], (
        "run `clickstream monitoring docs`"
    )
