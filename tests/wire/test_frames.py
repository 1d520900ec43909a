"""Server-to-client frames (hubbub.wire.frames) against RFC 6455 §5.2, read back independently."""

from __future__ import annotations

import struct

import pytest

from hubbub.wire.frames import frame_message, frame_text


def _read(frame: bytes) -> tuple[int, bytes]:
    """The opcode and payload of one unmasked, final frame (RFC 6455 §5.2)."""
    assert frame[0] & 0x80, "FIN"
    assert not frame[1] & 0x80, "a server's frame is not masked"
    n, offset = frame[1] & 0x7F, 2
    if n == 126:
        (n,) = struct.unpack_from("!H", frame, 2)
        offset = 4
    elif n == 127:
        (n,) = struct.unpack_from("!Q", frame, 2)
        offset = 10
    payload = frame[offset:]
    assert len(payload) == n
    return frame[0] & 0x0F, payload


@pytest.mark.parametrize("size", [0, 1, 124, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize(
    ("unit", "opcode"),
    [(b"a", 0x1), ("é".encode(), 0x1), (b"\xff", 0x2)],
    ids=["ascii", "utf8", "bin"],
)
def test_frame_message_is_text_for_utf8_and_binary_otherwise_at_every_length_boundary(
    size: int, unit: bytes, opcode: int
) -> None:
    payload = (unit * size)[:size] if size else b""
    if opcode == 0x1 and not payload.isascii():
        payload = unit * (size // len(unit))  # whole characters only
    if not payload:
        opcode = 0x1  # nothing is valid UTF-8
    assert _read(frame_message(payload)) == (opcode, payload)
    if opcode == 0x1:
        assert frame_message(payload) == frame_text(payload)
