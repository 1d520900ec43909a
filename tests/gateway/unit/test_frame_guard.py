"""The frame guard in front of aiohttp's WebSocket parser, fed bytes directly (no socket).

It refuses a data frame above ``max_frame`` before its payload is buffered (1009), an unmasked
client frame (1002) and a control frame with RSV1 (1002); frames before a refused one still reach
the parser, nothing after it does. tests/gateway/test_limits.py and tests/fuzz check the same on
real sockets. The guard is ``_FrameGuard`` (no public name: the transport installs it).
"""

from __future__ import annotations

import pytest
from aiohttp import WebSocketError, WSCloseCode

from bench.fuzz.wire import frame
from hubbub.gateway.frames_aiohttp import _FrameGuard

TEXT, BINARY, PING = 0x1, 0x2, 0x9
LIMIT = 1000


class Parser:
    """aiohttp's parser as the guard sees it: what it was fed, and its (False: no error) answer."""

    def __init__(self) -> None:
        self.fed: list[bytes] = []
        self.eof = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.fed.append(data)
        return False, b""

    def feed_eof(self) -> None:
        self.eof = True


class Queue:
    """aiohttp's message queue as the guard sees it: where a refusal goes."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def set_exception(self, exc: BaseException) -> None:
        self.errors.append(exc)


def _guard() -> tuple[_FrameGuard, Parser, Queue]:
    parser, queue = Parser(), Queue()
    return _FrameGuard(parser, queue, LIMIT), parser, queue


def _refusal(queue: Queue) -> tuple[int, str]:
    (error,) = queue.errors
    assert isinstance(error, WebSocketError)
    return error.code, str(error)


@pytest.mark.parametrize("size", [0, 5, 125, 126, LIMIT])
def test_a_masked_data_frame_within_the_limit_passes_unchanged(size: int) -> None:
    guard, parser, queue = _guard()
    data = frame(TEXT, b"a" * size)
    assert guard.feed_data(data) == (False, b"")
    assert b"".join(parser.fed) == data
    assert queue.errors == []


def test_a_data_frame_over_the_limit_is_refused_with_1009() -> None:
    guard, parser, queue = _guard()
    assert guard.feed_data(frame(BINARY, b"a" * (LIMIT + 1))) == (True, b"")
    assert _refusal(queue) == (WSCloseCode.MESSAGE_TOO_BIG, "Frame size exceeds limit")
    assert b"".join(parser.fed) == b""


def test_a_frame_over_the_limit_is_refused_from_its_header_alone() -> None:
    """A 64-bit length of 1 TiB: refused before any of the payload arrives."""
    guard, _, queue = _guard()
    header = frame(TEXT, b"", length=2**40)
    assert guard.feed_data(header) == (True, b"")
    assert _refusal(queue)[0] == WSCloseCode.MESSAGE_TOO_BIG


def test_control_frames_are_left_to_the_parser_whatever_their_size() -> None:
    parser, queue = Parser(), Queue()
    ping = frame(PING, b"p" * 125)
    guard = _FrameGuard(parser, queue, 10)
    assert guard.feed_data(ping) == (False, b"")
    assert b"".join(parser.fed) == ping
    assert queue.errors == []


def test_an_unmasked_client_frame_is_refused_with_1002() -> None:
    guard, _, queue = _guard()
    assert guard.feed_data(frame(TEXT, b"hi", mask=False)) == (True, b"")
    assert _refusal(queue) == (WSCloseCode.PROTOCOL_ERROR, "Unmasked client frame")


def test_rsv1_is_refused_on_a_control_frame_and_left_to_the_parser_on_data() -> None:
    guard, parser, queue = _guard()
    compressed = frame(TEXT, b"x" * 10, rsv=4)  # RSV1 on data: permessage-deflate's business
    assert guard.feed_data(compressed) == (False, b"")
    assert parser.fed == [compressed]
    assert guard.feed_data(frame(PING, b"", rsv=4)) == (True, b"")
    assert _refusal(queue) == (WSCloseCode.PROTOCOL_ERROR, "Control frame with RSV1 set")


def test_the_frames_before_a_refused_one_reach_the_parser_first() -> None:
    """The first violation wins, as if the bytes had come one by one."""
    guard, parser, queue = _guard()
    good = frame(TEXT, b"one") + frame(TEXT, b"two" * 50)
    assert guard.feed_data(good + frame(TEXT, b"bad", mask=False) + frame(TEXT, b"later")) == (
        True,
        b"",
    )
    assert parser.fed == [good]
    assert _refusal(queue)[0] == WSCloseCode.PROTOCOL_ERROR


def test_nothing_after_a_refused_frame_is_parsed() -> None:
    guard, parser, queue = _guard()
    guard.feed_data(frame(TEXT, b"x" * (LIMIT + 1)))
    assert guard.feed_data(frame(TEXT, b"after")) == (True, b"")
    assert b"".join(parser.fed) == b""
    assert len(queue.errors) == 1


def test_frames_split_anywhere_across_reads_are_walked_by_their_headers() -> None:
    stream = frame(TEXT, b"a" * 200) + frame(TEXT, b"b" * 70_000, form="64") + frame(TEXT, b"")
    for cut in (1, 2, 3, 7, 13, 4096):
        parser, queue = Parser(), Queue()
        guard = _FrameGuard(parser, queue, 100_000)
        for start in range(0, len(stream), cut):
            assert guard.feed_data(stream[start : start + cut]) == (False, b"")
        assert b"".join(parser.fed) == stream, cut
        assert queue.errors == []


def test_an_oversized_frame_whose_header_is_split_is_refused_once_the_header_is_whole() -> None:
    guard, parser, queue = _guard()
    ok = frame(TEXT, b"ok")
    big = frame(TEXT, b"", length=LIMIT + 1, form="16")  # 2 + 2 + 4 header bytes
    assert guard.feed_data(ok + big[:3]) == (False, b"")
    assert queue.errors == []
    assert guard.feed_data(big[3:]) == (True, b"")
    assert _refusal(queue)[0] == WSCloseCode.MESSAGE_TOO_BIG
    # The parser had the first read (it keeps a partial header itself); of the second, nothing.
    assert b"".join(parser.fed) == ok + big[:3]


def test_end_of_stream_reaches_the_parser() -> None:
    guard, parser, _ = _guard()
    guard.feed_eof()
    assert parser.eof
