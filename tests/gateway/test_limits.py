"""Limits: binary 1003, frame/message size 1009, idle timeout, max duration.

As docs/compatibility.md, "Limits" and "Close codes" state them.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from bench.fuzz.wire import frame
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually


def _disconnects(app: ModuleType) -> list[tuple[int, str]]:
    return [
        (e["requestContext"]["disconnectStatusCode"], e["requestContext"]["disconnectReason"])
        for e in app.EVENTS
        if e["requestContext"]["routeKey"] == "$disconnect"
    ]


async def _closed_code(ws: websockets.ClientConnection) -> int | None:
    """Read until the server closes; return the close code it sent."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def _echo_until_closed(ws: websockets.ClientConnection) -> int | None:
    """Keep the connection busy until the server closes it; return the close code it sent."""
    try:
        while True:
            await ws.send('{"action": "echo"}')
            await ws.recv()
            await asyncio_sleep(0.05)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_binary_frame_closes_with_1003(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_disconnect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(b"\x00\x01")
            assert await _closed_code(ws) == 1003
        await eventually(lambda: _disconnects(app))
    assert _disconnects(app) == [(1003, "Binary frames are not supported")]


@pytest.mark.parametrize(
    "junk",
    [frame(0x1, b"{}", mask=False), frame(0x1, b"x", length=10**6)],
    ids=["unmasked", "oversized"],
)
async def test_binary_frame_followed_by_junk_in_one_read_closes_with_1003(
    gateway: GatewayFactory, app: ModuleType, junk: bytes
) -> None:
    """The first violation decides the code, as if each byte had come in a read of its own."""
    async with gateway(routes=routes(_disconnect="record")) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            ws.transport.write(frame(0x2, b"\x00\x01") + junk)  # one write: one server read
            assert await _closed_code(ws) == 1003
        await eventually(lambda: _disconnects(app))
    assert _disconnects(app) == [(1003, "Binary frames are not supported")]


async def test_frame_over_32kb_closes_with_1009(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_disconnect="record", _default="record")) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None) as ws:
            await ws.send("x" * (32 * 1024 + 1))
            assert await _closed_code(ws) == 1009
        await eventually(lambda: _disconnects(app))
    assert _disconnects(app) == [(1009, "Message too big")]
    assert not [e for e in app.EVENTS if e["requestContext"]["routeKey"] == "$default"]


async def test_frame_of_exactly_32kb_is_accepted(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_default={"handler": "echo", "route_response": True})) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None) as ws:
            body = "y" * (32 * 1024)
            await ws.send(body)
            assert await ws.recv() == body


async def test_fragmented_message_under_128kb_is_accepted(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_default={"handler": "echo", "route_response": True})) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None) as ws:
            fragments = ["a" * 30_000, "b" * 30_000, "c" * 30_000, "d" * 30_000]
            await ws.send(fragments)
            assert await ws.recv() == "".join(fragments)


async def test_message_over_128kb_closes_with_1009(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_disconnect="record")) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None) as ws:
            await ws.send(["e" * 30_000] * 5)  # 150,000 bytes in frames under 32 KB
            assert await _closed_code(ws) == 1009
        await eventually(lambda: _disconnects(app))
    assert _disconnects(app)[0][0] == 1009


async def test_limits_are_configurable(gateway: GatewayFactory, app: ModuleType) -> None:
    limits = {"max_frame_bytes": 200_000, "max_message_bytes": 300_000}
    async with gateway(
        routes=routes(_default={"handler": "echo", "route_response": True}), limits=limits
    ) as gw:
        async with websockets.connect(gw.websocket_url, max_size=None) as ws:
            body = "z" * 150_000
            await ws.send(body)
            assert await ws.recv() == body


async def test_idle_connection_is_closed_with_1001(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_disconnect="record"), limits={"idle_timeout": 0.3}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            assert await _closed_code(ws) == 1001
        await eventually(lambda: _disconnects(app))
    # AWS's reason for an idle close (a 2024 capture, see tests/aws/captures/README.md).
    assert _disconnects(app) == [(1001, "Going away")]


async def test_activity_postpones_the_idle_timeout(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    limits = {"idle_timeout": 0.5}
    echo = {"handler": "echo", "route_response": True}
    async with gateway(routes=routes(_disconnect="record", echo=echo), limits=limits) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            for _ in range(6):  # 6 x 0.15 s = 0.9 s of activity, longer than the timeout
                await ws.send('{"action": "echo"}')
                await ws.recv()
                await asyncio_sleep(0.15)
            assert ws.state.name == "OPEN"


async def test_max_duration_closes_with_1001(gateway: GatewayFactory, app: ModuleType) -> None:
    echo = {"handler": "echo", "route_response": True}
    async with gateway(
        routes=routes(_disconnect="record", echo=echo), limits={"max_duration": 0.4}
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            assert await _closed_code(ws) == 1001
        await eventually(lambda: _disconnects(app))
    assert _disconnects(app) == [(1001, "Maximum connection duration reached")]


async def test_activity_does_not_postpone_the_max_duration(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    limits = {"idle_timeout": 0.3, "max_duration": 0.6}
    echo = {"handler": "echo", "route_response": True}
    async with gateway(routes=routes(_disconnect="record", echo=echo), limits=limits) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            assert await _echo_until_closed(ws) == 1001
        await eventually(lambda: _disconnects(app))
    assert _disconnects(app) == [(1001, "Maximum connection duration reached")]


async def test_a_closed_connection_is_no_longer_watched_for_timeouts(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(routes=routes(_disconnect="record")) as gw:
        async with websockets.connect(gw.websocket_url):
            await eventually(lambda: len(gw.timeouts) == 1)
        await eventually(lambda: _disconnects(app))
        assert len(gw.timeouts) == 0
    assert _disconnects(app) == [(1000, "")]


async def test_timeouts_of_0_are_off(gateway: GatewayFactory, app: ModuleType) -> None:
    limits = {"idle_timeout": 0, "max_duration": 0}
    echo = {"handler": "echo", "route_response": True}
    async with gateway(routes=routes(echo=echo), limits=limits) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send('{"action": "echo"}')
            await ws.recv()
            assert len(gw.timeouts) == 0
            assert ws.state.name == "OPEN"


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)  # paces client activity; not used to wait for the server


async def test_binary_frames_can_be_allowed(gateway: GatewayFactory, app: ModuleType) -> None:
    async with gateway(routes=routes(_default="record"), limits={"allow_binary": True}) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await ws.send(b"\x00\xffbin")
            await eventually(lambda: app.EVENTS)
    event = app.EVENTS[0]
    assert event["isBase64Encoded"] is True
    assert event["body"] == "AP9iaW4="
    assert event["requestContext"]["routeKey"] == "$default"


def test_a_rate_below_one_per_second_allows_the_first_request() -> None:
    # Admission reads the clock, then makes a new IP's bucket: the bucket's stamp is later than
    # that reading, which once refilled it by a negative amount and refused every first request.
    import time

    from hubbub.gateway.limits import TokenBucket

    earlier = time.monotonic()
    bucket = TokenBucket(0.5)
    assert bucket.allow(earlier)
    assert not bucket.allow(earlier)
