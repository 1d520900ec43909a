"""``server.workers`` and the supervisor's building blocks, without starting processes
(tests/cluster/test_workers.py runs real supervisors and workers on Redis)."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from hubbub import cli
from hubbub.config import load_config
from hubbub.errors import ConfigError, ListenError
from hubbub.workers import node_ids, reserve_ports, worker_count

REDIS = {"store.url": "redis://127.0.0.1:6379/0"}


def test_workers_default_to_one() -> None:
    assert load_config(env={}).server.workers == 1


@pytest.mark.parametrize("count", [0, 2])
def test_workers_with_the_memory_store_are_refused_naming_the_key(count: int) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(env={}, overrides={"server.workers": count})
    assert refused.value.key == "server.workers"
    assert "shared store" in refused.value.problem
    assert "Redis" in refused.value.problem


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380/0", "unix:///run/r.sock"])
def test_workers_with_a_shared_store_are_accepted(url: str) -> None:
    config = load_config(env={}, overrides={"server.workers": 4, "store.url": url})
    assert config.server.workers == 4


def test_workers_from_flag_and_environment() -> None:
    args = cli._parser().parse_args(["serve", "--workers", "3", "--store", REDIS["store.url"]])
    assert cli.build_config(args).server.workers == 3
    env = {"HUBBUB_SERVER_WORKERS": "5", "HUBBUB_STORE_URL": REDIS["store.url"]}
    assert load_config(env=env).server.workers == 5


def test_negative_workers_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"server\.workers"):
        load_config(env={}, overrides={"server.workers": -1, **REDIS})


def test_workers_are_refused_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ConfigError) as refused:
        load_config(env={}, overrides={"server.workers": 2, **REDIS})
    assert refused.value.key == "server.workers"
    assert "Linux" in refused.value.problem


def test_zero_means_one_worker_per_usable_core() -> None:
    auto = load_config(env={}, overrides={"server.workers": 0, **REDIS})
    assert worker_count(auto) == len(os.sched_getaffinity(0))
    assert worker_count(load_config(env={}, overrides={"server.workers": 3, **REDIS})) == 3


def test_node_ids_number_the_configured_id() -> None:
    fixed = load_config(env={}, overrides={"cluster.node_id": "ws-a"})
    assert node_ids(fixed, 3) == ["ws-a-0", "ws-a-1", "ws-a-2"]
    auto = node_ids(load_config(env={}), 2)
    assert auto[0].endswith("-0")
    assert auto[1] == auto[0][:-1] + "1"
    assert f"-{os.getpid()}-" in auto[0]
    assert node_ids(load_config(env={}), 1) != auto[:1]  # a random part, as a single node has


def _listen_reuseport(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(8)
    return sock


def test_reserved_ports_are_concrete_and_shared_by_workers_only() -> None:
    config = load_config(
        env={}, overrides={"server.port": 0, "management.port": 0, "management.tls_port": 0}
    )
    shared, reserved = reserve_ports(config)
    try:
        ports = [shared.server.port, shared.management.port, shared.management.tls_port]
        assert all(ports)
        assert len(set(ports)) == 3
        # Two workers can listen on the reserved port; a process without SO_REUSEPORT cannot.
        first, second = _listen_reuseport(ports[0]), _listen_reuseport(ports[0])
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", ports[0]))
        first.close()
        second.close()
    finally:
        for sock in reserved:
            sock.close()


def test_no_tls_port_is_reserved_without_tls() -> None:
    config = load_config(env={}, overrides={"server.port": 0, "management.port": 0})
    no_tls = load_config(
        env={}, overrides={"server.port": 0, "management.port": 0, "management.tls": False}
    )
    shared, reserved = reserve_ports(no_tls)
    for sock in reserved:
        sock.close()
    assert len(reserved) == 2
    assert shared.management.tls_port == config.management.tls_port


def test_a_port_in_use_or_named_twice_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = load_config(
            env={},
            overrides={"server.port": taken.getsockname()[1], "management.port": 0},
        )
        message = (
            f"cannot listen on 127.0.0.1:{taken.getsockname()[1]} for the WebSocket listener "
            "(server.port, --port): address already in use"
        )
        with pytest.raises(ListenError) as refused:
            reserve_ports(busy)
        assert str(refused.value) == message
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    twice = load_config(env={}, overrides={"server.port": port, "management.port": port})
    with pytest.raises(ListenError, match=r"for the management API \(management.port, "):
        reserve_ports(twice)
