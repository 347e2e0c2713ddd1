"""Free TCP ports for the local servers the catalog starts (emulators' fronts, Airflow, the
functions, mail sinks).

A port is picked below the kernel's ephemeral range, where outgoing connections take their
local ports: a port from that range (what binding port 0 gives) can be taken by any client
connection between the moment it is picked and the moment its server binds it, which on a busy
machine happens. Ports handed out are not handed out again by this process."""

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
LOWEST = 10_000  # below: well-known and registered services' ports
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")  # Linux
ATTEMPTS = 200
_random = random.SystemRandom()  # whatever the process seeds random with
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default, and close to other systems' (49152)


def free_port(host: str = HOST) -> int:
    """A port nobody listens on on ``host`` right now, outside the ephemeral range."""
    highest = _ephemeral_start() - 1
    for _ in range(ATTEMPTS):
        port = _random.randint(LOWEST, highest)
        if port in _given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise OSError(f"no free port on {host} from {LOWEST} to {highest}")


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` different free ports."""
    return [free_port(host) for _ in range(count)]
