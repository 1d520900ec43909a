"""Which ends are final, through real sockets: close codes, handshake statuses, giving up."""

from __future__ import annotations

import asyncio
from types import ModuleType

import pytest
from aiohttp import WSServerHandshakeError

from hubbub.client import (
    Backoff,
    Close,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeRejected,
    Reconnecting,
    RetriesExhausted,
    connect,
)
from tests.client.conftest import GatewayFactory, ScriptedServer, public_port
from tests.helpers import TIME_SCALE, eventually

FAST = Backoff(base=0.01 * TIME_SCALE, cap=0.05 * TIME_SCALE)


# -- close codes the gateway produces ----------------------------------------------------------
async def test_delete_connection_1000_ends_the_client_quietly(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        async with connect(gw.websocket_url, backoff=FAST) as ws:
            closes: list[Close] = []
            ws.on("close", closes.append)
            (cid,) = gw.hub.connections
            await gw.connections.delete(cid)
            received = [message async for message in ws]  # ends without raising
            assert received == []
            assert isinstance(await ws.wait_closed(), ConnectionClosedOK)
            assert len(gw.hub.connections) == 0
    assert [(c.code, c.by_server, c.will_reconnect) for c in closes] == [(1000, True, False)]


async def test_close_codes_can_be_overridden_to_reconnect(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, close_codes={1000: "reconnect"})
        reconnected: list[object] = []
        ws.on("reconnected", reconnected.append)
        (cid,) = gw.hub.connections
        await gw.connections.delete(cid)
        await eventually(lambda: reconnected, message="reconnected after 1000")
        await ws.close()


async def test_binary_frames_to_an_aws_style_api_are_final_1003(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST)
        await ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1003
        assert "does not reconnect" in str(info.value)
        with pytest.raises(ConnectionClosedError):
            await ws.send("anything")
        await ws.close()


async def test_a_message_over_the_limit_is_final_1009(gateway: GatewayFactory) -> None:
    async with gateway(limits={"max_message_bytes": 1024, "max_frame_bytes": 1024}) as gw:
        ws = await connect(gw.websocket_url, backoff=FAST)
        await ws.send("x" * 2000)
        exc = await ws.wait_closed()
        assert isinstance(exc, ConnectionClosedError)
        assert exc.code == 1009
        await ws.close()


async def test_a_gateway_drain_1001_reconnects(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        port = public_port(gw)
        ws = await connect(gw.websocket_url, backoff=FAST)
        closes: list[Close] = []
        ws.on("close", closes.append)
    assert [(c.code, c.will_reconnect) for c in closes] == [(1001, True)]
    async with gateway(port=port) as gw:
        await eventually(lambda: ws.connected, message="reconnected")
        await ws.close()


# -- close codes only a scripted server sends --------------------------------------------------
@pytest.mark.parametrize("code", [1008, 4001, 4999, 3000])
async def test_final_close_codes_end_the_client(code: int) -> None:
    async with ScriptedServer([f"close-after-first:{code}", "echo"]) as server:
        ws = await connect(server.url, backoff=FAST)
        await ws.send("hi")
        assert await ws.recv() == "hi"
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (code, "scripted")
        await ws.close()
    assert server.connections == 1


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013, 1014, 3001])
async def test_transient_close_codes_reconnect(code: int) -> None:
    async with ScriptedServer([f"close-after-first:{code}", "echo"]) as server:
        ws = await connect(server.url, backoff=FAST)
        closes: list[Close] = []
        ws.on("close", closes.append)
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await eventually(lambda: server.connections == 2 and ws.connected, message="reconnect")
        await ws.send("again")
        assert await ws.recv() == "again"
        await ws.close()
    assert (closes[0].code, closes[0].reason, closes[0].will_reconnect) == (code, "scripted", True)


async def test_a_missing_pong_counts_as_a_lost_connection() -> None:
    # The first server never answers pings: the heartbeat gives up on it (1006) and reconnects.
    async with ScriptedServer(["silent", "echo"]) as server:
        ws = await connect(server.url, backoff=FAST, heartbeat=0.05 * TIME_SCALE)
        closes: list[Close] = []
        ws.on("close", closes.append)
        await eventually(lambda: server.connections == 2 and ws.connected, message="reconnect")
        await ws.close()
    assert (closes[0].code, closes[0].by_server, closes[0].will_reconnect) == (1006, False, True)


# -- handshake statuses ------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403])
async def test_an_authorizer_refusal_is_final(
    gateway: GatewayFactory, app: ModuleType, status: int
) -> None:
    app.CONNECT_STATUSES.append(status)
    async with gateway() as gw:
        ws = connect(gw.websocket_url, backoff=FAST)
        closes: list[Close] = []
        ws.on("close", closes.append)
        with pytest.raises(HandshakeRejected) as info:
            async with ws:
                pytest.fail("must not open")
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value)
    assert len(closes) == 1
    assert not closes[0].will_reconnect


async def test_a_refusal_during_an_outage_ends_the_client(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway() as gw:
        port = public_port(gw)
        ws = await connect(gw.websocket_url, backoff=FAST)
    app.CONNECT_STATUSES.append(403)  # the restarted gateway no longer accepts this client
    async with gateway(port=port):
        exc = await asyncio.wait_for(ws.wait_closed(), 5 * TIME_SCALE)
    assert isinstance(exc, HandshakeRejected)
    assert exc.status == 403
    with pytest.raises(HandshakeRejected):
        await ws.recv()
    await ws.close()


async def test_an_unknown_stage_404_is_final(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        with pytest.raises(HandshakeRejected) as info:
            await connect(gw.websocket_url + "-nope", backoff=FAST)
    assert info.value.status == 404


async def test_status_overrides_make_a_refusal_retryable(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    app.CONNECT_STATUSES.append(403)
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=FAST, http_statuses={403: "reconnect"})
        assert ws.connected
        await ws.close()


async def test_a_full_gateway_is_retried_no_sooner_than_its_retry_after(
    gateway: GatewayFactory,
) -> None:
    # hubbub answers 503 with "Retry-After: 1" at its connection cap: the next attempt waits.
    async with gateway(limits={"max_connections": 1}) as gw:
        first = await connect(gw.websocket_url)
        second = connect(gw.websocket_url, backoff=Backoff(base=0.01, cap=5.0))
        waits: list[Reconnecting] = []
        second.on("reconnecting", waits.append)
        opening = asyncio.create_task(second.start())
        await eventually(lambda: waits, message="the refusal")
        assert 1.0 <= waits[0].delay <= 1.01
        assert isinstance(waits[0].error, WSServerHandshakeError)
        assert waits[0].error.status == 503
        await first.close()
        await asyncio.wait_for(opening, 5 * TIME_SCALE)
        await second.close()


# -- give-up -----------------------------------------------------------------------------------
async def test_gives_up_after_max_attempts(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        url = gw.websocket_url
    # Nothing listens on that port any more: every attempt is refused.
    with pytest.raises(RetriesExhausted) as info:
        await connect(url, backoff=Backoff(base=0.001, cap=0.004, max_attempts=3))
    assert info.value.attempts == 3
    assert isinstance(info.value.__cause__, OSError)
    assert "after 3 attempt(s)" in str(info.value)


async def test_gives_up_after_max_elapsed(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        url = gw.websocket_url
    limit = 0.2 * TIME_SCALE
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RetriesExhausted) as info:
        await connect(url, backoff=Backoff(base=0.01, cap=0.05, max_elapsed=limit))
    assert info.value.elapsed >= limit
    # Delays are clamped to the deadline: it does not overshoot by a whole backoff step.
    assert loop.time() - started < limit + 1.0 * TIME_SCALE


async def test_giving_up_mid_session_reaches_recv_and_keeps_the_unsent(
    gateway: GatewayFactory,
) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url, backoff=Backoff(base=0.001, cap=0.004, max_attempts=4))
        closes: list[Close] = []
        ws.on("close", closes.append)
    await ws.send("queued while the gateway is down")
    with pytest.raises(RetriesExhausted) as info:
        await ws.recv()
    assert info.value.attempts == 4
    assert info.value.unsent == 1
    assert "1 queued message(s) not sent" in str(info.value)
    assert ws.unsent() == ["queued while the gateway is down"]
    assert [c.will_reconnect for c in closes] == [True, False]
    await ws.close()
