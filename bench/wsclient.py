"""The load generator's WebSocket clients: picows listeners with as little Python per frame as
possible, plus the three wire dialects the servers speak.

Every measured message carries a marker ``|SEQ|T|``: an 8-digit sequence number and the 19-digit
``perf_counter_ns()`` of its send, between ``|`` characters. Receivers find it with one
``bytes.find`` and two slices, whatever JSON (or Socket.IO packet) wraps it. Publisher and receivers
live in the same process, so one monotonic clock serves both ends.

Dialects:
- ``raw``: the bare peers (``{"action":"join"}`` → ``{"joined":true}``; publish; echo);
- ``hubbub``: routes ``echo``/``echoboto``/``whoami``/``publish``; joins use the management API;
- ``socketio``: Engine.IO 4 / Socket.IO 5 packets over a plain WebSocket
  (``0{...}`` open, ``40`` connect, ``42[...]`` events, ``2``/``3`` ping/pong).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

TEXT = WSMsgType.TEXT
CLOSE = WSMsgType.CLOSE
now_ns = time.perf_counter_ns

# ~96 bytes on the wire for echo, ~110 for broadcast.
ECHO_PAD = "x" * 38
PUBLISH_PAD = "y" * 48


def marker_template(action: str, pad: str) -> bytes:
    """A JSON message with a ``%08d``/``%019d`` marker, filled per send with ``% (seq, t)``."""
    return ('{"action":"%s","m":"|%%08d|%%019d|","p":"%s"}' % (action, pad)).encode()  # noqa: UP031


# What chat clients send in practice: JSON without the route selection key (``action``), so a
# gateway routes it to ``$default``; 96 bytes, the marker inside the body (padded with CHAT_PAD).
CHAT_PREFIX = '{"type":"chat.message","room":"lobby","seq":1,"body":"'
CHAT_PAD = "x" * 10


def chat_template() -> bytes:
    """A 96-byte ``chat.message`` with no ``action`` key and the marker in its body."""
    return (CHAT_PREFIX + "|%08d|%019d|" + CHAT_PAD + '"}').encode()


def echo_template(spec: dict[str, Any]) -> bytes:
    """The closed-loop message of an echo spec: ``message: "chat"`` (:func:`chat_template`),
    else ``{"action": ACTION, ...}`` with ``action`` (default ``echo``)."""
    if spec.get("message") == "chat":
        return chat_template()
    return marker_template(spec.get("action", "echo"), ECHO_PAD)


def socketio_template(event: str, pad: str) -> bytes:
    return ('42["%s",{"m":"|%%08d|%%019d|","p":"%s"}]' % (event, pad)).encode()  # noqa: UP031


def parse_marker(data: bytes) -> tuple[int, int] | None:
    """``(seq, send_ns)`` from a message carrying the marker, None for anything else."""
    i = data.find(b"|")
    if i < 0 or len(data) < i + 30:
        return None
    return int(data[i + 1 : i + 9]), int(data[i + 10 : i + 29])


class Client(WSListener):
    """Base listener: remembers its transport, answers Socket.IO pings, resolves ``waiter`` on
    control messages (anything without a marker) and counts unexpected disconnects."""

    def __init__(self, dialect: str, counters: Counters) -> None:
        super().__init__()
        self.dialect = dialect
        self.counters = counters
        self.transport: WSTransport | None = None
        self.waiter: asyncio.Future[bytes] | None = None
        self.closing = False
        self.opened = dialect != "socketio"  # Socket.IO: after the server's "40{...}"

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closing:
            self.counters.disconnects += 1
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("disconnected"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.control(transport, frame)

    def control(self, transport: WSTransport, frame: WSFrame) -> None:
        """Frames that are not measured messages: handshakes, acks, pings, closes, errors."""
        if frame.msg_type == CLOSE:
            self.closing = True
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        if frame.msg_type != TEXT:
            return
        data = frame.get_payload_as_bytes()
        if self.dialect == "socketio":
            if data == b"2":
                transport.send(TEXT, b"3")
                return
            if data.startswith(b"0{"):
                transport.send(TEXT, b"40")
                return
            if data.startswith(b"40") and not self.opened:
                self.opened = True
                if self.waiter is None:
                    return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(data)
        else:
            self.counters.unexpected += 1

    async def request(self, payload: bytes | None, timeout: float = 30.0) -> bytes:
        """Send ``payload`` (or nothing) and wait for the next control message."""
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        if payload is not None:
            assert self.transport is not None
            self.transport.send(TEXT, payload)
        try:
            return await asyncio.wait_for(self.waiter, timeout)
        finally:
            self.waiter = None

    def close(self) -> None:
        self.closing = True
        transport = self.transport
        if transport is not None and not transport.is_disconnected:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    async def ready(self) -> None:
        """Wait until the dialect's own handshake is done (Socket.IO's ``40{...}``)."""
        if not self.opened:
            reply = await self.request(None)
            if not reply.startswith(b"40"):
                raise ConnectionError(f"unexpected Socket.IO reply {reply[:40]!r}")


class Counters:
    """Error counts shared by every client of one scenario."""

    __slots__ = ("disconnects", "error_frames", "failed_connects", "timeouts", "unexpected")

    def __init__(self) -> None:
        self.disconnects = 0
        self.error_frames = 0
        self.failed_connects = 0
        self.timeouts = 0
        self.unexpected = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


class Window:
    """Measurement window shared by the clients: ``on`` while counting."""

    __slots__ = ("count", "latencies", "on")

    def __init__(self) -> None:
        self.on = False
        self.count = 0
        self.latencies: list[int] = []


async def connect(
    factory: Callable[[], Client],
    url: str,
    *,
    source_ip: str | None = None,
    read_buffer: int = 16 * 1024,
    timeout: float = 30.0,
) -> Client:
    kwargs: dict[str, Any] = {}
    if source_ip is not None:
        kwargs["local_addr"] = (source_ip, 0)
    _, listener = await ws_connect(
        factory,
        url,
        websocket_handshake_timeout=timeout,
        read_buffer_init_size=read_buffer,
        **kwargs,
    )
    assert isinstance(listener, Client)
    await listener.ready()
    return listener


async def connect_many(
    n: int,
    factory: Callable[[], Client],
    url: str,
    counters: Counters,
    *,
    concurrency: int = 200,
    source_ips: list[str] | None = None,
    read_buffer: int = 16 * 1024,
    per_ip: int = 20000,
) -> list[Client]:
    """Open ``n`` connections, ``concurrency`` handshakes at a time, spreading source addresses
    (``per_ip`` connections each) so the ephemeral port range is never exhausted."""
    sem = asyncio.Semaphore(concurrency)
    clients: list[Client] = []

    async def one(i: int) -> None:
        ip = source_ips[(i // per_ip) % len(source_ips)] if source_ips else None
        async with sem:
            try:
                clients.append(await connect(factory, url, source_ip=ip, read_buffer=read_buffer))
            except Exception:  # refused, reset, handshake timeout, non-101: all count the same
                counters.failed_connects += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return clients
