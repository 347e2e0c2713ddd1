"""End to end on the local stack: simulated visits published to the Pub/Sub emulator, the
streaming specs run by `clickstream stream` on the local runner, and what they wrote, in
BigQuery, Cloud Storage and the DoS log; then everything is stopped. Bounded in time: the local
runner reads Pub/Sub in pulls that wait at most 1 s (clickstream/local_runner.py)."""

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from clickstream.gcp import pubsub, views
from clickstream.simulator import publisher, visits

DEADLINE = 120.0  # seconds for the data to arrive once published
STOP_TIMEOUT = 30.0


@contextlib.contextmanager
def streaming(tmp_path, *commands: list[str]):
    """Run `clickstream stream` commands until the block ends, then stop them (Ctrl-C, then
    kill), whatever happens."""
    processes = []
    try:
        for index, command in enumerate(commands):
            log = (tmp_path / f"stream-{index}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "clickstream.cli", "stream", *command],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for(check, what: str, tmp_path, processes):
    """Poll ``check`` until it returns something true; fail after ``DEADLINE`` or if a
    pipeline died, with the pipelines' logs."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if result:
            return result
        dead = [p.args[4] for p in processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f.read_text()[-3000:] for f in sorted(tmp_path.glob("stream-*.log")))
            pytest.fail(f"{what}: {'stopped: ' + str(dead) if dead else 'timed out'}\n{logs}")
        time.sleep(1.0)


def _subscriptions(project: str, topic: str, *names: str) -> list[str]:
    from google.cloud import pubsub_v1

    topic_path = f"projects/{project}/topics/{topic}"
    pubsub.ensure_topic(project, topic_path)
    paths = [f"projects/{project}/subscriptions/{topic}-{name}" for name in names]
    with pubsub_v1.SubscriberClient() as subscriber:
        for path in paths:
            subscriber.create_subscription(name=path, topic=topic_path)
    return paths


def test_simulated_visits_reach_bigquery_and_raw_files(stack, tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from clickstream.gcp import bigquery_tables

    run = uuid.uuid4().hex[:8]
    bq = bigquery_tables.client()
    dataset = f"e2e_{run}"
    views.ensure_analyst_dataset(bq.project, dataset)
    raw, to_bigquery = _subscriptions(stack.project, f"e2e-{run}", "raw", "bq")
    output = f"gs://{stack.project}/e2e-{run}/"
    plan = visits.Plan(1200, count=20, seed=9, malformed_rate=0.15)
    with streaming(
        tmp_path,
        ["raw_to_gcs", "--param", f"subscription={raw}", "--param", f"output={output}",
         "--param", "window_seconds=5"],
        ["streaming_to_bigquery", "--param", f"subscription={to_bigquery}",
         "--param", f"dataset={dataset}", "--param", "triggering_frequency=2"],
    ) as processes:  # fmt: skip
        start = datetime.datetime.now(datetime.UTC)
        report = publisher.publish(plan, f"projects/{stack.project}/topics/e2e-{run}", start=start)
        assert report.failed == 0 and report.steady == 20
        sent = list(visits.messages(plan, start))
        malformed = report.confirmed["malformed"]
        assert 0 < malformed < 20

        def loaded():
            tables = f"`{bq.project}.{dataset}"
            counts = [
                bigquery_tables.row_count(bq, f"{bq.project}.{dataset}.{name}")
                for name in ("visits", "dead_letter")
            ]
            traced = bq.query(
                f"SELECT COUNT(*) FROM {tables}.dead_letter` "
                "WHERE level = 'visit' AND STARTS_WITH(source, 'pubsub:')"
            )
            return (
                counts == [20 - malformed, malformed]
                and next(iter(traced.result()))[0] == malformed
            )

        wait_for(loaded, "visits and dead letters in BigQuery", tmp_path, processes)

        gcs = storage.Client(project=stack.project, credentials=AnonymousCredentials())

        def archived():
            blobs = list(gcs.list_blobs(stack.project, prefix=f"e2e-{run}/"))
            lines = [line for b in blobs for line in b.download_as_bytes().splitlines()]
            return len(lines) == 20 and (blobs, lines)

        blobs, lines = wait_for(archived, "raw files in Cloud Storage", tmp_path, processes)
    assert sorted(lines) == sorted(m.data for m in sent)
    assert all(b.name.startswith(f"e2e-{run}/visits-") and "-pane-" in b.name for b in blobs)
    for process in processes:
        assert process.returncode == 0


def test_dos_drill_the_burst_is_flagged_and_normal_traffic_is_not(stack, tmp_path):
    """docs/dos-drill.md, shortened: 10-second windows, threshold 400 page views."""
    run = uuid.uuid4().hex[:8]
    (subscription,) = _subscriptions(stack.project, f"dos-{run}", "dos")
    log = tmp_path / "dos.log"
    with streaming(
        tmp_path,
        ["dos_detection", "--param", f"subscription={subscription}", "--param", "threshold=400",
         "--param", "window_seconds=10", "--param", f"log_file={log}"],
    ) as processes:  # fmt: skip
        began = datetime.datetime.now(datetime.UTC)
        simulate = subprocess.run(
            [sys.executable, "-m", "clickstream.cli", "simulate", "--topic", f"dos-{run}",
             "--visits-per-minute", "600", "--duration", "24", "--burst", "300",
             "--burst-at", "12", "--seed", "4"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert simulate.returncode == 0, simulate.stderr

        def entries():
            lines = log.read_text().splitlines() if log.exists() else []
            windows = [e for e in map(json.loads, lines) if "over_threshold" in e]
            return any(e["over_threshold"] for e in windows) and windows

        windows = wait_for(entries, "an over-threshold window in the DoS log", tmp_path, processes)
    burst = began + datetime.timedelta(seconds=12)
    for entry in windows:
        start, end = (
            datetime.datetime.fromisoformat(entry[k]) for k in ("window_start", "window_end")
        )
        # The bots' page views come within two seconds before the burst (after the simulator's
        # start-up, up to a few seconds after `began`).
        near_burst = start < burst + datetime.timedelta(
            seconds=8
        ) and end > burst - datetime.timedelta(seconds=3)
        assert entry["over_threshold"] == (entry["page_views"] > 400)
        assert entry["severity"] == ("WARNING" if entry["over_threshold"] else "INFO")
        if not near_burst:
            assert not entry["over_threshold"], entry
    assert any(not e["over_threshold"] for e in windows), "normal traffic was logged too"
