"""A client's close frame, on raw sockets, answered by the lean transport, by hubbub's frame
guard on aiohttp's socket, and by aiohttp's own path.

On a listener without compression or TLS the lean transport (hubbub.gateway.lean_socket) answers
every close frame.

The common close frame (whole in one read, an allowed code and a UTF-8 reason, or empty) of a
socket whose read loop waits is answered by the frame guard itself
(``_FrameGuard._answer_close`` in hubbub.gateway.frames_aiohttp); every other one by aiohttp's
parser, ``receive()`` and ``close()``. A socket with permessage-deflate always takes aiohttp's
path. Each case runs on both kinds of socket and must give the same close reply, the same
``$disconnect`` code and reason, and the same ``closed`` metric; which path answered is told by
whether aiohttp's writer sent the close reply (``WebSocketWriter.close``).
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp._websocket.writer import WebSocketWriter

from bench.fuzz.wire import Peer, close_payload, frame, upgrade_request
from hubbub.gateway.tls import ensure_local_tls
from tests.gateway.conftest import GatewayFactory, routes

# A raw socket upgraded with or without permessage-deflate, as the frame tests open theirs.
from tests.gateway.test_transport_frames import _open
from tests.helpers import eventually

CLOSE, TEXT = 0x8, 0x1
SPEC = routes(_default={"handler": "async_slow", "route_response": True}, _disconnect="record")


@dataclass(frozen=True)
class Case:
    """A close frame as the client sends it, and what the server must do with it."""

    data: bytes
    reply: int  # the code of the server's close reply
    code: int  # $disconnect's code and reason
    reason: str
    fast: bool  # answered by the guard itself on a socket without permessage-deflate
    cuts: tuple[int, ...] = ()  # where the client's write is split into reads


CASES = {
    "code and reason": Case(
        frame(CLOSE, close_payload(4001, b"bye now")), 1000, 4001, "bye now", True
    ),
    "allowed code, no reason": Case(frame(CLOSE, close_payload(1000)), 1000, 1000, "", True),
    "a code above 4999": Case(frame(CLOSE, close_payload(65535)), 1000, 65535, "", True),
    "125-byte payload": Case(
        frame(CLOSE, close_payload(1001, "é".encode() * 61 + b"x")),
        1000,
        1001,
        "é" * 61 + "x",
        True,
    ),
    # AWS's words for a close frame without a status (1005).
    "empty": Case(frame(CLOSE, b""), 1000, 1005, "Client-side close frame status not set", True),
    "invalid code": Case(frame(CLOSE, close_payload(1004)), 1002, 1002, "Protocol error", False),
    "unassigned code below 3000": Case(
        frame(CLOSE, close_payload(2999)), 1002, 1002, "Protocol error", False
    ),
    "reason not UTF-8": Case(
        frame(CLOSE, close_payload(1000, b"\xff\xfe")),
        1007,
        1007,
        "Invalid frame payload data",
        False,
    ),
    "one-byte payload": Case(frame(CLOSE, b"\x03"), 1002, 1002, "Protocol error", False),
    "split across reads": Case(
        frame(CLOSE, close_payload(4001, b"bye now")), 1000, 4001, "bye now", False, cuts=(3,)
    ),
    "with trailing bytes": Case(
        frame(CLOSE, close_payload(4001, b"bye now")) + frame(TEXT, b'{"seconds": 0}'),
        1000,
        4001,
        "bye now",
        False,
    ),
}


def _count_close_replies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of aiohttp's writer's close(): how aiohttp's path writes its close reply."""
    calls: list[int] = []
    original = WebSocketWriter.close

    async def close(self: Any, code: int = 1000, message: bytes | str = b"") -> None:
        calls.append(code)
        await original(self, code, message)

    monkeypatch.setattr(WebSocketWriter, "close", close)
    return calls


def _disconnects(app: ModuleType) -> list[tuple[int, str]]:
    return [
        (e["requestContext"]["disconnectStatusCode"], e["requestContext"]["disconnectReason"])
        for e in app.EVENTS
        if e["requestContext"]["routeKey"] == "$disconnect"
    ]


async def _reply_then_end(peer: Peer) -> tuple[tuple[int, bytes] | None, list[tuple[int, bytes]]]:
    """The server's close frame (None if it sent none), and every frame before it."""
    before: list[tuple[int, bytes]] = []
    while True:
        got = await asyncio.wait_for(peer.read_frame(), 5)
        if got is None or got[0] == CLOSE:
            return got, before
        before.append(got)


# Where a close frame is answered: the lean transport (hubbub.gateway.lean_socket; a listener
# without compression), the frame guard on aiohttp's socket (compression on, not negotiated), or
# aiohttp's own path (permessage-deflate negotiated).
PATHS = {"lean": (False, False), "own": (True, False), "aiohttp": (True, True)}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", list(CASES))
async def test_a_close_frame_gets_the_same_answer_on_every_path(
    gateway: GatewayFactory,
    app: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    path: str,
) -> None:
    case = CASES[name]
    compression, deflate = PATHS[path]
    if path == "lean":  # (the default; the suite may run with it off)
        monkeypatch.setenv("HUBBUB_LEAN_TRANSPORT", "1")
    replies = _count_close_replies(monkeypatch)
    async with gateway(server={"compression": compression}, routes=SPEC) as gw:
        peer = await _open(gw, deflate=deflate)
        await peer.send_chunks(case.data, case.cuts, delay=0.05)
        reply, before = await _reply_then_end(peer)
        # The reply: one close frame with the code and no reason, then nothing else.
        assert reply == (CLOSE, struct.pack("!H", case.reply))
        assert before == []
        if case.reply == 1000:  # the client's close answered: the server closes TCP at once
            assert await asyncio.wait_for(peer.read_frame(), 5) is None
        await peer.close()
        await eventually(lambda: _disconnects(app))
        assert _disconnects(app) == [(case.code, case.reason)]
        assert gw.metrics.closed == {case.code: 1}
    aiohttp_answered = path == "aiohttp" or (path == "own" and not case.fast)
    assert replies == ([case.reply] if aiohttp_answered else [])


@pytest.mark.parametrize("deflate", [False, True], ids=["own", "aiohttp"])
async def test_a_close_frame_while_a_message_is_in_flight(
    gateway: GatewayFactory, app: ModuleType, monkeypatch: pytest.MonkeyPatch, deflate: bool
) -> None:
    """The first text message's handler still runs when the close frame comes (the socket
    reads its frames with ``_FastReader`` by then): the close is answered at once, and the
    handler's late reply is not written after the close reply."""
    replies = _count_close_replies(monkeypatch)
    async with gateway(server={"compression": True}, routes=SPEC) as gw:
        peer = await _open(gw, deflate=deflate)
        await peer.send(frame(TEXT, json.dumps({"seconds": 0.3}).encode(), rsv=0))
        await eventually(lambda: [e for e in app.EVENTS if "body" in e])  # handler started
        await peer.send(frame(CLOSE, close_payload(4001, b"bye now")))
        reply, before = await _reply_then_end(peer)
        assert reply == (CLOSE, struct.pack("!H", 1000))
        assert before == []
        assert await asyncio.wait_for(peer.read_frame(), 5) is None
        await peer.close()
        await eventually(lambda: _disconnects(app))
        assert _disconnects(app) == [(4001, "bye now")]
        await asyncio.sleep(0.4)  # the handler has answered by now, to a closed socket
        assert gw.metrics.closed == {4001: 1}
    assert replies == ([] if not deflate else [1000])


@pytest.mark.parametrize("deflate", [False, True], ids=["own", "aiohttp"])
async def test_a_close_frame_then_the_tcp_close(
    gateway: GatewayFactory, app: ModuleType, deflate: bool
) -> None:
    """What the handshake benchmark's client does: the close frame, then its end of TCP at
    once. Whether the reply still goes out races the FIN; the ``$disconnect`` does not."""
    async with gateway(server={"compression": True}, routes=SPEC) as gw:
        peer = await _open(gw, deflate=deflate)
        peer.writer.write(frame(CLOSE, close_payload(4002, b"gone")))
        peer.write_eof()
        await eventually(lambda: _disconnects(app))
        assert _disconnects(app) == [(4002, "gone")]
        assert gw.metrics.closed == {4002: 1}
        await peer.close()


@pytest.mark.parametrize("deflate", [False, True], ids=["own", "aiohttp"])
async def test_a_close_frame_with_server_pings_on(
    gateway: GatewayFactory, app: ModuleType, monkeypatch: pytest.MonkeyPatch, deflate: bool
) -> None:
    """With server pings the frame's arrival also schedules aiohttp's heartbeat reset: the
    close stops it all the same (nothing follows the close reply)."""
    replies = _count_close_replies(monkeypatch)
    server = {"compression": True, "ping_interval": 0.2}
    async with gateway(server=server, routes=SPEC) as gw:
        peer = await _open(gw, deflate=deflate)
        await asyncio.sleep(0.3)
        assert await asyncio.wait_for(peer.read_frame(), 5) == (0x9, b"")  # a ping came
        await peer.send(frame(CLOSE, close_payload(4001, b"bye now")))
        reply, before = await _reply_then_end(peer)
        assert reply == (CLOSE, struct.pack("!H", 1000))
        assert all(opcode == 0x9 for opcode, _ in before)  # at most pings sent meanwhile
        assert await asyncio.wait_for(peer.read_frame(), 5) is None
        await peer.close()
        await eventually(lambda: _disconnects(app))
        assert _disconnects(app) == [(4001, "bye now")]
        assert gw.metrics.closed == {4001: 1}
    assert replies == ([] if not deflate else [1000])


async def test_a_close_frame_over_tls(
    gateway: GatewayFactory, app: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A wss:// socket (aiohttp's upgrade path, a TLS transport) is answered by the guard too."""
    replies = _count_close_replies(monkeypatch)
    pki = ensure_local_tls(tmp_path / "pki", ["127.0.0.1"])
    server = {"tls_cert": str(pki.cert), "tls_key": str(pki.key)}
    async with gateway(server=server, routes=SPEC) as gw:
        assert gw.public is not None
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port, ssl=context)
        peer = Peer(reader, writer)
        request = upgrade_request(random.Random(7), b"127.0.0.1", gw.config.api.stage)
        await peer.send(request.render())
        assert (await peer.read_head())[0] == 101
        await peer.send(frame(CLOSE, close_payload(4001, b"bye now")))
        reply, before = await _reply_then_end(peer)
        assert (reply, before) == ((CLOSE, struct.pack("!H", 1000)), [])
        assert await asyncio.wait_for(peer.read_frame(), 5) is None
        await peer.close()
        await eventually(lambda: _disconnects(app))
        assert _disconnects(app) == [(4001, "bye now")]
        assert gw.metrics.closed == {4001: 1}
    assert replies == []
