"""Reconnecting through real failures: aborted sockets, drained and restarted gateways, storms."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sized
from types import ModuleType

import pytest

from hubbub.client import (
    Backoff,
    ClientConnection,
    Close,
    Reconnected,
    Reconnecting,
    RetriesExhausted,
    connect,
)
from tests.client.conftest import (
    GatewayFactory,
    PeakConnections,
    ScriptedServer,
    abort_all,
    public_port,
)
from tests.helpers import TIME_SCALE, eventually

FAST = Backoff(base=0.01 * TIME_SCALE, cap=0.05 * TIME_SCALE)


def at_least(items: Sized, n: int) -> Callable[[], bool]:
    """A predicate for eventually(): ``items`` holds ``n`` or more entries."""
    return lambda: len(items) >= n


def record(ws: ClientConnection, name: str) -> list[object]:
    events: list[object] = []
    ws.on(name, events.append)  # type: ignore[arg-type]
    return events


async def test_reconnects_after_the_server_drops_the_tcp_connection(
    gateway: GatewayFactory,
) -> None:
    async with gateway() as gw:
        async with connect(gw.websocket_url, backoff=FAST) as ws:
            reconnected = record(ws, "reconnected")
            first = set(gw.hub.connections)
            assert abort_all(gw) == 1
            await eventually(lambda: reconnected, message="reconnected")
            assert set(gw.hub.connections).isdisjoint(first)
            await ws.send("after the drop")
            assert await ws.recv() == "after the drop"


async def test_reconnects_when_the_gateway_restarts_on_the_same_port(
    gateway: GatewayFactory,
) -> None:
    async with gateway() as first:
        port = public_port(first)
        ws = await connect(first.websocket_url, backoff=FAST)
        closes = record(ws, "close")
        reconnected = record(ws, "reconnected")
    # The first gateway drained (1001 Going away): the client is now retrying a closed port.
    assert isinstance(closes[0], Close)
    assert (closes[0].code, closes[0].will_reconnect) == (1001, True)
    await eventually(lambda: ws.state in ("waiting", "connecting"), message="retrying")
    async with gateway(port=port) as second:
        await eventually(lambda: reconnected, message="reconnected to the new gateway")
        assert len(second.hub.connections) == 1
        await ws.send("hello again")
        assert await ws.recv() == "hello again"
        await ws.close()


async def test_survives_several_restarts_in_a_row(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        port = public_port(gw)
        ws = await connect(gw.websocket_url, backoff=FAST)
        reconnected = record(ws, "reconnected")
    for round_ in range(1, 4):
        async with gateway(port=port) as gw:
            await eventually(at_least(reconnected, round_), message=f"restart {round_}")
            await ws.send(f"round {round_}")
            assert await ws.recv() == f"round {round_}"
    await ws.close()


async def test_unstable_connections_keep_the_backoff_growing() -> None:
    # Every socket is accepted and closed at once (1011): without the stable_after rule the
    # client would reconnect at the base delay forever; with it, attempts add up to the limit.
    policy = Backoff(base=0.005 * TIME_SCALE, cap=0.04 * TIME_SCALE, max_attempts=5)
    async with ScriptedServer(["close:1011"]) as server:
        ws = connect(server.url, backoff=policy)
        waits = record(ws, "reconnecting")
        await ws.start()
        exc = await ws.wait_closed()
    assert isinstance(exc, RetriesExhausted)
    assert exc.attempts == 5
    assert server.connections == 5
    assert [e.attempt for e in waits if isinstance(e, Reconnecting)] == [2, 3, 4, 5]


async def test_a_stable_connection_resets_the_backoff(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=Backoff(base=0.01, cap=0.05, stable_after=0))
        reconnected = record(ws, "reconnected")
        for n in range(1, 4):
            abort_all(gw)
            await eventually(at_least(reconnected, n), message=f"reconnect {n}")
        await ws.close()
    # Each outage started over: one attempt each, never a growing count.
    assert [e.attempts for e in reconnected if isinstance(e, Reconnected)] == [1, 1, 1]


# -- never two sockets -------------------------------------------------------------------------
async def test_one_client_never_has_two_sockets_during_a_reconnect_storm(
    gateway: GatewayFactory,
) -> None:
    async with gateway() as gw:
        peak = PeakConnections(gw)
        ws = await connect(gw.websocket_url, backoff=Backoff(base=0.001, cap=0.005))
        reconnected = record(ws, "reconnected")
        for n in range(1, 31):
            abort_all(gw)
            await eventually(at_least(reconnected, n), message=f"reconnect {n}")
        await ws.close()
    assert peak.added == 31
    assert peak.peak == 1


async def test_drops_while_connecting_never_leave_a_second_socket(
    gateway: GatewayFactory,
) -> None:
    # Abort as fast as sockets appear, including while the client is replaying, for a while.
    async with gateway() as gw:
        peak = PeakConnections(gw)
        ws = await connect(gw.websocket_url, backoff=Backoff(base=0.001, cap=0.002))
        ws.on_reconnect_send({"action": "join"})

        async def storm() -> None:
            while True:
                abort_all(gw)
                await asyncio.sleep(0)

        task = asyncio.create_task(storm())
        try:
            await eventually(lambda: peak.added >= 50, message="50 reconnects")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await eventually(lambda: ws.connected, message="settled")
        await ws.close()
    assert peak.peak == 1


async def test_many_clients_each_keep_a_single_socket_through_restarts(
    gateway: GatewayFactory,
) -> None:
    clients: list[ClientConnection] = []
    async with gateway() as gw:
        port = public_port(gw)
        for _ in range(20):
            clients.append(await connect(gw.websocket_url, backoff=FAST))
    for _ in range(2):
        async with gateway(port=port) as gw:
            peak = PeakConnections(gw)
            await eventually(lambda: len(gw.hub.connections) == 20, message="all back")
            for ws in clients:
                await ws.send("ping")
                assert await ws.recv() == "ping"
            assert peak.peak == 20
            assert peak.added == 20
    for ws in clients:
        await ws.close()


async def test_the_scripted_server_never_sees_two_sockets_from_one_client() -> None:
    policy = Backoff(base=0.001, cap=0.004, max_attempts=40)
    async with ScriptedServer(["close:1012"]) as server:
        ws = connect(server.url, backoff=policy)
        await ws.start()
        await ws.wait_closed()
    assert server.connections == 40
    assert server.peak == 1


# -- jitter ------------------------------------------------------------------------------------
async def test_reconnect_delays_stay_within_the_full_jitter_bounds() -> None:
    policy = Backoff(base=0.002, cap=0.016, max_attempts=12)
    async with ScriptedServer(["http:503"]) as server:
        ws = connect(server.url, backoff=policy)
        waits = record(ws, "reconnecting")
        with pytest.raises(RetriesExhausted) as info:
            await ws.start()
    assert info.value.attempts == 12
    delays = [e.delay for e in waits if isinstance(e, Reconnecting)]
    assert len(delays) == 11
    for retry, delay in enumerate(delays):
        assert 0.0 <= delay <= policy.ceiling(retry)
    assert max(delays) <= policy.cap


async def test_a_closed_port_is_retried_until_the_gateway_appears(
    gateway: GatewayFactory,
) -> None:
    async with gateway() as gw:
        port = public_port(gw)
        url = gw.websocket_url
    ws = connect(url, backoff=FAST)
    waits = record(ws, "reconnecting")
    opening = asyncio.create_task(ws.start())
    await eventually(lambda: len(waits) >= 3, message="a few refused attempts")
    assert not opening.done()
    async with gateway(port=port):
        await asyncio.wait_for(opening, 5 * TIME_SCALE)
        await ws.send("finally")
        assert await ws.recv() == "finally"
        await ws.close()


async def test_close_during_backoff_stops_promptly(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=Backoff(base=30, cap=60))
        waits = record(ws, "reconnecting")
    await eventually(lambda: waits, message="waiting to reconnect")
    await asyncio.wait_for(ws.close(), 2 * TIME_SCALE)
    assert ws.closed


async def test_connect_waits_through_handshake_refusals_it_can_retry(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    app.CONNECT_STATUSES.extend([503, 429, 500])
    async with gateway() as gw:
        ws = connect(gw.websocket_url, backoff=FAST)
        waits = record(ws, "reconnecting")
        await ws.start()
        assert len(waits) == 3
        assert len(app.CONNECTED) == 1
        await ws.close()
