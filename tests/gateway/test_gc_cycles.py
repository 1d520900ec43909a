"""A closed connection is freed by reference counting, not left to the cyclic garbage collector.

Each connection's WebSocketResponse and its message queue (frames_aiohttp._DirectQueue) refer to
each other, and a client that drops the TCP connection without a close frame leaves an exception
in the response whose traceback holds the response's own frames. Left as cycles, every handshake
would hand the collector a response, its queue, writer, request and buffers (about 20 objects,
40 with the exception) and set off a young collection every few dozen handshakes. The session's
end breaks both (_HubbubWebSocketResponse.release_reader). These tests run with the collector
disabled: a response that is still alive once its connection is gone is one only the collector
could free.
"""

from __future__ import annotations

import asyncio
import gc
import os
import struct
from collections.abc import Iterator
from types import ModuleType

import pytest

from hubbub.gateway.app import Gateway
from hubbub.gateway.frames_aiohttp import _RELEASED, _DirectQueue
from hubbub.gateway.transport_aiohttp import _HubbubWebSocketResponse
from tests.gateway.conftest import GatewayFactory, routes

# aiohttp's objects; the lean transport's: test_lean_socket.py.
pytestmark = pytest.mark.usefixtures("aiohttp_transport")

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ECHO = {"handler": "echo", "route_response": True}
# A subprotocol the $connect handler does not select: aiohttp's own upgrade path answers.
AIOHTTP_PATH = b"Sec-WebSocket-Protocol: other\r\n"
CLOSE_1000 = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked with a zero key


def _masked_text(text: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return struct.pack("!BB", 0x81, 0x80 | len(text)) + mask + body


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cyclic collector disabled (and its leftovers of earlier tests gone first)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def _alive() -> list[object]:
    """Responses and queues still in memory (``gc.get_objects`` does not collect)."""
    return [o for o in gc.get_objects() if isinstance(o, _HubbubWebSocketResponse | _DirectQueue)]


async def _session(gw: Gateway, ending: str, extra: bytes, messages: int) -> None:
    """One handshake on a real socket, ``messages`` echoes, then the client's ``ending``."""
    assert gw.public is not None
    reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
    writer.write(
        b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n" + extra + b"\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    for n in range(messages):
        body = b'{"action": "echo", "n": %d}' % n
        writer.write(_masked_text(body))
        frame = await asyncio.wait_for(reader.readexactly(2 + len(body)), 5)
        assert frame[2:] == body
    if ending == "close frame":
        writer.write(CLOSE_1000)
        await asyncio.wait_for(reader.read(), 5)  # the server's close frame, then EOF
    elif ending == "close frame, no wait":
        writer.write(CLOSE_1000)
    # "drop": the TCP connection closes without a close frame (the bench's handshake cycle)
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("ending", ["close frame", "close frame, no wait", "drop"])
@pytest.mark.parametrize("messages", [0, 3], ids=["no message", "3 messages"])
@pytest.mark.parametrize("extra", [b"", AIOHTTP_PATH], ids=["own upgrade", "aiohttp upgrade"])
@pytest.mark.usefixtures("collector_off")
async def test_a_closed_connection_is_freed_without_the_collector(
    gateway: GatewayFactory, app: ModuleType, ending: str, messages: int, extra: bytes
) -> None:
    async with gateway(routes=routes(_connect="record", _disconnect="record", echo=ECHO)) as gw:
        for _ in range(3):
            await _session(gw, ending, extra, messages)
        for _ in range(200):  # the sessions' ends ($disconnect and all) run after the close
            if not gw.hub.connections and not _alive():
                break
            await asyncio.sleep(0.01)
        left = _alive()
        assert gw.hub.connections == {}
        assert [e["requestContext"]["eventType"] for e in app.EVENTS].count("DISCONNECT") == 3
    assert left == [], f"{len(left)} objects only the cyclic collector would free"


@pytest.mark.usefixtures("collector_off")
async def test_an_open_connection_keeps_its_queue_shortcut(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """The cycle is broken when the session ends, not before: an open connection's queue still
    knows its response, and messages keep taking the direct path."""
    async with gateway(routes=routes(_connect="record", echo=ECHO)) as gw:
        assert gw.public is not None
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        writer.write(
            b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n"
        )
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        for n in range(2):
            body = b'{"action": "echo", "n": %d}' % n
            writer.write(_masked_text(body))
            frame = await asyncio.wait_for(reader.readexactly(2 + len(body)), 5)
            assert frame[2:] == body
        (conn,) = gw.hub.connections.values()
        queue = conn.socket._ws._reader
        assert isinstance(queue, _DirectQueue)
        assert queue.ws is conn.socket._ws
        assert queue.on_text is not None  # the read loop handed messages to the direct path
        writer.write(CLOSE_1000)
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        for _ in range(200):
            if queue.ws is _RELEASED:
                break
            await asyncio.sleep(0.01)
    assert (queue.ws, queue.on_text, queue.owner) == (_RELEASED, None, None)
