"""The public listener's own upgrade path (upgrade_aiohttp's ``_OwnUpgrade``), on real sockets.

A plain upgrade is answered without aiohttp's request machinery; anything else (and every answer
aiohttp shapes itself) still goes through aiohttp. These tests check that the two paths write the
same 101, that a refusal decided on the own path is answered once and by aiohttp, that frames
sent with the request are not lost, and that an open connection keeps no parsed request.
"""

from __future__ import annotations

import asyncio
import gc
import os
import struct
from types import ModuleType

import pytest
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.http_writer import _serialize_headers

from hubbub.gateway.app import Gateway
from hubbub.gateway.lifecycle import Lifecycle
from hubbub.gateway.transport_aiohttp import SocketOptions
from hubbub.gateway.upgrade_aiohttp import (
    _UpgradedRequest,
    _websocket,
    _websocket_from,
    _websocket_template,
)
from hubbub.wire.http import Handshake
from tests.gateway.conftest import GatewayFactory, routes

# _OwnUpgrade's path (aiohttp's request handler); the lean transport's: test_lean_upgrade.py.
pytestmark = pytest.mark.usefixtures("aiohttp_transport")

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ECHO = {"handler": "echo", "route_response": True}


async def _upgrade(
    gw: Gateway, extra: bytes = b"", after: bytes = b""
) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """The answer's head to a raw upgrade request (``extra`` header lines, then ``after`` in
    the same write), and the open connection."""
    assert gw.public is not None
    reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
    writer.write(
        b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        + KEY
        + b"\r\n"
        + extra
        + b"\r\n"
        + after
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head, reader, writer


def _masked_text(text: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return struct.pack("!BB", 0x81, 0x80 | len(text)) + mask + body


def _requests_of(gw: Gateway) -> list[object]:
    """The ``_req`` of every open connection's WebSocketResponse."""
    return [conn.socket._ws._req for conn in gw.hub.connections.values()]


async def test_the_own_101_is_the_one_aiohttp_writes(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    app.CONNECT_RESULT["headers"] = {"X-Hello": "world", "Content-Type": "text/plain"}
    async with gateway(routes=routes(_connect="record")) as gw:
        own, _, w1 = await _upgrade(gw)
        # A subprotocol offer the handler does not take: aiohttp answers (and logs it).
        theirs, _, w2 = await _upgrade(gw, b"Sec-WebSocket-Protocol: other\r\n")
        assert len(gw.hub.connections) == 2
        kinds = sorted(type(req).__name__ for req in _requests_of(gw))
        w1.close()
        w2.close()
    assert kinds == ["Request", "_UpgradedRequest"]

    def lines(head: bytes) -> list[bytes]:
        return [line for line in head.split(b"\r\n") if not line.startswith(b"Date: ")]

    assert own.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert lines(own) == lines(theirs)  # the same headers in the same order
    assert b"Date: " in own
    assert b"X-Hello: world\r\n" in own
    assert len(app.EVENTS) == 2


async def test_the_usual_own_101_is_the_one_aiohttp_writes(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    """Without headers of the handler's the own path writes its 101 from constant parts."""
    async with gateway(routes=routes(_connect="record")) as gw:
        own, _, w1 = await _upgrade(gw)
        theirs, _, w2 = await _upgrade(gw, b"Sec-WebSocket-Protocol: other\r\n")
        kinds = sorted(type(req).__name__ for req in _requests_of(gw))
        w1.close()
        w2.close()
    assert kinds == ["Request", "_UpgradedRequest"]
    date = [line for line in own.split(b"\r\n") if line.startswith(b"Date: ")]
    assert len(date) == 1
    # RFC 6455 §1.3's example key and answer; then the serializer's bytes for the same values.
    expected = _serialize_headers(
        "HTTP/1.1 101 Switching Protocols",
        {
            "Upgrade": "websocket",
            "Connection": "upgrade",
            "Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "Date": date[0][6:].decode(),
            "Server": SERVER_SOFTWARE,
        },
    )
    assert own == expected
    assert [line for line in own.split(b"\r\n") if not line.startswith(b"Date: ")] == [
        line for line in theirs.split(b"\r\n") if not line.startswith(b"Date: ")
    ]


async def test_an_open_connection_keeps_no_parsed_request(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record"), server={"compression": True}) as gw:
        _, _, writer = await _upgrade(gw)
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, web.BaseRequest)]
        assert alive == []
        assert [type(req) for req in _requests_of(gw)] == [_UpgradedRequest]
        # An extension offer with compression on: aiohttp negotiates it, its request stays.
        deflate = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        head, _, other = await _upgrade(gw, deflate)
        assert b"Sec-WebSocket-Extensions: permessage-deflate" in head
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, web.BaseRequest)]
        assert len(alive) == 1
        writer.close()
        other.close()


async def test_a_refusal_decided_on_the_own_path_is_answered_once_by_aiohttp(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    app.CONNECT_RESULT.update({"statusCode": 403, "headers": {"X-Why": "no"}, "body": "denied"})
    async with gateway(routes=routes(_connect="record")) as gw:
        head, reader, writer = await _upgrade(gw)
        body = await asyncio.wait_for(reader.readexactly(len(b"denied")), 5)
        writer.close()
        assert gw.hub.connections == {}
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Why: no\r\n" in head
    assert body == b"denied"
    assert len(app.EVENTS) == 1  # $connect ran once, on the own path


async def test_a_frame_sent_with_the_upgrade_request_is_answered(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    message = b'{"action": "echo", "n": 1}'
    async with gateway(routes=routes(_connect="record", echo=ECHO)) as gw:
        head, reader, writer = await _upgrade(gw, after=_masked_text(message))
        assert head.startswith(b"HTTP/1.1 101 ")
        frame = await asyncio.wait_for(reader.readexactly(2 + len(message)), 5)
        assert [type(req) for req in _requests_of(gw)] == [_UpgradedRequest]
        writer.close()
    assert frame == bytes([0x81, len(message)]) + message


@pytest.mark.parametrize(
    ("extra", "kind"),
    [(b"", "_UpgradedRequest"), (b"Sec-WebSocket-Protocol: other\r\n", "Request")],
    ids=["own", "aiohttp"],
)
async def test_a_client_close_is_answered_the_same_on_both_paths(
    gateway: GatewayFactory, app: ModuleType, extra: bytes, kind: str
) -> None:
    async with gateway(routes=routes(_connect="record", _disconnect="record")) as gw:
        _, reader, writer = await _upgrade(gw, extra)
        assert [type(req).__name__ for req in _requests_of(gw)] == [kind]
        # A masked close frame with code 4001: aiohttp answers with 1000, $disconnect has 4001.
        writer.write(b"\x88\x82\x00\x00\x00\x00" + struct.pack("!H", 4001))
        frame = await asyncio.wait_for(reader.readexactly(4), 5)
        assert frame == b"\x88\x02" + struct.pack("!H", 1000)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then the server closes
        writer.close()
        for _ in range(100):
            if len(app.EVENTS) == 2:
                break
            await asyncio.sleep(0.02)
    disconnect = app.EVENTS[1]
    assert disconnect["requestContext"]["eventType"] == "DISCONNECT"
    assert disconnect["requestContext"]["disconnectStatusCode"] == 4001


async def test_an_error_of_the_handshake_on_the_own_path_is_aiohttps_500(
    gateway: GatewayFactory, app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Lifecycle, hs: Handshake) -> None:
        raise RuntimeError("handshake failed")

    monkeypatch.setattr(Lifecycle, "_admitted_handshake", broken)
    async with gateway(routes=routes(_connect="record")) as gw:
        head, _, writer = await _upgrade(gw)
        writer.close()
        assert gw.hub.connections == {}
    assert head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


async def test_an_upgrade_after_another_request_on_the_connection_is_aiohttps(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_connect="record")) as gw:
        assert gw.public is not None
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        health = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(health.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(
            b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + KEY + b"\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        kinds = [type(req).__name__ for req in _requests_of(gw)]
        writer.close()
    assert health.startswith(b"HTTP/1.1 200 ")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert kinds == ["Request"]  # a keep-alive connection's later requests stay aiohttp's
    assert len(app.EVENTS) == 1


@pytest.mark.parametrize(
    ("connection", "status"),
    [
        (b"Upgrade", b"101"),
        (b"UPGRADE", b"101"),
        (b"keep-alive, Upgrade", b"101"),
        (b"upgrade , keep-alive", b"101"),
        (b"keep-alive", b"400"),
        (b"upgrades", b"400"),
    ],
)
async def test_the_connection_header_names_upgrade_among_its_tokens(
    gateway: GatewayFactory, connection: bytes, status: bytes
) -> None:
    async with gateway(routes=routes()) as gw:
        assert gw.public is not None
        reader, writer = await asyncio.open_connection(gw.public.host, gw.public.port)
        writer.write(
            b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
            + connection
            + b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
            + KEY
            + b"\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = [line for line in head.split(b"\r\n") if line.startswith(b"Content-Length: ")]
        body = await reader.readexactly(int(length[0].split(b": ")[1])) if length else b""
        writer.close()
    assert head.startswith(b"HTTP/1.1 " + status)
    if status == b"400":
        assert body == b"Bad Request: Connection: Upgrade is required\n"


@pytest.mark.parametrize(
    "options",
    [
        SocketOptions(max_frame_bytes=32768, max_message_bytes=131072, compression=False),
        SocketOptions(
            max_frame_bytes=0,
            max_message_bytes=1000,
            compression=True,
            close_timeout=2.5,
            ping_interval=20.0,
            ping_timeout=3.0,
        ),
    ],
    ids=["defaults", "pings-and-compression"],
)
@pytest.mark.parametrize("subprotocol", [None, "chat"])
def test_the_own_response_is_built_as_its_init_builds_it(
    options: SocketOptions, subprotocol: str | None
) -> None:
    template = _websocket_template(options)
    built = _websocket_from(template, subprotocol)
    reference = _websocket(options, subprotocol)
    assert type(built) is type(reference)
    # The same attributes, set in the same order, with the same values.
    assert list(vars(built)) == list(vars(reference))
    assert vars(built) == vars(reference)
    # Only the state and the headers are mutable, and each response gets its own.
    immutable = (type(None), bool, int, float, str, tuple)
    mutable = {name for name, value in template if not isinstance(value, immutable)}
    assert mutable == {"_state", "_headers"}
    again = _websocket_from(template, subprotocol)
    assert again._state is not built._state
    assert again._headers is not built._headers


async def test_server_pings_reach_a_socket_of_the_own_path(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    server = {"ping_interval": 0.1, "ping_timeout": 5}
    async with gateway(routes=routes(_connect="record"), server=server) as gw:
        head, reader, writer = await _upgrade(gw)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert [type(req) for req in _requests_of(gw)] == [_UpgradedRequest]
        frame = await asyncio.wait_for(reader.readexactly(2), 5)
        writer.close()
    assert frame == b"\x89\x00"  # an empty ping: the heartbeat came with the template
