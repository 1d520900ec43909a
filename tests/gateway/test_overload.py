"""Attacks from the second reliability round (issue 17): what a peer can make the gateway hold.

Each test reproduces the attack on real sockets: error frames that bypassed the send queue bound,
``$disconnect`` dropped by the invocation cap, a room join racing a close, and slow plain ``def``
authorizers holding every thread.
"""

from __future__ import annotations

import asyncio
import socket

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
    while b"\r\n\r\n" not in answer:
        chunk = await loop.sock_recv(sock, 1)  # byte by byte: leave the frames unread
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
