"""The catalog's Pub/Sub planned and applied (``clickstream pubsub``): the real Pub/Sub client
against the emulator for the local stack, and, for Google Cloud, against the emulator behind
``clickstream.fakes.pubsub``, which adds what Google Cloud has and the emulator lacks (IAM,
expiration policies and their rules)."""

import pytest
from google.api_core import exceptions
from google.cloud import pubsub_v1

from clickstream.cli import main as cli
from clickstream.core import names
from clickstream.deploy import access
from clickstream.deploy import pubsub as deployment
from clickstream.deploy import settings as settings_module
from clickstream.fakes import pubsub as fake_pubsub
from clickstream.gcp import iam, pubsub

REGION, NUMBER = "europe-west1", "123456789"
AGENT = f"serviceAccount:service-{NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
DAY = 86400.0


class Clock:
    """Time that moves only when told to."""

    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def iam_service(stack, clock, monkeypatch):
    """Google Cloud's Pub/Sub: the emulator behind the fake front; clients point at the front."""
    fake = fake_pubsub.FakePubSub(f"127.0.0.1:{stack.pubsub_port}", clock)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", fake.address)
    yield fake
    fake.stop()


def pubsub_command(capsys, *args: str) -> str:
    cli.main(["pubsub", *args])
    return capsys.readouterr().out


def on_cloud(project: str) -> tuple[str, ...]:
    """The flags of a Google Cloud project (the clients find the fake at PUBSUB_EMULATOR_HOST)."""
    return ("--project", project, "--region", REGION, "--project-number", NUMBER)


def declared(project: str) -> list:
    """The catalog's Pub/Sub on ``project``, its grants included."""
    settings = settings_module.Settings(project, REGION, project_number=NUMBER)
    grants = access.bindings(access.grants(settings, NUMBER))
    on_pubsub = {
        r: roles for r, roles in grants.items() if "/topics/" in r or "/subscriptions/" in r
    }
    return deployment.cloud_resources(settings, on_pubsub)


def refused(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["pubsub", *args])
    return str(stopped.value.code)


def test_google_cloud_plan_apply_twice_and_drift(capsys, stack, iam_service):
    project = "pubsub-plan-cloud"
    where = on_cloud(project)
    target = settings_module.Settings(project, REGION)
    resources = declared(project)
    count = len(resources)
    first = pubsub_command(capsys, "plan", *where)
    assert (
        first.splitlines()[-1]
        == f"Plan: {count} to create, 0 to update, 0 to replace, 0 unchanged."
    )
    assert [line.split()[-1] for line in first.splitlines() if line.startswith("  + create")] == [
        r.name for r in resources
    ]
    applied = pubsub_command(capsys, "apply", *where)
    assert applied.splitlines()[-1] == f"Applied {count} changes."
    again = pubsub_command(capsys, "apply", *where)
    assert again.splitlines()[-2:] == [
        f"Plan: 0 to create, 0 to update, 0 to replace, {count} unchanged.",
        "Nothing to apply.",
    ]

    # What Google Cloud holds: the push subscription's token, retries, dead letters, IAM.
    path = names.subscription_path(project, names.PUSH_SUBSCRIPTION)
    with pubsub_v1.SubscriberClient() as subscriber:
        push = subscriber.get_subscription(subscription=path)
    url = deployment.function_url(target, names.PUSH_FUNCTION)
    assert push.push_config.push_endpoint == url
    assert push.push_config.oidc_token.service_account_email == target.account(
        names.INVOKER_ACCOUNT
    )
    assert push.push_config.oidc_token.audience == url
    assert push.retry_policy.maximum_backoff.total_seconds() == pubsub.MAX_RETRY_DELAY_SECONDS
    assert push.dead_letter_policy.dead_letter_topic.endswith("/topics/visits-dead-letter")
    pull = names.subscription_path(project, names.PULL_SUBSCRIPTION)
    reader = f"serviceAccount:{target.account(names.PULL_ACCOUNT)}"
    assert iam_service.iam.members(pull, "roles/pubsub.subscriber") == {AGENT, reader}
    dead = names.topic_path(project, "visits-dead-letter")
    assert iam_service.iam.members(dead, "roles/pubsub.publisher") == {AGENT}

    # Someone else's grant is kept; a changed setting is one update of that field.
    other = "user:analyst@example.com"
    iam_service.iam.grant(pull, "roles/pubsub.viewer", other)
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.update_subscription(
            request={
                "subscription": {"name": pull, "ack_deadline_seconds": 42},
                "update_mask": {"paths": ["ack_deadline_seconds"]},
            }
        )
    drift = pubsub_command(capsys, "plan", *where)
    assert f"  ~ update    {pubsub.SUBSCRIPTION} {pull}\n      ack_deadline_seconds: 10" in drift
    assert drift.splitlines()[-1] == (
        f"Plan: 0 to create, 1 to update, 0 to replace, {count - 1} unchanged."
    )
    assert pubsub_command(capsys, "apply", *where).splitlines()[-1] == "Applied 1 changes."
    assert iam_service.iam.members(pull, "roles/pubsub.viewer") == {other}
    assert iam_service.iam.members(pull, "roles/pubsub.subscriber") == {AGENT, reader}


def test_no_subscription_of_the_catalog_expires_dead_letters_included(capsys, iam_service, clock):
    """Pub/Sub deletes a subscription without an expiration policy after 31 idle days; the
    dead-letter subscriptions have no reader, so they would go first and later dead letters
    with them. The catalog declares every subscription never to expire."""
    project = "pubsub-plan-expiry"
    pubsub_command(capsys, "apply", *on_cloud(project))
    _, subscriber = iam_service.clients()
    topic = names.topic_path(project, names.TOPIC)
    someone = names.subscription_path(project, "someone-elses")
    subscriber.create_subscription(name=someone, topic=topic)  # no policy: 31 days
    clock.now += 32 * DAY
    iam_service.sweep()
    assert iam_service.expired == [someone]
    subscriptions = [r.name for r in declared(project) if r.kind == pubsub.SUBSCRIPTION]
    assert any(name.endswith("-dead-letter") for name in subscriptions)
    for name in subscriptions:
        found = subscriber.get_subscription(subscription=name)
        assert "expiration_policy" in found and "ttl" not in found.expiration_policy, name
    assert f"{len(declared(project))} unchanged." in pubsub_command(
        capsys, "plan", *on_cloud(project)
    )


def test_the_fake_applies_pubsubs_expiration_rules(iam_service, clock):
    publisher, subscriber = iam_service.clients()
    topic = "projects/expiry-rules/topics/visits"
    publisher.create_topic(name=topic)
    default = subscriber.create_subscription(
        name=topic.replace("topics", "subscriptions"), topic=topic
    )
    assert default.expiration_policy.ttl.total_seconds() == 31 * DAY  # the default policy
    with pytest.raises(exceptions.InvalidArgument, match=r"\[pubsub\.expiration-minimum\]"):
        subscriber.create_subscription(
            request={"name": "projects/expiry-rules/subscriptions/short", "topic": topic,
                     "expiration_policy": {"ttl": "3600s"}}
        )  # fmt: skip
    clock.now += 30 * DAY
    subscriber.get_subscription(subscription=default.name)  # an operation on it: activity
    clock.now += 30 * DAY
    iam_service.sweep()
    assert iam_service.expired == []  # active 30 days ago: 31 not reached
    clock.now += 2 * DAY
    iam_service.sweep()
    assert iam_service.expired == [default.name]


def test_a_subscription_on_another_topic_is_replaced_only_when_allowed(capsys, stack, iam_service):
    project = "pubsub-plan-replace"
    where = on_cloud(project)
    pubsub_command(capsys, "apply", *where)
    pull = names.subscription_path(project, names.PULL_SUBSCRIPTION)
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.delete_subscription(subscription=pull)
        stray = names.topic_path(project, "elsewhere")
        pubsub_v1.PublisherClient().create_topic(name=stray)
        subscriber.create_subscription(
            request={"name": pull, "topic": stray, "expiration_policy": pubsub.NEVER_EXPIRES}
        )
    planned = pubsub_command(capsys, "plan", *where)
    assert f"-/+ replace   {pubsub.SUBSCRIPTION} {pull}" in planned
    assert "topic: " in planned and "(cannot change in place)" in planned
    message = refused(capsys, "apply", *where)
    assert message.startswith(f"error: {pubsub.SUBSCRIPTION} {pull} would be deleted")
    with pubsub_v1.SubscriberClient() as subscriber:
        assert subscriber.get_subscription(subscription=pull).topic == stray  # untouched
    applied = pubsub_command(capsys, "apply", *where, "--allow-replace")
    assert f"done: -/+ replace {pubsub.SUBSCRIPTION} {pull}" in applied
    with pubsub_v1.SubscriberClient() as subscriber:
        assert subscriber.get_subscription(subscription=pull).topic.endswith("/topics/visits")
    assert f"{len(declared(project))} unchanged." in pubsub_command(capsys, "plan", *where)


def test_the_local_stack_converges_to_the_same_declarations(capsys, stack):
    applied = pubsub_command(capsys, "apply")
    assert applied.startswith("Pub/Sub of the local stack:")
    again = pubsub_command(capsys, "plan")
    labels = [r.label for r in deployment.local_resources(stack.project)]
    assert (
        again.splitlines()[-1]
        == f"Plan: 0 to create, 0 to update, 0 to replace, {len(labels)} unchanged."
    )
    assert all(kind != iam.KIND for kind in (r.kind for r in deployment.local_resources("p")))
    # The subscribers' commands converge what they need the same way: serving pushes sets
    # the endpoint, stopping clears it again, and the plan is back to unchanged.
    _, created = pubsub.ensure_subscription(
        stack.project, names.PUSH_SUBSCRIPTION, consumer="push", push_endpoint="http://127.0.0.1:9/"
    )
    assert not created
    assert "1 to update" in pubsub_command(capsys, "plan")
    pubsub.stop_pushing(stack.project, names.PUSH_SUBSCRIPTION)
    assert "0 to update" in pubsub_command(capsys, "plan")


def test_ensure_keeps_a_subscription_on_its_own_topic(stack, caplog):
    path, created = pubsub.ensure_subscription(stack.project, "ensure-kept", "ensure-a")
    assert created and pubsub.ensure_subscription(stack.project, path, "ensure-a") == (path, False)
    assert pubsub.ensure_subscription(stack.project, "ensure-kept", "ensure-b") == (path, False)
    assert "exists on projects/" in caplog.text and "/topics/ensure-a, not " in caplog.text
    with pubsub_v1.SubscriberClient() as subscriber:
        assert subscriber.get_subscription(subscription=path).topic.endswith("/ensure-a")


def test_google_cloud_without_credentials_or_region_says_what_is_missing(
    capsys, monkeypatch, tmp_path
):
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    message = refused(capsys, "plan", "--project", "p-1234", "--region", REGION)
    assert message.startswith("error: no Google Cloud credentials")
    message = refused(
        capsys, "apply", "--project", "p-1234", "--region", REGION, "--project-number", "123456"
    )
    assert message.startswith("error: no Google Cloud credentials")
    assert refused(capsys, "plan", "--project", "p-1234").startswith("error: region not set")
