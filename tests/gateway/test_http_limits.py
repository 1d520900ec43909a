"""Limits before a request is parsed (issue 17, items 7 and 8), on real sockets.

The attacks: a handshake of 120 headers of 16,000 bytes each (every line under the per-line cap;
300 of them held about 650 MB), a flood of handshakes that never finish, and silent connections
to the management port (2,000 held for 41 s and more).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from typing import Any

import pytest
import websockets

from hubbub.gateway.http_limits import ConnectionLimits
from hubbub.gateway.transport_aiohttp import Listener
from tests.gateway.conftest import GatewayFactory
from tests.helpers import TIME_SCALE, eventually

UPGRADE = (
    b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


def _headers(count: int, size: int) -> bytes:
    return b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * size) for i in range(count))


async def _send_and_read(listener: Listener, data: bytes, chunk: int = 65536) -> bytes:
    """Send ``data`` in ``chunk``-sized writes; whatever the server answers before it closes
    (a reset while we still write counts as a close)."""
    reader, writer = await asyncio.open_connection(listener.host, listener.port)
    try:
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
            await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10 * TIME_SCALE)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        if _status(head) == 101:  # the socket stays open
            return head
        return head + await asyncio.wait_for(reader.read(), 10 * TIME_SCALE)
    except ConnectionError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _status(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def test_120_headers_of_16000_bytes_are_refused(gateway: GatewayFactory) -> None:
    async with gateway() as gw:  # default max_header_bytes: 16 KB for the whole head
        assert gw.public is not None
        head = UPGRADE + _headers(120, 16_000) + b"\r\n"
        response = await _send_and_read(gw.public, head)
        # The 431 is written before the close; a reset may overtake it while we still send.
        assert _status(response) in (431, None)
        assert gw.public.limits.refused_heads == 1
        async with websockets.connect(gw.websocket_url):
            pass


async def test_the_limit_is_on_the_whole_head_not_single_lines(gateway: GatewayFactory) -> None:
    async with gateway(limits={"max_header_bytes": 4096}) as gw:
        assert gw.public is not None
        # Ten lines of 500 bytes: each far under the limit, together over it.
        response = await _send_and_read(gw.public, UPGRADE + _headers(10, 500) + b"\r\n")
        assert _status(response) == 431
        assert b"exceeds 4096 bytes" in response
        # Six such lines (about 3.2 KB with the rest) pass.
        response = await _send_and_read(gw.public, UPGRADE + _headers(6, 500) + b"\r\n")
        assert _status(response) == 101


async def test_a_head_sent_in_small_pieces_is_counted_across_reads(
    gateway: GatewayFactory,
) -> None:
    async with gateway(limits={"max_header_bytes": 4096}) as gw:
        assert gw.public is not None
        over = UPGRADE + _headers(10, 500) + b"\r\n"
        response = await _send_and_read(gw.public, over, chunk=97)
        assert _status(response) == 431
        # A small head whose blank line straddles two reads is complete, not counted on.
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        head = UPGRADE + b"\r\n"
        for piece in (head[:-3], head[-3:-1], head[-1:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        assert _status(await asyncio.wait_for(reader.readline(), 5)) == 101
        writer.close()


async def test_pending_handshakes_are_bounded(gateway: GatewayFactory) -> None:
    limits_config = {"max_pending_handshakes": 10, "handshake_timeout": 1.0}
    async with gateway(limits=limits_config) as gw:
        assert gw.public is not None
        limits = gw.public.limits
        streams = []
        for _ in range(30):  # each sends half a head and waits
            reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
            writer.write(b"GET /dev HTTP/1.1\r\nHost: x\r\n")
            streams.append((reader, writer))
        await eventually(lambda: limits.pending + limits.refused_pending == 30)
        assert (limits.pending, limits.refused_pending) == (10, 20)
        # The 20 refused were answered 503 at once; the 10 pending end at the handshake timeout.
        answers = await asyncio.gather(
            *(asyncio.wait_for(reader.read(), 10 * TIME_SCALE) for reader, _ in streams)
        )
        refused = [a for a in answers if a]
        assert len(refused) == 20
        assert all(_status(a) == 503 and b"too many pending handshakes" in a for a in refused)
        for _, writer in streams:
            writer.close()
        await eventually(lambda: limits.pending == 0, message="pending handshakes released")
        # Upgraded connections are not pending: more than ten may be open at once.
        sockets = [await websockets.connect(gw.websocket_url) for _ in range(12)]
        assert limits.pending == 0
        # ... and their reads go straight to aiohttp again (no per-frame call of ours).
        server = gw.public._runner.server
        assert server is not None
        lean = gw.public.limits.lean
        if lean is None:
            assert {type(h).__name__ for h in server.connections} == {"_UpgradedHandler"}
        else:  # the lean transport's sockets are their transports' protocols
            assert not server.connections
            transports = [c._transport for c in lean.connections]
            assert {type(t.get_protocol()).__name__ for t in transports} == {"LeanSocket"}
        for ws in sockets:
            await ws.close()


async def test_silent_management_connections_are_closed(gateway: GatewayFactory) -> None:
    async with gateway(management={"tls": False, "header_timeout": 0.3}) as gw:
        assert gw.management is not None
        streams = [
            await asyncio.open_connection(gw.management.host, gw.management.port) for _ in range(50)
        ]
        started = time.monotonic()
        for reader, writer in streams:
            assert await asyncio.wait_for(reader.read(), 5 * TIME_SCALE) == b""
            writer.close()
        assert time.monotonic() - started < 3 * TIME_SCALE


async def test_a_half_sent_management_request_is_closed(gateway: GatewayFactory) -> None:
    async with gateway(management={"tls": False, "header_timeout": 0.3}) as gw:
        assert gw.management is not None
        reader, writer = await asyncio.open_connection(gw.management.host, gw.management.port)
        writer.write(b"GET /dev/@connections HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
        assert await asyncio.wait_for(reader.read(), 5 * TIME_SCALE) == b""
        writer.close()
        reader, writer = await asyncio.open_connection(gw.management.host, gw.management.port)
        writer.write(
            b"POST /dev/@broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n"
            b"only ten b"  # and the other 90 bytes never come
        )
        response = await asyncio.wait_for(reader.read(), 5 * TIME_SCALE)
        assert _status(response) == 408
        writer.close()


async def test_an_idle_management_keep_alive_connection_is_closed(
    gateway: GatewayFactory,
) -> None:
    async with gateway(management={"tls": False, "idle_timeout": 0.3}) as gw:
        assert gw.management is not None
        reader, writer = await asyncio.open_connection(gw.management.host, gw.management.port)
        host = f"127.0.0.1:{gw.management.port}".encode()
        writer.write(b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert _status(head) == 200
        assert b"Connection: close" not in head  # kept alive ...
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 5 * TIME_SCALE)  # ... then closed
        assert rest.startswith(b'{"status"')
        assert time.monotonic() - started < 3 * TIME_SCALE
        writer.close()


async def test_a_management_head_over_the_limit_is_refused(gateway: GatewayFactory) -> None:
    async with gateway(management={"tls": False}, limits={"max_header_bytes": 4096}) as gw:
        assert gw.management is not None
        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + _headers(10, 500) + b"\r\n"
        response = await _send_and_read(gw.management, request)
        assert _status(response) == 431


@pytest.mark.usefixtures("aiohttp_transport")
async def test_an_upgraded_connection_lets_go_of_the_http_parser(gateway: GatewayFactory) -> None:
    # An open WebSocket never parses HTTP again: holding aiohttp's parser and request queue cost
    # about 1.4 KB per idle connection. The connection still works without them.
    async with gateway() as gw, websockets.connect(gw.websocket_url) as ws:
        await eventually(lambda: gw.hub.connections)
        (conn,) = gw.hub.connections.values()
        protocol = conn.socket._ws._req.protocol  # type: ignore[union-attr]
        assert protocol._parser is None
        assert not protocol._messages
        assert not isinstance(protocol._messages, collections.deque)
        await ws.send("ping?")  # no route matches: AWS's Forbidden error frame comes back
        assert "Forbidden" in str(await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE))


def test_the_public_listener_keeps_aiohttps_first_timer() -> None:
    # All three timeouts equal (the public listener): aiohttp's own timer already fires when the
    # first head is due, so connection_made does not cancel it and arm another.
    assert ConnectionLimits(16384, 10.0, 10.0).rearm_matches(10.0)
    # The management listener: a head is due sooner than an idle keep-alive connection.
    assert not ConnectionLimits(16384, 10.0, 60.0).rearm_matches(60.0)
    assert not ConnectionLimits(16384, 10.0, 0.0).rearm_matches(0.0)


async def _keepalive_and_nodelay(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        for listener in (gw.public, gw.management):
            _reader, writer = await asyncio.open_connection(listener.host, listener.port)
            try:
                server = listener._runner.server
                assert server is not None
                lean = listener.limits.lean

                def accepted(s: Any = server, lean: Any = lean) -> list[Any]:
                    # aiohttp's handlers, or the lean transport's handshakes (public listener)
                    conns = [*s.connections, *(lean.connections if lean is not None else ())]
                    return [c.transport if hasattr(c, "transport") else c._transport for c in conns]

                await eventually(accepted, message="the accepted connection")
                for transport in accepted():
                    assert transport is not None
                    sock = transport.get_extra_info("socket")
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            finally:
                writer.close()
        async with websockets.connect(gw.websocket_url) as ws:  # and the upgrade still works
            await ws.ping()


async def test_accepted_sockets_keep_alive_without_nagle(gateway: GatewayFactory) -> None:
    # SO_KEEPALIVE comes from the listening socket (LimitedSite.start), TCP_NODELAY from
    # _NoDelayAgain (asyncio's loop) instead of from aiohttp per connection: both still on,
    # on the WebSocket endpoint and on the management API.
    await _keepalive_and_nodelay(gateway)


def test_accepted_sockets_keep_alive_without_nagle_under_uvloop(gateway: GatewayFactory) -> None:
    # Under uvloop (what hubbub serve runs) the loop itself sets TCP_NODELAY: _NODELAY_SET.
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_keepalive_and_nodelay(gateway))
