"""The transport adapter: the gateway's use of the WebSocket/HTTP server library (aiohttp), with
its helpers :mod:`hubbub.gateway.upgrade_aiohttp` (the public listener's upgrade),
:mod:`hubbub.gateway.frames_aiohttp` (reading frames) and :mod:`hubbub.gateway.http_limits` (the
limits on a connection before its request is parsed).

Everything above it speaks in :class:`Socket` and the plain types of :mod:`hubbub.wire`
(:class:`~hubbub.wire.http.Handshake`, :class:`~hubbub.wire.http.HttpRequest`,
:class:`~hubbub.wire.http.HttpResponse`, :class:`~hubbub.wire.kinds.MessageKind`), so the library
can be swapped (picows, websockets) by rewriting this file and those helpers.
tests/gateway/test_transport_boundary.py checks that no other server module imports aiohttp.
Elsewhere in the package aiohttp is a *client*: the HTTP integration
(:mod:`hubbub.integrations.http`) calls handler URLs with it, and the Python client
(:mod:`hubbub.client`) connects with it.

Two things here go beyond aiohttp's public surface, both measured or required by the AWS contract:

- **Writes bypass aiohttp's writer.** A text frame is built once
  (:func:`hubbub.wire.frames.frame_text`) and written with ``transport.write`` to every recipient:
  no per-recipient framing, no per-recipient ``await`` (docs/benchmarks.md measures the fan-out).
  The kernel buffer plus asyncio's transport buffer are the per-connection send queue;
  :meth:`Socket.buffered` exposes its size so the hub can close a slow consumer instead of
  letting memory grow.
- **A frame-size guard.** AWS closes with 1009 when one *frame* exceeds 32 KB even if the message
  stays under 128 KB; aiohttp only limits whole messages. :class:`_FrameGuard` sits in front of
  aiohttp's parser and reads frame headers only (a few integer operations per frame); it and the
  per-message read path live in :mod:`hubbub.gateway.frames_aiohttp`.

The public listener and its WebSocket upgrade (aiohttp's path and hubbub's own) live in
:mod:`hubbub.gateway.upgrade_aiohttp`, which builds on this module. The limits on a connection
before its request is parsed (the size of a whole request head,
pending handshakes, the header and idle timeouts) live in :mod:`hubbub.gateway.http_limits`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, ClassVar

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_websocket import WebSocketError, WebSocketReader

from hubbub.aws.ids import new_request_id
from hubbub.aws.management import error_body
from hubbub.gateway.frames_aiohttp import _DirectQueue, _FastReader, _FrameGuard
from hubbub.gateway.http_limits import ConnectionLimits, LimitedSite
from hubbub.wire.frames import is_text
from hubbub.wire.http import Handshake, HttpHandler, HttpRequest, HttpResponse

log = logging.getLogger("hubbub.transport")


@dataclass(slots=True)
class Accept:
    """Accept the upgrade: extra 101 headers, then ``run(socket)`` owns the socket until it ends.

    If the client is gone before the 101 is written, ``gone()`` is called instead of ``run``.
    """

    run: Callable[[Socket], Awaitable[None]]
    gone: Callable[[], None]
    headers: dict[str, str] = field(default_factory=dict)
    subprotocol: str | None = None


HandshakeHandler = Callable[[Handshake], Awaitable[Accept | HttpResponse]]


_os_write = os.write
# Transports that write the socket's bytes as they are (no TLS layer in between): only theirs can
# be written to by file descriptor. uvloop's, then asyncio's own.
_PLAIN_TRANSPORTS = frozenset({"TCPTransport", "UnixTransport", "_SelectorSocketTransport"})


def _plain_fd(transport: asyncio.BaseTransport) -> int:
    """The file descriptor :meth:`Socket.broadcast` may write to directly, or -1.

    Only for a plain TCP (or Unix) transport: behind TLS the descriptor carries ciphertext.
    Asked for by :class:`Recipients` (:meth:`Socket.direct_fd`), not at the handshake: uvloop
    makes the socket object it hands out with a ``getsockname`` system call, and keeps it for
    the connection's life.
    """
    if type(transport).__name__ not in _PLAIN_TRANSPORTS:
        return -1
    if transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else -1


_FD_UNKNOWN = -2  # Socket._fd not looked up yet


class Socket:
    """One open WebSocket. ``write`` is synchronous and never waits for the peer."""

    # ``compressed``: permessage-deflate was negotiated, so frames must be built per socket
    # (:meth:`send`). A plain attribute, not a property: every reply reads it.
    __slots__ = ("_fd", "_transport", "_ws", "compressed")

    # How many closing handshakes sockets that count them (``counts_closes``) have begun in this
    # process: a socket that begins one while its transport stays open (waiting for the peer's
    # close frame) must get no more frames, and Recipients.all_open need only look again once
    # this has moved.
    closes_begun: ClassVar[int] = 0
    counts_closes: ClassVar[bool] = False

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        self._ws = ws
        self._transport = transport
        self.compressed = bool(ws.compress)
        self._fd = _FD_UNKNOWN  # see direct_fd

    def direct_fd(self) -> int:
        """The descriptor :meth:`broadcast` writes to directly, or -1 (:func:`_plain_fd`),
        looked up once: only sockets that join a room or a user ever need it."""
        fd = self._fd
        if fd == _FD_UNKNOWN:
            fd = self._fd = _plain_fd(self._transport)
        return fd

    def receive(self) -> Awaitable[tuple[int, Any, Any]]:
        """Next message as ``(kind, data, extra)``, ``kind`` a
        :class:`~hubbub.wire.kinds.MessageKind`: TEXT/BINARY data, CLOSE code + reason, ERROR
        exception, CLOSED when the TCP connection is gone.

        Hands out aiohttp's own awaitable (a WSMessage is a (type, data, extra) tuple): a
        coroutine of ours around it would cost a frame per message. Only a socket with
        permessage-deflate takes a checked path (``receive_inflated``).
        """
        ws = self._ws
        if self.compressed and isinstance(ws, _HubbubWebSocketResponse):
            return ws.receive_inflated()
        return ws.receive()

    def deliver_to(self, on_text: Callable[[Any, str], None] | None, owner: Any) -> bool:
        """Hand text messages to ``on_text(owner, text)`` as the transport parses them, while
        the socket's reader waits in :meth:`receive` with nothing queued (else they queue as
        usual, so the order holds). False when this socket cannot (permessage-deflate, whose
        messages take :meth:`receive`'s checked path; a client that sent frames before the
        101). ``deliver_to(None, None)`` stops it. ``on_text`` must not raise: what it does is
        the read loop's work, done without its task (see :class:`_DirectQueue`).
        """
        queue = self._ws._reader
        if not isinstance(queue, _DirectQueue):
            return False
        queue.on_text = on_text
        queue.owner = owner
        # On plain TCP the common frame is read without aiohttp's protocol (_FastReader).
        transport = self._transport
        current = transport.get_protocol()
        if on_text is None:
            # (A closed transport keeps it: _FastReader passes connection_lost on.)
            if isinstance(current, _FastReader) and not transport.is_closing():
                transport.set_protocol(current._inner)
        elif transport.get_extra_info("sslcontext") is None:
            guard = getattr(current, "_payload_parser", None)
            if isinstance(guard, _FrameGuard) and guard._queue is queue:
                transport.set_protocol(_FastReader(current, guard, queue))
        return True

    @property
    def writable(self) -> bool:
        return not self._ws.closed and not self._transport.is_closing()

    def write(self, frame: bytes) -> None:
        """Write a pre-built frame (see :func:`hubbub.wire.frames.frame_text`)."""
        self._transport.write(frame)

    def offer(self, frame: bytes) -> int:
        """Write a pre-built frame if :attr:`writable`; return the bytes then :meth:`buffered`,
        or -1 when the socket was not writable (nothing written).

        One call for what a reply needs, where :attr:`writable`, :meth:`write` and
        :meth:`buffered` would be three (it reads aiohttp's ``_closed``, as :meth:`broadcast`).
        """
        transport = self._transport
        if self._ws._closed or transport.is_closing():
            return -1
        transport.write(frame)
        return transport.get_write_buffer_size()

    @staticmethod
    def broadcast(
        recipients: Recipients, frame: bytes, limit: int, skip: Socket | None = None
    ) -> tuple[int, list[Socket]]:
        """Write one pre-built frame to every writable socket of ``recipients`` but ``skip``.

        Returns how many were written to, and those whose send queue (:meth:`buffered`) is then
        above ``limit`` bytes: the caller's slow consumers. Never awaits.

        This is the fan-out hot loop. Per socket it reads only what :class:`Recipients` laid out
        beforehand; it allocates one list per send, of the bytes each write took.

        When every transport is open and holds nothing, and no socket has begun its closing
        handshake (the usual case), the frame goes straight to each descriptor with
        ``os.write``, called from C over the whole list (:func:`_write_each`) instead of once
        per socket from a Python loop, skipping the transports' buffer bookkeeping (though
        ``os.write`` releases the GIL). Order is kept because the transport is empty: what the
        kernel does not take (a partial write, ``EAGAIN``) is handed to the transport, which
        writes from then on. Those states are checked on every send, not cached: a transport
        can close, or queue a frame of its own (a pong, the close frame), between two sends
        without the hub hearing of it. An open transport (``is_closing()`` false) still owns
        its descriptor, so the number cannot belong to another connection; any other error is
        left to the transport's ``write`` to meet again and report as it always does.

        The closing-handshake check reads each socket's ``_closed`` (aiohttp's, behind its
        ``closed`` property: test_room_send_skips_a_member_whose_closing_handshake_has_begun
        guards the name). Where every socket is lean, it is skipped while no lean socket has
        begun to close since the last send found them all open (:attr:`Socket.closes_begun`).
        Otherwise each socket is checked in turn, in the order laid out.
        """
        direct = recipients.direct
        queued = recipients.queued
        fds = recipients.fds
        if skip is not None:
            try:
                at = recipients.sockets.index(skip)
            except ValueError:
                pass
            else:
                direct = direct[:at] + direct[at + 1 :]
                fds = fds[:at] + fds[at + 1 :]
            if skip in queued:
                queued = [sock for sock in queued if sock is not skip]
        count = len(direct) + len(queued)
        missed = 0
        over: list[Socket] = []
        size = len(frame)
        kind = recipients.kind
        transports = recipients.transports
        if (
            kind is not None
            and not any(map(kind.is_closing, transports))
            and not any(map(kind.get_write_buffer_size, transports))
            and (recipients.open_since == Socket.closes_begun or recipients.all_open())
        ):
            # Every transport open and empty: checked in two passes that call the transport's
            # methods from C (map), not one call each from a loop. Writing changes no other
            # transport's state, so the answers hold throughout.
            sent = _write_each(fds, frame)
            if sum(sent) != size * len(sent):  # some write was partial or failed
                for (_, transport, _, sock), taken in zip(direct, sent, strict=True):
                    if taken != size:
                        transport.write(frame[taken:] if taken else frame)  # after what was sent
                        if transport.get_write_buffer_size() > limit:
                            over.append(sock)
            direct = []
        write = _os_write
        for ws, transport, fd, sock in direct:
            if ws._closed or transport.is_closing():
                missed += 1
            elif transport.get_write_buffer_size() == 0:
                try:
                    taken = write(fd, frame)
                except OSError:
                    taken = 0
                if taken != size:
                    transport.write(frame[taken:] if taken else frame)
                    if transport.get_write_buffer_size() > limit:
                        over.append(sock)
            else:
                transport.write(frame)  # after what the transport holds
                if transport.get_write_buffer_size() > limit:
                    over.append(sock)
        for sock in queued:
            transport = sock._transport
            if sock._ws._closed or transport.is_closing():
                missed += 1
                continue
            transport.write(frame)
            if transport.get_write_buffer_size() > limit:
                over.append(sock)
        return count - missed, over

    async def send(self, payload: bytes) -> None:
        """Send through the library's writer (per-socket framing, used with compression); text
        or binary as :func:`hubbub.wire.frames.frame_message` decides."""
        await self._ws.send_frame(payload, WSMsgType.TEXT if is_text(payload) else WSMsgType.BINARY)

    def buffered(self) -> int:
        """Bytes written but not yet accepted by the kernel."""
        return self._transport.get_write_buffer_size()

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame and wait (bounded by aiohttp's close timeout) for the peer's."""
        try:
            await self._ws.close(code=code, message=reason.encode("utf-8")[:123])
        except (ConnectionError, RuntimeError):  # peer already gone
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self._transport.abort()

    async def ping(self) -> None:
        await self._ws.ping()

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code


def _write_each(fds: list[int], frame: bytes) -> list[int]:
    """``os.write(fd, frame)`` to each descriptor in turn, called from C; the bytes each took,
    0 where the write raised (``EAGAIN``, or an error the transport's own write meets again).

    ``list.extend`` keeps what it appended before the iterator raised
    (tests/gateway/unit/test_broadcast.py checks it), so the writes that raised are counted and the
    rest go on after each.
    """
    sent: list[int] = []
    rest = fds
    while True:
        try:
            sent.extend(map(_os_write, rest, repeat(frame)))
        except OSError:
            sent.append(0)
            rest = fds[len(sent) :]
        else:
            return sent


class Recipients:
    """A fixed set of sockets laid out for :meth:`Socket.broadcast`, built once and reused for
    every send until the set changes (the hub keeps one per room in
    :class:`hubbub.gateway.hub.Members`).

    ``direct`` holds, per socket written by descriptor, the ``(WebSocketResponse, transport,
    descriptor, socket)`` a send reads, so a loop over it unpacks one tuple instead of
    following three attributes; ``transports``, ``fds`` and ``sockets`` each one column of it,
    for the passes made over all of them at once; ``queued`` the other sockets (TLS and other
    transports that are not plain TCP), written through their transport. Only facts fixed for
    a socket's life are laid out here; whether it can be written to right now is checked on
    every send.
    """

    __slots__ = ("direct", "fds", "kind", "lean", "open_since", "queued", "sockets", "transports")

    def __init__(self, sockets: Iterable[Socket]) -> None:
        self.direct: list[tuple[web.WebSocketResponse, asyncio.Transport, int, Socket]] = []
        self.queued: list[Socket] = []
        for sock in sockets:
            fd = sock._fd
            if fd == _FD_UNKNOWN:
                fd = sock.direct_fd()
            if fd >= 0:
                self.direct.append((sock._ws, sock._transport, fd, sock))
            else:
                self.queued.append(sock)
        self.transports = [entry[1] for entry in self.direct]
        self.fds = [entry[2] for entry in self.direct]
        self.sockets = [entry[3] for entry in self.direct]
        # The one class of every transport in ``direct`` (uvloop's or asyncio's), whose methods
        # Socket.broadcast maps over ``transports``; None when they are mixed.
        kinds = {type(transport) for transport in self.transports}
        self.kind: type[asyncio.Transport] | None = kinds.pop() if len(kinds) == 1 else None
        # Every socket in ``direct`` counts its closing handshakes in Socket.closes_begun (a
        # lean socket does; aiohttp closes its own without telling).
        self.lean = all(sock.counts_closes for sock in self.sockets)
        # Socket.closes_begun when all_open last found every socket open (-1: not yet).
        self.open_since = -1

    def all_open(self) -> bool:
        """Whether no socket in ``direct`` has begun its closing handshake; remembered in
        ``open_since`` where every socket counts its closes."""
        for entry in self.direct:
            if entry[0]._closed:
                return False
        if self.lean:
            self.open_since = Socket.closes_begun
        return True


_BAD_DEFLATE = "Invalid compressed data"


def _byte_size(data: str | bytes, limit: int) -> int:
    """The UTF-8 size of a message, encoding only when its length cannot decide against
    ``limit`` (a character is 1 to 4 bytes)."""
    if isinstance(data, bytes) or len(data) > limit or len(data) * 4 <= limit:
        return len(data)
    return len(data.encode("utf-8"))


class _HubbubWebSocketResponse(web.WebSocketResponse):
    """Adds the frame guard right after aiohttp installs its parser."""

    def __init__(
        self, *, max_frame: int, max_message: int, pong_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        # aiohttp declares _closed on its class and sets it on the instance only once closed;
        # an instance attribute from the start lets Python 3.11 specialise Socket.broadcast's
        # read of it (same value, same meaning).
        self._closed = False
        self._max_frame = max_frame
        self._max_message = max_message
        if self._heartbeat is not None:
            # aiohttp waits heartbeat/2 for the pong; hubbub makes it its own setting.
            self._pong_heartbeat = pong_timeout

    async def receive_inflated(self) -> tuple[int, Any, Any]:
        """``receive()`` on a socket with permessage-deflate, with the two checks aiohttp gets
        wrong there: an inflated message one byte over the limit passes its check (it allows
        ``max_msg_size``, one more than hubbub's limit, after inflating), and data that does not
        inflate surfaces as a bare ``zlib.error`` (closed 1000 by :meth:`close` without the
        fix there). Both become the close codes RFC 6455 §7.4.1 names: 1009 and 1007."""
        msg = await self.receive()
        kind, data = msg[0], msg[1]
        if kind in (WSMsgType.TEXT, WSMsgType.BINARY):
            if _byte_size(data, self._max_message) > self._max_message:
                problem = WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, "Message too big")
                await self.close(code=problem.code, message=b"Message too big")
                return WSMsgType.ERROR, problem, None
        elif kind == WSMsgType.ERROR and isinstance(data, zlib.error):
            return WSMsgType.ERROR, WebSocketError(WSCloseCode.INVALID_TEXT, _BAD_DEFLATE), None
        return msg

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        # aiohttp closes with its default 1000 when inflating failed (any exception other than
        # its own WebSocketError): data that does not inflate is 1007 (RFC 6455 §7.4.1).
        if code == WSCloseCode.OK and isinstance(self._exception, zlib.error):
            code, message = WSCloseCode.INVALID_TEXT, _BAD_DEFLATE.encode()
        return await super().close(code=code, message=message, drain=drain)

    def release_reader(self) -> None:
        """Break the reference cycles of a response whose connection's session is over, so it
        is freed as its last reference goes rather than left to the cyclic garbage collector:

        - with the :class:`_DirectQueue` it reads from (see :meth:`_DirectQueue.release`);
        - with the exception aiohttp kept when its close frame could not be written (a client
          that drops the TCP connection without a close frame): that exception's traceback
          holds the frames of ``close()`` and ``receive()``, whose ``self`` is this response.
          Only ``close()`` reads it (above), and the session has closed the socket.
        """
        reader = self._reader
        if isinstance(reader, _DirectQueue):
            reader.release()
        self._exception = None

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        proto = request.protocol
        if proto._message_tail or self._compress:
            # Bytes that came with the upgrade request (frames sent before the 101) are parsed
            # as aiohttp's set_parser installs its queue and parser, so those stay aiohttp's;
            # so do a compressed socket's (its messages take receive_inflated's checks).
            super()._post_start(request, protocol, writer)
        else:
            # aiohttp's _post_start, with the queue of _DirectQueue (built once, not replaced
            # after aiohttp built its own: a queue and a parser fewer per handshake).
            self._ws_protocol = protocol
            self._writer = writer
            self._reset_heartbeat()
            assert self._loop is not None  # set by prepare() before _post_start
            queue = _DirectQueue(proto, DEFAULT_CHUNK_SIZE, loop=self._loop)
            queue.on_text = None
            queue.owner = None
            queue.ws = self
            self._reader = queue
            self._parser = WebSocketReader(
                queue, self._max_msg_size, compress=False, decode_text=self._decode_text
            )
            received = None if self._heartbeat is None else self._on_data_received
            proto.set_parser(self._parser, data_received_cb=received)
            proto.keep_alive(False)  # as aiohttp: no HTTP keep-alive for a WebSocket
        parser = proto._payload_parser
        if parser is not None and self._max_frame:
            proto._payload_parser = _FrameGuard(parser, self._reader, self._max_frame)


@dataclass(frozen=True)
class SocketOptions:
    max_frame_bytes: int
    max_message_bytes: int
    compression: bool
    close_timeout: float = 5.0
    ping_interval: float = 0.0  # 0 = no server pings
    ping_timeout: float = 20.0
    handshake_timeout: float = 10.0
    max_pending_handshakes: int = 0  # 0 = no cap


class Listener:
    """A bound TCP listener serving one aiohttp application."""

    def __init__(
        self, runner: web.AppRunner, sock: socket.socket, limits: ConnectionLimits
    ) -> None:
        self._runner = runner
        self._sock = sock
        self.limits = limits  # and the counts of what they refused
        host, port = sock.getsockname()[:2]
        self.host: str = host
        self.port: int = port

    async def stop_accepting(self) -> None:
        """Close the listening socket; established connections keep running."""
        for site in list(self._runner.sites):
            await site.stop()

    async def close(self) -> None:
        server = self._runner.server
        connections = server.connections if server is not None else []
        transports = [c.transport for c in connections if c.transport is not None]
        lean = self.limits.lean
        if lean is None:
            await self._runner.cleanup()
        else:  # its connections are not aiohttp's: closed alongside, with the same timeout
            await asyncio.gather(self._runner.cleanup(), lean.close(0.5))
        self._sock.close()  # ours: aiohttp's cleanup stops serving but we created the socket
        # Cleanup closes each connection gracefully. Over TLS that sends close_notify and keeps
        # the socket open until the peer answers, and an idle keep-alive client (a boto3 client
        # kept between invocations) never does: abort what is still open, or its socket outlives
        # the listener.
        for transport in transports:
            transport.abort()


def _bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Worker processes (hubbub.workers) each listen on the same port; the kernel
            # spreads new connections over their sockets.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        # A port in use is a normal start-up error (the caller names the key): the socket
        # must not be left for the garbage collector to close with a ResourceWarning.
        sock.close()
        raise
    return sock


def _headers(request: web.BaseRequest) -> tuple[tuple[str, str], ...]:
    # raw_headers keeps the case the client sent; API Gateway events do too.
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)


def _split_path(raw: str) -> tuple[str, str]:
    path, _, query = raw.partition("?")
    return path, query


async def start_http(
    *,
    host: str,
    port: int,
    handler: HttpHandler,
    max_body: int,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
    max_header_bytes: int = 16384,
    header_timeout: float = 10.0,
    idle_timeout: float = 60.0,
) -> Listener:
    """Serve every path and method of an HTTP API through one ``handler``.

    With ``ssl_context`` the listener speaks HTTPS (the management API's TLS listener).
    ``reuse_port`` (both here and in :func:`hubbub.gateway.upgrade_aiohttp.start_public`) lets
    other processes listen on the same port too (SO_REUSEPORT, Linux): the workers of
    ``hubbub serve --workers``.
    A connection must send each request (head and body) within ``header_timeout`` seconds of
    starting it, and is closed after ``idle_timeout`` seconds without one (0 = no limit).
    """

    async def entry(request: web.Request) -> web.Response:
        raw_path, query = _split_path(request.raw_path)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        try:
            async with asyncio.timeout(header_timeout or None):
                body = await request.read()
        except TimeoutError:
            # A body that stops arriving would hold the connection (and the head) forever.
            timed_out = web.Response(
                status=408,
                content_type="application/json",
                text='{"message": "Request Timeout: the body did not arrive in time"}',
            )
            # Written now, then the connection closed: aiohttp would otherwise linger, reading
            # the rest of the body for another 10 s.
            await timed_out.prepare(request)
            await timed_out.write_eof()
            request.protocol.force_close()
            return timed_out
        except web.HTTPRequestEntityTooLarge:
            # The AWS model caps PostToConnection at 128 KB; answer in its error shape.
            return web.Response(
                status=413,
                headers={
                    "x-amzn-ErrorType": "PayloadTooLargeException",
                    "x-amzn-RequestId": new_request_id(),
                },
                content_type="application/json",
                body=error_body("PayloadTooLargeException", "Request body too large"),
            )
        req = HttpRequest(
            method=request.method,
            raw_path=raw_path,
            query_string=query,
            headers=_headers(request),
            body=body,
            remote=str(peer[0]) if peer else "",
        )
        response = await handler(req)
        return web.Response(status=response.status, headers=response.headers, body=response.body)

    # Bodies larger than this are refused before they are read into memory; one byte more than
    # the largest legal post so the API, not aiohttp, answers "exactly 128 KB + 1".
    limits = ConnectionLimits(
        max_header_bytes=max_header_bytes, header_timeout=header_timeout, idle_timeout=idle_timeout
    )
    app = web.Application(
        client_max_size=max_body + 1024, handler_args=_limits(max_header_bytes, idle_timeout)
    )
    # [\s\S]: decoded paths may contain newlines (%0A), which the API must answer, not 404.
    app.router.add_route("*", r"/{tail:[\s\S]*}", entry)
    return await _serve(app, host, port, limits, ssl_context=ssl_context, reuse_port=reuse_port)


class _PeerFaultFilter(logging.Filter):
    """aiohttp logs a traceback at ERROR for every malformed request a client sends. Those are
    the peer's faults, answered with a 400 (or a client that left): keep them at DEBUG without
    the traceback. Anything else stays an error: it is ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError | ConnectionError):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        if not log.isEnabledFor(logging.DEBUG):
            record.exc_info = None
        return log.isEnabledFor(logging.DEBUG)


_peer_log = logging.getLogger("hubbub.transport.peer")
_peer_log.addFilter(_PeerFaultFilter())


def _limits(max_header_bytes: int, keepalive_timeout: float) -> dict[str, Any]:
    # The whole head is http_limits' to check (it counts bytes before aiohttp parses them, so
    # it refuses a long line first); aiohttp's line limits stay as a second line of defence.
    # aiohttp's keep-alive timer is the idle timeout.
    return {
        "max_field_size": max_header_bytes,
        "max_line_size": max_header_bytes,
        "keepalive_timeout": keepalive_timeout,
        "logger": _peer_log,
    }


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    limits: ConnectionLimits,
    *,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> Listener:
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=0.5,
    )
    await runner.setup()
    try:
        sock = _bind(host, port, reuse_port=reuse_port)
    except BaseException:
        await runner.cleanup()
        raise
    try:
        site = LimitedSite(runner, sock, limits, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        raise
    return Listener(runner, sock, limits)
