"""The lean transport's handshake (hubbub.gateway.lean_upgrade) on real sockets: the plain upgrade
answered without aiohttp, byte for byte as aiohttp's path answers it, and every other request
handed to aiohttp, which answers it as before."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import websockets

from bench.fuzz.wire import Peer, frame
from hubbub.gateway.app import Gateway
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import TIME_SCALE, eventually

pytestmark = pytest.mark.usefixtures("lean_transport")

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (
    b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n"
)
ECHO = routes(echo={"handler": "echo", "route_response": True})


def _lean(gw: Gateway) -> Any:
    assert gw.public is not None
    lean = gw.public.limits.lean
    assert lean is not None, "the lean transport is on by default"
    return lean


def _socket_kinds(gw: Gateway) -> list[str]:
    return [type(conn.socket).__name__ for conn in gw.hub.connections.values()]


async def _exchange(gw: Gateway, request: bytes, *, cuts: list[int] | None = None) -> Peer:
    assert gw.public is not None
    peer = await Peer.open(gw.public.host, gw.public.port)
    await peer.send_chunks(request, cuts or [])
    return peer


async def _answer(gw: Gateway, request: bytes) -> tuple[int | None, dict[str, str], bytes]:
    peer = await _exchange(gw, request)
    status, headers = await asyncio.wait_for(peer.read_head(), 5)
    body = await asyncio.wait_for(peer.read_body(headers), 5) if status != 101 else b""
    await peer.close()
    return status, headers, body


async def test_a_plain_upgrade_takes_the_lean_path(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        status, headers, _ = await _answer(gw, UPGRADE)
        assert status == 101
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        async with websockets.connect(gw.websocket_url):
            await eventually(lambda: len(gw.hub.connections) == 1)
            assert _socket_kinds(gw) == ["LeanSocket"]
            assert _lean(gw).handed_off == 0
            assert not gw.public._runner.server.connections  # type: ignore[union-attr]


async def _raw_101(gw: Gateway, extra: bytes = b"") -> bytes:
    peer = await _exchange(gw, UPGRADE[:-2] + extra + b"\r\n")
    while b"\r\n\r\n" not in peer.buffer:
        assert await peer._more()
    await peer.close()
    head = peer.buffer.partition(b"\r\n\r\n")[0]
    return re.sub(rb"Date: [^\r]*", b"Date: -", head)


async def test_the_lean_101_is_the_one_aiohttps_path_writes(
    gateway: GatewayFactory, app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.CONNECT_RESULT.update(
        {"statusCode": 200, "headers": {"X-One": "1", "Sec-WebSocket-Protocol": "chat"}}
    )
    extra = b"Sec-WebSocket-Protocol: other, chat\r\n"
    async with gateway(routes=routes(_connect="record")) as gw:
        lean = [await _raw_101(gw), await _raw_101(gw, extra)]
        assert _lean(gw).handed_off == 0
    monkeypatch.setenv("HUBBUB_LEAN_TRANSPORT", "0")
    async with gateway(routes=routes(_connect="record")) as gw:
        assert gw.public is not None
        assert gw.public.limits.lean is None
        own = [await _raw_101(gw), await _raw_101(gw, extra)]
    assert lean == own
    assert b"X-One: 1\r\n" in lean[0]


async def test_the_head_split_at_every_byte_is_read(gateway: GatewayFactory) -> None:
    message = b'{"action": "echo", "n": 1}'
    async with gateway(routes=ECHO) as gw:
        for cut in range(1, len(UPGRADE)):
            peer = await _exchange(gw, UPGRADE + frame(0x1, message), cuts=[cut])
            status, _ = await asyncio.wait_for(peer.read_head(), 5)
            assert status == 101, cut
            assert await asyncio.wait_for(peer.read_frame(), 5) == (0x1, message)
            await peer.close()
        assert _lean(gw).handed_off == 0


async def test_frames_sent_with_the_head_are_read_after_connect(gateway: GatewayFactory) -> None:
    messages = [b'{"action": "echo", "n": %d}' % n for n in range(3)]
    async with gateway(routes=ECHO) as gw:
        peer = await _exchange(gw, UPGRADE + b"".join(frame(0x1, m) for m in messages))
        status, _ = await asyncio.wait_for(peer.read_head(), 5)
        assert status == 101
        assert [await asyncio.wait_for(peer.read_frame(), 5) for _ in messages] == [
            (0x1, m) for m in messages
        ]
        await peer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",  # a probe
        b"GET /dev HTTP/1.1\r\nHost: x\r\n\r\n",  # not an upgrade: 426
        UPGRADE.replace(KEY, b"c2hvcnQ="),  # a bad key: 400
        UPGRADE.replace(b"Version: 13", b"Version: 8"),  # 426
        UPGRADE.replace(b"GET", b"HEAD"),
        b"POST /dev HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /dev HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n",  # 431
        b"GET /dev HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000,  # 431, not even whole
        b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n",  # a TLS hello on a plain listener
        UPGRADE.replace(b"Host: x", b"Host: x\r\nContent-Length: 0"),
        UPGRADE.replace(b"Host: x", b"Host: x\r\nX: caf\xc3\xa9"),  # unusual: taken by aiohttp
    ],
    ids=[
        "probe",
        "426",
        "bad-key",
        "version",
        "HEAD",
        "POST",
        "404",
        "431",
        "431-partial",
        "tls",
        "content-length",
        "non-ascii",
    ],
)
async def test_other_requests_are_answered_by_aiohttp_as_before(
    gateway: GatewayFactory,
    app: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    request_bytes: bytes,
) -> None:
    answers = []
    for lean in ("1", "0"):
        monkeypatch.setenv("HUBBUB_LEAN_TRANSPORT", lean)
        app.EVENTS.clear()
        async with gateway(routes=routes(_connect="record")) as gw:
            status, headers, body = await _answer(gw, request_bytes)
            headers.pop("date", None)
            answers.append((status, headers, body, len(app.EVENTS)))
            if lean == "1":
                assert _lean(gw).handed_off == 1
                await eventually(lambda gw=gw: gw.public.limits.pending == 0)
    assert answers[0] == answers[1]
    assert answers[0][0] is not None


async def test_a_static_file_is_aiohttps(gateway: GatewayFactory, tmp_path: Path) -> None:
    (tmp_path / "page.txt").write_text("static!")
    async with gateway(static={"dir": str(tmp_path)}) as gw:
        status, _, body = await _answer(gw, b"GET /page.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, b"static!")
        assert _lean(gw).handed_off == 1


async def test_a_connect_refusal_is_answered_by_aiohttp_with_connect_run_once(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    app.CONNECT_RESULT.update({"statusCode": 403, "headers": {"X-Why": "no"}, "body": "denied"})
    async with gateway(routes=routes(_connect="record")) as gw:
        status, headers, body = await _answer(gw, UPGRADE)
        assert (status, headers["x-why"], body) == (403, "no", b"denied")
        assert _lean(gw).handed_off == 1
        assert gw.hub.connections == {}
    assert len(app.EVENTS) == 1


async def test_a_subprotocol_mismatch_is_answered_by_aiohttp_with_connect_run_once(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    app.CONNECT_RESULT.update({"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "x"}})
    async with gateway(routes=routes(_connect="record", _disconnect="record")) as gw:
        extra = b"Sec-WebSocket-Protocol: other\r\n"
        peer = await _exchange(gw, UPGRADE[:-2] + extra + b"\r\n")
        status, headers = await asyncio.wait_for(peer.read_head(), 5)
        assert status == 101
        assert "sec-websocket-protocol" not in headers  # aiohttp answers without one
        await eventually(lambda: len(gw.hub.connections) == 1)
        assert _socket_kinds(gw) == ["Socket"]
        assert _lean(gw).handed_off == 1
        await peer.close()
        await eventually(lambda: len(app.EVENTS) == 2)
    assert [e["requestContext"]["eventType"] for e in app.EVENTS] == ["CONNECT", "DISCONNECT"]


async def test_an_error_of_connect_is_answered_by_aiohttp_as_before(
    gateway: GatewayFactory, app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = []
    for lean in ("1", "0"):
        monkeypatch.setenv("HUBBUB_LEAN_TRANSPORT", lean)
        async with gateway(routes=routes(_connect="boom")) as gw:
            status, _, body = await _answer(gw, UPGRADE)
            answers.append((status, body))
            if lean == "1":
                assert _lean(gw).handed_off == 1
    assert answers[0] == answers[1]
    assert answers[0][0] == 502  # the handler raised


async def test_a_slow_head_is_dropped_after_the_handshake_timeout(gateway: GatewayFactory) -> None:
    async with gateway(limits={"handshake_timeout": 0.3}) as gw:
        peer = await _exchange(gw, UPGRADE[:20])
        assert gw.public is not None
        await eventually(lambda: gw.public.limits.pending == 1)  # type: ignore[union-attr]
        started = asyncio.get_running_loop().time()
        with contextlib.suppress(ConnectionError):
            for byte in UPGRADE[20:40]:  # slowloris: a byte now and then
                await peer.send(bytes([byte]))
                await asyncio.sleep(0.02)
        try:
            rest = await asyncio.wait_for(peer.reader.read(), 5 * TIME_SCALE)
        except ConnectionError:  # (a byte written after the close: the kernel resets)
            rest = b""
        assert rest == b""  # closed without an answer, as aiohttp's timer closes
        assert asyncio.get_running_loop().time() - started < 2 * TIME_SCALE
        await eventually(lambda: gw.public.limits.pending == 0)  # type: ignore[union-attr]
        assert _lean(gw).handed_off == 0
        await peer.close()


async def test_pending_handshakes_are_bounded_on_the_lean_path(gateway: GatewayFactory) -> None:
    async with gateway(limits={"max_pending_handshakes": 2}) as gw:
        assert gw.public is not None
        limits = gw.public.limits
        held = [await _exchange(gw, UPGRADE[:10]) for _ in range(2)]
        await eventually(lambda: limits.pending == 2)
        status, _, body = await _answer(gw, UPGRADE)
        assert status == 503
        assert b"too many pending handshakes" in body
        for peer in held:
            await peer.close()
        await eventually(lambda: limits.pending == 0)
        async with websockets.connect(gw.websocket_url):
            assert limits.pending == 0


async def test_closing_the_listener_drops_lean_connections(gateway: GatewayFactory) -> None:
    async with gateway() as gw:
        ws = await websockets.connect(gw.websocket_url)
        half = await _exchange(gw, UPGRADE[:10])
        await eventually(lambda: len(_lean(gw).connections) == 2)
        assert gw.public is not None
        await gw.public.close()
        assert not _lean(gw).connections
        assert await asyncio.wait_for(half.reader.read(), 5) == b""
        await asyncio.wait_for(ws.wait_closed(), 5)
        await half.close()
