"""Connection-level limits for the HTTP listeners, enforced before aiohttp has parsed a request.

aiohttp (the library :mod:`hubbub.gateway.transport_aiohttp` wraps; this module and
:mod:`hubbub.gateway.upgrade_aiohttp` are its only other users) caps single header lines and
the *number* of headers, not the size of the whole head: 120 headers of 16,000 bytes each pass,
so 300 half-sent handshakes held about 650 MB. It also arms one timer per connection for both
"send your request" and "idle between requests". Here a :class:`_LimitedHandler` sits in front
of aiohttp's parser for every connection of a listener:

- **Head size**: bytes of a request head (from the first byte after the previous request to the
  blank line ending this one) are counted as they arrive; past ``max_header_bytes`` the
  connection gets a 431 and is closed, before the parser has buffered more. Body bytes (and
  WebSocket frames after an upgrade) are not counted: they have their own limits.
- **Pending handshakes**: connections accepted but not yet upgraded to a WebSocket are counted
  per listener; at ``max_pending`` a new one is answered 503 at once and closed, so a flood of
  half-open handshakes costs at most ``max_pending`` times ``max_header_bytes``.
- **Header timeout**: a new connection must send a complete request head within
  ``header_timeout``; after a request, the connection may stay idle ``idle_timeout`` seconds
  (aiohttp's keep-alive timer, which also closes a connection whose next head is incomplete).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.tcp_helpers import tcp_nodelay
from aiohttp.web_protocol import RequestHandler

from hubbub.gateway import proxy_protocol

if TYPE_CHECKING:
    from hubbub.gateway.lean_upgrade import LeanEntry

log = logging.getLogger("hubbub.transport")

_TERMINATOR = b"\r\n\r\n"


@dataclass
class ConnectionLimits:
    """What one listener's connections may do before and between requests (0 = no limit)."""

    max_header_bytes: int
    header_timeout: float
    idle_timeout: float
    max_pending: int = 0
    # [server] proxy_protocol: peers for which this returns True must start with a PROXY
    # protocol header (hubbub.gateway.proxy_protocol); None: no connection sends one.
    proxy_from: Callable[[str], bool] | None = None
    # The public listener's own upgrade path (upgrade_aiohttp's _OwnUpgrade): given each
    # connection once its first request is parsed, it answers the common WebSocket upgrade
    # itself and hands anything else to aiohttp's request loop. None: aiohttp's loop only.
    first_request: Callable[[Any], Awaitable[None]] | None = None
    # The public listener's lean transport (hubbub.gateway.lean_upgrade): its connections
    # start with a protocol of its own, which hands aiohttp those it does not take. None: every
    # connection starts with aiohttp's handler.
    lean: LeanEntry | None = None
    # Connections of this listener accepted and not yet upgraded (or closed).
    pending: int = field(default=0, init=False)
    refused_pending: int = field(default=0, init=False)
    refused_heads: int = field(default=0, init=False)

    def rearm_matches(self, keepalive_timeout: float) -> bool:
        """Whether aiohttp's first keep-alive timer (``keepalive_timeout`` from now) is already
        the one the first head needs, so connection_made need not replace it: true on the public
        listener, where all three timeouts are the handshake timeout (a timer cancelled and armed
        again was about 1.5 % of a handshake's CPU)."""
        first = min(self.header_timeout, self.idle_timeout or self.header_timeout)
        return self.header_timeout == keepalive_timeout == first


def _response(status: str, text: str, extra: str = "") -> bytes:
    body = text.encode("utf-8")
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode("latin-1") + body


# The request queue of every upgraded connection (see _LimitedHandler.set_parser).
_NO_MESSAGES: Any = ()

# Transports whose event loop sets TCP_NODELAY on every TCP socket it accepts: uvloop's (asyncio's
# own sets it only on sockets created with proto IPPROTO_TCP, which _bind's are not).
_NODELAY_SET = frozenset({"TCPTransport"})


class _NoDelayAgain(BaseProtocol):
    """aiohttp's ``BaseProtocol.connection_made`` without setting TCP_NODELAY a second time
    where the event loop set it already (:data:`_NODELAY_SET`): aiohttp's helper makes a socket
    object and a system call per connection for it. Placed between ``RequestHandler`` and
    ``BaseProtocol`` in :class:`_LimitedHandler`'s bases, so aiohttp's ``connection_made``
    reaches this one."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if type(transport).__name__ not in _NODELAY_SET:
            tcp_nodelay(transport, True)  # type: ignore[arg-type]
        self.transport = transport  # type: ignore[assignment]


class _LimitedHandler(RequestHandler, _NoDelayAgain):
    """aiohttp's per-connection protocol, with the limits of :class:`ConnectionLimits`."""

    __slots__ = (
        "_body",
        "_carry",
        "_counted",
        "_limits",
        "_pending",
        "_proxy_buffer",
        "_refused",
        "lean_decision",
        "proxied",
    )

    def __init__(self, manager: web.Server, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._counted = 0  # bytes of the current request head so far
        self._carry = b""  # the last bytes of the previous read: a terminator may straddle reads
        self._body: Any = None  # the payload of the last request, while its body arrives
        self._pending = False
        self._refused = False
        self._proxy_buffer: bytes | None = None  # a PROXY header still expected: its bytes
        self.proxied: tuple[str, int] | None = None  # the client the PROXY header named
        # The $connect answer the lean transport got for this connection's upgrade request and
        # left to aiohttp's path (see upgrade_aiohttp._OwnUpgrade.decided).
        self.lean_decision: Any = None

    # -- pending handshakes -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._limits
        if limits.max_pending and limits.pending >= limits.max_pending:
            self._refused = True
            limits.refused_pending += 1
            if limits.refused_pending == 1 or limits.refused_pending % 1000 == 0:
                log.warning(
                    "too many pending handshakes: refusing new connections",
                    extra={
                        "fields": {"max": limits.max_pending, "refused": limits.refused_pending}
                    },
                )
            assert isinstance(transport, asyncio.Transport)
            transport.write(
                _response(
                    "503 Service Unavailable",
                    "Service Unavailable: too many pending handshakes\n",
                    "Retry-After: 1\r\n",
                )
            )
            transport.close()
            return
        limits.pending += 1
        self._pending = True
        if limits.proxy_from is not None:
            peer = transport.get_extra_info("peername")
            if peer and limits.proxy_from(str(peer[0])):
                self._proxy_buffer = b""
        super().connection_made(transport)
        if (
            limits.header_timeout
            and self._keepalive_handle is not None
            and not limits.rearm_matches(self._keepalive_timeout)
        ):
            # aiohttp armed its keep-alive timer (idle_timeout) for the first request: the
            # first head gets header_timeout instead (the timer closes an incomplete one too).
            # It fires at the earlier of the two: aiohttp moves the deadline after a response
            # but re-arms only a timer that is not pending, and one that fires early re-arms
            # itself for the deadline.
            self._keepalive_handle.cancel()
            now = self._loop.time()
            self._next_keepalive_close_time = now + limits.header_timeout
            first = min(limits.header_timeout, limits.idle_timeout or limits.header_timeout)
            self._keepalive_handle = self._loop.call_at(now + first, self._process_keepalive)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._leave_pending()
        if self._refused and self._task_handler is None:
            return  # refused in connection_made: aiohttp never saw this connection
        super().connection_lost(exc)

    def set_parser(self, parser: Any, data_received_cb: Any = None) -> None:
        # Called by aiohttp when the 101 is written: the handshake is over. From now on every
        # read is WebSocket frames, which need none of the above: the connection becomes an
        # _UpgradedHandler (same layout), whose reads go straight to aiohttp's data_received
        # without a call of ours in between (that is the per-message hot path).
        self._leave_pending()
        super().set_parser(parser, data_received_cb)
        self.__class__ = _UpgradedHandler
        # aiohttp keeps its HTTP parser for the connection's whole life, but an accepted upgrade
        # never parses HTTP again (its reads go to the payload parser; aiohttp checks for None
        # where it could still touch it): about 0.8 KB less per open connection.
        self._parser = None
        if not self._messages:
            # Likewise its queue of parsed requests (a deque, 0.6 KB even when empty): after an
            # accepted upgrade aiohttp only tests it for emptiness and length, never appends.
            self._messages = _NO_MESSAGES

    def _leave_pending(self) -> None:
        if self._pending:
            self._pending = False
            self._limits.pending -= 1

    # -- the first request ---------------------------------------------------------------------
    async def start(self) -> None:
        first_request = self._limits.first_request
        if first_request is None:
            await super().start()
            return
        # aiohttp's own wait for a request (RequestHandler.start begins with it): a connection
        # closed or timed out before one cancels the wait, and this task ends as aiohttp's does.
        if not self._force_close and not self._messages:
            try:
                self._waiter = self._loop.create_future()
                await self._waiter
            finally:
                self._waiter = None
        await first_request(self)

    # -- head size ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._proxy_buffer is not None:
            rest = self._proxy_header(data)
            if not rest:
                return
            data = rest
        if self._payload_parser is not None or self._upgraded:
            super().data_received(data)  # WebSocket frames, or bytes after an upgrade request
            return
        requests = self._request_count
        body = self._body
        if body is not None and not body.is_eof():
            super().data_received(data)  # the rest of a request body: not counted
            self._after_feed(data, requests, -1, in_body=True)
            return
        limit = self._limits.max_header_bytes
        end = (self._carry + data).find(_TERMINATOR)
        head_end = end + 4 - len(self._carry) if end >= 0 else -1  # in data
        if limit and self._counted + (head_end if end >= 0 else len(data)) > limit:
            self._refuse_head(limit)
            return
        super().data_received(data)
        self._after_feed(data, requests, head_end, in_body=False)

    def _after_feed(self, data: bytes, requests: int, head_end: int, *, in_body: bool) -> None:
        """Bookkeeping after aiohttp parsed ``data``: ``requests`` is its request count before,
        ``head_end`` where the head we saw ends in ``data`` (-1: none)."""
        if self._parser is None:  # closed meanwhile
            return
        if self._request_count != requests:
            # A request head was complete: count the next one from zero. Bytes after it in
            # this read are its body or, when it has none, the start of a pipelined next head.
            # (After a body ends, the rest of that read is not counted: at most one read.)
            payload = self._messages[-1][1] if self._messages else None
            self._body = payload
            no_body = payload is None or payload.is_eof()
            self._counted = len(data) - head_end if no_body and head_end >= 0 else 0
            self._carry = b""
        elif not in_body:
            self._counted += len(data)
            self._carry = (self._carry + data)[-3:]

    def _proxy_header(self, data: bytes) -> bytes:
        """Consume the PROXY header a trusted peer sends first; the bytes after it."""
        assert self._proxy_buffer is not None
        buffered = self._proxy_buffer + data
        try:
            header = proxy_protocol.parse(buffered)
        except proxy_protocol.ProxyHeaderError as exc:
            self._refused = True
            log.info("refused a connection from a trusted proxy: %s", exc)
            if self.transport is not None:
                self.transport.write(_response("400 Bad Request", f"Bad Request: {exc}\n"))
            self.force_close()
            return b""
        if header is None:
            self._proxy_buffer = buffered
            return b""
        self._proxy_buffer = None
        if header.source is not None:
            self.proxied = (header.source, header.source_port or 0)
        return buffered[header.length :]

    def _refuse_head(self, limit: int) -> None:
        self._refused = True
        self._limits.refused_heads += 1
        transport = self.transport
        if transport is not None:
            transport.write(
                _response(
                    "431 Request Header Fields Too Large",
                    f"Request Header Fields Too Large: the request head exceeds {limit} bytes\n",
                )
            )
        self.force_close()


class _UpgradedHandler(_LimitedHandler):
    """A :class:`_LimitedHandler` after its upgrade to a WebSocket: aiohttp's reads again."""

    __slots__ = ()

    data_received = RequestHandler.data_received


class LimitedSite(web.SockSite):
    """A :class:`aiohttp.web.SockSite` whose connections are :class:`_LimitedHandler`\\ s."""

    __slots__ = ("_limits",)

    def __init__(self, runner: web.BaseRunner, sock: Any, limits: ConnectionLimits, **kw: Any):
        super().__init__(runner, sock, **kw)
        self._limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        limits = self._limits
        # aiohttp's Server builds RequestHandler(server, loop=..., **handler_args); so do we.
        # SO_KEEPALIVE is set once on the listening socket, which every accepted socket
        # inherits, instead of by aiohttp on each connection (a socket object and a system
        # call per handshake).
        kwargs = {**server._kwargs, "loop": server._loop}
        if kwargs.get("tcp_keepalive", True) and hasattr(socket, "SO_KEEPALIVE"):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            kwargs["tcp_keepalive"] = False

        def factory() -> _LimitedHandler:
            return _LimitedHandler(server, limits, **kwargs)

        protocol: Callable[[], asyncio.Protocol] = factory
        if limits.lean is not None and self._ssl_context is None:
            protocol = limits.lean.factory(factory)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
        )
