"""How an open WebSocket's frames are read: the part of the aiohttp adapter
(:mod:`hubbub.gateway.transport_aiohttp`) that runs per frame and per message.

- :class:`_FrameGuard` sits in front of aiohttp's parser and reads frame headers only: a data
  frame above ``max_frame`` closes with 1009 before its payload is buffered (AWS limits frames,
  aiohttp only whole messages), an unmasked frame with 1002.
- :class:`_DirectQueue` is aiohttp's message queue with a shortcut: while the read loop waits and
  nothing is queued, a text message goes straight to the handler set by
  :meth:`Socket.deliver_to <hubbub.gateway.transport_aiohttp.Socket.deliver_to>`.
- :class:`_FastReader` reads the common frame of a plain-TCP connection itself and hands every
  other frame to aiohttp's parser.
- :meth:`_FrameGuard._answer_close` answers the common close frame of a socket whose reader
  waits as aiohttp's ``receive()`` would, without the parser and ``close()`` on the way.

tests/gateway/test_transport_boundary.py lists this module with the adapter: both may import
aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType
from aiohttp._websocket.helpers import websocket_mask
from aiohttp._websocket.reader import WebSocketDataQueue
from aiohttp.http_websocket import WebSocketError
from aiohttp.web import WebSocketResponse

log = logging.getLogger("hubbub.transport")

_WS_TEXT = WSMsgType.TEXT

# aiohttp's C helper that unmasks a payload in place, for the lean transport's frame reader
# (hubbub.gateway.lean_frames), which imports nothing of aiohttp itself.
mask_in_place: Callable[[bytes, bytearray], None] = websocket_mask


class _Released:
    """What a released :class:`_DirectQueue` refers to instead of its response: a socket that is
    closing and whose reader does not wait, so the shortcut's checks refuse it without a check
    of their own (``on_text`` is None by then anyway)."""

    __slots__ = ()
    _waiting = False
    _closing = True
    _closed = True


_RELEASED = _Released()


class _DirectQueue(WebSocketDataQueue):
    """aiohttp's message queue of one socket, with a shortcut for text messages.

    aiohttp's parser puts each message in this queue, and the read loop's ``receive()`` takes it
    out: per message a future, a task wake-up and a ``receive()`` call, about a third of bare
    aiohttp's own instructions per echo. When the reader waits in ``receive()`` with nothing
    queued (so no earlier message is still pending) and the socket is not closing, a text
    message goes straight to ``on_text`` instead, set by :meth:`Socket.deliver_to`. Every other
    kind (close, ping, errors, binary) and every message that would overtake another takes the
    queue. The parser's checks (message size, UTF-8, the frame guard in front of it) have run
    before ``feed_data``.
    """

    __slots__ = ("on_text", "owner", "ws")
    on_text: Callable[[Any, str], None] | None
    owner: Any
    # The response whose reader this is: it holds this queue (``_reader``), so the two form a
    # cycle until :meth:`release` breaks it (_RELEASED from then on).
    ws: WebSocketResponse | _Released

    def feed_data(self, data: Any, size: int) -> None:
        on_text = self.on_text
        if on_text is not None and data[0] is _WS_TEXT and not self._buffer:
            ws = self.ws
            if ws._waiting and not ws._closing:
                try:
                    on_text(self.owner, data[1])
                except Exception:  # the parser calls this where an exception would be lost
                    log.exception("handling a message failed")
                return
        super().feed_data(data, size)

    def release(self) -> None:
        """The connection is over: drop the shortcut and the reference back to the response.

        Without this the response and its queue refer to each other, and every connection would
        leave them (with the request, the writer and the protocol's buffers they hold) to the
        cyclic garbage collector instead of freeing them as its last reference goes. Frames that
        still arrive take aiohttp's path (the parser puts them in the queue, which nobody reads).
        """
        self.on_text = None
        self.owner = None
        self.ws = _RELEASED


class _FastReader(asyncio.Protocol):
    """The protocol of an open plain-TCP WebSocket whose text messages go to
    :meth:`Socket.deliver_to`: it reads the common frame itself and hands everything else to
    aiohttp's protocol (``inner``), which it stands in for on the transport.

    The common read is one whole masked, unfragmented text frame under 126 bytes, read while
    the parser holds nothing (the frame guard has no frame half passed and saw no fragment),
    nothing is queued and the reader waits in ``receive()``: the same checks aiohttp's parser
    and the frame guard would make, and
    the message goes where :class:`_DirectQueue` would send it, without aiohttp's
    ``data_received``, the guard, the parser and the queue on the way. Text that is not valid
    UTF-8 takes the parser's path too (1007, as before).
    """

    __slots__ = ("_guard", "_inner", "_queue")

    def __init__(self, inner: Any, guard: _FrameGuard, queue: _DirectQueue) -> None:
        self._inner = inner
        self._guard = guard
        self._queue = queue

    def data_received(self, data: bytes) -> None:
        queue = self._queue
        on_text = queue.on_text
        if on_text is not None and len(data) > 6 and data[0] == 0x81 and not queue._buffer:
            length = data[1] ^ 0x80  # the payload length, when the mask bit is set
            ws = queue.ws
            guard = self._guard
            if (
                length < 126
                and len(data) == 6 + length
                and length <= guard._max_frame
                and not guard._skip  # the parser holds no part of a frame or message
                and not guard._head
                and not guard._fragmented
                and ws._waiting
                and not ws._closing
            ):
                payload = bytearray(data[6:])
                websocket_mask(data[2:6], payload)
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    pass
                else:
                    inner = self._inner
                    if inner._force_close or inner._close:
                        return
                    if inner._data_received_cb is not None:  # aiohttp's heartbeat
                        inner._data_received_cb()
                    try:
                        on_text(queue.owner, text)
                    except Exception:
                        log.exception("handling a message failed")
                    return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: BaseException | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


# The close codes aiohttp's parser accepts below 3000 (its ALLOWED_CLOSE_CODES, built the same way):
# a close frame with another code takes the parser's path, which closes with 1002.
_ALLOWED_CLOSE_CODES = frozenset(int(code) for code in WSCloseCode)
# What aiohttp's close() writes when receive() answers a client's close frame: code 1000, no reason.
_CLOSE_REPLY = b"\x88\x02\x03\xe8"
_WS_CLOSE = WSMsgType.CLOSE
_feed_queue = WebSocketDataQueue.feed_data  # past _DirectQueue's text shortcut


# What _FrameGuard.feed_data answers for a close frame it answered itself: the parser's answer
# when it took a frame without error.
_ANSWERED = (False, b"")

# _FrameGuard._skip once a frame was refused: never a real count, and non-zero, so the fast path
# (which tests ``not self._skip``) needs no check of its own.
_REFUSED = -1


class _FrameGuard:
    """Feeds aiohttp's WebSocket parser, refusing what it does not check itself: a data frame
    above ``max_frame`` (1009, before its payload is buffered) and an unmasked frame (1002).

    Only frame headers are read: per chunk it walks from one header to the next by the declared
    payload length. A header split across chunks is kept in ``_head`` until complete.

    The frames before a refused one still reach the parser first, so the close code is the one
    a byte-by-byte delivery would give: the first violation wins (a binary frame followed by an
    unmasked one closes with 1003, not 1002). Nothing after a refused frame is parsed.
    """

    __slots__ = ("_fragmented", "_head", "_inner", "_max_frame", "_queue", "_skip")

    def __init__(self, inner: Any, queue: Any, max_frame: int) -> None:
        self._inner = inner
        self._queue = queue
        self._max_frame = max_frame
        self._skip = 0  # payload bytes of the current frame still to pass through
        self._head = b""
        # A frame without FIN went through: the parser may hold part of a message from then on
        # (for _FastReader, which only reads frames when the parser holds nothing).
        self._fragmented = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        # The common read: exactly one whole masked frame under 126 bytes, nothing carried over
        # from the last read. Deciding that takes a few comparisons instead of the walk in _scan.
        size = len(data)
        if size > 5 and not self._skip and not self._head:
            length = data[1] ^ 0x80  # the payload length, when the mask bit is set
            # (data[0] & 0x48 != 0x48: not a control frame with RSV1, which _scan refuses)
            if (
                length < 126
                and size == 6 + length
                and length <= self._max_frame
                and data[0] & 0x48 != 0x48
            ):
                if not data[0] & 0x80:
                    self._fragmented = True
                elif data[0] == 0x88 and self._answer_close(data, length):
                    return _ANSWERED
                fast: tuple[bool, bytes] = self._inner.feed_data(data)
                return fast
        if self._skip == _REFUSED:  # the rest of the stream follows a refused frame: drop it
            return True, b""
        refusal = self._scan(data)
        if refusal is not None:
            self._refuse(data, *refusal)
            return True, b""
        result: tuple[bool, bytes] = self._inner.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def _answer_close(self, data: bytes, length: int) -> bool:
        """Answer ``data``, one whole masked close frame, as aiohttp would; False when it must
        take aiohttp's path (and nothing was done).

        Taken only when the socket's reader waits in ``receive()`` with nothing queued, nothing
        is half parsed (the caller saw no carried-over bytes, and no fragment ever passed) and
        the payload is one the parser accepts: an allowed code and a UTF-8 reason, or empty.
        Then it does what the parser, ``receive()`` and its ``close(drain=False)`` do for it,
        in their order: the CLOSE message (code 0 when empty, as the parser's) goes to the
        queue for ``receive()`` to return, the close code is set, heartbeats stop, the reply
        (1000, no reason) is written and the transport closed. When ``receive()`` takes the
        message it sets the same close code again and finds the socket closed, as when a
        ``close()`` raced it. A refused code (1002), a reason that is not UTF-8 (1007), a
        one-byte payload (1002) and every other case are the parser's to answer.
        """
        queue = self._queue
        if type(queue) is not _DirectQueue or self._fragmented:
            return False
        ws = queue.ws
        if (
            not ws._waiting  # receive() is not the reader (close() reads the queue itself)
            or ws._closing
            or ws._closed
            or queue._buffer  # a message is queued: this one must not overtake it
            or queue._stalled_reader is not None
            or queue.is_eof()  # the queue has ended, or holds the parser's error
        ):
            return False
        assert isinstance(ws, WebSocketResponse)
        writer = ws._writer
        if (
            writer is None
            or writer.transport.is_closing()
            or ws._exception is not None
            or not ws._autoclose  # (hubbub's sockets all close automatically)
        ):
            return False
        if length == 0:
            code, reason = 0, ""
        elif length == 1:
            return False
        else:
            payload = bytearray(data[6:])
            websocket_mask(data[2:6], payload)
            code = payload[0] << 8 | payload[1]
            if code < 3000 and code not in _ALLOWED_CLOSE_CODES:
                return False
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                return False
        _feed_queue(queue, WSMessage(_WS_CLOSE, code, reason), 0)
        ws._set_closing(code)  # type: ignore[arg-type]  # (aiohttp's own value: an int)
        ws._set_closed()
        writer.transport.write(_CLOSE_REPLY)
        writer._closing = True
        ws._parser = None  # as close() leaves it
        ws._close_transport()
        return True

    def _refuse(self, data: bytes, problem: WebSocketError, start: int) -> None:
        """Refuse the frame starting at ``data[start]``, after parsing the frames before it."""
        self._skip = _REFUSED
        # The parser queues those frames' messages ahead of the error (the queue hands out its
        # messages before its exception). If the parser failed on one of them, or on an earlier
        # read, it answers True and its error stands. (It takes an empty read as a no-op.)
        if not self._inner.feed_data(data[:start])[0]:
            self._queue.set_exception(problem)

    def _scan(self, data: bytes) -> tuple[WebSocketError, int] | None:
        """Walk the frame headers in ``data``; the protocol error to close with, if any, and
        where in ``data`` the refused frame starts (0 if it started in an earlier read)."""
        size = len(data)
        carried = len(self._head)  # bytes of an earlier read, already passed to the parser
        if carried:
            data = self._head + data
            size = len(data)
            self._head = b""
        elif self._skip >= size:
            self._skip -= size
            return None
        pos = self._skip
        self._skip = 0
        while pos < size:
            if size - pos < 2:
                self._head = data[pos:]
                return None
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            header = 2 + (4 if b1 & 0x80 else 0)
            if length == 126:
                header += 2
                if size - pos < header:
                    self._head = data[pos:]
                    return None
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                header += 8
                if size - pos < header:
                    self._head = data[pos:]
                    return None
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            elif size - pos < header:
                self._head = data[pos:]
                return None
            if not b1 & 0x80:  # RFC 6455 §5.1: a server must close on an unmasked client frame
                problem = WebSocketError(WSCloseCode.PROTOCOL_ERROR, "Unmasked client frame")
                return problem, max(0, pos - carried)
            if b0 & 0x48 == 0x48:
                # RSV1 means "compressed" only on data frames (RFC 7692 §6.1); on a control
                # frame it has no meaning, so §5.2 says fail. aiohttp ignores it there.
                problem = WebSocketError(WSCloseCode.PROTOCOL_ERROR, "Control frame with RSV1 set")
                return problem, max(0, pos - carried)
            if (b0 & 0x0F) < 0x8 and length > self._max_frame:
                problem = WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, "Frame size exceeds limit")
                return problem, max(0, pos - carried)
            if not b0 & 0x80:
                self._fragmented = True
            end = pos + header + length
            if end > size:
                self._skip = end - size
                return None
            pos = end
        return None
