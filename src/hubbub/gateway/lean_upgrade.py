"""The lean transport's first protocol on a public plain-TCP connection: read the request head,
answer a plain WebSocket upgrade itself, hand anything else to aiohttp unchanged.

A connection of the public listener (no TLS, no compression, no PROXY protocol) starts with a
:class:`LeanHandshake` instead of aiohttp's request handler. It counts in the listener's pending
handshakes and must send its head within the handshake timeout, as
:mod:`hubbub.gateway.http_limits` requires of every connection. When the head is a plain upgrade
to ``/{stage}`` (:func:`hubbub.gateway.lean_head.plain_upgrade`), ``$connect`` runs here and the
101 written is the one :class:`hubbub.gateway.upgrade_aiohttp._OwnUpgrade` writes; the
connection then belongs to a :class:`~hubbub.gateway.lean_socket.LeanSocket`. No aiohttp object
is made for it: that was most of what a handshake cost (docs/benchmarks.md).

Everything else is handed to aiohttp as if its request handler had read the connection from the
start: the handler the listener's factory makes gets the transport and every byte read so far.
That is any other request (static files, probes, a GET without upgrade, HEAD, POST, a head too
large, anything :func:`plain_upgrade` finds unusual), and an upgrade whose answer aiohttp shapes
itself (a refusal or error of ``$connect``, a subprotocol the client did not offer, headers
aiohttp would merge): its ``$connect`` answer goes with it (``_LimitedHandler.lean_decision``),
so ``$connect`` runs once, as on ``_OwnUpgrade``'s path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any, cast

from hubbub.gateway.lean_head import Upgrade, plain_upgrade
from hubbub.gateway.lean_socket import LeanSocket
from hubbub.gateway.transport_aiohttp import Accept, HandshakeHandler, SocketOptions
from hubbub.wire.http import Handshake, HttpResponse

log = logging.getLogger("hubbub.transport")

_TERMINATOR = b"\r\n\r\n"
# Transports whose event loop sets TCP_NODELAY on every socket it accepts (uvloop's): see
# http_limits._NODELAY_SET.
_NODELAY_SET = frozenset({"TCPTransport"})
_GET = b"GET "

Decision = Accept | HttpResponse | Exception
# The 101 for an Accept (head bytes, subprotocol), or None when aiohttp's path must answer:
# _OwnUpgrade._answer, given the request's key and offered subprotocols.
Answer = Callable[[Mapping[str, str], Accept], tuple[bytes, str | None] | None]


class LeanEntry:
    """The lean transport of one public listener: what its connections share, and the
    connections themselves (for :meth:`close`)."""

    __slots__ = (
        "_answer",
        "_on_handshake",
        "_options",
        "_path",
        "connections",
        "handed_off",
        "limits",
    )

    def __init__(
        self,
        path: str,
        on_handshake: HandshakeHandler,
        options: SocketOptions,
        limits: Any,
        answer: Answer,
    ) -> None:
        self._path = path
        self._on_handshake = on_handshake
        self._options = options
        self._answer = answer
        self.limits = limits  # the listener's http_limits.ConnectionLimits
        # Connections from accept until they end (their handshake, then their socket's life).
        self.connections: dict[LeanHandshake, None] = {}
        self.handed_off = 0  # connections given to aiohttp (tests read it)

    def factory(self, fallback: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The listener's protocol factory: a :class:`LeanHandshake` that hands a connection
        it does not take to ``fallback()`` (aiohttp's handler for the listener)."""

        def make() -> asyncio.Protocol:
            return LeanHandshake(self, fallback)

        return make

    async def close(self, timeout: float) -> None:
        """As aiohttp's shutdown: wait up to ``timeout`` for connections to end, then cancel
        what still runs and drop every connection."""
        tasks = [c._task for c in self.connections if c._task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for conn in list(self.connections):
            task = conn._task
            if task is not None and not task.done():
                task.cancel()
            if conn._transport is not None:
                conn._transport.abort()
        tasks = [task for task in tasks if not task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


class LeanHandshake(asyncio.Protocol):
    """One connection until its upgrade is answered (see the module docstring); then, for the
    socket's life, what :meth:`LeanEntry.close` finds it by."""

    __slots__ = ("_buf", "_entry", "_fallback", "_pending", "_task", "_timer", "_transport")

    def __init__(self, entry: LeanEntry, fallback: Callable[[], asyncio.Protocol]) -> None:
        self._entry = entry
        self._fallback = fallback
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods)
        self._transport = transport = cast(asyncio.Transport, transport)
        if type(transport).__name__ not in _NODELAY_SET:  # as http_limits._NoDelayAgain
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        limits = self._entry.limits
        if limits.max_pending and limits.pending >= limits.max_pending:
            self._hand_off(b"")  # aiohttp's handler answers 503 (http_limits)
            return
        limits.pending += 1
        self._pending = True
        self._entry.connections[self] = None
        if limits.header_timeout:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(limits.header_timeout, transport.close)

    def data_received(self, data: bytes) -> None:
        if self._task is not None:  # $connect runs: bytes sent ahead of the 101 wait for it
            self._buf += data
            if len(self._buf) > 2**16 and self._transport is not None:
                self._transport.pause_reading()
            return
        buf = self._buf + data if self._buf else data
        if not buf.startswith(_GET[: len(buf)]):
            self._hand_off(buf)  # not a GET: aiohttp's from the first byte
            return
        end = buf.find(_TERMINATOR)
        limit = self._entry.limits.max_header_bytes
        if end < 0:
            if limit and len(buf) > limit:
                self._hand_off(buf)  # aiohttp's handler answers 431 (http_limits)
            else:
                self._buf = buf
            return
        if limit and end + 4 > limit:
            self._hand_off(buf)
            return
        upgrade = plain_upgrade(buf[:end], self._entry._path)
        if upgrade is None:
            self._hand_off(buf)
            return
        if self._timer is not None:  # as aiohttp's: no timeout while $connect runs
            self._timer.cancel()
            self._timer = None
        self._buf = buf
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._connect(upgrade, end + 4))

    def eof_received(self) -> bool | None:
        return None  # the transport closes, as aiohttp's handler lets it

    def connection_lost(self, exc: BaseException | None) -> None:
        self._leave_pending()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None
        if self._task is None:
            self._entry.connections.pop(self, None)

    def _leave_pending(self) -> None:
        if self._pending:
            self._pending = False
            self._entry.limits.pending -= 1

    def _hand_off(self, data: bytes, decision: Decision | None = None) -> None:
        """Give the connection to aiohttp's handler, with the bytes read so far."""
        transport = self._transport
        self._leave_pending()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._entry.connections.pop(self, None)
        self._entry.handed_off += 1
        self._buf = b""
        if transport is None:
            if isinstance(decision, Accept):
                decision.gone()
            return
        handler: Any = self._fallback()
        if decision is not None:
            handler.lean_decision = decision
        transport.set_protocol(handler)
        handler.connection_made(transport)
        transport.resume_reading()
        if data and not transport.is_closing():
            handler.data_received(data)

    async def _connect(self, upgrade: Upgrade, head_size: int) -> None:
        entry = self._entry
        transport = self._transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        path, _, query = upgrade.target.partition("?")
        handshake = Handshake(
            path,
            query,
            upgrade.headers,
            str(peer[0]) if peer else "",
            port=int(local[1]) if local else 0,
            scheme="http",
        )
        decision: Decision
        try:
            decision = await entry._on_handshake(handshake)
        except Exception as exc:  # aiohttp's path raises it again, in its handler
            decision = exc
        except BaseException:  # cancelled (the listener closes)
            self._end(transport)
            raise
        del handshake
        if self._transport is None or transport.is_closing():
            if isinstance(decision, Accept):
                decision.gone()  # the client left during $connect
            self._end(transport)
            return
        answer = None
        if isinstance(decision, Accept):
            offered = {"Sec-WebSocket-Key": upgrade.key}
            if upgrade.protocols is not None:
                offered["Sec-WebSocket-Protocol"] = upgrade.protocols
            answer = entry._answer(offered, decision)
        if answer is None or not isinstance(decision, Accept):
            self._task = None
            self._hand_off(self._buf, decision)
            return
        head, _ = answer
        del answer, upgrade
        transport.write(head)
        del head
        self._leave_pending()
        rest = self._buf[head_size:]
        self._buf = b""
        sock = LeanSocket(transport, entry._options, asyncio.get_running_loop())
        transport.set_protocol(sock)
        transport.resume_reading()
        if rest:
            sock.data_received(rest)
        run = decision.run(sock)
        del decision
        try:
            await run
            await sock.close(1000, "")  # what aiohttp does once its handler returns
        except Exception:
            log.exception("Error handling request")
            transport.abort()
        except BaseException:
            transport.abort()
            raise
        finally:
            sock.release()
            self._end(transport)

    def _end(self, transport: asyncio.Transport) -> None:
        transport.close()
        self._transport = None
        self._entry.connections.pop(self, None)
