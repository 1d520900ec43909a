"""One open WebSocket of the lean transport: its protocol on the transport and the
:class:`~hubbub.gateway.transport_aiohttp.Socket` the gateway uses, in one object.

:mod:`hubbub.gateway.lean_upgrade` makes one after writing a 101 itself. What aiohttp's
``WebSocketResponse``, its request handler, writer, reader and queue do per connection is done
here in a few slots, with the same outward behaviour (the messages ``receive`` hands out, the
close frames written, the close codes the read loop records):

- the common frame is read right here (one masked text frame under 126 bytes, as
  :class:`~hubbub.gateway.frames_aiohttp._FastReader` does); every other read goes through a
  :class:`~hubbub.gateway.lean_frames.FrameReader`, made the first time one is needed;
- text goes straight to the handler :meth:`deliver_to` set while the read loop waits with
  nothing queued, else to the queue :meth:`receive` reads, as with aiohttp;
- a ping is answered at once (after the messages queued before it); a close frame is answered
  with a close 1000 (as aiohttp's autoclose) and the TCP connection closed; a protocol error is
  answered with a close frame carrying its code, once the read loop reaches it;
- keep-alive: with ``ping_interval`` the server pings a connection it heard nothing from for
  that long, and drops it (1006, ``TimeoutError``) when nothing arrives within ``ping_timeout``.

:class:`~hubbub.gateway.transport_aiohttp.Recipients` lays a socket out as ``(socket._ws,
transport, fd, socket)`` and the fan-out loop reads ``_ws._closed``: a lean socket is its own
``_ws`` while open (and a closed stand-in after, so no reference cycle outlives it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from hubbub.gateway.lean_frames import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameReader,
    unmask,
)
from hubbub.gateway.transport_aiohttp import _FD_UNKNOWN, Socket, SocketOptions
from hubbub.wire.frames import frame_message
from hubbub.wire.kinds import MessageKind

log = logging.getLogger("hubbub.transport")

_CLOSING = (MessageKind.CLOSING.value, None, None)
_CLOSED = (MessageKind.CLOSED.value, None, None)
_ERROR = MessageKind.ERROR.value
_NORMAL_CLOSE = b"\x88\x02\x03\xe8"  # close 1000, no reason: aiohttp's answer to a peer's close
_PING = b"\x89\x00"
_QUEUE_HIGH = 2**16  # queued payload bytes above which reading pauses (aiohttp's queue limit)


def _control(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


class _Gone:
    """What a lean socket's ``_ws`` is once its connection is over (see the module docstring)."""

    __slots__ = ()
    _closed = True


_GONE = _Gone()


class LeanSocket(Socket, asyncio.Protocol):
    """An open WebSocket on a plain-TCP transport (see the module docstring)."""

    counts_closes = True  # _mark_closed counts in Socket.closes_begun

    __slots__ = (
        "_alive",
        "_close_code",
        "_close_wait",
        "_closed",
        "_closing",
        "_drain",
        "_end",
        "_failed",
        "_heard",
        "_loop",
        "_on_text",
        "_options",
        "_owner",
        "_paused",
        "_queue",
        "_queued",
        "_reader",
        "_timer",
        "_waiter",
    )

    def __init__(
        self, transport: asyncio.Transport, options: SocketOptions, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._ws = self  # type: ignore[assignment]  # see the module docstring
        self._transport = transport
        self._fd = _FD_UNKNOWN
        self.compressed = False
        self._options = options
        self._loop = loop
        self._closed = False  # a close frame was written, or the connection is gone
        self._closing = False  # the peer's close frame arrived, or we are closing
        self._alive = True  # the TCP connection is up
        self._close_code: int | None = None
        self._close_wait: asyncio.Future[None] | None = None
        self._failed: FrameError | None = None  # a protocol error waiting in the queue
        # What receive() hands out once the queue is empty and nothing more will come.
        self._end: tuple[int, Any, Any] | None = None
        self._reader: FrameReader | None = None
        self._queue: deque[tuple[int, Any, Any]] | None = None
        self._queued = 0  # payload bytes in the queue
        self._waiter: asyncio.Future[None] | None = None
        self._on_text: Callable[[Any, str], None] | None = None
        self._owner: Any = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._heard = True  # something arrived since the last keep-alive tick
        self._timer: asyncio.TimerHandle | None = None
        if options.ping_interval:
            self._timer = loop.call_later(options.ping_interval, self._tick)

    # -- reading ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._heard = True
        on_text = self._on_text
        if (
            on_text is not None
            and len(data) > 6
            and data[0] == 0x81
            and self._reader is None
            and not self._queue
            and self._waiter is not None
            and not self._closed
        ):
            length = data[1] ^ 0x80  # the payload length, when the mask bit is set
            if length < 126 and len(data) == 6 + length and length <= self._options.max_frame_bytes:
                try:
                    text = unmask(data[2:6], data[6:]).decode("utf-8")
                except UnicodeDecodeError:
                    pass  # the reader's path closes with 1007
                else:
                    try:
                        on_text(self._owner, text)
                    except Exception:
                        log.exception("handling a message failed")
                    return
        if self._failed is not None or not self._alive:
            return  # nothing after a protocol error is read
        reader = self._reader
        if reader is None:
            options = self._options
            reader = self._reader = FrameReader(
                self._message, options.max_frame_bytes, options.max_message_bytes
            )
        try:
            if reader.feed(data):
                self._reader = None  # it holds nothing: the common frame is read here again
        except FrameError as exc:
            # Kept (the read loop gets it) without its traceback: its frames refer back to this
            # socket, a cycle only the collector would free.
            exc.__traceback__ = exc.__context__ = None
            self._failed = exc
            self._transport.pause_reading()
            self._put((_ERROR, exc, None), 0)
            wait = self._close_wait
            if wait is not None and not wait.done():  # our close() need not wait any longer
                wait.set_result(None)

    def _message(self, kind: int, data: Any, extra: Any) -> None:
        """One message or control frame from the reader."""
        if kind == TEXT:
            if self._closed:
                return  # we are closing: what arrives meanwhile is dropped, as aiohttp does
            on_text = self._on_text
            if on_text is not None and not self._queue and self._waiter is not None:
                try:
                    on_text(self._owner, data)
                except Exception:
                    log.exception("handling a message failed")
                return
            self._put((kind, data, extra), len(data))
        elif kind == BINARY:
            if not self._closed:
                self._put((kind, data, extra), len(data))
        elif kind == PING:
            if self._queue:  # answered in order, once the read loop reaches it (as aiohttp)
                self._put((kind, data, extra), 0)
            elif not self._closed:
                self._transport.write(_control(PONG, data))
        elif kind == PONG:
            pass  # _heard is set: that is all a pong is for
        else:  # CLOSE
            self._closing = True
            wait = self._close_wait
            if wait is not None:  # our close() waits for this answer
                self._close_code = data
                if not wait.done():
                    wait.set_result(None)
                return
            if not self._closed:
                self._mark_closed()
                self._close_code = data
                self._transport.write(_NORMAL_CLOSE)
                self._transport.close()
            self._end = _CLOSING
            self._put((CLOSE, data, extra), 0)

    def _put(self, message: tuple[int, Any, Any], size: int) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(message)
        if size:
            self._queued += size
            if self._queued > _QUEUE_HIGH and self._alive:
                self._transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> tuple[int, Any, Any]:
        """The next message as aiohttp's ``receive`` hands it out (see :class:`Socket`)."""
        while True:
            queue = self._queue
            if not queue:
                end = self._end
                if end is not None:
                    return end
                waiter = self._waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    self._waiter = None
                continue
            message = queue.popleft()
            kind = message[0]
            if kind in (TEXT, BINARY):
                self._queued -= len(message[1])
                if self._queued <= _QUEUE_HIGH // 2 and self._failed is None and self._alive:
                    self._transport.resume_reading()
            elif kind == PING:
                if not self._closed:
                    self._transport.write(_control(PONG, message[1]))
                continue
            elif kind == _ERROR:
                exc = message[1]
                if isinstance(exc, FrameError):
                    # aiohttp answers with a close frame of the error's code and drops the
                    # connection (its reader fails again while it waits for the peer's close).
                    self._close_code = exc.code
                    self._end = _CLOSING
                    if not self._closed:
                        self._mark_closed()
                        self._closing = True
                        self._transport.write(_close_frame(exc.code, ""))
                    self._transport.close()
            return message

    def deliver_to(self, on_text: Callable[[Any, str], None] | None, owner: Any) -> bool:
        self._on_text = on_text
        self._owner = owner
        return True

    # -- writing ------------------------------------------------------------------------------
    @property
    def writable(self) -> bool:
        return not self._closed and not self._transport.is_closing()

    def offer(self, frame: bytes) -> int:
        transport = self._transport
        if self._closed or transport.is_closing():
            return -1
        transport.write(frame)
        return transport.get_write_buffer_size()

    async def send(self, payload: bytes) -> None:
        if self._closed or self._transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        self._transport.write(frame_message(payload))
        if self._paused:
            drain = self._drain
            if drain is None:
                drain = self._drain = self._loop.create_future()
            await drain

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    def _mark_closed(self) -> None:
        """No data frame may be written from now on: the one place ``_closed`` becomes true, so
        that Socket.broadcast hears of it (Socket.closes_begun)."""
        self._closed = True
        Socket.closes_begun += 1

    async def close(self, code: int, reason: str) -> None:
        """A close frame, then the peer's (at most ``close_timeout``), then the TCP close."""
        if self._closed:
            return
        self._mark_closed()
        if self._end is None:
            self._end = _CLOSING
        transport = self._transport
        if not self._alive or transport.is_closing():
            self._close_code = 1006
            transport.close()
            return
        transport.write(_close_frame(code, reason))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            # The read loop waits: it gets CLOSING (aiohttp's WS_CLOSING_MESSAGE).
            waiter.set_result(None)
        if self._closing:  # the peer's close came first
            transport.close()
            return
        wait = self._close_wait = self._loop.create_future()
        try:
            async with asyncio.timeout(self._options.close_timeout or None):
                await wait
        except TimeoutError:
            self._close_code = 1006
        finally:
            self._close_wait = None
            self._closing = True
            transport.close()

    async def ping(self) -> None:
        if not self._closed:
            self._transport.write(_PING)

    @property
    def close_code(self) -> int | None:
        return self._close_code

    # -- keep-alive and the end ---------------------------------------------------------------
    def _tick(self) -> None:
        """Every ``ping_interval``: ping a connection that was silent since the last tick."""
        options = self._options
        if self._heard:
            self._heard = False
            self._timer = self._loop.call_later(options.ping_interval, self._tick)
            return
        if self._closed:
            self._timer = None
            return
        self._transport.write(_PING)
        self._timer = self._loop.call_later(options.ping_timeout, self._pong_due)

    def _pong_due(self) -> None:
        if self._heard:  # a pong, or anything else: the peer is there
            self._heard = False
            self._timer = self._loop.call_later(self._options.ping_interval, self._tick)
            return
        self._timer = None
        if self._closed:
            return
        # As aiohttp: the connection is dropped without a close frame (1006), and a read loop
        # waiting gets the TimeoutError.
        self._mark_closed()
        self._close_code = 1006
        self._end = _CLOSED
        self._transport.close()
        self._put((_ERROR, TimeoutError("No PONG received"), None), 0)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._alive = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._close_code is None:
            self._close_code = 1006
        if self._end is None:
            self._end = _CLOSED
        wait = self._close_wait
        if wait is not None and not wait.done():
            wait.set_result(None)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        drain = self._drain
        if drain is not None and not drain.done():
            self._drain = None
            drain.set_exception(ConnectionResetError("Connection lost"))
            drain.exception()  # retrieved: nobody may be waiting
        self._reader = None

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def release(self) -> None:
        """The session is over: drop what refers back to it (see the module docstring)."""
        self._ws = _GONE  # type: ignore[assignment]
        self._on_text = None
        self._owner = None


def _close_frame(code: int, reason: str) -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    return bytes((0x88, len(payload))) + payload
