"""Reading visits from Pub/Sub as ``ParseVisits`` input."""

import datetime
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.utils.timestamp import Timestamp


def record(message: PubsubMessage, timestamp: Timestamp) -> beam.Row:
    """One message as a record: ``payload`` (the message's bytes), ``source``
    (``pubsub:<message id>``, kept in dead letters) and ``publish_time`` (UTC, ISO 8601; the
    element's timestamp when the message has none)."""
    published = message.publish_time or timestamp.to_utc_datetime(has_tz=True)
    return beam.Row(
        payload=message.data,
        source=f"pubsub:{message.message_id}",
        publish_time=published.astimezone(datetime.UTC).isoformat(),
    )


class ReadPubSubRecords(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[Any]]):
    """Reads visits from a Pub/Sub subscription: one record per message.

    Beam's Pub/Sub read (on Dataflow, its native streaming source) with the message metadata that
    Beam YAML's ReadFromPubSub leaves out: the message id, so that a rejected message can be
    traced (``source`` is ``pubsub:<message id>``), and the publish time. Outputs rows with
    ``payload``, ``source`` and ``publish_time``, the input of ``ParseVisits``.

    Element timestamps (what the watermark follows) are the publish time, or the value of
    ``timestamp_attribute`` when given: the simulator sets ``event_time`` to the visit's first
    event, which lets Dataflow's watermark follow event time. Only name an attribute that every
    message carries (RFC 3339 or milliseconds since the epoch).

    Args:
      subscription: ``projects/<project>/subscriptions/<name>``.
      timestamp_attribute: Message attribute holding the event time; empty: publish time.
    """

    def __init__(self, subscription: str, timestamp_attribute: str | None = None):
        super().__init__()
        if not subscription.startswith("projects/") or "/subscriptions/" not in subscription:
            raise ValueError(
                f"subscription {subscription!r} is not projects/<project>/subscriptions/<name>"
            )
        self.subscription = subscription
        self.timestamp_attribute = timestamp_attribute or None

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[Any]:
        return (
            pbegin
            | "Read"
            >> beam.io.ReadFromPubSub(
                subscription=self.subscription,
                with_attributes=True,
                timestamp_attribute=self.timestamp_attribute,
            )
            | "Records" >> beam.Map(lambda message, t=beam.DoFn.TimestampParam: record(message, t))
        )
