"""The lean transport's open WebSocket (hubbub.gateway.lean_socket) on real sockets: every frame
rule with the close code the client gets and the one ``$disconnect`` reports, split reads, pings,
closes from either side, keep-alive, backpressure, and a closed socket freed without the cyclic
collector."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import struct
from types import ModuleType
from typing import Any

import pytest

from bench.fuzz.wire import Peer, close_payload, frame, upgrade_request
from hubbub.gateway.app import Gateway
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import TIME_SCALE, eventually

pytestmark = pytest.mark.usefixtures("lean_transport")

SMALL = {"max_frame_bytes": 1000, "max_message_bytes": 2500}


async def _open(gw: Gateway) -> Peer:
    assert gw.public is not None
    peer = await Peer.open(gw.public.host, gw.public.port)
    await peer.send(upgrade_request(random.Random(3), b"x", gw.config.api.stage).render())
    status, _ = await asyncio.wait_for(peer.read_head(), 5)
    assert status == 101
    await eventually(lambda: len(gw.hub.connections) == 1)
    (conn,) = gw.hub.connections.values()
    assert type(conn.socket).__name__ == "LeanSocket"
    return peer


def _disconnect(app: ModuleType) -> tuple[int, str]:
    (event,) = [e for e in app.EVENTS if e["requestContext"]["eventType"] == "DISCONNECT"]
    rc = event["requestContext"]
    return rc["disconnectStatusCode"], rc["disconnectReason"]


def _has_disconnect(app: ModuleType) -> bool:
    return any(e["requestContext"]["eventType"] == "DISCONNECT" for e in app.EVENTS)


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (frame(0x1, b"x", mask=False), 1002, "Protocol error"),
        (frame(0x9, b"", rsv=4), 1002, "Protocol error"),
        (frame(0x1, b"x", rsv=2), 1002, "Protocol error"),
        (frame(0x3, b"x"), 1002, "Protocol error"),
        (frame(0x9, b"x", fin=False), 1002, "Protocol error"),
        (frame(0x9, b"x" * 126), 1002, "Protocol error"),
        (frame(0x0, b"x"), 1002, "Protocol error"),
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002, "Protocol error"),
        (frame(0x8, close_payload(1004)), 1002, "Protocol error"),
        (frame(0x8, b"\x03"), 1002, "Protocol error"),
        (frame(0x8, close_payload(1000, b"\xff")), 1007, "Invalid frame payload data"),
        (frame(0x1, b"\xff\xfe"), 1007, "Invalid frame payload data"),
        (frame(0x1, b"\xff" * 300), 1007, "Invalid frame payload data"),
        (frame(0x1, b"x" * 1001), 1009, "Message too big"),
        (
            frame(0x1, b"x" * 1000, fin=False)
            + frame(0x0, b"x" * 1000, fin=False)
            + frame(0x0, b"x" * 501),
            1009,
            "Message too big",
        ),
    ],
    ids=[
        "unmasked",
        "rsv1-ping",
        "rsv2",
        "opcode",
        "fragmented-ping",
        "long-ping",
        "continuation",
        "new-message-midway",
        "close-code",
        "close-1-byte",
        "close-reason",
        "text",
        "long-text",
        "frame-size",
        "message-size",
    ],
)
async def test_each_frame_rule_closes_with_its_code(
    gateway: GatewayFactory, app: ModuleType, data: bytes, code: int, reason: str
) -> None:
    async with gateway(routes=routes(_disconnect="record"), limits=SMALL) as gw:
        peer = await _open(gw)
        await peer.send(data)
        assert (await asyncio.wait_for(peer.read_until_close(), 5))[0] == code
        assert await asyncio.wait_for(peer.reader.read(), 5) == b""  # then the server closes
        await eventually(lambda: _has_disconnect(app))
        assert _disconnect(app) == (code, reason)
        await peer.close()


async def test_an_oversized_frame_is_refused_before_its_payload(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_disconnect="record"), limits=SMALL) as gw:
        peer = await _open(gw)
        # The head of a 1 GB frame and nothing else: refused at once.
        await peer.send(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 2**30) + b"\0\0\0\0")
        assert (await asyncio.wait_for(peer.read_until_close(), 5))[0] == 1009
        await peer.close()


ECHO = routes(echo={"handler": "echo", "route_response": True}, _disconnect="record")


async def test_frames_split_at_every_byte_are_read(gateway: GatewayFactory) -> None:
    messages = [json.dumps({"action": "echo", "pad": "x" * n}).encode() for n in (1, 200)]
    stream = b"".join(
        [
            frame(0x1, messages[0]),
            frame(0x9, b"hi"),
            frame(0x1, messages[1][:50], fin=False),
            frame(0x0, messages[1][50:]),
        ]
    )
    async with gateway(routes=ECHO) as gw:
        peer = await _open(gw)
        for cut in range(1, len(stream)):
            await peer.send_chunks(stream, [cut])
            got = [await asyncio.wait_for(peer.read_frame(), 5) for _ in range(3)]
            assert got == [(0x1, messages[0]), (0xA, b"hi"), (0x1, messages[1])], cut
        await peer.close()


# A client's close frame (each code, an empty one, a bad code or reason): tests/gateway/
# test_close_frames.py runs every case on the lean transport beside aiohttp's two paths.


async def test_a_dropped_tcp_connection_is_1006(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=ECHO) as gw:
        peer = await _open(gw)
        peer.abort()
        await eventually(lambda: _has_disconnect(app))
        assert _disconnect(app) == (1006, "")


async def test_a_server_close_is_reported_with_its_code(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=ECHO, limits={"idle_timeout": 0.3}) as gw:
        peer = await _open(gw)
        assert (await asyncio.wait_for(peer.read_until_close(), 5 * TIME_SCALE))[0] == 1001
        assert await asyncio.wait_for(peer.reader.read(), 5) == b""
        await eventually(lambda: _has_disconnect(app))
        assert _disconnect(app) == (1001, "Going away")
        await peer.close()


async def test_pings_are_answered_with_their_payload(gateway: GatewayFactory) -> None:
    async with gateway(routes=ECHO) as gw:
        peer = await _open(gw)
        await peer.send(frame(0x9, b"abc"))
        assert await asyncio.wait_for(peer.read_frame(), 5) == (0xA, b"abc")
        await peer.close()


async def test_a_silent_client_is_pinged_and_dropped_without_a_pong(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    server = {"ping_interval": 0.1, "ping_timeout": 0.2}
    async with gateway(routes=ECHO, server=server) as gw:
        peer = await _open(gw)
        assert await asyncio.wait_for(peer.read_frame(), 5) == (0x9, b"")
        assert await asyncio.wait_for(peer.read_frame(), 5) is None  # no pong: dropped
        await eventually(lambda: _has_disconnect(app))
        assert _disconnect(app) == (1006, "Ping timeout")
        await peer.close()


async def test_a_client_that_answers_pings_stays(gateway: GatewayFactory, app: ModuleType) -> None:
    server = {"ping_interval": 0.05, "ping_timeout": 0.1}
    async with gateway(routes=ECHO, server=server) as gw:
        peer = await _open(gw)
        for _ in range(5):
            opcode, payload = await asyncio.wait_for(peer.read_frame(), 5) or (0, b"")
            assert opcode == 0x9
            await peer.send(frame(0xA, payload))
        assert not _has_disconnect(app)
        assert len(gw.hub.connections) == 1
        await peer.close()


async def test_a_reader_that_stops_reading_fills_the_buffer_and_is_dropped(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    message = json.dumps({"action": "echo", "pad": "x" * 60000}).encode()
    limits = {"send_queue_bytes": 200_000, "max_frame_bytes": 65536, "max_message_bytes": 65536}
    async with gateway(routes=ECHO, limits=limits) as gw:
        peer = await _open(gw)
        (conn,) = gw.hub.connections.values()
        sock: Any = conn.socket
        for _ in range(200):  # the client never reads the echoes
            try:
                await asyncio.wait_for(peer.send(frame(0x1, message)), 1)
            except (ConnectionError, TimeoutError):
                break
            if _has_disconnect(app):
                break
        await eventually(lambda: _has_disconnect(app))
        assert sock._paused or sock._transport.is_closing()
        assert _disconnect(app)[0] in (1013, 1006)
        peer.abort()


async def test_binary_is_refused_with_1003_as_before(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=ECHO) as gw:
        peer = await _open(gw)
        await peer.send(frame(0x2, b"\x00"))
        assert (await asyncio.wait_for(peer.read_until_close(), 5))[0] == 1003
        await peer.send(frame(0x8, close_payload(1003)))  # the client answers the close
        assert await asyncio.wait_for(peer.reader.read(), 5) == b""
        await eventually(lambda: _has_disconnect(app))
        assert _disconnect(app) == (1003, "Binary frames are not supported")
        await peer.close()


def _lean_objects() -> list[object]:
    """The lean transport's objects still in memory (``gc.get_objects`` does not collect)."""
    names = {"LeanSocket", "LeanHandshake", "FrameReader"}
    return [o for o in gc.get_objects() if type(o).__name__ in names]


@pytest.mark.parametrize("ending", ["close frame", "drop", "protocol error"])
@pytest.mark.parametrize("messages", [0, 3], ids=["no message", "3 messages"])
async def test_a_closed_socket_is_freed_without_the_collector(
    gateway: GatewayFactory, app: ModuleType, ending: str, messages: int
) -> None:
    async with gateway(routes=ECHO) as gw:
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                peer = await _open(gw)
                for n in range(messages):
                    body = b'{"action": "echo", "n": %d, "pad": "%s"}' % (n, b"x" * 200 * n)
                    await peer.send(frame(0x1, body))
                    assert await asyncio.wait_for(peer.read_frame(), 5) == (0x1, body)
                if ending == "close frame":
                    await peer.send(frame(0x8, close_payload(1000)))
                    await asyncio.wait_for(peer.read_until_close(), 5)
                elif ending == "protocol error":
                    await peer.send(frame(0x1, b"\xff"))
                    await asyncio.wait_for(peer.read_until_close(), 5)
                await peer.close()
                await eventually(lambda: not gw.hub.connections)
            for _ in range(200):
                if not _lean_objects() and len(app.EVENTS) == 3:
                    break
                await asyncio.sleep(0.01)
            left = _lean_objects()
        finally:
            gc.enable()
    assert left == [], f"{len(left)} objects only the cyclic collector would free"
