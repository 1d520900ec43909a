"""The client's everyday API against a real gateway: send, receive, iterate, close, events."""

from __future__ import annotations

import asyncio
import json
import logging
from types import ModuleType
from typing import Any

import pytest

from hubbub.client import (
    Backoff,
    Close,
    ConnectionClosedOK,
    Open,
    connect,
)
from tests.client.conftest import GatewayFactory
from tests.helpers import TIME_SCALE, eventually

FAST = Backoff(base=0.01 * TIME_SCALE, cap=0.05 * TIME_SCALE)


async def test_send_and_recv_text(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        async with connect(gw.websocket_url) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"


async def test_send_json_and_recv_json(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway() as gw:
        async with connect(gw.websocket_url) as ws:
            await ws.send_json({"action": "echo", "text": "héllo", "n": [1, 2]})
            assert await ws.recv_json() == {"action": "echo", "text": "héllo", "n": [1, 2]}
    assert json.loads(app.RECEIVED[0]) == {"action": "echo", "text": "héllo", "n": [1, 2]}


async def test_async_for_yields_messages_and_ends_after_close(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url)
        for text in ("a", "b", "c"):
            await ws.send(text)
        received = []
        async for message in ws:
            received.append(message)
            if len(received) == 3:
                await ws.close()
        assert received == ["a", "b", "c"]


async def test_await_connect_opens_and_close_is_idempotent(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url)
        assert ws.connected
        assert ws.state == "open"
        await ws.close()
        await ws.close()
        assert ws.closed
        assert str(ws.state) == "closed"
        await eventually(lambda: not gw.hub.connections, message="server saw the close")


async def test_client_close_sends_its_code_and_reason(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url)
        (conn,) = gw.hub.connections.values()
        await ws.close(4321, "bye now")
        await eventually(lambda: not gw.hub.connections)
        assert conn.close_status == (4321, "bye now")


async def test_recv_after_close_raises_connection_closed_ok(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url)
        await ws.close()
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1000


async def test_send_after_close_raises(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url)
        await ws.close()
        with pytest.raises(ConnectionClosedOK):
            await ws.send("too late")


async def test_messages_received_before_the_close_are_still_returned(
    gateway: GatewayFactory,
) -> None:
    async with gateway() as gw:
        ws = await connect(gw.websocket_url)
        await ws.send("one")
        await ws.send("two")
        await eventually(lambda: len(ws._inbox) == 2, message="both echoes buffered")
        (cid,) = gw.hub.connections
        await gw.connections.delete(cid)  # 1000 from the server: final
        await ws.wait_closed()
        assert await ws.recv() == "one"
        assert await ws.recv() == "two"
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()


async def test_send_rejects_values_that_are_not_text_or_bytes(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        async with connect(gw.websocket_url) as ws:
            with pytest.raises(TypeError, match="str or bytes"):
                await ws.send({"action": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["http://example.com/dev", "example.com", "ws://"])
def test_connect_rejects_urls_that_are_not_websocket_urls(url: str) -> None:
    with pytest.raises(ValueError, match="ws://"):
        connect(url)


def test_connect_rejects_unknown_events() -> None:
    ws = connect("ws://127.0.0.1:1/dev")
    with pytest.raises(ValueError, match="unknown event"):
        ws.on("messages", print)  # type: ignore[arg-type]


async def test_headers_and_subprotocols_reach_the_handshake(tmp_path: Any) -> None:
    # A non-hubbub server: the client works against any WebSocket API.
    from aiohttp import web

    seen: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        seen["header"] = request.headers.get("X-Token")
        ws = web.WebSocketResponse(protocols=("chat.v1",))
        await ws.prepare(request)
        await ws.send_str("hi")
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"ws://127.0.0.1:{port}/"
        async with connect(url, headers={"X-Token": "t1"}, subprotocols=["chat.v1"]) as ws:
            assert await ws.recv() == "hi"
            assert ws.subprotocol == "chat.v1"
        assert seen["header"] == "t1"
    finally:
        await runner.cleanup()


# -- events ------------------------------------------------------------------------------------
async def test_events_of_one_outage_arrive_in_order(gateway: GatewayFactory) -> None:
    seen: list[tuple[str, Any]] = []
    async with gateway() as gw:
        ws = connect(gw.websocket_url, backoff=FAST)
        for name in ("open", "close", "reconnecting", "reconnected"):
            ws.on(name, lambda event, name=name: seen.append((name, event)))  # type: ignore[misc]
        await ws.start()
        for conn in list(gw.hub.connections.values()):
            conn.socket.abort()
        await eventually(lambda: any(n == "reconnected" for n, _ in seen), message="reconnect")
        await ws.close()
    names = [name for name, _ in seen]
    assert names[:2] == ["open", "close"]
    assert names[-3:] == ["open", "reconnected", "close"]
    assert set(names[2:-3]) == {"reconnecting"}
    first_open, drop, final = seen[0][1], seen[1][1], seen[-1][1]
    assert first_open == Open(gw.websocket_url, reconnect=False)
    assert seen[-3][1] == Open(gw.websocket_url, reconnect=True)
    assert isinstance(drop, Close)
    assert (drop.code, drop.by_server, drop.will_reconnect) == (1006, True, True)
    assert isinstance(final, Close)
    assert (final.code, final.by_server, final.will_reconnect) == (1000, False, False)


async def test_removed_callbacks_are_not_called(gateway: GatewayFactory) -> None:
    calls: list[object] = []
    async with gateway() as gw:
        ws = connect(gw.websocket_url)
        remove = ws.on("open", calls.append)
        remove()
        remove()  # twice is harmless
        await ws.start()
        await ws.close()
    assert calls == []


async def test_a_failing_callback_is_logged_and_the_client_goes_on(
    gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("callback bug")

    async with gateway() as gw:
        ws = connect(gw.websocket_url)
        ws.on("open", broken)
        with caplog.at_level(logging.ERROR, logger="hubbub.client"):
            await ws.start()
        await ws.send("still works")
        assert await ws.recv() == "still works"
        await ws.close()
    assert "callback bug" in caplog.text


async def test_async_callbacks_run_as_tasks(gateway: GatewayFactory) -> None:
    done = asyncio.Event()

    async def on_open(event: Open) -> None:
        await asyncio.sleep(0)
        done.set()

    async with gateway() as gw:
        ws = connect(gw.websocket_url)
        ws.on("open", on_open)
        await ws.start()
        await asyncio.wait_for(done.wait(), 5 * TIME_SCALE)
        await ws.close()
