"""The simulator: realistic visits valid against the contract, reproducible by seed, malformed
messages rejected exactly, the rate held by a deadline schedule, publishing to the emulator,
JSON lines for the batch migration, and a clean stop on Ctrl-C."""

import datetime
import decimal
import os
import signal
import subprocess
import sys
import threading
import time

import jsonschema
import orjson
import pytest

from clickstream.core import contract
from clickstream.core.visit import parse_visit
from clickstream.gcp import pubsub
from clickstream.simulator import publisher, visits

START = datetime.datetime(2024, 7, 1, 9, 0, tzinfo=datetime.UTC)
PLAN = visits.Plan(600, count=400, seed=11, burst=40, malformed_rate=0.1)


@pytest.fixture(scope="module")
def sent() -> list[visits.Message]:
    return list(visits.messages(PLAN, START))


def test_visits_are_valid_realistic_and_load_without_dead_letters(sent):
    validator = jsonschema.Draft7Validator(contract.visit_schema())
    user_agents = {ua: device for device, uas in visits.USER_AGENTS.items() for ua in uas}
    purchases = 0
    for index, message in enumerate(m for m in sent if m.kind != "malformed"):
        visit = orjson.loads(message.data)
        validator.validate(visit)
        parsed = parse_visit(message.data, f"sim:{index}")
        assert parsed.visit_loaded and not parsed.rows["dead_letter"]
        if message.kind == "visit":
            assert user_agents[visit["user_agent"]] == visit["device_type"]
        stamps = [datetime.datetime.fromisoformat(e["timestamp"]) for e in visit["events"]]
        assert stamps == sorted(stamps)
        assert (stamps[-1] - stamps[0]).total_seconds() <= visits.MAX_SESSION_SECONDS
        assert message.attributes == {"event_time": visit["events"][0]["timestamp"]}
        assert stamps[-1] <= START + datetime.timedelta(seconds=message.offset)
        for purchase in parsed.rows["purchases"]:
            purchases += 1
            lines = [
                decimal.Decimal(item["line_amount"])
                for item in parsed.rows["purchase_items"]
                if item["event_index"] == purchase["event_index"]
            ]
            assert decimal.Decimal(purchase["amount"]) == sum(lines) > 0
    assert purchases > 10


def test_same_seed_same_messages_and_extras_leave_the_steady_visits_alone(sent):
    assert list(visits.messages(PLAN, START)) == sent
    other_seed = list(visits.messages(visits.Plan(600, count=400, seed=12), START))
    plain = list(visits.messages(visits.Plan(600, count=400, seed=11), START))
    assert [m.data for m in plain] != [m.data for m in other_seed]
    steady = [m for m in sent if m.kind != "burst"]
    assert len(steady) == len(plain) == 400
    kept = [(a.data, b.data) for a, b in zip(steady, plain, strict=True) if a.kind == "visit"]
    assert kept and all(a == b for a, b in kept)


def test_schedule_holds_the_rate_and_the_burst_comes_at_once(sent):
    offsets = [m.offset for m in sent if m.kind != "burst"]
    assert offsets == [i * 0.1 for i in range(400)]
    burst = [m for m in sent if m.kind == "burst"]
    assert len(burst) == 40 and {m.offset for m in burst} == {20.0}
    bots = [orjson.loads(m.data) for m in burst]
    assert all(v["user_agent"] in visits.BOT_USER_AGENTS for v in bots)
    spans = [
        datetime.datetime.fromisoformat(v["events"][-1]["timestamp"])
        - datetime.datetime.fromisoformat(v["events"][0]["timestamp"])
        for v in bots
    ]
    assert max(spans) < datetime.timedelta(seconds=2)


@pytest.mark.parametrize("kind", visits.MALFORMED_KINDS)
def test_every_malformed_kind_is_rejected_whole(kind):
    generator = visits.VisitGenerator(1)
    payload = generator.malformed(generator.visit(START), kind)
    parsed = parse_visit(payload, "sim:1")
    assert not parsed.visit_loaded
    assert [row["level"] for row in parsed.rows["dead_letter"]] == ["visit"]
    assert b"\n" not in payload


def test_exactly_the_injected_messages_are_rejected(sent):
    rejected = [m.kind for i, m in enumerate(sent) if not parse_visit(m.data, str(i)).visit_loaded]
    injected = sum(m.kind == "malformed" for m in sent)
    assert rejected == ["malformed"] * injected and 20 < injected < 60


def test_plan_limits():
    assert visits.Plan(60, duration=90).total == 90
    assert visits.Plan(60, count=10, duration=90).total == 10
    assert visits.Plan(120, count=10).seconds == 5.0
    assert visits.Plan(60).total is None
    for bad in ({"visits_per_minute": 0}, {"malformed_rate": 1.5}, {"burst": -1}):
        with pytest.raises(ValueError):
            visits.Plan(**bad)


class _Future:
    def add_done_callback(self, callback):
        callback(self)

    def exception(self):
        return None


class _RecordingClient:
    """Stands in for the Pub/Sub client: records when each message was handed over."""

    def __init__(self):
        self.sent: list[float] = []

    def publish(self, topic, data, **attributes):
        self.sent.append(time.monotonic())
        return _Future()


def test_publisher_follows_the_deadline_schedule_without_drift():
    client = _RecordingClient()
    plan = visits.Plan(1200, count=30, seed=1)
    began = time.monotonic()
    report = publisher.publish(plan, "projects/p/topics/t", client=client)
    delays = [at - began - i * plan.interval for i, at in enumerate(client.sent)]
    assert min(delays) > -publisher.EARLY_ENOUGH - 0.001
    assert max(delays) < 0.05  # each one on its own deadline: lateness does not add up
    assert report.steady == 30 and report.seconds == pytest.approx(1.5, abs=0.05)
    assert report.achieved_per_minute == pytest.approx(1200, rel=0.03)


def test_publisher_stops_when_asked():
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    report = publisher.publish(
        visits.Plan(600, seed=1), "projects/p/topics/t", client=_RecordingClient(), stop=stop
    )
    assert report.interrupted and 4 <= report.steady <= 7


def _pull_all(subscriber, subscription: str, expected: int, deadline: float) -> list:
    received = []
    while len(received) < expected and time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=100, timeout=5)
        received += [m.message for m in response.received_messages]
        if response.received_messages:
            ack = [m.ack_id for m in response.received_messages]
            subscriber.acknowledge(subscription=subscription, ack_ids=ack)
    return received


def test_publishes_to_the_emulator(stack):
    from google.cloud import pubsub_v1

    client = pubsub.publisher_client()
    topic = f"projects/{stack.project}/topics/simulator-test"
    assert pubsub.ensure_topic(stack.project, topic) and not pubsub.ensure_topic(
        stack.project, topic
    )
    subscription = f"projects/{stack.project}/subscriptions/simulator-test"
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.create_subscription(name=subscription, topic=topic)
        plan = visits.Plan(3000, count=50, seed=3, burst=5, malformed_rate=0.1)
        report = publisher.publish(plan, topic, client=client, start=START)
        received = _pull_all(subscriber, subscription, 55, time.monotonic() + 30)
    expected = list(visits.messages(plan, START))
    assert sorted(m.data for m in received) == sorted(m.data for m in expected)
    assert {m.attributes["event_time"] for m in received} == {
        m.attributes["event_time"] for m in expected
    }
    kinds = {kind: sum(m.kind == kind for m in expected) for kind in report.confirmed}
    assert report.failed == 0 and report.confirmed == kinds and kinds["malformed"] > 0
    assert report.achieved_per_minute == pytest.approx(3000, rel=0.05)


def _cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "clickstream.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_output_file_is_the_batch_migrations_input(stack, tmp_path):
    from clickstream.pipelines import migration

    path = tmp_path / "simulated.jsonl"
    result = _cli(
        "simulate", "--output", str(path), "--count", "60", "--seed", "5",
        "--malformed-rate", "0.1", "--burst", "4", "--start", "2024-07-01T09:00:00Z",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = visits.Plan(60, count=60, seed=5, burst=4, malformed_rate=0.1)
    messages = list(visits.messages(expected, START))
    assert path.read_bytes() == b"".join(m.data + b"\n" for m in messages)
    malformed = sum(m.kind == "malformed" for m in messages)
    report = migration.migrate(str(path), "simulated")
    assert report["records_read"] == 64
    assert (report["visits_loaded"], report["visits_rejected"]) == (64 - malformed, malformed)
    assert report["events_rejected"] == 0 and report["reconciled"]


def test_ctrl_c_stops_cleanly_with_a_summary(stack):
    process = subprocess.Popen(
        [sys.executable, "-m", "clickstream.cli", "simulate", "--topic", "ctrl-c", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        first = process.stdout.readline() + process.stdout.readline()  # topic created, publishing
        assert "until stopped" in first
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "(stopped early)" in out and "failed              0" in out


def test_publish_without_the_stack_says_how_to_start_it(tmp_path):
    env = dict(os.environ, CLICKSTREAM_BIGQUERY_PORT="1", CLICKSTREAM_STATE_DIR=str(tmp_path))
    result = _cli("simulate", "--count", "1", env=env)
    assert result.returncode != 0 and "clickstream local up" in result.stderr
