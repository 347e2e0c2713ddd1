"""Local stand-ins for two of Google's metrics, measured on the emulators with the real client
libraries (the emulators publish no metrics), as points for a policy's local twin
(``evaluator``):

- ``Backlog``: ``pubsub.googleapis.com/subscription/oldest_unacked_message_age`` of a
  subscription. It leases the messages the subscription has to give (a pull), reads their
  publish times, and hands them back at once (ack deadline 0). Unlike Cloud Monitoring, which
  reads the backlog without touching it, it sees only messages no subscriber holds at that
  moment (a running subscriber's leased messages are not counted), and each look is a delivery:
  the subscription it watches must have no dead-letter policy, or looks would dead-letter
  messages.
- ``NewRows``: ``bigquery.googleapis.com/storage/uploaded_row_count`` of a table: the rows added
  since the last look (a ``COUNT(*)``), a point only when there are some, as Google reports one
  only when rows were uploaded.
"""

import threading
import time
from collections.abc import Callable

from clickstream.core import names

PULL_LIMIT = 1000  # messages a look leases at most


class Backlog:
    """The age of the oldest message ``subscription`` (a path) gives out, in seconds."""

    def __init__(self, subscription: str):
        from google.cloud import pubsub_v1

        self.subscription = subscription
        self.client = pubsub_v1.SubscriberClient()
        self.labels = {"resource.label.subscription_id": subscription.rsplit("/", 1)[-1]}

    def sample(self, now: float) -> list[tuple[dict, float]]:
        from google.api_core import exceptions

        try:
            response = self.client.pull(
                subscription=self.subscription, max_messages=PULL_LIMIT, timeout=5
            )
        except exceptions.DeadlineExceeded:
            return [(self.labels, 0.0)]
        received = list(response.received_messages)
        if not received:
            return [(self.labels, 0.0)]
        self.client.modify_ack_deadline(
            subscription=self.subscription,
            ack_ids=[message.ack_id for message in received],
            ack_deadline_seconds=0,
        )
        oldest = min(message.message.publish_time.timestamp() for message in received)
        return [(self.labels, max(0.0, now - oldest))]

    def close(self) -> None:
        self.client.close()


class NewRows:
    """The rows added to ``table`` of ``dataset`` since the last look."""

    def __init__(self, dataset: str = names.DATASET, table: str = "dead_letter"):
        from clickstream.gcp import bigquery_tables

        self.client = bigquery_tables.client(None)
        self.query = f"SELECT COUNT(*) AS n FROM `{self.client.project}.{dataset}.{table}`"
        self.labels = {"resource.label.dataset_id": dataset, "metric.label.table": table}
        self.seen = self._count()

    def _count(self) -> int:
        return next(iter(self.client.query(self.query).result())).n

    def sample(self, now: float) -> list[tuple[dict, float]]:
        count = self._count()
        added, self.seen = count - self.seen, count
        return [(self.labels, added)] if added > 0 else []

    def close(self) -> None:
        self.client.close()


def watch(
    evaluator,
    sampler,
    stop: threading.Event,
    interval: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Feed ``evaluator`` a look of ``sampler`` every ``interval`` seconds until ``stop`` is
    set, then evaluate what is left."""
    while not stop.is_set():
        now = clock()
        for labels, value in sampler.sample(now):
            evaluator.observe(labels, value, now)
        evaluator.advance(clock())
        stop.wait(interval)
    evaluator.finish(clock())
