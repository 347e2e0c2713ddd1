"""Subscriber throughput into the local emulators, beside the emulators' own limits, one run.

Limits (no subscriber code; the same visits):
- pubsub pull: the Pub/Sub emulator's streaming pull, each message acked at once, with the pull
  subscriber's flow control;
- pubsub push: the emulator's push deliveries to an endpoint that answers 204 at once;
- bigquery insert: streaming inserts of the visits' rows, 500 per request, one at a time;
  and, the bound of anything that writes each message on its own, one visit per request.

Subscribers, end to end (messages already published, clock started when delivery starts):
- pull: ``subscribers.pull.PullSubscriber`` in process, batches of 500, until all are acked
  (a message is acked once its rows are written);
- push: the push handler as Cloud Run runs it (Functions Framework) behind the emulator's push
  subscription, until it has answered every message.

The limits and the pull subscriber alternate over ``--rounds`` rounds (medians shown), the push
side runs once. Then where the time goes: the visit model and the inserts, per pull batch and per
push message, and the targets: the pull subscriber at 90% of what the Pub/Sub emulator delivers,
the push handler at 10x the 13 visits/s it managed with a key lookup per message. Needs the local
stack (``make up``); creates and deletes its own topics and datasets.

Usage: python benchmarks/subscriber_throughput.py [--visits N] [--push-visits M] [--rounds R]
"""

import argparse
import collections
import glob
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import targets
from google.cloud import pubsub_v1
from targets import LAB_VISITS, Target

from clickstream.cli.local import use_local_stack
from clickstream.core import contract, jsonlines, names, visit
from clickstream.gcp import bigquery_tables, pubsub, views
from clickstream.gcp.warehouse import REQUEST_ROWS, Warehouse, row_key
from clickstream.local import emulators
from clickstream.subscribers.pull import PullSubscriber

ROOT = Path(__file__).resolve().parents[1]
BATCH = 500
WAIT = 300.0  # seconds any stage may take before the benchmark gives up
PER_MESSAGE = 50  # messages written one by one to time the push handler's work


PUSH_BEFORE = 13.0  # visits/s of the push handler when it ran a key lookup per message
PUSH_TARGET, PULL_TARGET = 10.0, 0.9  # x that; share of the Pub/Sub emulator's pull limit


class TimedWarehouse(Warehouse):
    """A Warehouse that adds up the seconds spent writing, and the tables written."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds: collections.Counter = collections.Counter()

    def append(self, rows):
        started = time.perf_counter()
        try:
            return super().append(rows)
        finally:
            self.seconds["write"] += time.perf_counter() - started
            self.seconds["tables"] += sum(bool(list(table_rows)) for table_rows in rows.values())


class Run:
    """Names, datasets and topics of one benchmark run, deleted at the end."""

    def __init__(self, project: str):
        self.project, self.tag = project, uuid.uuid4().hex[:6]
        self.topics: list[str] = []
        self.datasets: list[str] = []

    def _unique(self, name: str) -> str:
        return f"{name}_{self.tag}_{len(self.topics) + len(self.datasets)}"

    def subscription(self, name: str) -> str:
        """A new topic with a pull subscription of the same name; its path."""
        topic = self._unique(f"bench-{name}")
        self.topics.append(topic)
        return pubsub.ensure_subscription(self.project, topic, topic)[0]

    def dataset(self, name: str) -> str:
        """A new dataset with the analyst tables."""
        dataset = self._unique(f"bench_{name}")
        views.ensure_analyst_dataset(self.project, dataset)
        self.datasets.append(dataset)
        return dataset

    def publish(self, subscription: str, payloads: list[bytes]) -> None:
        pubsub.publish(self.project, payloads, subscription.rsplit("/", 1)[1])

    def clean(self) -> None:
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        for topic in self.topics:
            for name in (topic, names.dead_letter_topic(topic)):
                subscriber.delete_subscription(
                    subscription=subscriber.subscription_path(self.project, name)
                )
                publisher.delete_topic(topic=publisher.topic_path(self.project, name))
        bq = bigquery_tables.client()
        for dataset in self.datasets:
            bq.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"error: gave up waiting for {what}")
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_push(subscriber, subscription: str, endpoint: str) -> float:
    """Point a (pull-created) subscription at ``endpoint``: deliveries start now."""
    push_config = {"push_endpoint": endpoint}
    subscriber.modify_push_config(subscription=subscription, push_config=push_config)
    return time.perf_counter()


def pubsub_pull_only(run: Run, payloads: list[bytes]) -> float:
    subscription = run.subscription("pull-only")
    run.publish(subscription, payloads)
    received = collections.Counter()

    def callback(message) -> None:
        message.ack()
        received["n"] += 1

    subscriber = pubsub_v1.SubscriberClient()
    started = time.perf_counter()
    future = subscriber.subscribe(
        subscription, callback, flow_control=pubsub_v1.types.FlowControl(max_messages=2 * BATCH)
    )
    _wait(lambda: received["n"] >= len(payloads), "the pull-only messages")
    took = time.perf_counter() - started
    future.cancel()
    future.result(timeout=30)
    subscriber.close()
    return took


def pubsub_push_only(run: Run, payloads: list[bytes]) -> float:
    answered = collections.Counter()

    class NoOp(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            answered["n"] += 1

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NoOp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    subscription = run.subscription("push-only")
    run.publish(subscription, payloads)
    subscriber = pubsub_v1.SubscriberClient()
    started = _start_push(subscriber, subscription, f"http://127.0.0.1:{server.server_port}/")
    _wait(lambda: answered["n"] >= len(payloads), "the push-only deliveries")
    took = time.perf_counter() - started
    server.shutdown()
    return took


def _rows(payloads: list[bytes]) -> dict[str, list[dict]]:
    """The visits' rows per table, one per key, as a subscriber writes them."""
    rows = {table: {} for table in contract.TABLES}
    for number, payload in enumerate(payloads):
        for table, table_rows in visit.parse_visit(payload, f"bench:{number}").rows.items():
            rows[table].update((row_key(table, row), row) for row in table_rows)
    return {table: list(keyed.values()) for table, keyed in rows.items()}


def _insert(bq, dataset: str, table: str, rows: list[dict]) -> None:
    ids = [f"{table}:{row_key(table, row)}" for row in rows]
    if bq.insert_rows_json(f"{bq.project}.{dataset}.{table}", rows, row_ids=ids):
        raise SystemExit(f"error: BigQuery refused rows of {table}")


def bigquery_insert_only(run: Run, payloads: list[bytes]) -> tuple[float, int]:
    """Seconds to insert the visits' rows in requests of 500, and the number of rows."""
    dataset, rows = run.dataset("insert_only"), _rows(payloads)
    bq = bigquery_tables.client()
    started = time.perf_counter()
    for table, table_rows in rows.items():
        for start in range(0, len(table_rows), REQUEST_ROWS):
            _insert(bq, dataset, table, table_rows[start : start + REQUEST_ROWS])
    return time.perf_counter() - started, sum(len(table_rows) for table_rows in rows.values())


def bigquery_insert_per_visit(run: Run, payloads: list[bytes]) -> float:
    """Seconds to insert the visits' rows one visit at a time (a request per table), as a
    subscriber that writes each message on its own must."""
    dataset, visits = run.dataset("insert_per_visit"), [_rows([p]) for p in payloads]
    bq = bigquery_tables.client()
    started = time.perf_counter()
    for rows in visits:
        for table, table_rows in rows.items():
            if table_rows:
                _insert(bq, dataset, table, table_rows)
    return time.perf_counter() - started


def pull_subscriber(run: Run, payloads: list[bytes]) -> tuple[float, TimedWarehouse, dict]:
    subscription, dataset = run.subscription("pull"), run.dataset("pull")
    run.publish(subscription, payloads)
    warehouse = TimedWarehouse(dataset)
    subscriber = PullSubscriber(subscription, warehouse, batch_size=BATCH)
    started = time.perf_counter()
    subscriber.start()
    _wait(lambda: subscriber.stats["acked"] >= len(payloads), "the pull subscriber")
    took = time.perf_counter() - started
    subscriber.stop(timeout=60)
    return took, warehouse, dict(subscriber.stats)


def push_subscriber(run: Run, payloads: list[bytes], log: Path) -> float:
    subscription, dataset = run.subscription("push"), run.dataset("push")
    run.publish(subscription, payloads)
    port = _free_port()
    env = {**os.environ, "BIGQUERY_DATASET": dataset}
    command = [
        *(sys.executable, "-m", "functions_framework", "--target", "receive"),
        *("--source", str(ROOT / "subscribers" / "push.py"), "--port", str(port)),
        *("--host", "127.0.0.1"),
    ]
    with log.open("wb") as out:
        handler = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait(lambda: _answers(url), "the push handler to listen")
        subscriber = pubsub_v1.SubscriberClient()
        started = _start_push(subscriber, subscription, url)
        _wait(lambda: log.read_text().count(" INFO message ") >= len(payloads), "push answers")
        return time.perf_counter() - started
    finally:
        os.killpg(handler.pid, signal.SIGTERM)
        handler.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.ConnectionError:
        return False
    return True


def per_message(run: Run, payloads: list[bytes]) -> tuple[float, TimedWarehouse]:
    """The push handler's work for one message (parse, then write one record), in process."""
    warehouse = TimedWarehouse(run.dataset("per_message"))
    started = time.perf_counter()
    for number, payload in enumerate(payloads):
        warehouse.write([visit.parse_visit(payload, f"pubsub:{number}")])
    return time.perf_counter() - started, warehouse


def _parse_seconds(payloads: list[bytes]) -> float:
    started = time.perf_counter()
    for number, payload in enumerate(payloads):
        visit.parse_visit(payload, f"pubsub:{number}")
    return time.perf_counter() - started


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--visits", type=int, default=3000, help="visits for the pull side")
    parser.add_argument("--push-visits", type=int, default=150, help="visits pushed")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the pull side")
    parser.add_argument("--input", default=LAB_VISITS, help="glob of JSON-lines files")


def measure(args: argparse.Namespace) -> list[Target]:
    """Runs the measurements, prints the figures and where the time goes; the targets."""
    payloads = list(jsonlines.read(sorted(glob.glob(args.input))))[: args.visits]
    pushed = payloads[: args.push_visits]
    n, m = len(payloads), len(pushed)
    use_local_stack()
    run = Run(emulators.settings().project)
    print(f"{n:,} lab visits for the pull side ({args.rounds} rounds), {m:,} pushed")
    seconds: dict[str, list[float]] = collections.defaultdict(list)
    spent: collections.Counter = collections.Counter()
    try:
        for number in range(1, args.rounds + 1):
            seconds["pull only"].append(pubsub_pull_only(run, payloads))
            took, rows = bigquery_insert_only(run, payloads)
            seconds["insert only"].append(took)
            took, store, stats = pull_subscriber(run, payloads)
            seconds["pull subscriber"].append(took)
            spent.update(store.seconds)
            spent.update(batches=stats["batches"], seconds=took)
            print(
                f"  round {number}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items())
            )
        push_only = pubsub_push_only(run, pushed)
        per_visit = bigquery_insert_per_visit(run, pushed)
        with tempfile.TemporaryDirectory() as logs:
            push_took = push_subscriber(run, pushed, Path(logs) / "push.log")
        one_took, one_store = per_message(run, pushed[:PER_MESSAGE])
    finally:
        run.clean()

    rate = {name: n / statistics.median(values) for name, values in seconds.items()}
    pull_limit = min(rate["pull only"], rate["insert only"])
    push_limit = min(m / push_only, m / per_visit)
    print(f"\n{'':<58}{'visits/s':>10}")
    for label, value in (
        ("limit: Pub/Sub emulator, streaming pull only", rate["pull only"]),
        ("limit: Pub/Sub emulator, push only (204 at once)", m / push_only),
        (f"limit: BigQuery emulator, inserts only ({rows:,} rows)", rate["insert only"]),
        ("limit: BigQuery emulator, inserts only, a visit per request", m / per_visit),
        (f"pull subscriber, end to end (batches of {BATCH})", rate["pull subscriber"]),
        ("push handler, end to end (emulator push subscription)", m / push_took),
    ):
        print(f"  {label:<56}{value:>10,.0f}")
    print(
        f"  pull: {rate['pull subscriber'] / pull_limit:.2f} of the slower limit; "
        f"push: {m / push_took / push_limit:.2f} of its limit"
    )

    batches = spent["batches"]
    parse = args.rounds * _parse_seconds(payloads)
    print(f"\npull, per batch of up to {BATCH} ({batches} batches over the rounds):")
    _breakdown(spent, batches, parse)
    print(f"  wall clock per batch  {1000 * spent['seconds'] / batches:7.1f} ms (writers overlap)")
    k = min(PER_MESSAGE, m)
    print(f"\npush, per message ({k} written one by one in process, {1000 * one_took / k:.0f} ms):")
    _breakdown(one_store.seconds, k, _parse_seconds(pushed[:k]))
    print(
        f"  one message at a time: {k / one_took:.0f}/s at most; the emulator keeps about "
        "2 pushes in flight, and the BigQuery emulator gains little from concurrency"
    )

    return [
        Target(
            "pull subscriber / Pub/Sub emulator's streaming pull",
            rate["pull subscriber"] / rate["pull only"],
            PULL_TARGET,
            "x",
        ),
        Target(
            f"push handler / {PUSH_BEFORE:g} visits/s of a key lookup per message",
            m / push_took / PUSH_BEFORE,
            PUSH_TARGET,
            "x",
        ),
    ]


def _breakdown(seconds: collections.Counter, writes: int, parse: float) -> None:
    """Milliseconds per write: the visit model, the inserts (every table at once, no query)."""
    tables = seconds["tables"] / writes
    print(f"  visit model (parse)   {1000 * parse / writes:7.1f} ms")
    print(f"  inserts ({tables:.1f} tables)   {1000 * seconds['write'] / writes:7.1f} ms")


if __name__ == "__main__":
    targets.main(__doc__, add_arguments, measure)
