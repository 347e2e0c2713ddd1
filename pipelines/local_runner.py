"""Beam's local streaming runner, made to read Pub/Sub the way Dataflow does where it matters.

``BundleBasedDirectRunner`` runs a pipeline on one worker thread, and its Pub/Sub read holds that
thread in a pull of at most 10 messages that waits up to 30 s for one to come. So while a
subscription is idle nothing else runs: processing-time timers (the BigQuery sink's writes)
fire only when the next message arrives, or 30 s late. It also cannot drain: its read never
ends, so stopping it (cancel) throws away every pane it has not fired, though their messages
were acknowledged when pulled.

``install()`` replaces the runner's Pub/Sub read evaluator (through the registry's override
hook, for the runs of this process) with one that

- pulls up to ``PULL_MAX`` messages and waits at most ``PULL_WAIT`` seconds, so timers and
  windows fire on time while the subscription is idle;
- refuses a message without the read's ``timestamp_attribute``, as Beam's Pub/Sub source on
  Dataflow does (the runner's own read silently uses the publish time instead); and
- drains on ``drain()``: it stops pulling and advances its watermark to infinity, so every
  window fires, every timer (the sinks' batches included) fires, everything is written and the
  pipeline finishes by itself, as a drained Dataflow job does.

Dataflow needs none of this: its native Pub/Sub source does both.
"""

import threading

import apache_beam
from apache_beam.runners.direct import transform_evaluator
from apache_beam.runners.direct.direct_runner import _DirectReadFromPubSub
from apache_beam.runners.direct.util import TransformResult
from apache_beam.runners.direct.watermark_manager import WatermarkManager
from google.api_core import exceptions
from google.pubsub_v1.types import PullResponse

BEAM_VERSION = "2.77.0"  # the runner internals this module was written and tested against
PULL_MAX = 1000  # messages per pull
PULL_WAIT = 1.0  # seconds a pull waits for a message

_draining = threading.Event()


class MissingTimestampAttribute(ValueError):
    """A message lacks the attribute the read takes event times from."""


class _ShortPulls:
    """The subscriber client as the runner's read calls it, with bigger, shorter pulls."""

    def __init__(self, client, timestamp_attribute: str | None):
        self._client, self._timestamp_attribute = client, timestamp_attribute

    def pull(self, subscription: str, max_messages: int, timeout: float) -> PullResponse:
        try:
            response = self._client.pull(
                subscription=subscription, max_messages=PULL_MAX, timeout=PULL_WAIT, retry=None
            )
        except exceptions.DeadlineExceeded:  # nothing came within PULL_WAIT
            return PullResponse()
        attribute = self._timestamp_attribute
        for received in response.received_messages:
            if attribute and attribute not in received.message.attributes:
                # Not acknowledged: it stays in the subscription, as on Dataflow.
                raise MissingTimestampAttribute(
                    f"Pub/Sub message {received.message.message_id} has no attribute "
                    f"{attribute!r} (timestamp_attribute); Dataflow's Pub/Sub source refuses "
                    "such messages too: set the attribute on every message, or leave "
                    "timestamp_attribute empty to use the publish time"
                )
        return response

    def acknowledge(self, subscription: str, ack_ids: list[str]) -> None:
        self._client.acknowledge(subscription=subscription, ack_ids=ack_ids)


class _DrainablePubSubRead(transform_evaluator._PubSubReadEvaluator):
    @classmethod
    def _get_subscriber_client(cls, transform):
        client = super()._get_subscriber_client(transform)
        return _ShortPulls(client, transform.transform._source.timestamp_attribute)

    def finish_bundle(self) -> TransformResult:
        if _draining.is_set():  # no more pulls, no rescheduling, the watermark to the end
            return TransformResult(self, [], [], None, {None: WatermarkManager.WATERMARK_POS_INF})
        return super().finish_bundle()


def install() -> None:
    """Use the drainable Pub/Sub read in this process's local streaming runs."""
    if apache_beam.__version__ != BEAM_VERSION:
        raise RuntimeError(
            f"clickstream's local Pub/Sub read was written for Beam {BEAM_VERSION}, "
            f"not {apache_beam.__version__}: check transform_evaluator._PubSubReadEvaluator"
        )
    _draining.clear()
    overrides = transform_evaluator.TransformEvaluatorRegistry._test_evaluators_overrides
    overrides[_DirectReadFromPubSub] = _DrainablePubSubRead


def drain() -> None:
    """Stop pulling and let every pending window, timer and write complete."""
    _draining.set()
