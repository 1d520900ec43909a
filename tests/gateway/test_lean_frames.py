"""The lean transport's frame reader (hubbub.gateway.lean_frames), without a socket: every rule,
and every split of the input. tests/gateway/test_lean_socket.py checks the same on real sockets."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest

from bench.fuzz.wire import close_payload, frame
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

MAX_FRAME = 1000
MAX_MESSAGE = 2500


def _read(*chunks: bytes) -> tuple[list[tuple[int, Any, Any]], int | None]:
    """What a reader hands out for ``chunks`` fed one by one, and the close code it fails with."""
    out: list[tuple[int, Any, Any]] = []
    reader = FrameReader(lambda *m: out.append(m), MAX_FRAME, MAX_MESSAGE)
    try:
        for chunk in chunks:
            reader.feed(chunk)
    except FrameError as exc:
        return out, exc.code
    return out, None


def test_unmask_is_the_xor_with_the_repeated_key() -> None:
    key = os.urandom(4)
    for size in (0, 1, 3, 4, 5, 125, 126, 4099):
        payload = os.urandom(size)
        assert unmask(key, payload) == bytes(b ^ key[i % 4] for i, b in enumerate(payload))


STREAM = b"".join(
    [
        frame(0x1, b"hello"),
        frame(0x2, b"\x00\x01"),
        frame(0x9, b"p"),
        frame(0x1, "é".encode() * 100),  # 16-bit length
        frame(0x1, b"ab", fin=False),
        frame(0xA, b""),  # a control frame between fragments
        frame(0x0, b"cd", fin=False),
        frame(0x0, b"ef"),
        frame(0x8, close_payload(4001, b"bye")),
    ]
)
EXPECTED = [
    (TEXT, "hello", ""),
    (BINARY, b"\x00\x01", ""),
    (PING, b"p", ""),
    (TEXT, "é" * 100, ""),
    (PONG, b"", ""),
    (TEXT, "abcdef", ""),
    (CLOSE, 4001, "bye"),
]


def test_a_stream_of_frames_reads_the_same_split_at_every_byte() -> None:
    assert _read(STREAM) == (EXPECTED, None)
    for cut in range(1, len(STREAM)):
        assert _read(STREAM[:cut], STREAM[cut:]) == (EXPECTED, None), cut
    assert _read(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == (EXPECTED, None)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x1, b"x", mask=False), 1002),  # unmasked
        (frame(0x9, b"", rsv=4), 1002),  # RSV1 on a control frame
        (frame(0x1, b"x", rsv=2), 1002),  # a reserved bit
        (frame(0x1, b"x", rsv=4), 1002),  # RSV1 without permessage-deflate
        (frame(0x3, b"x"), 1002),  # an unknown data opcode
        (frame(0xB, b"x"), 1002),  # an unknown control opcode
        (frame(0x9, b"x", fin=False), 1002),  # a fragmented control frame
        (frame(0x9, b"x" * 126), 1002),  # a control frame over 125 bytes
        (frame(0x0, b"x"), 1002),  # a continuation without a message
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # a new message midway
        (frame(0x8, b"\x03"), 1002),  # a one-byte close payload
        (frame(0x8, close_payload(1004)), 1002),  # a close code no peer may send
        (frame(0x8, close_payload(2999)), 1002),
        (frame(0x8, close_payload(1000, b"\xff")), 1007),  # a reason that is not UTF-8
        (frame(0x1, b"\xff\xfe"), 1007),  # text that is not UTF-8
        (frame(0x1, b"\xe2\x82", fin=False) + frame(0x0, b"\xff"), 1007),
        (frame(0x2, b"x" * (MAX_FRAME + 1)), 1009),  # a frame over max_frame
        # a message over max_message, each frame within max_frame
        (
            frame(0x2, b"x" * MAX_FRAME, fin=False) * 1
            + frame(0x0, b"x" * MAX_FRAME, fin=False)
            + frame(0x0, b"x" * (MAX_MESSAGE - 2 * MAX_FRAME + 1)),
            1009,
        ),
    ],
)
def test_each_rule_closes_with_its_code(data: bytes, code: int) -> None:
    assert _read(data)[1] == code


def test_a_message_of_exactly_the_limit_is_read() -> None:
    data = (
        frame(0x2, b"x" * MAX_FRAME, fin=False)
        + frame(0x0, b"x" * MAX_FRAME, fin=False)
        + frame(0x0, b"x" * (MAX_MESSAGE - 2 * MAX_FRAME))
    )
    assert _read(data) == ([(BINARY, b"x" * MAX_MESSAGE, "")], None)


def test_an_oversized_frame_is_refused_from_its_head_alone() -> None:
    # Only the head of a 1 GB frame: refused before any payload is waited for or buffered.
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 2**30) + b"\x00\x00\x00\x00"
    assert _read(head) == ([], 1009)


def test_the_messages_before_a_violation_are_handed_out_first() -> None:
    data = frame(0x1, b"one") + frame(0x1, b"two") + frame(0x1, b"bad", mask=False)
    assert _read(data) == ([(TEXT, "one", ""), (TEXT, "two", "")], 1002)


def test_the_codes_aiohttp_allows_are_allowed() -> None:
    for code in (1000, 1001, 1003, 1006, 1011, 1014, 3000, 4999, 5000):
        assert _read(frame(0x8, close_payload(code)))[0] == [(CLOSE, code, "")]
    assert _read(frame(0x8, b""))[0] == [(CLOSE, 0, "")]


def test_feed_says_whether_it_holds_anything() -> None:
    reader = FrameReader(lambda *m: None, MAX_FRAME, MAX_MESSAGE)
    whole = frame(0x1, b"x" * 200)
    assert reader.feed(whole[:10]) is False
    assert reader.feed(whole[10:]) is True
    assert reader.feed(frame(0x1, b"a", fin=False)) is False
    assert reader.feed(frame(0x0, b"b")) is True
