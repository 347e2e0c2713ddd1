"""Subscribers beside the emulators' own limits, over alternating rounds.

Limits (no subscriber code; the same visits):
- pubsub pull: the Pub/Sub emulator's streaming pull, each message acked at once, with the pull
  subscriber's flow control;
- pubsub push: the emulator's push deliveries to an endpoint that answers 204 at once;
- bigquery insert: streaming inserts of the visits' rows, 500 per request, one at a time;
  and, the bound of anything that writes each message on its own, one visit per request.

Subscribers:
- pull: ``subscribers.pull.PullSubscriber`` in process, batches of 500, until all are acked (a
  message is acked once its rows are written), writing into a BigQuery stand-in that answers at
  once (``bigquery_stand_in.py``, its own process: the writes are not the bottleneck), and, for
  reference, into the BigQuery emulator;
- push, its own cost: the push handler as the Functions Framework serves it (its WSGI app, in
  process), each message a push envelope, writing into the stand-in: CPU per message;
- push end to end (once, for reference): the handler behind the emulator's push subscription,
  writing into the BigQuery emulator.

Targets: the pull subscriber (writing into the stand-in) at 90% of what the Pub/Sub emulator's
pull delivers, round by round (wall: both wait on the emulator); the push handler at 2,000
messages per second per core (its CPU per message). Needs the local stack (``make up``); creates
and deletes its own topics and datasets.

Usage: python benchmarks/subscriber_throughput.py [--visits N] [--push-visits M] [--rounds R]
"""

import argparse
import base64
import collections
import contextlib
import glob
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import functions_framework
import orjson
import requests
import targets
from google.cloud import pubsub_v1
from targets import LAB_VISITS, Rounds, Target, Timing, timed

from clickstream.cli.local import use_local_stack
from clickstream.core import contract, jsonlines, names, ports, visit
from clickstream.gcp import bigquery_tables, pubsub, views
from clickstream.gcp.warehouse import REQUEST_ROWS, Warehouse, row_key
from clickstream.local import emulators
from clickstream.subscribers.pull import PullSubscriber

ROOT = Path(__file__).resolve().parents[1]
PUSH_SOURCE = ROOT / "subscribers" / "push.py"
BATCH = 500
WAIT = 300.0  # seconds any stage may take before the benchmark gives up


PUSH_TARGET = 2000.0  # messages/s per core of the push handler's own work
PULL_TARGET = 0.9  # share of the Pub/Sub emulator's pull limit


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


def pull_subscriber(run: Run, payloads: list[bytes], warehouse: Warehouse) -> float:
    """Seconds until the pull subscriber, writing into ``warehouse``, acked every message."""
    subscription = run.subscription("pull")
    run.publish(subscription, payloads)
    subscriber = PullSubscriber(subscription, warehouse, batch_size=BATCH)
    started = time.perf_counter()
    subscriber.start()
    _wait(lambda: subscriber.stats["acked"] >= len(payloads), "the pull subscriber")
    took = time.perf_counter() - started
    subscriber.stop(timeout=60)
    return took


def push_subscriber(run: Run, payloads: list[bytes], log: Path) -> float:
    subscription, dataset = run.subscription("push"), run.dataset("push")
    run.publish(subscription, payloads)
    port = ports.free_port()
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


@contextlib.contextmanager
def bigquery_stand_in():
    """``bigquery_stand_in.py`` in its own process; yields its endpoint."""
    port = ports.free_port()
    command = [sys.executable, str(Path(__file__).with_name("bigquery_stand_in.py")), str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        process.stdout.readline()  # listening
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def bigquery_at(endpoint: str):
    """BigQuery clients made within the block talk to ``endpoint``."""
    saved = os.environ[bigquery_tables.EMULATOR_ENV]
    os.environ[bigquery_tables.EMULATOR_ENV] = endpoint
    try:
        yield
    finally:
        os.environ[bigquery_tables.EMULATOR_ENV] = saved


def push_app():
    """The push handler's WSGI app, as the Functions Framework serves it; its log to nowhere."""
    app = functions_framework.create_app(target="receive", source=str(PUSH_SOURCE))
    for handler in logging.getLogger("clickstream.subscribers.push").handlers:
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (for the process's life)
    return app.test_client()


def push_envelopes(payloads: list[bytes]) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "message": {"data": base64.b64encode(p).decode(), "messageId": str(number)},
                "subscription": "projects/bench/subscriptions/bench",
            }
        )
        for number, p in enumerate(payloads)
    ]


def push_handler(client, envelopes: list[bytes]) -> None:
    """Each envelope POSTed to the handler; every answer must be 200."""
    for body in envelopes:
        answer = client.post("/", data=body, content_type="application/json")
        if answer.status_code != 200:
            raise SystemExit(f"error: the push handler answered {answer.status_code}")


def _waited(rounds: Rounds, name: str, run, items: int) -> None:
    """Record the seconds ``run`` returns (its own clock: set-up left out) and its CPU."""
    seconds: list[float] = []
    cpu = timed(lambda: seconds.append(run())).cpu
    rounds.add(name, Timing(seconds[0], cpu), items)


def parse_all(payloads: list[bytes]) -> None:
    for number, payload in enumerate(payloads):
        visit.parse_visit(payload, f"pubsub:{number}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--visits", type=int, default=3000, help="visits for the pull side")
    parser.add_argument("--push-visits", type=int, default=500, help="visits pushed a round")
    targets.rounds_argument(parser)
    parser.add_argument("--input", default=LAB_VISITS, help="glob of JSON-lines files")


def measure(args: argparse.Namespace) -> list[Target]:
    """Runs the measurements, prints the figures and where the time goes; the targets."""
    payloads = list(jsonlines.read(sorted(glob.glob(args.input))))[: args.visits]
    pushed = payloads[: args.push_visits]
    n, m = len(payloads), len(pushed)
    use_local_stack()
    run = Run(emulators.settings().project)
    print(f"{n:,} lab visits for the pull side, {m:,} pushed, {args.rounds} alternating rounds")
    rounds = Rounds()
    try:
        with bigquery_stand_in() as stand_in:
            envelopes = push_envelopes(pushed)
            with bigquery_at(stand_in):  # the stand-in takes any dataset
                fast, client = Warehouse("bench"), push_app()
                push_handler(client, envelopes[:20])  # the first request makes its client
            into = Warehouse(run.dataset("pull"))  # the BigQuery emulator
            for number in range(1, args.rounds + 1):
                _waited(rounds, "pull only", lambda: pubsub_pull_only(run, payloads), n)
                _waited(rounds, "pull, stand-in", lambda: pull_subscriber(run, payloads, fast), n)
                _waited(rounds, "pull, emulator", lambda: pull_subscriber(run, payloads, into), n)
                _waited(rounds, "insert only", lambda: bigquery_insert_only(run, payloads)[0], n)
                rounds.time("push handler", lambda: push_handler(client, envelopes), m)
                rounds.print_round(number)
        limits = {
            "push only": m / pubsub_push_only(run, pushed),
            "insert per visit": m / bigquery_insert_per_visit(run, pushed),
        }
        with tempfile.TemporaryDirectory() as logs:
            push_end_to_end = m / push_subscriber(run, pushed, Path(logs) / "push.log")
    finally:
        run.clean()
    rounds.print_table("message")
    rate = {name: 1 / statistics.median(rounds.per_item(name, "wall")) for name in rounds.timings}
    model = min(timed(lambda: parse_all(pushed)).cpu for _ in range(args.rounds))
    tables = sum(bool(rows) for p in pushed for rows in visit.parse_visit(p, "t").rows.values()) / m
    handler = statistics.median(rounds.per_item("push handler"))
    print(f"\n{'':<62}{'visits/s':>10}")
    for label, value in (
        ("limit: Pub/Sub emulator, streaming pull only", rate["pull only"]),
        ("limit: Pub/Sub emulator, push only (204 at once)", limits["push only"]),
        ("limit: BigQuery emulator, inserts only (500 rows a request)", rate["insert only"]),
        ("limit: BigQuery emulator, inserts only, a visit per request", limits["insert per visit"]),
        (f"pull subscriber into the stand-in (batches of {BATCH})", rate["pull, stand-in"]),
        ("pull subscriber into the BigQuery emulator", rate["pull, emulator"]),
        ("push handler end to end (emulator push, BigQuery emulator)", push_end_to_end),
        ("push handler's own work, per core (stand-in)", 1 / handler),
    ):
        print(f"  {label:<60}{value:>10,.0f}")
    print(
        f"\npush handler, CPU per message: {1e6 * handler:,.0f} µs, of which the visit model "
        f"{1e6 * model / m:,.0f} µs; the rest is Flask and {tables:.1f} insertAll requests "
        "(one per table with rows) through the BigQuery client"
    )
    return [
        Target(
            "pull subscriber (writes not the bottleneck) / emulator's pull",
            tuple(rounds.ratios("pull only", "pull, stand-in", "wall")),
            PULL_TARGET,
            "x",
            basis="wall",
        ),
        Target(
            "push handler's own work (stand-in BigQuery), messages/s per core",
            tuple(1 / cpu for cpu in rounds.per_item("push handler")),
            PUSH_TARGET,
            "/s",
        ),
    ]


if __name__ == "__main__":
    targets.main(__doc__, add_arguments, measure)
