"""The local stack on free, non-default ports and a temporary state dir, so a stack the developer
runs is never touched."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PORT_VARIABLES

from clickstream.core.ports import free_ports
from clickstream.local import emulators

ROOT = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def stack_state(tmp_path, monkeypatch):
    for name, port in zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True):
        monkeypatch.setenv(name, str(port))
    monkeypatch.setenv("CLICKSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CLICKSTREAM_PROJECT", raising=False)
    monkeypatch.delenv("CLICKSTREAM_PUBSUB_EMULATOR", raising=False)
    for key in emulators.emulator_env():  # up() sets these: record them so teardown restores
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    yield tmp_path / "state"
    emulators.down()


def test_emulator_env(stack_state, monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_PUBSUB_PORT", "1234")
    env = emulators.emulator_env()
    assert env["PUBSUB_EMULATOR_HOST"] == "127.0.0.1:1234"
    assert env["BIGQUERY_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    assert env["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    assert env["GOOGLE_CLOUD_PROJECT"] == "clickstream-local"


def test_up_status_up_again_down(stack_state, capsys):
    stack_state.mkdir()
    (stack_state / "pubsub.pid").write_text(f"{dead_pid()}\n")  # left by a crashed stack
    # First start from another process: the emulators must outlive it.
    child = subprocess.run(
        [sys.executable, "-c", "from clickstream.local import emulators; emulators.up()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert "removed stale pid file" in child.stdout
    assert child.stdout.count(" started on 127.0.0.1:") == 4
    assert "(7 tables, 12 views)" in child.stdout

    running = emulators.status()
    assert all(row["running"] and row["answers"] for row in running.values()), running
    assert running["pubsub"]["port"] == int(os.environ["CLICKSTREAM_PUBSUB_PORT"])

    emulators.up()
    assert capsys.readouterr().out.count("already running") == 4
    assert emulators.status() == running

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from clickstream.gcp import bigquery_tables

    tables = bigquery_tables.client().list_tables("clickstream")
    assert {table.table_id for table in tables} >= {"visits", "dead_letter"}
    gcs = storage.Client(project="clickstream-local", credentials=AnonymousCredentials())
    assert gcs.lookup_bucket("clickstream-local") is not None

    emulators.down()
    stopped = emulators.status()
    assert not any(row["running"] or row["answers"] or row["pid"] for row in stopped.values())
    assert not list(stack_state.glob("*.pid"))
    emulators.down()
    assert capsys.readouterr().out.count("not running") == 4


def test_stale_pid_file(stack_state):
    stack_state.mkdir()
    (stack_state / "storage.pid").write_text(f"{dead_pid()}\n")
    assert emulators.status()["storage"] == {
        "running": False,
        "pid": None,
        "port": int(os.environ["CLICKSTREAM_STORAGE_PORT"]),
        "answers": False,
    }
    emulators.down()
    assert not (stack_state / "storage.pid").exists()


def test_missing_pubsub_emulator(stack_state, monkeypatch, tmp_path):
    monkeypatch.setattr(emulators, "PUBSUB_EMULATOR", tmp_path / "missing")
    with pytest.raises(emulators.StackError, match="gcloud components install pubsub-emulator"):
        emulators.up()
    assert not stack_state.exists() or not list(stack_state.glob("*.pid"))


def test_emulator_that_exits_shows_its_log(stack_state, monkeypatch, tmp_path):
    script = tmp_path / "broken-emulator"
    script.write_text("#!/bin/sh\necho 'no java here' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("CLICKSTREAM_PUBSUB_EMULATOR", str(script))
    with pytest.raises(emulators.StackError, match="pubsub emulator exited") as error:
        emulators.up()
    assert "no java here" in str(error.value)
    assert not (stack_state / "pubsub.pid").exists()


def test_port_taken_by_another_process(stack_state):
    port = int(os.environ["CLICKSTREAM_PUBSUB_PORT"])
    with (
        socket.create_server(("127.0.0.1", port)),
        pytest.raises(emulators.StackError, match=f"port 127.0.0.1:{port} is in use"),
    ):
        emulators.up()
