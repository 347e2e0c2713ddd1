"""Soak and stop tests of the streaming chain on the local stack, published the way the lab's own
generator and most users' publishers do: JSON visits with no attributes, events wrapped as
``{"event": ...}``, timestamps without a zone and with microseconds.

The soak publishes a steady stream with a malformed share for several minutes of windows to one
topic, read by four consumers on their own subscriptions: ``streaming_to_bigquery`` and
``page_views_per_minute`` (``clickstream stream``), the pull and the push subscribers. At the
end every published message is loaded or dead-lettered by each consumer, exactly, and the
per-minute counts equal counts computed here from what was published.

The stop test interrupts ``clickstream stream`` mid-stream: it drains, and every message it
acknowledged is written."""

import collections
import datetime
import signal
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

import orjson
import pytest
from google.cloud import pubsub_v1
from subscriber_support import answers, running, subprocess_env, wait_until

from clickstream import pipelines
from clickstream.core import templates
from clickstream.core.ports import free_ports
from clickstream.gcp import bigquery_tables, pubsub, views
from clickstream.pipelines import local_runner
from clickstream.simulator import visits

RATE = 2.0  # visits per second
SOAK_SECONDS = 150  # three minutes of windows and more
MALFORMED_RATE = 0.1
TRIGGERING = "5"  # seconds between the streaming specs' writes
SETTLE = 120  # seconds for the consumers to catch up once publishing stops


def lab_generator_payload(visit: dict) -> bytes:
    """A simulated visit as the lab's generator sends it: wrapped events and naive timestamps
    with microseconds (``datetime.now().isoformat()`` on a UTC machine)."""
    events = []
    for event in visit["events"]:
        moment = datetime.datetime.fromisoformat(event["timestamp"]).replace(tzinfo=None)
        events.append({"event": {**event, "timestamp": moment.isoformat(timespec="microseconds")}})
    return orjson.dumps({**visit, "events": events})


class SteadyPublisher(threading.Thread):
    """Publishes RATE messages per second to ``topic`` (no attributes) until ``stop``; a share
    of them malformed. Keeps what it sent: ``valid`` (payload -> visit) and ``malformed``."""

    def __init__(self, topic: str, seed: int):
        super().__init__(daemon=True)
        self.topic, self.stopping = topic, threading.Event()
        self.generator, self.breaker = visits.VisitGenerator(seed), visits.VisitGenerator(-seed)
        self.valid: dict[bytes, dict] = {}
        self.malformed: list[bytes] = []

    def run(self):
        client = pubsub.publisher_client()
        futures, started = [], time.monotonic()
        for index in range(10**9):
            due = started + index / RATE
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                break
            visit = self.generator.visit(datetime.datetime.now(datetime.UTC))
            if self.breaker.rng.random() < MALFORMED_RATE:
                payload = self.breaker.malformed(visit)
                self.malformed.append(payload)
            else:
                payload = lab_generator_payload(visit)
                self.valid[payload] = visit
            futures.append(client.publish(self.topic, payload))
        for future in futures:
            future.result(timeout=30)

    def stop(self) -> int:
        self.stopping.set()
        self.join(60)
        return len(self.valid) + len(self.malformed)


def expected_page_views_per_minute(sent: dict[bytes, dict]) -> dict[tuple[str, str], int]:
    """(minute start, page path or '*') -> page views, from the published visits."""
    counts = collections.Counter()
    for visit in sent.values():
        for event in visit["events"]:
            if event["event_type"] != "page_view":
                continue
            moment = datetime.datetime.fromisoformat(event["timestamp"])
            minute = moment.replace(second=0, microsecond=0).isoformat()
            path = urlsplit(event["details"]["page_url"]).path or "/"
            counts[minute, path] += 1
            counts[minute, "*"] += 1
    return dict(counts)


def query(sql: str) -> list[tuple]:
    return [tuple(row) for row in bigquery_tables.client().query(sql).result()]


def clickstream(*args: str) -> list[str]:
    return [sys.executable, "-m", "clickstream.cli", *args]


def stream(name: str, subscription: str, topic: str, *params: str) -> list[str]:
    extra = [arg for param in params for arg in ("--param", param)]
    return clickstream(
        "stream", name, "--topic", topic, "--param", f"subscription={subscription}", *extra
    )


def loaded_sessions(project: str, dataset: str) -> set[str]:
    return {r[0] for r in query(f"SELECT session_id FROM `{project}.{dataset}.visits_unique`")}


def dead_letter_payloads(project: str, dataset: str, level: str = "visit") -> list[str]:
    return [
        r[0]
        for r in query(
            f"SELECT payload FROM `{project}.{dataset}.dead_letter_unique` WHERE level = '{level}'"
        )
    ]


def as_text(payload: bytes) -> str:
    """A payload as the dead-letter table keeps it (bytes that are not UTF-8 replaced)."""
    return payload.decode("utf-8", errors="replace")


def reconciled(project: str, dataset: str, source: SteadyPublisher) -> bool:
    """Every message is loaded (a visit row) or dead-lettered (level visit), each once."""
    sessions = {v["session_id"] for v in source.valid.values()}
    rejected = sorted(dead_letter_payloads(project, dataset))
    return loaded_sessions(project, dataset) == sessions and rejected == sorted(
        as_text(p) for p in source.malformed
    )


def stop(process, timeout: float = 120) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout)


def test_soak_every_consumer_reconciles_and_minutes_match(stack, tmp_path):
    run = uuid.uuid4().hex[:6]
    topic = f"soak-{run}"
    path = f"projects/{stack.project}/topics/{topic}"
    pubsub.ensure_topic(stack.project, path)
    datasets = {name: f"soak_{name}_{run}" for name in ("bq", "ppm", "pull", "push")}
    for dataset in datasets.values():
        views.ensure_analyst_dataset(stack.project, dataset)
    sub = {name: f"projects/{stack.project}/subscriptions/{topic}-{name}" for name in datasets}
    push_port, health_port = free_ports(2)
    env = subprocess_env()
    commands = {
        "bq": stream("streaming_to_bigquery", sub["bq"], topic,
                     f"dataset={datasets['bq']}", f"triggering_frequency={TRIGGERING}"),
        "ppm": stream("page_views_per_minute", sub["ppm"], topic,
                      f"dataset={datasets['ppm']}", f"triggering_frequency={TRIGGERING}"),
        "pull": clickstream("subscribe", "pull", "--topic", topic,
                            "--subscription", f"{topic}-pull", "--dataset", datasets["pull"],
                            "--health-port", str(health_port)),
        "push": clickstream("subscribe", "push", "--topic", topic,
                            "--subscription", f"{topic}-push", "--dataset", datasets["push"],
                            "--port", str(push_port)),
    }  # fmt: skip
    logs = {name: tmp_path / f"{name}.log" for name in commands}
    with (
        running(commands["bq"], logs["bq"], env) as bq,
        running(commands["ppm"], logs["ppm"], env) as ppm,
        running(commands["pull"], logs["pull"], env),
        running(commands["push"], logs["push"], env),
    ):
        for name in ("bq", "ppm"):
            wait_until(lambda n=name: "Ctrl-C drains" in logs[n].read_text(), 60, f"{name} up")
        wait_until(lambda: "pulling projects/" in logs["pull"].read_text(), 60, "pull up")
        wait_until(lambda: answers(f"http://127.0.0.1:{push_port}/"), 60, "push up")
        source = SteadyPublisher(path, seed=int(run, 16))
        source.start()
        time.sleep(SOAK_SECONDS)
        published = source.stop()
        assert published >= RATE * SOAK_SECONDS * 0.9 and 0 < len(source.malformed) < published

        def all_in() -> bool:
            return all(
                reconciled(stack.project, datasets[name], source) for name in ("bq", "pull", "push")
            )

        try:
            wait_until(all_in, SETTLE, "every consumer to reconcile", interval=5)
        except AssertionError:
            logs_text = "\n".join(f"--- {n}\n{p.read_text()[-2000:]}" for n, p in logs.items())
            counts = {
                name: (len(loaded_sessions(stack.project, d)),
                       len(dead_letter_payloads(stack.project, d)))
                for name, d in datasets.items() if name != "ppm"
            }  # fmt: skip
            pytest.fail(f"published {published}, valid {len(source.valid)}: {counts}\n{logs_text}")
        assert stop(bq) == 0 and stop(ppm) == 0  # drained
    latest = query(  # the highest pane of each minute and page, as analysts read it
        f"SELECT FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%S+00:00', window_start), page_path, "
        f"page_views FROM `{stack.project}.{datasets['ppm']}.page_view_counts_unique`"
    )
    counted = {(minute, page): views for minute, page, views in latest}
    expected = expected_page_views_per_minute(source.valid)
    assert len({minute for minute, _ in expected}) >= 3  # several windows, several panes
    assert counted == expected
    assert sorted(dead_letter_payloads(stack.project, datasets["ppm"])) == sorted(
        as_text(p) for p in source.malformed
    )
    assert not dead_letter_payloads(stack.project, datasets["ppm"], "late")


def unacked(subscription: str) -> list[bytes]:
    """What is still in the subscription: pulled here and acknowledged."""
    found = []
    with pubsub_v1.SubscriberClient() as client:
        while True:
            response = client.pull(subscription=subscription, max_messages=1000, timeout=5)
            if not response.received_messages:
                return found
            found += [m.message.data for m in response.received_messages]
            client.acknowledge(
                subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
            )


def test_ctrl_c_drains_and_every_acknowledged_message_is_written(stack, tmp_path):
    run = uuid.uuid4().hex[:6]
    topic, dataset = f"stop-{run}", f"stop_{run}"
    path = f"projects/{stack.project}/topics/{topic}"
    subscription = f"projects/{stack.project}/subscriptions/{topic}-bq"
    pubsub.ensure_topic(stack.project, path)
    views.ensure_analyst_dataset(stack.project, dataset)
    log = tmp_path / "stream.log"
    # A long write interval: at the stop, most of what was received is not written yet.
    command = stream("streaming_to_bigquery", subscription, topic,
                     f"dataset={dataset}", "triggering_frequency=600")  # fmt: skip
    with running(command, log, subprocess_env()) as process:
        wait_until(lambda: "Ctrl-C drains" in log.read_text(), 60, "the stream to start")
        source = SteadyPublisher(path, seed=int(run, 16))
        source.start()
        time.sleep(20)
        assert stop(process) == 0, log.read_text()  # while messages keep coming
        source.stop()
    output = log.read_text()
    assert "draining" in output and "cancelled" not in output, output
    left = unacked(subscription)
    sent = [*source.valid, *source.malformed]
    acknowledged = [p for p in sent if p not in set(left)]
    assert len(acknowledged) >= 20 and len(left) + len(acknowledged) == len(sent)
    written = loaded_sessions(stack.project, dataset)
    assert written == {source.valid[p]["session_id"] for p in acknowledged if p in source.valid}
    assert sorted(dead_letter_payloads(stack.project, dataset)) == sorted(
        as_text(p) for p in acknowledged if p not in source.valid
    )


def test_streaming_specs_default_to_the_publish_time():
    """Messages without attributes (the lab's generator) work with every spec's defaults."""
    for name in pipelines.names():
        parameters = {p["name"]: p for p in templates.metadata(name)["parameters"]}
        if "timestamp_attribute" in parameters:
            assert (
                templates.variables(name, templates.example_parameters(name))["timestamp_attribute"]
                == ""
            ), name


def test_a_message_without_the_timestamp_attribute_is_refused_as_on_dataflow(stack):
    """The local read, like Dataflow's Pub/Sub source, refuses (and leaves unacknowledged) a
    message without the attribute it takes event times from; the runner then retries it, as
    Dataflow retries a failing work item."""
    run = uuid.uuid4().hex[:6]
    topic = f"projects/{stack.project}/topics/attr-{run}"
    subscription = f"projects/{stack.project}/subscriptions/attr-{run}"
    client = pubsub.publisher_client()
    pubsub.ensure_topic(stack.project, topic)
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=10)
        pulls = local_runner._ShortPulls(subscriber, "event_time")
        client.publish(topic, b"{}", event_time="2024-07-01T09:00:00Z").result()
        (stamped,) = pulls.pull(subscription, 10, 30).received_messages
        assert stamped.message.attributes["event_time"] == "2024-07-01T09:00:00Z"
        pulls.acknowledge(subscription, [stamped.ack_id])
        client.publish(topic, b'{"session_id": "SID-1"}').result()  # no attributes
        with pytest.raises(local_runner.MissingTimestampAttribute, match="'event_time'"):
            wait_until(lambda: pulls.pull(subscription, 10, 30).received_messages, 10, "it")
    # Not acknowledged: redelivered once its 10 s lease runs out.
    assert wait_until(lambda: unacked(subscription), 60, "redelivery") == [
        b'{"session_id": "SID-1"}'
    ]
