from __future__ import annotations

import base64
import os
import re
import string
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.aws.ids import (
    _RequestIds,
    api_id_for,
    is_valid_connection_id,
    new_connection_id,
    new_invocation_id,
    new_request_id,
    new_trace_id,
)

AWS_ID = re.compile(r"[A-Za-z0-9_-]{15}=")


def test_connection_id_has_the_aws_shape() -> None:
    assert AWS_ID.fullmatch(new_connection_id())


def test_request_id_has_the_aws_shape() -> None:
    assert AWS_ID.fullmatch(new_request_id())


@pytest.mark.parametrize("start", [0, (1 << 22) - 3, (5 << 22) - 1, (1 << 48) - 3])
def test_request_ids_are_base64_of_the_prefix_and_the_counter(start: int) -> None:
    prefix = b"\xfb\xef\x00\x10\x80"
    ids = _RequestIds(prefix, start)
    for n in range(start, start + 6):  # across a block of 2**22 ids, and the 48-bit wrap
        counter = (n & ((1 << 48) - 1)).to_bytes(6, "big")
        assert ids.next() == base64.urlsafe_b64encode(prefix + counter).decode("ascii")


def test_request_ids_follow_the_counter_across_whole_batches() -> None:
    # Made 1,024 at a time: the first batch starts where the counter does, the next ones whole.
    prefix = b"\x01\x02\x03\x04\x05"
    start = 1000
    ids = _RequestIds(prefix, start)
    for n in range(start, start + 3 * 1024):
        assert ids.next() == base64.urlsafe_b64encode(prefix + n.to_bytes(6, "big")).decode()


def test_request_ids_drawn_by_threads_at_once_do_not_repeat() -> None:
    ids = _RequestIds(os.urandom(5), 0)
    barrier = threading.Barrier(8)

    def draw() -> list[str]:
        barrier.wait()
        return [ids.next() for _ in range(5_000)]

    with ThreadPoolExecutor(8) as pool:
        drawn = [
            request_id for batch in pool.map(lambda _: draw(), range(8)) for request_id in batch
        ]
    assert len(set(drawn)) == len(drawn) == 40_000
    assert all(AWS_ID.fullmatch(request_id) for request_id in drawn)


def test_connection_id_encodes_eleven_random_bytes() -> None:
    assert len(base64.urlsafe_b64decode(new_connection_id())) == 11


def test_ids_do_not_repeat() -> None:
    ids = {new_connection_id() for _ in range(10_000)} | {new_request_id() for _ in range(10_000)}
    assert len(ids) == 20_000


def test_generated_ids_are_valid_connection_ids() -> None:
    assert all(is_valid_connection_id(new_connection_id()) for _ in range(1_000))


@given(st.text())
def test_api_id_is_ten_lowercase_alphanumerics(name: str) -> None:
    assert re.fullmatch(r"[a-z0-9]{10}", api_id_for(name))


@given(st.text())
def test_api_id_is_stable_for_a_name(name: str) -> None:
    assert api_id_for(name) == api_id_for(name)


def test_api_id_differs_between_names() -> None:
    names = [f"api-{index}" for index in range(1_000)]
    assert len({api_id_for(name) for name in names}) == len(names)


@given(st.text(alphabet=string.printable.strip(), min_size=1, max_size=128))
def test_printable_ascii_without_whitespace_is_a_valid_connection_id(value: str) -> None:
    assert is_valid_connection_id(value)


def test_empty_string_is_not_a_valid_connection_id() -> None:
    assert not is_valid_connection_id("")


def test_128_characters_is_a_valid_connection_id() -> None:
    assert is_valid_connection_id("a" * 128)


def test_129_characters_is_not_a_valid_connection_id() -> None:
    assert not is_valid_connection_id("a" * 129)


def test_connection_id_with_a_space_is_not_valid() -> None:
    assert not is_valid_connection_id("abc def")


def test_connection_id_with_control_characters_is_not_valid() -> None:
    assert not any(is_valid_connection_id(f"abc{char}def") for char in "\t\n\r\x00\x7f")


def test_connection_id_with_non_ascii_is_not_valid() -> None:
    assert not is_valid_connection_id("abcé")


def test_connection_ids_do_not_repeat() -> None:
    # Drawn 256 at a time from os.urandom: every chunk is handed out once, across refills.
    ids = [new_connection_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)


def test_a_forked_child_draws_connection_ids_of_its_own() -> None:
    # `hubbub serve --workers` forks: a child must not hand out the ids its parent drew already.
    new_connection_id()  # the parent holds a drawn batch
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write_end, new_connection_id().encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert AWS_ID.fullmatch(child)
    assert child != new_connection_id()


def test_invocation_ids_are_version_4_uuids_in_their_text_form() -> None:
    ids = [new_invocation_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case hex, dashes where str(uuid.uuid4()) has them
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # Every other bit varies: the fixed ones are only the version's and the variant's.
    varying = 0
    for text in ids:
        varying |= uuid.UUID(text).int ^ uuid.UUID(ids[0]).int
    assert varying == (1 << 128) - 1 & ~((0xF << 76) | (0x3 << 62))


@pytest.mark.parametrize("draw", [new_connection_id, lambda: new_trace_id(0)])
def test_a_forked_child_does_not_hand_out_its_parents_next_ids(draw: Callable[[], str]) -> None:
    draw()  # a batch in hand, shared with the child at the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then exit without running the test session's hooks
        os.write(write, draw().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    assert child
    assert child != draw()
