"""The Pub/Sub side, defined once: topics, their dead-letter topics, the subscriptions of every
consumer with their delivery policy, declared as ``clickstream.gcp.plan`` resources; and the
publisher client.

Four kinds of consumer, each with its policy (``POLICIES``):

- ``push`` and ``pull`` (the subscribers, and ``clickstream subscribe files``): a dead-letter
  topic after ``MAX_DELIVERY_ATTEMPTS`` and, on Google Cloud, a retry policy (backoff between
  redeliveries). The emulator (0.8.20) stops redelivering the expired messages of a subscription
  with a retry policy (after a subscriber was killed, none of its 100 leased messages came back
  within 40 s with one; without one they all did, after 7 to 27 s), so the local stack's
  subscriptions have none.
- ``dataflow`` (the streaming specs): no dead-letter topic and no retry policy. Dataflow's
  Pub/Sub source extends and acknowledges messages itself, so delivery attempts do not mean a
  message failed; the specs route bad records to the ``dead_letter`` table instead.
- ``kept``: the subscription of a dead-letter topic, named after it, which keeps what lands
  there (a topic alone drops it).

On Google Cloud every subscription is declared never to expire (an ``expiration_policy``
without ``ttl``; the emulator expires nothing and refuses to update the field).
Without one, Pub/Sub deletes a subscription after 31 days without activity
(``Subscription.expirationPolicy`` in the API reference): a dead-letter subscription has no
reader at all, and a pull subscriber stopped for a month would find its subscription gone and
everything published since lost. The catalog's subscriptions are removed deliberately or not at
all.

``resources`` declares them; ``adapters`` reads and changes them with the client library, on
the emulator when ``PUBSUB_EMULATOR_HOST`` is set. On Google Cloud they are planned and applied
whole, IAM included (``clickstream pubsub plan|apply``, ``clickstream.deploy.pubsub``); on the
local stack each command converges what it needs (``ensure_topic``, ``ensure_subscription``).
A subscription's topic cannot change in place: the plan replaces it (its backlog is lost), which
``clickstream pubsub apply`` does only when told to; ``ensure_subscription`` never does.
"""

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1 import types

from clickstream.core import names
from clickstream.gcp import iam, plan

MAX_DELIVERY_ATTEMPTS = 10  # then the message goes to the dead-letter topic
MIN_RETRY_DELAY_SECONDS = 10  # redelivery backoff after a nack or a failed push (Google Cloud)
MAX_RETRY_DELAY_SECONDS = 600
RETENTION_DAYS = 7  # acked messages too: seeking back a few days replays them
# An expiration policy without ttl (none at all: 31 days idle, deleted).
NEVER_EXPIRES: dict[str, Any] = {}
# The publisher's batching and flow control: bounded memory when Pub/Sub is slower than us.
BATCH = {"max_messages": 1000, "max_bytes": 4_000_000, "max_latency": 0.05}
FLOW_CONTROL = {"message_limit": 20_000, "byte_limit": 64_000_000}
TOPIC, SUBSCRIPTION = "pubsub-topic", "pubsub-subscription"  # the plan's kinds

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Policy:
    """How a subscription delivers: its first lease, whether failures are dead-lettered, and
    whether redeliveries back off (Google Cloud only)."""

    ack_deadline_seconds: int
    dead_letter: bool
    retry: bool


POLICIES = {
    "push": Policy(ack_deadline_seconds=60, dead_letter=True, retry=True),  # one push's time
    # The first lease: the client extends it while it holds a message.
    "pull": Policy(ack_deadline_seconds=10, dead_letter=True, retry=True),
    "dataflow": Policy(ack_deadline_seconds=60, dead_letter=False, retry=False),
    "kept": Policy(ack_deadline_seconds=10, dead_letter=False, retry=False),
}


@dataclasses.dataclass(frozen=True)
class Subscription:
    """A subscription (a name or a full path) of ``topic`` for a ``consumer`` of ``POLICIES``;
    a push subscription delivers to ``push_endpoint``, on Google Cloud with an OIDC token for
    ``push_identity`` (a service account) whose audience is the endpoint."""

    name: str
    topic: str = names.TOPIC
    consumer: str = "pull"
    push_endpoint: str | None = None
    push_identity: str | None = None


def publisher_client() -> pubsub_v1.PublisherClient:
    """A publisher with batching and flow control (the emulator when ``PUBSUB_EMULATOR_HOST``
    is set)."""
    flow = types.PublishFlowControl(
        **FLOW_CONTROL, limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK
    )
    return pubsub_v1.PublisherClient(
        batch_settings=types.BatchSettings(**BATCH),
        publisher_options=types.PublisherOptions(flow_control=flow),
    )


def _topic(path: str) -> plan.Resource:
    return plan.Resource(TOPIC, path, {})


def _subscription(project: str, declared: Subscription, cloud: bool) -> plan.Resource:
    policy = POLICIES[declared.consumer]
    topic = names.topic_path(project, declared.topic)
    push: dict[str, Any] = {"push_endpoint": declared.push_endpoint or ""}
    if cloud and declared.push_endpoint and declared.push_identity:
        push["oidc_token"] = {
            "service_account_email": declared.push_identity,
            "audience": declared.push_endpoint,
        }
    dead_letter = retry = None
    if policy.dead_letter:
        dead_letter = {
            "dead_letter_topic": dead_letter_topic_path(project, topic),
            "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
        }
    if cloud and policy.retry:
        retry = {
            "minimum_backoff": f"{MIN_RETRY_DELAY_SECONDS}s",
            "maximum_backoff": f"{MAX_RETRY_DELAY_SECONDS}s",
        }
    fields: dict[str, Any] = {
        "topic": topic,
        "push_config": push,
        "ack_deadline_seconds": policy.ack_deadline_seconds,
        "retain_acked_messages": True,
        "message_retention_duration": f"{RETENTION_DAYS * 86400}s",
        "dead_letter_policy": dead_letter,  # None: it has none
        "retry_policy": retry,
    }
    if cloud:  # the emulator expires nothing, and refuses to update an expiration policy
        fields["expiration_policy"] = NEVER_EXPIRES
    path = names.subscription_path(project, declared.name)
    return plan.Resource(
        SUBSCRIPTION, path, fields, immutable=("topic",), after=(f"{TOPIC} {topic}",)
    )


def dead_letter_topic_path(project: str, topic: str) -> str:
    """The path of the dead-letter topic of ``topic`` (a name or a full path)."""
    return names.topic_path(project, names.dead_letter_topic(topic.rsplit("/", 1)[-1]))


def resources(
    project: str,
    subscriptions: Iterable[Subscription],
    cloud: bool = False,
    grants: Mapping[str, Mapping[str, list[str]]] | None = None,
) -> list[plan.Resource]:
    """The topics, dead-letter topics with their kept subscriptions, and ``subscriptions``,
    each declared once, dependencies first; then the IAM ``grants`` (resource path -> role ->
    members). ``cloud``: with what only Google Cloud holds (retry policies, push tokens)."""
    declared: dict[str, plan.Resource] = {}

    def add(resource: plan.Resource) -> None:
        declared.setdefault(resource.label, resource)

    for subscription in subscriptions:
        topic = names.topic_path(project, subscription.topic)
        add(_topic(topic))
        if POLICIES[subscription.consumer].dead_letter:
            dead = dead_letter_topic_path(project, topic)
            add(_topic(dead))
            add(_subscription(project, Subscription(dead.rsplit("/", 1)[-1], dead, "kept"), cloud))
        add(_subscription(project, subscription, cloud))
    for path, bindings in (grants or {}).items():
        owner = next((r for r in declared.values() if r.name == path), None)
        if owner is None:
            raise plan.PlanError(f"IAM on {path}, which is not declared")
        add(iam.policy(path, {role: sorted(m) for role, m in bindings.items()}, (owner.label,)))
    return list(declared.values())


class Topics:
    """Topics, by path: they declare no field, so they are only created or deleted."""

    def __init__(self, publisher: pubsub_v1.PublisherClient):
        self.publisher = publisher

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        try:
            return plan.fields_of(self.publisher.get_topic(topic=resource.name))
        except exceptions.NotFound:
            return None

    def create(self, resource: plan.Resource) -> dict[str, Any]:
        return plan.fields_of(self.publisher.create_topic(request={"name": resource.name}))

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        raise plan.PlanError(f"{resource.label}: topics declare no field to update")

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self.publisher.delete_topic(topic=resource.name)


class Subscriptions:
    """Subscriptions, by path: updated with a mask of the changed top-level fields."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient):
        self.subscriber = subscriber

    @staticmethod
    def _message(resource: plan.Resource) -> types.Subscription:
        return types.Subscription.from_json(json.dumps({"name": resource.name, **resource.fields}))

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        try:
            return plan.fields_of(self.subscriber.get_subscription(subscription=resource.name))
        except exceptions.NotFound:
            return None

    def create(self, resource: plan.Resource) -> dict[str, Any]:
        return plan.fields_of(self.subscriber.create_subscription(request=self._message(resource)))

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        mask = {"paths": plan.top_level(fields)}
        request = {"subscription": self._message(resource), "update_mask": mask}
        self.subscriber.update_subscription(request=request)

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self.subscriber.delete_subscription(subscription=resource.name)


def adapters(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    policies: pubsub_v1.PublisherClient | None = None,
) -> dict[str, plan.Adapter]:
    """The adapter of each kind of ``resources``; IAM through ``policies`` (by default the
    publisher: Pub/Sub serves one IAM policy API for topics and subscriptions)."""
    return {
        TOPIC: Topics(publisher),
        SUBSCRIPTION: Subscriptions(subscriber),
        iam.KIND: iam.Policies(policies or publisher),
    }


def _refuse_replacement(changes: list[plan.Change]) -> None:
    for change in changes:
        if change.action == plan.REPLACE:
            raise plan.PlanError(
                f"{change.resource.label} is a subscription of "
                f"{(change.current or {}).get('topic')}, and a subscription's topic cannot "
                "change: delete it, or choose another name"
            )


@contextlib.contextmanager
def local_api() -> Iterator[dict[str, plan.Adapter]]:
    """The adapters on the default clients (the emulator when ``PUBSUB_EMULATOR_HOST`` is set)."""
    with pubsub_v1.SubscriberClient() as subscriber:
        yield adapters(pubsub_v1.PublisherClient(), subscriber)


def _plan_and_apply(
    declared: list[plan.Resource], api: Mapping[str, plan.Adapter]
) -> list[plan.Change]:
    changes = plan.plan(declared, api)
    _refuse_replacement(changes)
    plan.apply(changes, api)
    return changes


def converge(
    declared: list[plan.Resource], api: Mapping[str, plan.Adapter] | None = None
) -> list[plan.Change]:
    """Plan and apply ``declared`` (the local stack's, without IAM) through ``api`` (default:
    ``local_api``), refusing a replacement (it would drop a subscription's messages); a
    resource created by someone else between plan and apply is planned again, once. Returns
    the plan applied."""
    if api is None:
        with local_api() as api:
            return converge(declared, api)
    try:
        return _plan_and_apply(declared, api)
    except exceptions.AlreadyExists:  # a concurrent command created it: converge again
        return _plan_and_apply(declared, api)


def ensure_topic(project: str, topic: str = names.TOPIC) -> bool:
    """Create the topic (a name or a full path) unless it exists; True if it was created."""
    return converge([_topic(names.topic_path(project, topic))])[0].action == plan.CREATE


def ensure_subscription(
    project: str,
    subscription: str,
    topic: str = names.TOPIC,
    consumer: str = "pull",
    push_endpoint: str | None = None,
) -> tuple[str, bool]:
    """Converge the topic, its dead-letter topic when the consumer's policy has one, and the
    subscription (a name or a full path; pushing to ``push_endpoint`` if given) with the
    ``consumer``'s policy: created if missing, its settings (the push endpoint too) updated if
    they differ. ``topic`` is where a missing subscription is created: one that exists stays on
    its own topic (said in a warning when that is another). Returns (the subscription's path,
    whether it was created)."""
    path = names.subscription_path(project, subscription)
    with local_api() as api:
        existing = api[SUBSCRIPTION].read(plan.Resource(SUBSCRIPTION, path, {}))
        wanted = names.topic_path(project, topic)
        if existing and existing["topic"] != wanted:
            log.warning("%s exists on %s, not %s: used as it is", path, existing["topic"], wanted)
            topic = existing["topic"]
        declared = Subscription(subscription, topic, consumer, push_endpoint)
        changes = converge(resources(project, [declared]), api)
    mine = next(c for c in changes if c.resource.name == path)
    return path, mine.action == plan.CREATE


def stop_pushing(project: str, subscription: str) -> None:
    """Turn a push subscription into a pull one: it keeps its messages, and nothing pushes
    them to an endpoint that is gone (``ensure_subscription`` points it at the next one)."""
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.modify_push_config(
            subscription=names.subscription_path(project, subscription), push_config={}
        )


def subscription_count(project: str, topic: str = names.TOPIC) -> int:
    """How many subscriptions the topic has (a message published to none is dropped)."""
    client = pubsub_v1.PublisherClient()
    return len(list(client.list_topic_subscriptions(topic=names.topic_path(project, topic))))


def publish(project: str, payloads: Iterable[bytes], topic: str = names.TOPIC) -> list[str]:
    """Publish each payload as one message (no attributes), with batching and flow control;
    returns the message ids once all are sent."""
    publisher = publisher_client()
    path = names.topic_path(project, topic)
    futures = [publisher.publish(path, payload) for payload in payloads]
    ids = [future.result() for future in futures]
    publisher.stop()
    return ids
