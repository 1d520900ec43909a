"""$disconnect: exactly once, with the close code and reason.

The codes and reasons are those of docs/compatibility.md, "Close codes".
"""

from __future__ import annotations

import asyncio
import socket
from types import ModuleType

import boto3
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from hubbub.gateway.app import Gateway
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually


def _disconnect_events(app: ModuleType) -> list[dict[str, object]]:
    return [e for e in app.EVENTS if e["requestContext"]["routeKey"] == "$disconnect"]


async def test_client_close_code_and_reason_are_reported(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record", _disconnect="record")) as gw:
        ws = await websockets.connect(gw.websocket_url, user_agent_header="tester/1.0")
        await ws.close(code=4001, reason="bye now")
        await eventually(lambda: _disconnect_events(app))
    event = _disconnect_events(app)[0]
    rc = event["requestContext"]
    assert rc["disconnectStatusCode"] == 4001
    assert rc["disconnectReason"] == "bye now"
    assert rc["eventType"] == "DISCONNECT"
    assert rc["identity"]["userAgent"] == "tester/1.0"
    assert set(event["headers"]) == {"Host", "x-api-key", "X-Forwarded-For", "x-restapi"}
    assert "body" not in event
    assert "queryStringParameters" not in event
    connect = app.EVENTS[0]["requestContext"]
    assert rc["connectionId"] == connect["connectionId"]
    assert rc["connectedAt"] == connect["connectedAt"]


async def test_close_without_status_reports_1005(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_disconnect="record")) as gw:
        ws = await websockets.connect(gw.websocket_url)
        ws.transport.write(b"\x88\x80\x00\x00\x00\x00")  # masked close frame, empty payload
        await eventually(lambda: _disconnect_events(app))
    rc = _disconnect_events(app)[0]["requestContext"]
    assert rc["disconnectStatusCode"] == 1005
    # AWS's words (tests/aws/captures/powertools-websocket-disconnect.json).
    assert rc["disconnectReason"] == "Client-side close frame status not set"


async def test_tcp_drop_reports_1006(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_disconnect="record")) as gw:
        ws = await websockets.connect(gw.websocket_url)
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        ws.transport.abort()
        await eventually(lambda: _disconnect_events(app))
    assert _disconnect_events(app)[0]["requestContext"]["disconnectStatusCode"] == 1006


async def test_delete_connection_closes_with_1000_and_reports_it(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record", _disconnect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            cid = app.EVENTS[0]["requestContext"]["connectionId"]
            client = boto3.client("apigatewaymanagementapi", endpoint_url=gw.management_url)
            await asyncio.to_thread(client.delete_connection, ConnectionId=cid)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1000
            with pytest.raises(client.exceptions.GoneException):
                await asyncio.to_thread(client.get_connection, ConnectionId=cid)
        await eventually(lambda: _disconnect_events(app))
    rc = _disconnect_events(app)[0]["requestContext"]
    assert (rc["disconnectStatusCode"], rc["disconnectReason"]) == (
        1000,
        "Connection Closed Normally",
    )


async def test_disconnect_runs_exactly_once_per_connection(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record", _disconnect="record")) as gw:
        clients = [await websockets.connect(gw.websocket_url) for _ in range(20)]
        ids = [e["requestContext"]["connectionId"] for e in app.EVENTS]
        api = boto3.client("apigatewaymanagementapi", endpoint_url=gw.management_url)
        # Close half from the client and delete the other half from the API, at the same time.
        await asyncio.gather(
            *(c.close() for c in clients[:10]),
            *(asyncio.to_thread(api.delete_connection, ConnectionId=cid) for cid in ids[10:]),
        )
        await eventually(lambda: len(_disconnect_events(app)) >= 20)
    # Shutdown ran too, and still nothing was delivered twice.
    seen = [e["requestContext"]["connectionId"] for e in _disconnect_events(app)]
    assert sorted(seen) == sorted(ids)


async def test_shutdown_closes_with_1001_and_delivers_disconnect(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_disconnect="record")) as gw:
        ws = await websockets.connect(gw.websocket_url)
    # The gateway has drained: the $disconnect already ran before close() returned.
    assert [
        (e["requestContext"]["disconnectStatusCode"], e["requestContext"]["disconnectReason"])
        for e in _disconnect_events(app)
    ] == [(1001, "Going away")]
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001


async def test_disconnect_handler_failure_is_contained(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_disconnect="boom", _default="record")) as gw:
        async with websockets.connect(gw.websocket_url):
            pass
        await eventually(lambda: app.EVENTS)
        async with websockets.connect(gw.websocket_url) as ws:  # still serving
            await ws.send("hello")
            await eventually(lambda: len(app.EVENTS) >= 2)


def _server_saw_every_client_leave(gw: Gateway) -> bool:
    """aiohttp and the lean transport have lost every TCP connection (their request handlers
    and $connect may still be running)."""
    assert gw.public is not None
    server = gw.public._runner.server
    assert server is not None
    lean = gw.public.limits.lean
    return all(handler.transport is None for handler in server.connections) and (
        lean is None or all(conn._transport is None for conn in lean.connections)
    )


async def test_client_gone_before_the_101_still_gets_its_disconnect(
    gateway: GatewayFactory, app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "CONNECT_GATE", asyncio.Event())
    async with gateway(routes=routes(_connect="gated_connect", _disconnect="record")) as gw:
        assert gw.public is not None
        _reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        writer.write(
            b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        await eventually(lambda: app.EVENTS, message="$connect to start")
        writer.close()  # without reading the answer: $connect has not even finished
        await eventually(lambda: _server_saw_every_client_leave(gw), message="the client to leave")
        app.CONNECT_GATE.set()  # $connect succeeds now, for a client that is gone
        await eventually(lambda: _disconnect_events(app), message="$disconnect")
        assert await gw.store.registry.count() == 0
        assert not gw.hub.connections
        assert len(gw.timeouts) == 0
        assert gw.admission.pending == 0
    connect, disconnect = app.EVENTS  # and nothing more, after the shutdown
    assert set(disconnect["headers"]) == {"Host", "x-api-key", "X-Forwarded-For", "x-restapi"}
    rc = disconnect["requestContext"]
    assert rc["connectionId"] == connect["requestContext"]["connectionId"]
    assert (rc["disconnectStatusCode"], rc["disconnectReason"]) == (
        1006,
        "Client went away during the handshake",
    )
