"""Text messages handled as the transport parses them (``Socket.deliver_to``): while the read
loop waits in ``receive()``, a text message skips aiohttp's queue, future and task wake-up;
every other message, and any message that would overtake one still queued, takes the loop."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
from types import ModuleType
from typing import Any

import pytest
import websockets
from aiohttp import WSMsgType

from bench.fuzz.wire import Peer, frame, upgrade_request
from hubbub.gateway import frames_aiohttp, transport_aiohttp
from hubbub.gateway.invoke import Invoker, Route
from hubbub.integrations.python import HandlerPool, PythonIntegration, load_handler
from tests.gateway.conftest import HANDLERS, GatewayFactory
from tests.helpers import eventually

ROUTES = {
    "echo": {"handler": "inline.echo", "route_response": True},
    "hold": {"handler": "inline.hold", "route_response": True},
    "remember": {"handler": "inline.remember", "route_response": True},
}


@pytest.fixture
def inline() -> ModuleType:
    module = sys.modules[load_handler("inline.echo", HANDLERS).__module__]
    module.reset()
    return module


def _counting_receive(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = transport_aiohttp._HubbubWebSocketResponse.receive

    async def receive(self: Any, timeout: float | None = None) -> Any:
        calls.append(1)
        return await original(self, timeout)

    monkeypatch.setattr(transport_aiohttp._HubbubWebSocketResponse, "receive", receive)
    return calls


@pytest.mark.usefixtures("aiohttp_transport")  # aiohttp's objects
async def test_text_messages_do_not_wake_the_read_loop(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting_receive(monkeypatch)
    async with gateway(routes=ROUTES) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            for seq in range(20):
                message = json.dumps({"action": "echo", "seq": seq})
                await ws.send(message)
                assert await ws.recv() == message
            # The first message woke the read loop, which then parked in receive() for good.
            assert len(calls) == 2


async def test_context_variables_stay_with_the_connection(gateway: GatewayFactory) -> None:
    async with gateway(routes=ROUTES) as gw:
        async with websockets.connect(gw.websocket_url) as one:
            async with websockets.connect(gw.websocket_url) as two:
                first = json.dumps({"action": "remember", "n": 1})
                await one.send(first)
                assert await one.recv() == "(none)"
                await two.send(json.dumps({"action": "remember", "n": 2}))
                assert await two.recv() == "(none)"  # another connection, another context
                await one.send(json.dumps({"action": "remember", "n": 3}))
                assert await one.recv() == first


async def test_messages_behind_a_queued_one_keep_their_order(
    gateway: GatewayFactory, inline: ModuleType
) -> None:
    # "hold" awaits, so it runs in a task; the echoes after it are answered at once, in order.
    async with gateway(routes=ROUTES) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(json.dumps({"action": "hold"}))
            await inline.STARTED.wait()
            batch = [json.dumps({"action": "echo", "seq": seq}) for seq in range(5)]
            for message in batch:
                await ws.send(message)
            assert [await ws.recv() for _ in batch] == batch
            inline.RELEASE.set()
            assert await ws.recv() == "released"


async def _open(gw: Any) -> Peer:
    assert gw.public is not None
    peer = await Peer.open(gw.public.host, gw.public.port)
    request = upgrade_request(random.Random(7), b"127.0.0.1", gw.config.api.stage)
    await peer.send(request.render())
    status, _ = await peer.read_head()
    assert status == 101
    return peer


def _transport_protocol(gw: Any) -> Any:
    (conn,) = gw.hub.connections.values()
    return conn.socket._transport.get_protocol()


@pytest.mark.usefixtures("aiohttp_transport")  # aiohttp's objects
async def test_plain_tcp_sockets_read_the_common_frame_themselves(gateway: GatewayFactory) -> None:
    async with gateway(routes=ROUTES) as gw:
        peer = await _open(gw)
        await eventually(lambda: len(gw.hub.connections) == 1)
        # Idle connections hold none of it (memory per idle connection): it starts with the
        # first text message.
        assert type(_transport_protocol(gw)) is not frames_aiohttp._FastReader
        message = json.dumps({"action": "echo"}).encode()
        await peer.send(frame(0x1, message))
        assert await asyncio.wait_for(peer.read_frame(), 5) == (0x1, message)
        assert type(_transport_protocol(gw)) is frames_aiohttp._FastReader
        await peer.close()


async def test_small_text_that_is_not_utf8_still_closes_1007(gateway: GatewayFactory) -> None:
    async with gateway(routes=ROUTES) as gw:
        peer = await _open(gw)
        await peer.send(frame(0x1, b"\xff\xfe"))
        code, _ = await asyncio.wait_for(peer.read_until_close(), 5)
        assert code == 1007
        await peer.close()


async def test_after_a_fragmented_message_frames_take_the_parser(gateway: GatewayFactory) -> None:
    # The parser holds the first fragment: a small whole text frame now is a protocol error
    # (1002, from aiohttp's parser), not a message read past it.
    async with gateway(routes=ROUTES) as gw:
        peer = await _open(gw)
        message = json.dumps({"action": "echo"}).encode()
        await peer.send(frame(0x1, message[:5], fin=False))
        await asyncio.sleep(0.05)
        await peer.send(frame(0x0, message[5:]))
        assert await asyncio.wait_for(peer.read_frame(), 5) == (0x1, message)
        await peer.send(frame(0x1, message[:5], fin=False))
        await asyncio.sleep(0.05)
        await peer.send(frame(0x1, message))
        code, _ = await asyncio.wait_for(peer.read_until_close(), 5)
        assert code == 1002
        await peer.close()


async def test_a_text_message_waits_behind_a_queued_ping(gateway: GatewayFactory) -> None:
    # One read holding a ping then a text message: the ping is queued for the read loop (which
    # answers it), so the text message must queue behind it, not be answered first.
    async with gateway(routes=ROUTES) as gw:
        assert gw.public is not None
        peer = await Peer.open(gw.public.host, gw.public.port)
        request = upgrade_request(random.Random(7), b"127.0.0.1", gw.config.api.stage)
        await peer.send(request.render())
        status, _ = await peer.read_head()
        assert status == 101
        message = json.dumps({"action": "echo"}).encode()
        await peer.send(frame(0x9, b"hi") + frame(0x1, message))
        assert await asyncio.wait_for(peer.read_frame(), 5) == (0xA, b"hi")
        assert await asyncio.wait_for(peer.read_frame(), 5) == (0x1, message)
        await peer.close()


async def test_a_compressed_socket_keeps_the_read_loop(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # permessage-deflate messages take receive_inflated's checks: no shortcut for them.
    calls = _counting_receive(monkeypatch)
    async with gateway(routes=ROUTES, server={"compression": True}) as gw:
        async with websockets.connect(gw.websocket_url, compression="deflate") as ws:
            for seq in range(3):
                message = json.dumps({"action": "echo", "seq": seq})
                await ws.send(message)
                assert await ws.recv() == message
            assert len(calls) >= 3


def test_a_failing_receiver_is_logged_and_the_parser_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The parser calls feed_data where an exception would be lost (a cpdef void method).
    class Waiting:
        _waiting = True
        _closing = False

    loop = asyncio.new_event_loop()
    try:
        queue = frames_aiohttp._DirectQueue(object(), 2**16, loop=loop)
        queue.ws = Waiting()  # type: ignore[assignment]
        queue.owner = None

        def broken(owner: Any, text: str) -> None:
            raise ValueError(text)

        queue.on_text = broken
        with caplog.at_level(logging.ERROR, logger="hubbub.transport"):
            queue.feed_data((WSMsgType.TEXT, "x", ""), 1)
        assert "handling a message failed" in caplog.text
        assert not queue._buffer
    finally:
        loop.close()


async def _no_await(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["body"]}


def test_invoke_now_runs_an_inline_handler_without_an_event_loop() -> None:
    route = Route(
        key="r",
        integration=PythonIntegration("fn", _no_await, HandlerPool(1, "fn")),
        timeout=1,
        inline=_no_await,
    )
    invoker = Invoker(max_concurrent=1, region="us-east-1", account_id="000000000000")
    outcome = invoker.invoke_now(route, {"body": "hi"}, connection_id="c", request_id="r")
    assert outcome is not None
    assert outcome.result is not None
    assert outcome.result.body_text() == "hi"
    assert invoker.in_flight == 0
