"""Server-to-client WebSocket frames, built once and written to many sockets (RFC 6455 §5.2).

Frames are built here rather than by the WebSocket library so one room message costs one framing
however many members it has (the transport adapter writes the same bytes to every socket).
"""

from __future__ import annotations

import struct

_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack


#: The two header bytes of an unmasked, final text frame of each payload length under 126,
#: made once: a frame of a short reply looks its header up instead of building it.
SHORT_TEXT_HEADS = tuple(bytes((0x81, n)) for n in range(126))


def frame_text(payload: bytes) -> bytes:
    """An unmasked, unfragmented server-to-client text frame (RFC 6455 §5.2).

    ``payload`` must be UTF-8 (§5.6); for bytes of unknown content use :func:`frame_message`.
    """
    n = len(payload)
    if n < 126:
        return SHORT_TEXT_HEADS[n] + payload
    if n < 65536:
        return _PACK_16(0x81, 126, n) + payload
    return _PACK_64(0x81, 127, n) + payload


def _frame(first: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _PACK_16(first, 126, n) + payload
    return _PACK_64(first, 127, n) + payload


def is_text(payload: bytes) -> bool:
    """True when ``payload`` may travel in a text frame: valid UTF-8 (RFC 6455 §5.6, §8.1)."""
    if payload.isascii():  # the common case, checked without decoding
        return True
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def frame_message(payload: bytes) -> bytes:
    """A management API message as a frame: text when it is UTF-8, else binary.

    A text frame with invalid UTF-8 makes the client fail the connection (1007), so bytes that are
    not text (``post_to_connection(Data=b"\\xff...")``) go out unchanged in a binary frame.
    """
    if payload.isascii():  # the common case: no decoding, straight to the text frame
        return frame_text(payload)
    return _frame(0x81 if is_text(payload) else 0x82, payload)
