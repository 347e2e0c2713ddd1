"""The pull subscriber, run as on a VM (``python -m subscribers.pull``) against the emulators:
same keys as the batch migration, replays, SIGKILL mid-batch, SIGTERM drain, health."""

import ast
import datetime
import os
import re
import signal
import time

import requests
from google.cloud import pubsub_v1
from subscriber_support import (
    MALFORMED,
    ONE_BAD_EVENT,
    answers,
    compacted_counts,
    duplicate_keys,
    envelope,
    expected_rows,
    lab_file,
    lab_lines,
    pull_command,
    running,
    start_push_handler,
    subprocess_env,
    visible_counts,
    wait_until,
)

from clickstream.core.ports import free_ports
from clickstream.gcp import pubsub, views
from clickstream.local import emulators
from clickstream.pipelines import migration

FAST = ("--batch-size", "100", "--max-latency", "0.2")


def _health(port: int) -> tuple[int, dict]:
    answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    return answer.status_code, answer.json()


def _publish(project: str, topic: str, payloads: list[bytes]) -> dict[str, bytes]:
    ids = pubsub.publish(project, payloads, topic)
    return dict(zip(ids, payloads, strict=True))


def _stop(process, log) -> dict:
    """SIGTERM the subscriber, expect exit 0; its final stats."""
    process.send_signal(signal.SIGTERM)
    return _stopped(process, log)


def _stopped(process, log) -> dict:
    """Expect the subscriber to exit 0; its final stats."""
    assert process.wait(timeout=60) == 0, log.read_text()[-2000:]
    last = log.read_text().rstrip().splitlines()[-1]
    assert "stopped (drained): " in last, last
    return ast.literal_eval(last.split("stopped (drained): ", 1)[1])


def test_pull_adds_to_the_batch_migrations_tables_exactly_once(stack, lab_data, tmp_path):
    dataset, name = "subscribed", "pull-e2e"
    migrated = migration.migrate(str(lab_file(lab_data, "2024-07-01")), dataset)["tables"]
    old, new = lab_lines(lab_data, "2024-07-01"), lab_lines(lab_data, "2024-07-02")
    assert expected_rows(dict(enumerate(old))) == migrated  # the same model, the same rows
    subscription = pubsub.ensure_subscription(stack.project, name, name)[0]
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    messages = _publish(stack.project, name, [*old, *new, ONE_BAD_EVENT, *MALFORMED])
    expected = expected_rows(messages)
    port, log = free_ports(1)[0], tmp_path / "pull.log"
    command = pull_command(subscription, dataset, port, *FAST)
    with running(command, log, subprocess_env()) as process:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), 30, "the health endpoint")
        # The migrated visits come again, with the same keys: analysts see them once.
        wait_until(lambda: visible_counts(dataset) == expected, 60, "every visit")
        assert _health(port)[1]["rows"] == sum(expected.values())

        # Replay everything: Pub/Sub redelivers, analysts still see every row once.
        pubsub_v1.SubscriberClient().seek(request={"subscription": subscription, "time": since})
        wait_until(lambda: _health(port)[1]["acked"] >= 2 * len(messages), 60, "the replay")
        assert visible_counts(dataset) == expected
        stats = _stop(process, log)
    assert stats["acked"] == stats["received"] >= 2 * len(messages)

    # The push subscriber shares the keys too: a migrated visit is not seen twice.
    url, handler = start_push_handler(tmp_path, "push", BIGQUERY_DATASET=dataset)
    with handler:
        wait_until(lambda: answers(url), 30, "the push handler to listen")
        answer = requests.post(url, data=envelope(old[0], "migrated-1"), timeout=30).json()
    assert answer["visit_loaded"] and answer["rows_written"] > 0
    assert visible_counts(dataset) == expected
    # The copies the emulator kept (it ignores insert ids; BigQuery drops most) are compacted.
    assert compacted_counts(dataset) == expected
    assert set(duplicate_keys(dataset).values()) == {0}


def test_pull_killed_mid_batch_loses_nothing(stack, lab_data, tmp_path):
    dataset, name = "pull_killed", "pull-killed"
    views.ensure_analyst_dataset(stack.project, dataset)
    subscription = pubsub.ensure_subscription(stack.project, name, name)[0]
    messages = _publish(stack.project, name, lab_lines(lab_data, "2024-07-03"))
    expected = expected_rows(messages)
    port, log = free_ports(1)[0], tmp_path / "pull.log"
    bigquery = emulators.status()["bigquery"]["pid"]
    # Leases of 10 s at most: what the killed process held expires 10 s after the kill (the
    # emulator may take minutes more to redeliver it: it misses closed streams, and goes on
    # sending to the dead stream; docs/subscribers.md, "On the emulators").
    command = pull_command(
        subscription, dataset, port, "--batch-size", "25", "--max-lease-seconds", "10"
    )
    with running(command, log, subprocess_env()) as process:
        wait_until(lambda: "batch 1: 25 messages" in log.read_text(), 60, "a first batch", 0.01)
        os.killpg(bigquery, signal.SIGSTOP)  # the next batch's write hangs, unacked
        try:
            wait_until(lambda: "batch 2: writing" in log.read_text(), 30, "the next batch", 0.01)
            # Batch 1's acks leave in the background (batched 10 ms apart) on a stream the
            # emulator may drop unread when the process dies: give them time to arrive. No
            # observable event marks it; batch 2's write is frozen meanwhile.
            time.sleep(2)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            os.killpg(bigquery, signal.SIGCONT)
    # Acked before the kill: the batches it had finished (their acks went out long before).
    acked = sum(int(n) for n in re.findall(r"batch \d+: (\d+) messages, ", log.read_text()))
    assert 0 < acked < len(messages)

    with running(command, log, subprocess_env()) as process:
        # Up to the 5 minutes the emulator may go on serving the killed process's stream.
        wait_until(lambda: visible_counts(dataset) == expected, 330, f"{expected} after restart")
        stats = _stop(process, log)
    # Exactly the messages not acked came back: the batch being written and those after it.
    assert stats["received"] == len(messages) - acked
    assert compacted_counts(dataset) == expected
    assert set(duplicate_keys(dataset).values()) == {0}


def test_pull_drains_on_sigterm(stack, lab_data, tmp_path):
    dataset, name = "pull_drained", "pull-drained"
    views.ensure_analyst_dataset(stack.project, dataset)
    subscription = pubsub.ensure_subscription(stack.project, name, name)[0]
    port, log = free_ports(1)[0], tmp_path / "pull.log"
    command = pull_command(subscription, dataset, port, "--batch-size", "50")
    bigquery = emulators.status()["bigquery"]["pid"]
    with running(command, log, subprocess_env()) as process:
        wait_until(lambda: "pulling projects/" in log.read_text(), 30, "the pull to start")
        os.killpg(bigquery, signal.SIGSTOP)  # the first batch's write waits for the stop
        try:
            messages = _publish(stack.project, name, lab_lines(lab_data, "2024-07-06")[:150])
            wait_until(lambda: "batch 1: writing" in log.read_text(), 60, "a first batch")
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: "stopping:" in log.read_text(), 30, "the stop to begin")
        finally:
            os.killpg(bigquery, signal.SIGCONT)
        stats = _stopped(process, log)
    # Stopped while a batch was written: it was finished, and every message received (those
    # waiting for the next batch too) was written and acked; what arrived meanwhile was nacked.
    text = log.read_text()
    assert text.index("stopping:") < text.index("batch 1: 50 messages")
    assert stats["acked"] == stats["received"] >= 50
    assert stats["nacked"] == 0
    assert stats["received"] + stats["handed_back"] <= len(messages)
    assert visible_counts(dataset)["visits"] == stats["visits"] == stats["acked"]


def test_pull_health_follows_the_loop(stack, lab_data, tmp_path):
    dataset, name = "pull_health", "pull-health"
    views.ensure_analyst_dataset(stack.project, dataset)
    subscription = pubsub.ensure_subscription(stack.project, name, name)[0]
    port, log = free_ports(1)[0], tmp_path / "pull.log"
    command = pull_command(subscription, dataset, port, "--stall-after", "2", *FAST)
    bigquery = emulators.status()["bigquery"]["pid"]
    with running(command, log, subprocess_env()) as process:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), 30, "the health endpoint")
        # Idle for longer than the stall threshold: still healthy, nothing received.
        wait_until(lambda: "pulling projects/" in log.read_text(), 30, "the pull to start")
        status, health = wait_until(
            lambda: (h := _health(port))[1]["uptime"] > 3 and h, 10, "3 s of idling"
        )
        assert (status, health["healthy"], health["received"]) == (200, True, 0)

        # A write that hangs (BigQuery frozen): unhealthy once it exceeds the threshold.
        os.killpg(bigquery, signal.SIGSTOP)
        try:
            _publish(stack.project, name, lab_lines(lab_data, "2024-07-16")[:5])
            status, health = wait_until(lambda: (h := _health(port))[0] == 503 and h, 15, "503")
            assert "no progress" in health["problem"]
        finally:
            os.killpg(bigquery, signal.SIGCONT)
        wait_until(lambda: _health(port)[0] == 200, 30, "recovery")
        wait_until(lambda: visible_counts(dataset)["visits"] == 5, 30, "the 5 visits")

        # The stream ends for good (subscription deleted): unhealthy, so the VM is replaced.
        pubsub_v1.SubscriberClient().delete_subscription(subscription=subscription)
        status, health = wait_until(lambda: (h := _health(port))[0] == 503 and h, 30, "503")
        assert "streaming pull ended" in health["problem"]
        _stop(process, log)
