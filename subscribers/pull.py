"""Pub/Sub pull subscriber: streaming pull into the analyst tables, for a managed instance group.

- Streaming pull with flow control: at most ``max_messages`` messages are held (received and not
  yet acked), so a slow BigQuery slows the pull down instead of filling memory.
- Messages are written in batches (``batch_size``, or what came within ``max_latency`` seconds of
  the first) by the one writer (``clickstream.gcp.warehouse``): a few inserts per batch, each
  row with an insert id made of its key, no query; ``writers`` batches at the same time.
- A message is acked only after its batch is written. A failed batch is nacked: Pub/Sub
  redelivers it with backoff, then moves it to the dead-letter topic. A crash at any point loses
  nothing: unacked messages come back when their lease runs out, and rows written twice are
  never seen twice through the ``<table>_unique`` views.
- SIGTERM (or SIGINT): stop taking messages, write and ack those received, nack the ones that
  arrive meanwhile, close the stream and exit 0 (1 if writing them failed).
- ``GET /healthz`` on the health port: 200 while the pull loop makes progress; 503 when it is
  stalled (no turn of the loop, or a write unfinished, for ``stall_after`` seconds: BigQuery
  hanging), when the loop thread ended, or
  when the stream ended (the subscription was deleted, access was revoked). An idle subscription
  is healthy: waiting for messages, the loop turns every second.

Run it with ``python -m clickstream.subscribers.pull --subscription NAME [--project P]
[--dataset D]`` or, on the local stack, ``clickstream subscribe pull``.
"""

import argparse
import collections
import concurrent.futures
import itertools
import logging
import queue
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from google.cloud import pubsub_v1

from clickstream.core import names, visit
from clickstream.gcp.warehouse import Warehouse, is_transient
from clickstream.subscribers import options

_LOG = logging.getLogger("clickstream.subscribers.pull")  # also when run as __main__
OPEN, DRAINING, CLOSED = "open", "draining", "closed"
TICK_SECONDS = 1.0  # the longest the loop waits for a message before it turns again
STATS = (
    "received",
    "acked",
    "nacked",
    "batches",
    "batches_failed",
    "visits",
    "rows",
    "handed_back",
)


class PullSubscriber:
    """Streaming pull from ``subscription`` (a full path) into ``warehouse``, acking after each
    write (see the module docstring). ``start`` then ``stop``; ``health`` at any time.

    Args:
      batch_size: Messages per write at most.
      max_latency: Seconds a batch waits for more messages after its first one.
      max_messages: Messages held at most (flow control); at least ``batch_size``, default
        ``writers + 1`` times that, so that the next batch arrives while others are written.
      writers: Batches written at the same time (their acks come as each one is written).
      max_lease_seconds: Upper bound of each lease extension (0: the client library's, up to
        10 minutes). After a crash, held messages come back within this time.
      stall_after: Seconds without a turn of the loop after which ``health`` reports a stall.
    """

    def __init__(
        self,
        subscription: str,
        warehouse: Warehouse,
        *,
        batch_size: int = 500,
        max_latency: float = 1.0,
        max_messages: int | None = None,
        max_lease_seconds: int = 0,
        stall_after: float = 60.0,
        writers: int = 2,
    ):
        self.subscription, self.warehouse = subscription, warehouse
        self.batch_size, self.max_latency = batch_size, max_latency
        self.max_messages = max_messages or (writers + 1) * batch_size
        if batch_size < 1 or self.max_messages < batch_size or writers < 1:
            raise ValueError("need 1 <= batch_size <= max_messages and at least one writer")
        self._writers = concurrent.futures.ThreadPoolExecutor(writers, "pull-writer")
        self._free_writers = threading.Semaphore(writers)
        self._batches = itertools.count(1)
        self._writing: dict[int, float] = {}  # batch number -> when its write started
        self.max_lease_seconds, self.stall_after = max_lease_seconds, stall_after
        self.stats = collections.Counter(dict.fromkeys(STATS, 0))  # fixed keys: read by health
        self._queue: queue.Queue = queue.Queue()
        self._held: list = []  # arrived while draining: nacked when the stream closes
        self._lock = threading.Lock()
        self._state = OPEN
        self._stopping = threading.Event()
        self._progress_at = self._started_at = time.monotonic()
        self._drain_failed = False
        self._client: Any = None  # a pubsub_v1.SubscriberClient once started
        self._future: Any = None  # its streaming pull
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._client = pubsub_v1.SubscriberClient()
        flow_control = pubsub_v1.types.FlowControl(
            max_messages=self.max_messages,
            max_duration_per_lease_extension=self.max_lease_seconds,
        )
        self._future = self._client.subscribe(
            self.subscription, self._receive, flow_control=flow_control
        )
        self._thread = threading.Thread(target=self._loop, name="pull-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Drain: write and ack what was received, nack what arrives meanwhile, close the
        stream. False if a write failed meanwhile (its messages were nacked) or timed out."""
        with self._lock:
            self._state = DRAINING
        self._stopping.set()
        assert self._thread is not None, "stop() after start()"
        self._thread.join(timeout)
        self._writers.shutdown(wait=not self._thread.is_alive())  # the batches being written
        drained = not self._thread.is_alive() and not self._drain_failed
        with self._lock:
            self._state = CLOSED
            held, self._held = self._held, []
        for message in held:
            message.nack()
        self.stats["handed_back"] += len(held)
        self._future.cancel()
        try:
            self._future.result(timeout=30)  # returns once pending acks and nacks are sent
        except Exception as error:  # the stream had ended with an error: health said so
            _LOG.warning("streaming pull had ended: %r", error)
        self._client.close()
        return drained

    def health(self) -> tuple[bool, dict]:
        """(healthy, details): see the module docstring."""
        with self._lock:
            progress_at = min([self._progress_at, *self._writing.values()])
        idle = time.monotonic() - progress_at
        problem = None
        if self._thread is None or not self._thread.is_alive():
            problem = "the pull loop is not running"
        elif self._future.done():
            problem = f"the streaming pull ended: {self._future.exception()!r}"
        elif idle > self.stall_after:
            problem = f"no progress for {idle:.0f} s (a write hanging?)"
        return problem is None, {
            "healthy": problem is None,
            "problem": problem,
            "state": self._state,
            "uptime": round(time.monotonic() - self._started_at, 1),
            "seconds_since_progress": round(idle, 1),
            "waiting": self._queue.qsize(),
            **self.stats,
        }

    def _receive(self, message) -> None:
        """The client library's callback: queue the message for the loop."""
        with self._lock:
            if self._state == OPEN:
                self._queue.put(message)
                self.stats["received"] += 1
                return
            if self._state == DRAINING:
                self._held.append(message)
                return
        message.nack()

    def _loop(self) -> None:
        """Hand batches to the writers; waits while every writer is busy, so a hanging write
        stops the turns (and health reports it)."""
        while True:
            self._progress_at = time.monotonic()
            batch = self._next_batch()
            if batch:
                self._free_writers.acquire()
                self._writers.submit(self._write, next(self._batches), batch)
            elif self._stopping.is_set():
                return  # drained: nothing arrives in the queue once stopping

    def _next_batch(self) -> list:
        draining = self._stopping.is_set()
        try:
            batch = [self._queue.get(timeout=0 if draining else TICK_SECONDS)]
        except queue.Empty:
            return []
        until = time.monotonic() + self.max_latency
        while len(batch) < self.batch_size:
            wait = 0 if draining else until - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=wait) if wait > 0 else self._queue.get(False))
            except queue.Empty:
                break
        return batch

    def _write(self, number: int, batch: list) -> None:
        with self._lock:
            self._writing[number] = time.monotonic()
        try:
            self._write_batch(number, batch)
        finally:
            with self._lock:
                del self._writing[number]
            self._free_writers.release()

    def _write_batch(self, number: int, batch: list) -> None:
        _LOG.info("batch %d: writing %d messages", number, len(batch))
        started = time.monotonic()
        try:
            records = [visit.parse_visit(m.data, f"pubsub:{m.message_id}") for m in batch]
            result = self.warehouse.write(records)
        except Exception as error:
            with self._lock:
                self.stats["batches_failed"] += 1
                self.stats["nacked"] += len(batch)
                self._drain_failed |= self._stopping.is_set()
            _LOG.warning(
                "batch %d failed, nacked for redelivery: %r",
                *(number, error),
                exc_info=not is_transient(error),  # a bug: keep the traceback
            )
            for message in batch:
                message.nack()
            return
        for message in batch:
            message.ack()
        visits = sum(record.visit_loaded for record in records)
        with self._lock:
            self.stats.update(batches=1, acked=len(batch), visits=visits, rows=result.rows_written)
        _LOG.info(
            "batch %d: %d messages, %d visits, %d rows written (%.2f s)",
            *(number, len(batch), visits, result.rows_written),
            time.monotonic() - started,
        )


def serve_health(subscriber: PullSubscriber, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``GET /healthz`` (200 or 503, with details as JSON) in a background thread."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/healthz":
                self.send_error(404)
                return
            healthy, details = subscriber.health()
            body = orjson.dumps(details)
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # a probe every few seconds would flood the log
            pass

    server = ThreadingHTTPServer((host, port), Health)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def run(args: argparse.Namespace) -> int:
    """Pull until SIGTERM or SIGINT, then drain. The exit status: 0 once drained."""
    warehouse = Warehouse(args.dataset, args.project, deadline=args.write_deadline)
    subscription = names.subscription_path(warehouse.client.project, args.subscription)
    subscriber = PullSubscriber(
        subscription,
        warehouse,
        batch_size=args.batch_size,
        max_latency=args.max_latency,
        max_messages=args.max_messages,
        max_lease_seconds=args.max_lease_seconds,
        stall_after=args.stall_after,
        writers=args.writers,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = serve_health(subscriber, args.health_host, args.health_port)
    subscriber.start()
    _LOG.info(
        "pulling %s into %s (health: http://%s:%d/healthz)",
        *(subscription, warehouse.dataset, args.health_host, server.server_address[1]),
    )
    while not stop.wait(1.0):
        pass
    _LOG.info("stopping: writing and acking the messages received")
    drained = subscriber.stop(timeout=2 * args.write_deadline + args.max_latency)
    server.shutdown()
    _LOG.info("stopped (%s): %s", "drained" if drained else "NOT drained", dict(subscriber.stats))
    return 0 if drained else 1


def configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("clickstream").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clickstream.subscribers.pull", description=__doc__
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    options.add_pull_arguments(parser)
    configure_logging()
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
