"""Helpers of the subscriber tests: processes on free ports, polling with deadlines, what a set
of messages must become in BigQuery, and the batch migration they are compared with."""

import base64
import collections
import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import requests
from conftest import ROOT

from clickstream.core import contract, jsonlines, visit
from clickstream.core.ports import free_ports
from clickstream.gcp import bigquery_tables, warehouse

MALFORMED = (b"{not json", b"[1, 2]", b"\xff\xfe not utf-8")  # Pub/Sub refuses empty data
ONE_BAD_EVENT = orjson.dumps(
    {
        "session_id": "SID-BAD-EVENT",
        "user_id": "UID-1",
        "events": [
            {
                "event_type": "page_view",
                "timestamp": "2024-07-01T09:00:00Z",
                "details": {"page_url": "https://example.com/"},
            },
            {"event_type": "page_view", "timestamp": "not a time", "details": {}},
        ],
    }
)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment (the stack's variables included), with ``extra``."""
    return {**os.environ, **extra}


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after
    ``timeout`` seconds. Returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def running(command: list[str], log: Path, env: dict[str, str]):
    """A process writing to ``log``; killed (with its children) when the block ends."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def push_handler_command(port: int) -> list[str]:
    """The push subscriber as Cloud Run runs it: the Functions Framework's server."""
    return [
        *(sys.executable, "-m", "functions_framework", "--target", "receive"),
        *("--source", str(ROOT / "subscribers" / "push.py")),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]


def pull_command(subscription: str, dataset: str, health_port: int, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "clickstream.subscribers.pull", "--subscription", subscription),
        *("--dataset", dataset, "--health-port", str(health_port), *extra),
    ]


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.ConnectionError:
        return False
    return True


def start_push_handler(tmp_path: Path, name: str, **env: str) -> tuple[str, object]:
    """(URL, context manager) of a push handler on a free port with ``env`` added."""
    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}/"
    return url, running(push_handler_command(port), tmp_path / f"{name}.log", subprocess_env(**env))


def envelope(data: bytes, message_id: str) -> bytes:
    """A Pub/Sub push envelope, as Pub/Sub sends it."""
    message = {"data": base64.b64encode(data).decode(), "messageId": message_id}
    return orjson.dumps({"message": message, "subscription": "projects/p/subscriptions/s"})


def expected_rows(messages: dict[str, bytes]) -> dict[str, int]:
    """Rows per table that messages (id -> payload) must become: the visit model's rows, one
    per primary key."""
    keys = collections.defaultdict(set)
    for message_id, payload in messages.items():
        for table, rows in visit.parse_visit(payload, f"pubsub:{message_id}").rows.items():
            keys[table].update(warehouse.row_key(table, row) for row in rows)
    return {table: len(keys[table]) for table in contract.TABLES}


def visible_counts(dataset: str) -> dict[str, int]:
    """Rows per table as analysts see them: through the ``<table>_unique`` views."""
    bq = bigquery_tables.client()
    return {
        table: bigquery_tables.row_count(
            bq, f"{bq.project}.{dataset}.{table}{warehouse.UNIQUE_SUFFIX}"
        )
        for table in contract.TABLES
    }


def compacted_counts(dataset: str) -> dict[str, int]:
    """Rows per table once every day of every table is compacted (the emulator keeps no
    streaming buffer, so today's rows can be compacted too)."""
    bq = bigquery_tables.client()
    tomorrow = datetime.date.today() + datetime.timedelta(days=1)
    counts = {}
    for table in contract.TABLES:
        table_id = f"{bq.project}.{dataset}.{table}"
        warehouse.compact(bq, table_id, table, tomorrow)
        counts[table] = bigquery_tables.row_count(bq, table_id)
    return counts


def duplicate_keys(dataset: str) -> dict[str, int]:
    """Per table, how many keys appear more than once (all zero when nothing is duplicated)."""
    bq = bigquery_tables.client()
    found = {}
    for table in contract.TABLES:
        sql = (
            f"SELECT COUNT(*) FROM (SELECT {warehouse.key_sql(table)} AS k "
            f"FROM `{bq.project}.{dataset}.{table}` GROUP BY k HAVING COUNT(*) > 1)"
        )
        found[table] = next(iter(bq.query(sql).result()))[0]
    return found


def lab_file(lab_data: Path, day: str) -> Path:
    return lab_data / f"visits-{day}.jsonl"


def lab_lines(lab_data: Path, day: str) -> list[bytes]:
    """The visits of one lab file (e.g. day '2024-07-01'), one payload per line."""
    return list(jsonlines.read([str(lab_file(lab_data, day))]))
