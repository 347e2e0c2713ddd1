"""The Pub/Sub side, defined once: the visits topic, its dead-letter topic, the push and pull
subscriptions and their delivery policy.

The local stack gets them from ``ensure``; Google Cloud from the gcloud commands of
``deploy/subscribers.py``, built from the same values. One difference: the retry policy (backoff
between redeliveries) is set on Google Cloud only, because the emulator (0.8.20) stops
redelivering the expired messages of a subscription that has one: after a subscriber was killed,
none of its 100 leased messages came back within 40 s with a retry policy; without one they all
did, after 7 to 27 s.

``lines`` and ``publish`` replay JSON-lines files (the lab's, say) to the topic, one message per
visit, as ``clickstream simulate`` sends made-up ones. The Pub/Sub client is imported when used:
the command line reads the names here when it starts.
"""

import glob
from collections.abc import Iterable, Iterator

TOPIC = "visits"
PULL_SUBSCRIPTION = "visits-pull"
PUSH_SUBSCRIPTION = "visits-push"
PUSH_ACK_DEADLINE_SECONDS = 60  # how long one push delivery may take
PULL_ACK_DEADLINE_SECONDS = 10  # the first lease: the client extends it while it holds a message
MAX_DELIVERY_ATTEMPTS = 10  # then the message goes to the dead-letter topic
MIN_RETRY_DELAY_SECONDS = 10  # redelivery backoff after a nack or a failed push (Google Cloud)
MAX_RETRY_DELAY_SECONDS = 600
RETENTION_DAYS = 7  # acked messages too: seeking back a few days replays them


def dead_letter_topic(topic: str) -> str:
    """Where Pub/Sub moves a message after ``MAX_DELIVERY_ATTEMPTS`` failed deliveries. It has a
    subscription of the same name, so that what lands there is kept (a topic alone drops it)."""
    return f"{topic}-dead-letter"


def ack_deadline_seconds(push: bool) -> int:
    return PUSH_ACK_DEADLINE_SECONDS if push else PULL_ACK_DEADLINE_SECONDS


def ensure_topics(project: str, topic: str = TOPIC) -> None:
    """Create the topic, its dead-letter topic and that one's subscription, unless they exist."""
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    dead = dead_letter_topic(topic)
    for name in (topic, dead):
        _create(publisher.create_topic, name=publisher.topic_path(project, name))
    _create(
        subscriber.create_subscription,
        name=subscriber.subscription_path(project, dead),
        topic=publisher.topic_path(project, dead),
    )
    subscriber.close()


def ensure(
    project: str, subscription: str, topic: str = TOPIC, push_endpoint: str | None = None
) -> str:
    """``ensure_topics``, then create ``subscription`` (push to ``push_endpoint`` if given, else
    pull) unless it exists, with the delivery policy less the retry policy (see the module
    docstring); an existing push subscription is pointed at ``push_endpoint``. Returns the
    subscription's path."""
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    ensure_topics(project, topic)
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, subscription)
    push_config = {"push_endpoint": push_endpoint} if push_endpoint else {}
    created = _create(
        subscriber.create_subscription,
        request={
            "name": path,
            "topic": f"projects/{project}/topics/{topic}",
            "push_config": push_config,
            "ack_deadline_seconds": ack_deadline_seconds(push_endpoint is not None),
            "retain_acked_messages": True,
            "message_retention_duration": duration_pb2.Duration(seconds=RETENTION_DAYS * 86400),
            "dead_letter_policy": {
                "dead_letter_topic": f"projects/{project}/topics/{dead_letter_topic(topic)}",
                "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
            },
        },
    )
    if not created and push_endpoint:
        subscriber.modify_push_config(subscription=path, push_config=push_config)
    subscriber.close()
    return path


def stop_pushing(project: str, subscription: str) -> None:
    """Turn a push subscription into a pull one: it keeps its messages, and nothing pushes
    them to an endpoint that is gone (``ensure`` points it at the next one)."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, subscription)
    subscriber.modify_push_config(subscription=path, push_config={})
    subscriber.close()


def subscription_count(project: str, topic: str = TOPIC) -> int:
    """How many subscriptions the topic has (a message published to none is dropped)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    return len(list(publisher.list_topic_subscriptions(topic=publisher.topic_path(project, topic))))


def _create(method, **kwargs) -> bool:
    """Call a create method; False when the resource exists already."""
    from google.api_core import exceptions as api_exceptions

    try:
        method(**kwargs)
    except api_exceptions.AlreadyExists:
        return False
    return True


def lines(patterns: Iterable[str]) -> Iterator[bytes]:
    """The non-blank lines of the files matching ``patterns`` (globs), without line endings: one
    message each. A pattern that matches nothing raises FileNotFoundError."""
    for pattern in patterns:
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise FileNotFoundError(f"no file matches {pattern}")
        for path in paths:
            with open(path, "rb") as handle:
                yield from (line.rstrip(b"\r\n") for line in handle if line.strip())


def publish(project: str, payloads: Iterable[bytes], topic: str = TOPIC) -> list[str]:
    """Publish each payload as one message, with the simulator's client (batching, flow
    control); returns the message ids once all are sent."""
    from simulator.publisher import publisher_client

    publisher = publisher_client()
    path = publisher.topic_path(project, topic)
    futures = [publisher.publish(path, payload) for payload in payloads]
    ids = [future.result() for future in futures]
    publisher.stop()
    return ids
