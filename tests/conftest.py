"""Shared fixtures: the real local stack on free ports, and the lab data when it is present."""

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB_DATA = ROOT.parent / "shared" / "data" / "lab-visits"
PORT_VARIABLES = tuple(
    f"CLICKSTREAM_{name}_PORT"
    for name in ("PUBSUB", "BIGQUERY", "BIGQUERY_GRPC", "STORAGE", "METADATA")
)


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on right now (held open together so that they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def lab_data() -> Path:
    """The real lab files (../shared/data/lab-visits); the test is skipped when absent."""
    if not any(LAB_DATA.glob("*.jsonl")):
        pytest.skip(f"lab data absent: no {LAB_DATA}/*.jsonl (it lives in ../shared)")
    return LAB_DATA


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The three emulators, started for this session on free ports and stopped after it."""
    from clickstream.local import emulators

    ports = free_ports(len(PORT_VARIABLES))
    env = {name: str(port) for name, port in zip(PORT_VARIABLES, ports, strict=True)}
    env["CLICKSTREAM_STATE_DIR"] = str(tmp_path_factory.mktemp("stack"))
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        emulators.up("clickstream")
        yield emulators.settings()
    finally:
        emulators.down()
        os.environ.clear()
        os.environ.update(saved)
