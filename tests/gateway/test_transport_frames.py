"""Close codes at the frame level that aiohttp gets wrong (issue 17, item 11), on raw sockets.

An inflated message of exactly the limit + 1 byte passed; data that does not inflate closed with
1000; a ping with RSV1 set on a permessage-deflate socket was answered with a pong.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from types import ModuleType

import pytest

from bench.fuzz.wire import Peer, frame, upgrade_request
from hubbub.gateway.app import Gateway
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually

LIMIT = 1000
LIMITS = {"max_frame_bytes": LIMIT, "max_message_bytes": LIMIT}
ECHO = {"handler": "echo", "route_response": True}


def _deflate(data: bytes) -> bytes:
    """One message compressed as permessage-deflate sends it (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


async def _open(gw: Gateway, *, deflate: bool) -> Peer:
    request = upgrade_request(random.Random(7), b"127.0.0.1", gw.config.api.stage)
    if deflate:
        request.headers.append((b"Sec-WebSocket-Extensions", b"permessage-deflate"))
    assert gw.public is not None
    peer = await Peer.open(gw.public.host, gw.public.port)
    await peer.send(request.render())
    status, headers = await peer.read_head()
    assert status == 101
    assert ("permessage-deflate" in headers.get("sec-websocket-extensions", "")) == deflate
    return peer


async def _closed(peer: Peer) -> tuple[int | None, list[bytes]]:
    """The close code the server sent, and the text frames before it."""
    return await asyncio.wait_for(peer.read_until_close(), 5)


def _disconnect_codes(app: ModuleType) -> list[int]:
    return [
        e["requestContext"]["disconnectStatusCode"]
        for e in app.EVENTS
        if e["requestContext"]["routeKey"] == "$disconnect"
    ]


async def test_an_inflated_message_of_exactly_the_limit_is_accepted(
    gateway: GatewayFactory,
) -> None:
    server = {"compression": True}
    async with gateway(server=server, limits=LIMITS, routes=routes(_default=ECHO)) as gw:
        peer = await _open(gw, deflate=True)
        await peer.send(frame(0x1, _deflate(b"a" * LIMIT), rsv=4))
        reply = await asyncio.wait_for(peer.read_frame(), 5)
        assert reply is not None
        assert reply[0] == 0x1  # the echo, not a close
        await peer.close()


async def test_an_inflated_message_one_byte_over_the_limit_closes_1009(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    server = {"compression": True}
    spec = routes(_default=ECHO, _disconnect="record")
    async with gateway(server=server, limits=LIMITS, routes=spec) as gw:
        peer = await _open(gw, deflate=True)
        await peer.send(frame(0x1, _deflate(b"a" * (LIMIT + 1)), rsv=4))
        code, texts = await _closed(peer)
        assert (code, texts) == (1009, [])
        await peer.close()
        await eventually(lambda: _disconnect_codes(app))
    assert _disconnect_codes(app) == [1009]


async def test_a_multibyte_message_is_measured_in_bytes(gateway: GatewayFactory) -> None:
    server = {"compression": True}
    async with gateway(server=server, limits=LIMITS, routes=routes(_default=ECHO)) as gw:
        text = ("é" * (LIMIT // 2) + "a").encode()  # 501 characters, 1001 bytes
        peer = await _open(gw, deflate=True)
        await peer.send(frame(0x1, _deflate(text), rsv=4))
        code, _ = await _closed(peer)
        assert code == 1009
        await peer.close()


async def test_data_that_does_not_inflate_closes_1007(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    server = {"compression": True}
    async with gateway(server=server, routes=routes(_disconnect="record")) as gw:
        peer = await _open(gw, deflate=True)
        await peer.send(frame(0x1, b"\xff\xfe\xfd this is not deflate data", rsv=4))
        code, texts = await _closed(peer)
        assert (code, texts) == (1007, [])
        await peer.close()
        await eventually(lambda: _disconnect_codes(app))
    assert _disconnect_codes(app) == [1007]


@pytest.mark.parametrize("deflate", [True, False])
@pytest.mark.parametrize("split", [False, True])
async def test_a_ping_with_rsv1_closes_1002(
    gateway: GatewayFactory, deflate: bool, split: bool
) -> None:
    async with gateway(server={"compression": True}) as gw:
        peer = await _open(gw, deflate=deflate)
        ping = frame(0x9, b"hi", rsv=4)
        if split:  # the header straddles two reads: the slow path sees it
            await peer.send_chunks(ping, [1], delay=0.05)
        else:
            await peer.send(ping)
        code, _ = await _closed(peer)
        assert code == 1002
        await peer.close()


async def test_a_plain_ping_is_still_answered(gateway: GatewayFactory) -> None:
    async with gateway(server={"compression": True}) as gw:
        peer = await _open(gw, deflate=True)
        await peer.send(frame(0x9, b"hi"))
        assert await asyncio.wait_for(peer.read_frame(), 5) == (0xA, b"hi")
        await peer.close()
