"""Attacks from the second reliability round (issue 17): what a peer can make the gateway hold.

Each test reproduces the attack on real sockets: error frames that bypassed the send queue bound,
``$disconnect`` dropped by the invocation cap, a room join racing a close, and slow plain ``def``
authorizers holding every thread.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import socket
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from hubbub.gateway.app import Gateway
from tests.gateway.conftest import GatewayFactory, routes
from tests.helpers import eventually

UPGRADE = (
    b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
# A masked text frame carrying "{}": no action, so no route (and no $default) -> Forbidden.
UNROUTED = b"\x81\x82\0\0\0\0{}"


async def _raw_client(gw: Gateway, rcvbuf: int = 0) -> socket.socket:
    """A WebSocket client on a bare non-blocking socket, past its 101."""
    assert gw.public is not None
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    if rcvbuf:  # before connect, so the window the server sees is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, (gw.public.host, gw.public.port))
    await loop.sock_sendall(sock, UPGRADE)
    answer = b""
    while b"\r\n\r\n" not in answer:  # nothing follows the 101 until we send
        chunk = await loop.sock_recv(sock, 4096)
        assert chunk, "closed during the handshake"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


async def test_error_frames_count_against_the_send_queue_of_a_peer_that_never_reads(
    gateway: GatewayFactory,
) -> None:
    # Each 8-byte message costs a ~100-byte Forbidden frame: without the bound, a peer that
    # never reads makes the server buffer 12x what it sends, until it leaves.
    limit = 64 * 1024
    async with gateway(
        routes=routes(echo="echo"), limits={"send_queue_bytes": limit, "message_rate": 0}
    ) as gw:
        loop = asyncio.get_running_loop()
        sock = await _raw_client(gw, rcvbuf=4096)
        await eventually(lambda: gw.hub.connections, message="the connection to open")
        (conn,) = gw.hub.connections.values()
        batch = UNROUTED * 1000
        most = 0
        dropped = False
        try:
            for _ in range(1500):  # up to 12 MB sent, ~150 MB of answers without the bound
                await loop.sock_sendall(sock, batch)
                await asyncio.sleep(0)
                most = max(most, conn.socket.buffered())
                if conn.id not in gw.hub.connections:
                    dropped = True
                    break
        except (ConnectionResetError, BrokenPipeError):
            dropped = True
        finally:
            sock.close()
        await eventually(lambda: not gw.hub.connections, message="the connection to go")
    assert dropped, f"never dropped; the server held {most} bytes for it"
    assert conn.close_status == (1013, "Send queue full")
    # Dropped at the first frame over the limit.
    assert most <= limit + 200


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a peer that crashed or lost its network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def _open_many(gw: Gateway, count: int, wave: int = 200) -> list[socket.socket]:
    socks: list[socket.socket] = []
    for start in range(0, count, wave):
        n = min(wave, count - start)
        socks += await asyncio.gather(*(_raw_client(gw) for _ in range(n)))
    return socks


async def test_5000_connections_reset_at_once_get_5000_disconnects_each_once(
    gateway: GatewayFactory, app: ModuleType
) -> None:
    # The cap (running + waiting) used to refuse $disconnect like any message: with 5,000 resets
    # most were logged "rejected" and never ran. Now they queue for a slot.
    count = 5000
    _raise_fd_limit(2 * count + 1000)  # both ends are in this process
    limits = {"max_concurrent_invocations": 50, "max_connections": 0}
    async with gateway(routes=routes(_disconnect="record"), limits=limits) as gw:
        socks = await _open_many(gw, count)
        await eventually(lambda: len(gw.hub.connections) == count, timeout=30)
        ids = set(gw.hub.connections)
        for sock in socks:
            _reset(sock)
        await eventually(
            lambda: len(app.EVENTS) >= count, timeout=120, message=f"{count} $disconnect"
        )
        await asyncio.sleep(0.2)  # room for duplicates to show up
        assert await gw.store.registry.count() == 0
    seen = Counter(e["requestContext"]["connectionId"] for e in app.EVENTS)
    assert set(seen) == ids
    assert set(seen.values()) == {1}


DRAIN_HANDLER = """
import asyncio, json, os
async def handler(event, context):
    rc = event["requestContext"]
    if rc["routeKey"] == "$disconnect":
        await asyncio.sleep(float(os.environ["DISCONNECT_SECONDS"]))
        with open(os.environ["EVENTS_FILE"], "a") as f:
            f.write(json.dumps([rc["connectionId"], rc["disconnectStatusCode"]]) + "\\n")
    return {"statusCode": 200}
"""


async def _serve_and_terminate(
    tmp_path: Path, clients: int, *, grace: float, seconds: float
) -> tuple[int, str, list[list[object]]]:
    """Run ``hubbub serve`` with a slow-ish $disconnect, connect ``clients``, SIGTERM it."""
    _raise_fd_limit(clients + 1000)
    (tmp_path / "app.py").write_text(DRAIN_HANDLER)
    events = tmp_path / "events.jsonl"
    (tmp_path / "hubbub.toml").write_text(
        f"[server]\nport = 0\nshutdown_grace = {grace}\n[management]\nport = 0\ntls = false\n"
        "[limits]\nmax_concurrent_invocations = 100\n"
        f'[environment]\nEVENTS_FILE = "{events}"\nDISCONNECT_SECONDS = "{seconds}"\n'
        f'[routes."$disconnect"]\nhandler = "app.handler"\n'
    )
    log = (tmp_path / "stderr.log").open("w")  # a file: a pipe nobody reads would fill up
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub.cli", "serve", "--config", str(tmp_path / "hubbub.toml")],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[2]
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    loop = asyncio.get_running_loop()

    async def one() -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, int(port)))
        await loop.sock_sendall(sock, UPGRADE)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = await loop.sock_recv(sock, 4096)
            assert chunk
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 101"), answer
        return sock

    socks: list[socket.socket] = []
    try:
        for start in range(0, clients, 200):
            socks += await asyncio.gather(*(one() for _ in range(min(200, clients - start))))
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.communicate, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        for sock in socks:
            sock.close()
        log.close()
    stderr = (tmp_path / "stderr.log").read_text()
    text = events.read_text() if events.exists() else ""
    lines = [json.loads(line) for line in text.splitlines()]
    return proc.returncode, stderr, lines


@pytest.mark.slow
async def test_sigterm_with_3000_clients_delivers_every_disconnect_and_exits_0(
    tmp_path: Path,
) -> None:
    # 3,000 clients, 100 invocation slots: the drain used to refuse 1,000 $disconnect and exit 0.
    clients = 3000
    code, stderr, lines = await _serve_and_terminate(tmp_path, clients, grace=60, seconds=0.01)
    assert code == 0, stderr[-2000:]
    assert len(lines) == clients
    assert len({cid for cid, _ in lines}) == clients
    assert {status for _, status in lines} == {1001}
    assert "rejected" not in stderr


async def test_sigterm_whose_grace_is_too_short_logs_the_undelivered_count_and_exits_1(
    tmp_path: Path,
) -> None:
    code, stderr, lines = await _serve_and_terminate(tmp_path, 40, grace=0.5, seconds=30)
    assert code == 1
    assert lines == []
    (line,) = [line for line in stderr.splitlines() if "$disconnect not delivered" in line]
    assert "undelivered=40" in line, line


def _masked_text(payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload  # a zero mask


async def test_redis_room_joins_racing_resets_leave_no_dead_members(
    gateway: GatewayFactory, redis_url: str
) -> None:
    # Rooms.join reads the connection, awaits Redis, then adds it to the hub's room: a reset in
    # between left the closed connection in the room for good (the registry was clean).
    import random

    from tests.store.redis_server import delete_prefix, unique_prefix

    count = 1500
    _raise_fd_limit(2 * count + 1000)
    prefix = unique_prefix()
    join = {"handler": "room_join"}
    store = {"url": redis_url, "key_prefix": prefix}
    loop = asyncio.get_running_loop()
    rng = random.Random(17)
    try:
        async with gateway(routes=routes(join=join), store=store) as gw:

            async def join_and_reset(i: int) -> None:
                sock = await _raw_client(gw)
                frame = _masked_text(json.dumps({"action": "join", "room": f"r{i % 7}"}).encode())
                await loop.sock_sendall(sock, frame)
                await asyncio.sleep(rng.uniform(0, 0.003))
                _reset(sock)

            for start in range(0, count, 150):
                await asyncio.gather(*(join_and_reset(i) for i in range(start, start + 150)))
            await eventually(lambda: not gw.hub.connections, timeout=30, message="all closed")
            await eventually(lambda: not gw.hub.rooms, timeout=10, message="empty rooms")
            assert not gw.hub.users
            assert await gw.store.registry.count() == 0
    finally:
        await delete_prefix(redis_url, prefix)


async def test_a_client_sending_to_100k_rooms_costs_the_memory_history_nothing(
    gateway: GatewayFactory,
) -> None:
    # With examples/rooms, one client sending to ~96,000 room names grew the server by 300 MB
    # that never went away: every room kept a history nobody could ever recover.
    import websockets

    from hubbub.store.recovery import MemoryRecovery

    say = {"handler": "room_say"}
    join = {"handler": "room_join"}
    echo = {"handler": "echo", "route_response": True}
    limits = {"max_invocations_per_connection": 1000}
    spec = routes(say=say, join=join, echo=echo)
    async with gateway(routes=spec, limits=limits, history={"ttl": 2}) as gw:
        history = gw.recovery
        assert isinstance(history, MemoryRecovery)
        async with (
            websockets.connect(gw.websocket_url) as sender,
            websockets.connect(gw.websocket_url, subprotocols=["hubbub.v1"]) as watcher,
        ):
            await watcher.recv()  # its session
            await watcher.send(json.dumps({"action": "join", "room": "watched"}))
            await eventually(lambda: history.tracks("watched"), message="the join")
            text = "x" * 100
            for start in range(0, 100_000, 500):
                for i in range(start, start + 500):
                    message = {"action": "say", "room": f"room-{i}", "text": text}
                    await sender.send(json.dumps(message))
                # The echo's answer: the server has read (and started) every message before it.
                await sender.send('{"action": "echo"}')
                assert await asyncio.wait_for(sender.recv(), 60) == '{"action": "echo"}'
                await eventually(lambda: gw.invoker.in_flight == 0, timeout=30)
            # (The watched room's empty log may be forgotten meanwhile: it has a member still.)
            assert history.rooms <= 1
            assert (history.messages, history.bytes) == (0, 0)
            for _ in range(10):
                await sender.send(json.dumps({"action": "say", "room": "watched", "text": text}))
            for _ in range(10):  # what the watcher received: only the watched room's messages
                assert json.loads(await asyncio.wait_for(watcher.recv(), 10))["room"] == "watched"
            # Only the room a recovery-enabled client joined keeps a history ...
            assert history.rooms == 1
            assert history.messages == 10
            # ... and it expires after ttl without any resume.
            await eventually(lambda: history.messages == 0, timeout=10, message="expiry")
            assert history.bytes == 0


async def test_timed_out_def_authorizers_do_not_hold_the_pool_for_legitimate_handshakes(
    gateway: GatewayFactory,
) -> None:
    # 100 slow REQUEST authorizers (sleep 30 s, timeout 3 s) made every handshake fail with 500
    # for 30 s: the timed-out calls kept all of the route's threads.
    import time

    import websockets
    from websockets.exceptions import InvalidStatus

    async def status(token: str) -> int:
        try:
            headers = {"Authorization": token}
            async with websockets.connect(gw.websocket_url, additional_headers=headers):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    authorizer = {
        "handler": "auth.slow_handler",
        "identity_source": ["route.request.header.Authorization"],
        "timeout": 1,
    }
    async with gateway(authorizer=authorizer, limits={"handler_threads": 4}) as gw:
        slow = await asyncio.gather(*(status(f"slow-{i}") for i in range(12)))
        assert set(slow) == {500}  # timed out (the handlers sleep on, in their threads)
        started = time.monotonic()
        legit = await asyncio.gather(*(status("allow") for _ in range(10)))
        assert legit == [101] * 10
        assert time.monotonic() - started < 5  # not after the slow handlers' 10 s
