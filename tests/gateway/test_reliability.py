"""Admission limits, rate limits, keep-alive and isolation under misbehaving peers (issue 6)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually

ECHO = {"handler": "echo", "route_response": True}


async def _status(url: str, **kwargs: object) -> int:
    try:
        async with websockets.connect(url, **kwargs):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def _read_until_closed(
    ws: websockets.ClientConnection,
) -> tuple[list[str | bytes], int | None]:
    frames: list[str | bytes] = []
    try:
        while True:
            frames.append(await ws.recv())
    except ConnectionClosed as exc:
        return frames, exc.rcvd.code if exc.rcvd else None


async def test_allowed_origins(gateway: GatewayFactory) -> None:
    server = {"allowed_origins": ["https://app.example.com", "https://*.example.org"]}
    async with gateway(server=server) as gw:
        assert await _status(gw.websocket_url, origin="https://app.example.com") == 101
        assert await _status(gw.websocket_url, origin="https://x.example.org") == 101
        assert await _status(gw.websocket_url, origin="https://evil.example.net") == 403
        assert await _status(gw.websocket_url) == 101  # non-browser clients send no Origin


async def test_max_connections_answers_503(gateway: GatewayFactory) -> None:
    async with gateway(limits={"max_connections": 2}) as gw:
        first = await websockets.connect(gw.websocket_url)
        second = await websockets.connect(gw.websocket_url)
        assert await _status(gw.websocket_url) == 503
        await first.close()
        await eventually(lambda: len(gw.hub.connections) == 1)
        assert await _status(gw.websocket_url) == 101
        await second.close()


async def test_connect_rate_answers_429(gateway: GatewayFactory) -> None:
    async with gateway(limits={"connect_rate": 3}) as gw:
        statuses = [await _status(gw.websocket_url) for _ in range(8)]
    assert statuses[:3] == [101, 101, 101]
    assert 429 in statuses[3:]


async def test_connect_rate_per_ip_answers_429(gateway: GatewayFactory) -> None:
    async with gateway(limits={"connect_rate_per_ip": 2}) as gw:
        statuses = [await _status(gw.websocket_url) for _ in range(6)]
    assert statuses[:2] == [101, 101]
    assert 429 in statuses[2:]


async def test_message_rate_sends_too_many_requests_then_closes_abusers(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    async with gateway(
        routes=routes(echo=ECHO, _disconnect="record"), limits={"message_rate": 5}
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            for _ in range(40):
                await ws.send('{"action": "echo"}')
            frames, code = await _read_until_closed(ws)
            assert code == 1008
            assert any("Too Many Requests" in str(f) for f in frames)
            assert frames.count('{"action": "echo"}') >= 5
        await eventually(lambda: app.EVENTS)
    rc = app.EVENTS[-1]["requestContext"]
    assert (rc["disconnectStatusCode"], rc["disconnectReason"]) == (1008, "Message rate exceeded")


async def test_a_client_that_does_not_answer_pings_is_closed(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    server = {"ping_interval": 0.2, "ping_timeout": 0.2}
    async with gateway(server=server, routes=routes(_disconnect="record")) as gw:
        ws = await websockets.connect(gw.websocket_url, ping_interval=None)
        ws.transport.pause_reading()  # never sees the ping, never answers it
        await eventually(lambda: app.EVENTS, message="$disconnect after the ping timeout")
        ws.transport.abort()
    rc = app.EVENTS[0]["requestContext"]
    assert (rc["disconnectStatusCode"], rc["disconnectReason"]) == (1006, "Ping timeout")


async def test_a_client_that_answers_pings_stays(gateway: GatewayFactory) -> None:
    server = {"ping_interval": 0.1, "ping_timeout": 0.3}
    async with gateway(server=server, routes=routes(echo=ECHO)) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            await asyncio.sleep(0.8)  # idle on the app level for 4 ping intervals; pongs keep it
            await ws.send('{"action": "echo"}')
            assert await ws.recv() == '{"action": "echo"}'


async def test_handshake_timeout_drops_silent_tcp_clients(gateway: GatewayFactory) -> None:
    async with gateway(limits={"handshake_timeout": 0.3}) as gw:
        host, port = gw.public.host, gw.public.port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /dev HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 3
        writer.close()


async def test_oversized_headers_are_refused(gateway: GatewayFactory) -> None:
    async with gateway(limits={"max_header_bytes": 2048}) as gw:
        host, port = gw.public.host, gw.public.port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"X-Big: " + b"b" * 4096 + b"\r\n\r\n"
        )
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert response.split()[1] == b"431"  # the head is over the limit (http_limits.py)
        assert await _status(gw.websocket_url) == 101


async def test_a_route_blocking_all_its_threads_does_not_block_other_routes(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    slow = {"handler": "slow", "route_response": True}
    sync_echo = {"handler": "record_echo", "route_response": True}
    async with gateway(
        routes=routes(slow=slow, echo=sync_echo), limits={"handler_threads": 2}
    ) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            for _ in range(4):  # twice as many blocked calls as the route has threads
                await ws.send('{"action": "slow", "seconds": 2}')
            started = time.monotonic()
            await ws.send('{"action": "echo"}')
            assert await ws.recv() == '{"action": "echo"}'
            assert time.monotonic() - started < 1.0


async def test_global_invocation_cap_answers_busy_frames_and_stays_responsive(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    slow = {"handler": "async_slow", "route_response": True}
    limits = {"max_concurrent_invocations": 2, "max_invocations_per_connection": 100}
    async with gateway(routes=routes(slow=slow), limits=limits) as gw:
        async with websockets.connect(gw.websocket_url) as ws:
            for _ in range(6):  # 2 run, 2 wait in the bounded queue, 2 are refused
                await ws.send('{"action": "slow", "seconds": 0.5}')
            frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(6)]
    assert sum("Too many concurrent requests" in str(f) for f in frames) == 2
    assert frames.count("async slow done") == 4


DRAIN_HANDLER = """
import json, os
def handler(event, context):
    rc = event["requestContext"]
    if rc["routeKey"] == "$disconnect":
        with open(os.environ["EVENTS_FILE"], "a") as f:
            f.write(json.dumps([rc["connectionId"], rc["disconnectStatusCode"]]) + "\\n")
    return {"statusCode": 200}
"""


@pytest.mark.slow
async def test_sigterm_drains_1000_connections_with_1000_disconnects(tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    (tmp_path / "app.py").write_text(DRAIN_HANDLER)
    events = tmp_path / "events.jsonl"
    (tmp_path / "hubbub.toml").write_text(
        f"[server]\nport = 0\nshutdown_grace = 30\n[management]\nport = 0\ntls = false\n"
        f'[environment]\nEVENTS_FILE = "{events}"\n'
        f'[routes."$disconnect"]\nhandler = "app.handler"\n'
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubbub.cli",
            "serve",
            "--config",
            str(tmp_path / "hubbub.toml"),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[2]
    clients = []
    for _ in range(20):  # 20 waves of 50 concurrent handshakes
        clients += await asyncio.gather(*(websockets.connect(url) for _ in range(50)))
    proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 1000
    assert len({cid for cid, _ in lines}) == 1000
    assert {code for _, code in lines} == {1001}
    await asyncio.gather(*(ws.close() for ws in clients))
