"""The Pub/Sub side, defined once: the visits topic, its dead-letter topic, the subscriptions of
every consumer and their delivery policy, and the publisher client.

Three kinds of consumer, each with its policy (``POLICIES``):

- ``push`` and ``pull`` (the subscribers): a dead-letter topic after ``MAX_DELIVERY_ATTEMPTS``
  and, on Google Cloud, a retry policy (backoff between redeliveries). The emulator (0.8.20)
  stops redelivering the expired messages of a subscription with a retry policy (after a
  subscriber was killed, none of its 100 leased messages came back within 40 s with one; without
  one they all did, after 7 to 27 s), so the local stack's subscriptions have none.
- ``dataflow`` (the streaming specs): no dead-letter topic and no retry policy. Dataflow's
  Pub/Sub source extends and acknowledges messages itself, so delivery attempts do not mean a
  message failed; the specs route bad records to the ``dead_letter`` table instead.

The local stack gets them from ``ensure_subscription``; Google Cloud from the gcloud commands of
``clickstream.deploy``, built from the same values.
"""

import dataclasses
from collections.abc import Iterable

from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1 import types
from google.protobuf import duration_pb2

from clickstream.core import names

MAX_DELIVERY_ATTEMPTS = 10  # then the message goes to the dead-letter topic
MIN_RETRY_DELAY_SECONDS = 10  # redelivery backoff after a nack or a failed push (Google Cloud)
MAX_RETRY_DELAY_SECONDS = 600
RETENTION_DAYS = 7  # acked messages too: seeking back a few days replays them
# The publisher's batching and flow control: bounded memory when Pub/Sub is slower than us.
BATCH = {"max_messages": 1000, "max_bytes": 4_000_000, "max_latency": 0.05}
FLOW_CONTROL = {"message_limit": 20_000, "byte_limit": 64_000_000}


@dataclasses.dataclass(frozen=True)
class Policy:
    """How a subscription delivers: its first lease, and whether failures are dead-lettered."""

    ack_deadline_seconds: int
    dead_letter: bool


POLICIES = {
    "push": Policy(ack_deadline_seconds=60, dead_letter=True),  # how long one push may take
    # The first lease: the client extends it while it holds a message.
    "pull": Policy(ack_deadline_seconds=10, dead_letter=True),
    "dataflow": Policy(ack_deadline_seconds=60, dead_letter=False),
}


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


def _create(method, **kwargs) -> bool:
    """Call a create method; False when the resource exists already."""
    try:
        method(**kwargs)
    except exceptions.AlreadyExists:
        return False
    return True


def ensure_topic(project: str, topic: str = names.TOPIC) -> bool:
    """Create the topic (a name or a full path) unless it exists; True if it was created."""
    client = pubsub_v1.PublisherClient()
    return _create(client.create_topic, name=names.topic_path(project, topic))


def ensure_dead_letter_topic(project: str, topic: str = names.TOPIC) -> None:
    """Create the dead-letter topic of ``topic`` and the subscription that keeps what lands
    there, unless they exist."""
    dead = names.dead_letter_topic(topic.rsplit("/", 1)[-1])
    ensure_topic(project, dead)
    with pubsub_v1.SubscriberClient() as subscriber:
        _create(
            subscriber.create_subscription,
            name=names.subscription_path(project, dead),
            topic=names.topic_path(project, dead),
        )


def ensure_subscription(
    project: str,
    subscription: str,
    topic: str = names.TOPIC,
    consumer: str = "pull",
    push_endpoint: str | None = None,
) -> tuple[str, bool]:
    """Create the topic, its dead-letter topic when the consumer's policy has one, and the
    subscription (a name or a full path; pushing to ``push_endpoint`` if given) with the
    ``consumer``'s policy, unless they exist; an existing push subscription is pointed at
    ``push_endpoint``. Returns (the subscription's path, whether it was created)."""
    policy = POLICIES[consumer]
    topic_path = names.topic_path(project, topic)
    ensure_topic(project, topic_path)
    request = {
        "name": names.subscription_path(project, subscription),
        "topic": topic_path,
        "push_config": {"push_endpoint": push_endpoint} if push_endpoint else {},
        "ack_deadline_seconds": policy.ack_deadline_seconds,
        "retain_acked_messages": True,
        "message_retention_duration": duration_pb2.Duration(seconds=RETENTION_DAYS * 86400),
    }
    if policy.dead_letter:
        ensure_dead_letter_topic(project, topic_path)
        dead = names.dead_letter_topic(topic_path.rsplit("/", 1)[-1])
        request["dead_letter_policy"] = {
            "dead_letter_topic": names.topic_path(project, dead),
            "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
        }
    with pubsub_v1.SubscriberClient() as subscriber:
        created = _create(subscriber.create_subscription, request=request)
        if not created and push_endpoint:
            subscriber.modify_push_config(
                subscription=request["name"], push_config=request["push_config"]
            )
    return request["name"], created


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
