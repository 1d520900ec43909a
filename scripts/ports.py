"""Free TCP ports for the servers the tests start (stdlib only).

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from the ephemeral range
(``net.ipv4.ip_local_port_range``, 32768-60999 by default), the same range every outgoing
connection takes its source port from. Between picking such a port and a child process binding
it, one of the many connections a test run opens can take it ("Address already in use": a Redis
Cluster node failed to start that way in CI). :func:`free_port` picks below that range, where
only listeners live, and checks that the port binds.
"""

from __future__ import annotations

import random
import socket

__all__ = ["free_port"]

_HOST = "127.0.0.1"
_LOWEST = 10000  # below: well-known and commonly configured service ports
_TRIES = 50


def _ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    """The first port of the ephemeral range (Linux's default where it cannot be read)."""
    try:
        with open(path) as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _binds(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range when the
    system leaves room below it (else the kernel's choice)."""
    high = _ephemeral_low() - 1
    if high - _LOWEST >= 1000:
        for _ in range(_TRIES):
            port = random.randint(_LOWEST, high)
            if _binds(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        chosen: int = sock.getsockname()[1]
        return chosen
