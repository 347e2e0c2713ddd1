"""Free ports for local servers: outside the range client connections take theirs from."""

import socket

from clickstream.core import ports


def test_ports_are_free_different_and_below_the_ephemeral_range():
    chosen = ports.free_ports(20)
    assert len(set(chosen)) == 20
    assert all(ports.LOWEST <= port < ports._ephemeral_start() for port in chosen)
    for port in chosen:
        with socket.socket() as server:
            server.bind((ports.HOST, port))  # nobody holds it


def test_a_port_in_use_is_never_given(monkeypatch):
    with socket.socket() as taken:
        taken.bind((ports.HOST, 0))
        busy = taken.getsockname()[1]
        taken.listen()
        picks = iter([busy, busy, busy + 1])  # busy twice, then a free one
        monkeypatch.setattr(ports._random, "randint", lambda low, high: next(picks))
        monkeypatch.setattr(ports, "_ephemeral_start", lambda: 65536)
        assert ports.free_port() != busy
