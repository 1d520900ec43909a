"""scripts/ports.py: ports for the servers the tests start, away from outgoing connections'."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scripts import ports


def test_a_port_below_the_ephemeral_range_that_binds() -> None:
    low = ports._ephemeral_low()
    for _ in range(20):
        port = ports.free_port()
        assert ports._LOWEST <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free: it binds


def test_outgoing_connections_do_not_take_it() -> None:
    # A listener's source ports: every outgoing connection's comes from the ephemeral range.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        clients = [socket.create_connection(server.getsockname()) for _ in range(32)]
        try:
            low = ports._ephemeral_low()
            assert all(client.getsockname()[1] >= low for client in clients)
            assert ports.free_port() < low
        finally:
            for client in clients:
                client.close()


def test_a_taken_port_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        other = ports.free_port()  # checked to bind: not the taken one
        picks = iter([busy, busy, other])
        monkeypatch.setattr(ports.random, "randint", lambda low, high: next(picks))
        assert ports.free_port() == other


def test_without_room_below_the_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: 1024)
    port = ports.free_port()
    assert port >= 1024
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_the_range_is_read_or_linux_default(tmp_path: Path) -> None:
    table = tmp_path / "range"
    table.write_text("40000\t60999\n")
    assert ports._ephemeral_low(str(table)) == 40000
    assert ports._ephemeral_low(str(tmp_path / "missing")) == 32768
