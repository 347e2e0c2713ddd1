"""A whole project planned, applied and verified (``clickstream plan | apply | verify``) on a
fake Google Cloud project (``clickstream.project.fake_cloud``): every fake of the suite on
loopback over the emulators, the gcloud steps through the stand-in. From empty to all there, a
second apply that changes nothing, a changed setting that changes only what depends on it,
drift that verify reports, and destroy."""

import pytest
from google.cloud import monitoring_v3, pubsub_v1

from clickstream.cli import main as cli
from clickstream.core import names
from clickstream.fakes import platform
from clickstream.gcp import clients, plan
from clickstream.project import areas, fake_cloud, lifecycle

REGION = "europe-west1"


@pytest.fixture(scope="module")
def cloud(stack, tmp_path_factory):
    """A fake project with the catalog applied on it."""
    work = tmp_path_factory.mktemp("fake-cloud")
    with fake_cloud.FakeCloud("rehearsal-plan", REGION, work) as opened:
        opened.build = work / "build"
        opened.file = work / "clickstream.toml"
        settings = opened.settings()
        opened.file.write_text(
            f'project = "{settings.project}"\nregion = "{settings.region}"\n'
            f'email = "{settings.email}"\nproject_number = "{settings.project_number}"\n'
            '[members]\nanalysts = ["group:analysts@example.com"]\n'
        )
        deployment = lifecycle.Deployment.of(opened.settings(), opened.build)
        opened.first = deployment.planned()
        opened.applied = deployment.apply(opened.first)
        yield opened


def flags(cloud) -> list[str]:
    """The command line's: the settings file the fixture wrote (what the fake cloud's are)."""
    return ["--settings", str(cloud.file), "--build-dir", str(cloud.build)]


def test_a_fresh_project_gets_every_area_in_order(cloud):
    by_default = {  # a new project has these APIs: nothing else exists
        change.resource.name.rsplit("/", 1)[-1]
        for change in cloud.first
        if change.action == plan.UNCHANGED
    }
    assert by_default == set(platform.ENABLED_BY_DEFAULT) & set(areas.APIS_USED)
    assert all(c.action == plan.CREATE for c in cloud.first if c.action != plan.UNCHANGED)
    deployment = lifecycle.Deployment.of(cloud.settings(), cloud.build)
    order = [deployment.declaration.area_of(change.resource) for change in cloud.first]
    assert order == sorted(order, key=areas.AREAS.index)  # areas in dependency order
    assert set(order) == set(areas.AREAS)
    assert len(cloud.applied) == len(cloud.first) - len(by_default)
    kinds = {change.resource.kind for change in cloud.first}
    assert {"api", "service-account", "iam-policy", "bucket", "table", "gcloud"} <= kinds


def test_a_second_apply_changes_nothing_and_verify_finds_it_all(cloud, capsys):
    cli.main(["apply", *flags(cloud)])
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "Nothing to apply."
    assert out[-2] == f"Plan: 0 to create, 0 to update, 0 to replace, {len(cloud.first)} unchanged."
    cli.main(["verify", *flags(cloud)])
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"Verify: {len(cloud.first)} of {len(cloud.first)} as declared, 0 missing, 0 drifted, "
        "0 extra: the project is as declared."
    )


def test_a_new_image_tag_changes_exactly_what_depends_on_it(cloud):
    deployment = lifecycle.Deployment.of(cloud.settings(tag="v2"), cloud.build)
    changed = {
        c.resource.label: c.action for c in deployment.planned() if c.action != plan.UNCHANGED
    }
    images = {label for label in changed if label.startswith("gcloud image ")}
    files = {label for label in changed if label.startswith("gcloud template-file ")}
    assert len(images) == len(files) == 5 and all(label.endswith(":v2") for label in images)
    assert {changed[label] for label in images} == {plan.CREATE}
    assert {changed[label] for label in files} == {plan.UPDATE}  # they name the new image
    assert set(changed) - images - files == {  # and the DAG's launch names its workers' image
        "gcloud airflow-variable clickstream_orchestration"
    }


def test_verify_reports_a_missing_subscription_and_a_drifted_threshold(cloud, capsys):
    project = cloud.project_id
    pull = names.subscription_path(project, names.PULL_SUBSCRIPTION)
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.delete_subscription(subscription=pull)
    policies = clients.gapic(monitoring_v3.AlertPolicyServiceClient, "monitoring")
    policy = next(
        p
        for p in policies.list_alert_policies(name=f"projects/{project}")
        if p.user_labels.get(names.RESOURCE_LABEL) == "dos-policy"
    )
    policy.conditions[0].condition_threshold.threshold_value = 5
    policies.update_alert_policy(alert_policy=policy, update_mask={"paths": ["conditions"]})
    with pytest.raises(SystemExit) as stopped:
        cli.main(["verify", *flags(cloud)])
    assert stopped.value.code == 1
    out = capsys.readouterr().out
    assert f"missing  pubsub-subscription {pull}" in out
    assert "drifted  alert_policy dos-policy" in out
    assert "conditions.0.condition_threshold.threshold_value: 5.0 (declared 1000)" in out
    assert out.splitlines()[-1].endswith("the project is NOT as declared.")
    cli.main(["apply", *flags(cloud)])  # and apply mends both
    cli.main(["verify", *flags(cloud)])
    assert capsys.readouterr().out.splitlines()[-1].endswith("the project is as declared.")


def test_destroy_asks_first_then_leaves_only_the_apis(cloud, capsys):
    """Last: it takes the project down. Without a terminal, destroy needs --yes; with it, it
    deletes what holds data only with --delete-data, and verify then finds only the APIs."""
    with pytest.raises(SystemExit, match="pass --yes to confirm"):
        cli.main(["destroy", *flags(cloud)])
    planned = capsys.readouterr().out.splitlines()
    assert planned[-1].startswith("Destroy: ") and planned[-1].endswith(
        "to delete (the APIs stay enabled)."
    )
    with pytest.raises(SystemExit, match="holds objects: nothing deleted"):  # template files
        cli.main(["destroy", *flags(cloud), "--yes"])
    assert lifecycle.Deployment.of(cloud.settings(), cloud.build).verify().clean
    cli.main(["destroy", *flags(cloud), "--yes", "--delete-data"])
    assert capsys.readouterr().out.splitlines()[-1].startswith("Deleted ")
    left = [
        change.resource.label
        for change in lifecycle.Deployment.of(cloud.settings(), cloud.build).verify().changes
        if change.action != plan.CREATE and change.resource.kind not in lifecycle.KEPT_ON_DESTROY
    ]
    assert left == []
