"""RFC 6455 frames of a client, read without aiohttp: the frame reader of the lean transport
(:mod:`hubbub.gateway.lean_socket`).

The lean socket reads the common frame (one whole masked text frame under 126 bytes) itself;
every other read goes through a :class:`FrameReader`, made for the socket the first time one is
needed. It checks what aiohttp's parser and the frame guard of
:mod:`hubbub.gateway.frames_aiohttp` check, in the same order, with the same close codes:

- an unmasked frame, RSV1 on a control frame, any reserved bit, an unknown opcode, a fragmented
  or longer than 125 bytes control frame, a continuation without a message, a new message in
  the middle of a fragmented one, a close frame of one byte or with a code RFC 6455 does not
  allow: 1002;
- a data frame above ``max_frame`` (before its payload is buffered), a message above
  ``max_message``: 1009;
- text, or a close reason, that is not UTF-8: 1007.

Messages come out as the ``(kind, data, extra)`` tuples of :class:`~hubbub.wire.kinds.MessageKind`
(``PING``/``PONG``: :data:`PING`, :data:`PONG` with the payload).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubbub.gateway.frames_aiohttp import mask_in_place
from hubbub.wire.close import CloseCode
from hubbub.wire.kinds import MessageKind

TEXT = MessageKind.TEXT.value
BINARY = MessageKind.BINARY.value
CLOSE = MessageKind.CLOSE.value
PING = 0x9  # the opcodes (aiohttp's WSMsgType values too); never handed to the read loop
PONG = 0xA

_PROTOCOL = CloseCode.PROTOCOL_ERROR.value
_INVALID = CloseCode.INVALID_PAYLOAD.value
_TOO_BIG = CloseCode.MESSAGE_TOO_BIG.value

# Close codes below 3000 a peer may send: those aiohttp's parser allows (its WSCloseCode, 1006
# included), so a peer's close is refused exactly when it was before the lean transport.
_ALLOWED_CLOSE = frozenset(
    {1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

Sink = Callable[[int, Any, Any], None]


class FrameError(Exception):
    """A protocol error of the peer: ``code`` is the close code (as aiohttp's WebSocketError)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def unmask(mask: bytes, payload: bytes) -> bytearray:
    """``payload`` XORed with the repeated 4-byte ``mask``: aiohttp's C helper (through the
    adapter's frame module), less than half the instructions of the best pure-Python way (one
    big-integer XOR) on the common short frame."""
    data = bytearray(payload)
    mask_in_place(mask, data)
    return data


def close_message(payload: bytes | bytearray) -> tuple[int, str]:
    """The peer's close code and reason from a close frame's payload (0: no code)."""
    if not payload:
        return 0, ""
    if len(payload) == 1:
        raise FrameError(_PROTOCOL, "Invalid close frame")
    code = int.from_bytes(payload[:2], "big")
    if code < 3000 and code not in _ALLOWED_CLOSE:
        raise FrameError(_PROTOCOL, f"Invalid close code: {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(_INVALID, "Invalid UTF-8 text message") from None
    return code, reason


class FrameReader:
    """The frames of one connection, fed as they arrive in any split (see the module docstring).

    ``feed`` calls ``sink(kind, data, extra)`` for every whole message and control frame, in
    order, and raises :class:`FrameError` at the first violation (the messages before it were
    handed out). Holds at most one frame head and the payload of the current message.
    """

    __slots__ = ("_buf", "_max_frame", "_max_message", "_opcode", "_parts", "_sink", "_size")

    def __init__(self, sink: Sink, max_frame: int, max_message: int) -> None:
        self._sink = sink
        self._max_frame = max_frame
        self._max_message = max_message
        self._buf = b""  # bytes of a frame not yet whole
        self._opcode = 0  # the opcode of a fragmented message under way (0: none)
        self._parts: list[bytes | bytearray] = []  # its payloads so far
        self._size = 0  # their total size

    def feed(self, data: bytes) -> bool:
        """Read ``data``; True when nothing is left over (no part of a frame or message)."""
        buf = self._buf + data if self._buf else data
        size = len(buf)
        pos = 0
        try:
            while size - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                length = b1 & 0x7F
                header = 6
                if length == 126:
                    header = 8
                    if size - pos < 4:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                elif length == 127:
                    header = 14
                    if size - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                self._check(b0, b1, length)
                end = pos + header + length
                if end > size:
                    break
                mask = buf[pos + header - 4 : pos + header]
                self._frame(b0, unmask(mask, buf[pos + header : end]))
                pos = end
        finally:
            self._buf = buf[pos:] if pos < size else b""
        return not self._buf and not self._opcode

    def _check(self, b0: int, b1: int, length: int) -> None:
        """The checks made on a frame's head, before its payload is waited for."""
        if not b1 & 0x80:  # RFC 6455 §5.1: a server must close on an unmasked client frame
            raise FrameError(_PROTOCOL, "Unmasked client frame")
        opcode = b0 & 0x0F
        if opcode >= 0x8:
            if b0 & 0x40:  # RSV1 means "compressed" on data frames only (RFC 7692 §6.1)
                raise FrameError(_PROTOCOL, "Control frame with RSV1 set")
        elif length > self._max_frame:
            raise FrameError(_TOO_BIG, "Frame size exceeds limit")
        if b0 & 0x70:  # no extension is negotiated on a lean connection
            raise FrameError(_PROTOCOL, "Received frame with non-zero reserved bits")
        if opcode >= 0x8:
            if opcode > PONG:
                raise FrameError(_PROTOCOL, f"Unexpected opcode={opcode!r}")
            if not b0 & 0x80:
                raise FrameError(_PROTOCOL, "Received fragmented control frame")
            if length > 125:
                raise FrameError(_PROTOCOL, "Control frame payload cannot be larger than 125 bytes")
        elif opcode > BINARY:
            raise FrameError(_PROTOCOL, f"Unexpected opcode={opcode!r}")
        elif self._size + length > self._max_message:
            raise FrameError(_TOO_BIG, "Message too big")

    def _frame(self, b0: int, payload: bytes | bytearray) -> None:
        opcode = b0 & 0x0F
        fin = b0 & 0x80
        sink = self._sink
        if opcode == 0:
            if not self._opcode:
                raise FrameError(_PROTOCOL, "Continuation frame for non started message")
            if not fin:
                self._parts.append(payload)
                self._size += len(payload)
                return
            opcode = self._opcode
            payload = b"".join(self._parts) + payload
            self._opcode = 0
            self._parts = []
            self._size = 0
        elif opcode <= BINARY:
            if self._opcode:
                raise FrameError(
                    _PROTOCOL, f"The opcode in non-fin frame is expected to be zero, got {opcode!r}"
                )
            if not fin:
                self._opcode = opcode
                self._parts.append(payload)
                self._size = len(payload)
                return
        elif opcode == CLOSE:
            code, reason = close_message(payload)
            sink(CLOSE, code, reason)
            return
        else:  # PING or PONG (checked in _check)
            sink(opcode, bytes(payload), "")
            return
        if opcode == TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise FrameError(_INVALID, "Invalid UTF-8 text message") from None
            sink(TEXT, text, "")
        else:
            sink(BINARY, bytes(payload), "")
