"""Identifiers in the shapes AWS API Gateway uses.

Connection, request and message ids look like ``R1kmxc2VNjMCFIA=``: 16 characters of base64 ending
in ``=``. AWS does not document how it builds them; hubbub encodes 11 random bytes with the
url-safe alphabet (``A-Z a-z 0-9 - _``), which gives exactly that length and padding and keeps
``/`` and ``+`` out of ids that travel in URL paths.
"""

from __future__ import annotations

import binascii
import collections
import hashlib
import itertools
import operator
import os
import random
from collections.abc import Callable, Iterator
from typing import Literal

__all__ = [
    "api_id_for",
    "is_valid_connection_id",
    "new_connection_id",
    "new_invocation_id",
    "new_request_id",
    "new_trace_id",
]

_ID_BYTES = 11  # 11 bytes -> 15 base64 characters + one "=" of padding = 16
_MAX_CONNECTION_ID = 128
_API_ID_LENGTH = 10
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class _Batched:
    """Strings made a batch at a time by ``make``, each handed out once by :attr:`next`.

    :attr:`next` is the ``__next__`` of an ``itertools.chain`` over the batches: no Python frame
    per string, only one per batch. A forked child uses up the batch in hand (its parent hands
    out the same strings) and makes its own.
    """

    __slots__ = ("_batch", "_make", "next")

    def __init__(self, make: Callable[[], list[str]]) -> None:
        self._make = make
        self._batch: Iterator[str] = iter(())
        batches = map(self._draw, itertools.repeat(None))
        self.next: Callable[[], str] = itertools.chain.from_iterable(batches).__next__
        os.register_at_fork(after_in_child=self.forget)

    def _draw(self, _: None) -> Iterator[str]:
        self._batch = batch = iter(self._make())
        return batch

    def forget(self) -> None:
        collections.deque(self._batch, maxlen=0)


_PER_DRAW = 256


def _connection_ids() -> list[str]:
    # os.urandom bytes, one system call per 256 ids; each id is urlsafe_b64encode(11 bytes).
    data = os.urandom(_ID_BYTES * _PER_DRAW)
    chunks = [data[i : i + _ID_BYTES] for i in range(0, len(data), _ID_BYTES)]
    encoded = map(bytes.translate, map(binascii.b2a_base64, chunks), _repeat_url_safe, _newline)
    return list(map(bytes.decode, encoded, itertools.repeat("ascii")))


# Request and message ids must be unique, not secret: a random 5-byte prefix per process plus a
# 6-byte counter gives the same 16-character shape without a system call per message. Connection
# ids stay fully random: they name sockets.
_BATCH_BITS = 10  # the counter bits in the last three characters (6 + 4, then "=")
_BATCH_MASK = (1 << (48 - _BATCH_BITS)) - 1  # the counter wraps at 48 bits
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# 10 bits -> a character, a character holding 4 bits (and 2 zero bits), and the padding.
_ENDS = tuple(a + _ALPHABET[b << 2] + "=" for a in _ALPHABET for b in range(16))
_HEAD = slice(0, 13)  # the characters a batch's ids share
_URL_SAFE = bytes.maketrans(b"+/", b"-_")
_repeat_url_safe = itertools.repeat(_URL_SAFE)
_newline = itertools.repeat(b"\n")  # b2a_base64 ends with one; deleted by the translation

# A fresh random connection id such as ``R1kmxc2VNjMCFIA=``: the chain's own __next__, as
# new_request_id (a Python function drawing chunks and calling base64 was ~5,000 instructions).
new_connection_id = _Batched(_connection_ids).next


class _RequestIds:
    """``base64url(prefix + counter)``, made 1,024 at a time.

    The ids of one batch share their first 13 characters (the prefix and the counter's high 38
    bits), encoded once per batch; the last three come from a table. :attr:`next` is the
    ``__next__`` of one chain of C iterators (``itertools`` over ``map`` of built-in functions)
    that encodes each batch's head and appends the table's ends: drawing an id runs no Python
    frame at all, not even to start a batch, so it is one atomic step under the GIL and threads
    drawing at the same time get different ids
    (test_request_ids_drawn_by_threads_at_once_do_not_repeat).
    Two ids per message were ~6 % of the routed path when each was built on its own; a Python
    method handing out a list's ids cost ~1,400 instructions per id, this ~1,000. The result
    equals ``urlsafe_b64encode(prefix + counter.to_bytes(6, "big"))``.
    """

    __slots__ = ("next",)

    def __init__(self, prefix: bytes, start: int) -> None:
        repeat = itertools.repeat
        big: itertools.repeat[Literal["big"]] = repeat("big")
        first = start >> _BATCH_BITS
        # batch numbers (wrapping at 48 bits) -> their first counters -> 6 big-endian bytes
        counters = map(
            operator.lshift,
            map(operator.and_, itertools.count(first), repeat(_BATCH_MASK)),
            repeat(_BATCH_BITS),
        )
        raw = map(prefix.__add__, map(int.to_bytes, counters, repeat(6), big))
        # -> base64 (b2a_base64 ends it with a newline, deleted with the url-safe translation)
        encoded = map(
            bytes.translate, map(binascii.b2a_base64, raw), repeat(_URL_SAFE), repeat(b"\n")
        )
        heads = map(operator.getitem, map(bytes.decode, encoded, repeat("ascii")), repeat(_HEAD))
        # -> each head followed by each of the table's ends, batch after batch
        batches = map(map, repeat(operator.add), map(repeat, heads), repeat(_ENDS))
        ids: Iterator[str] = itertools.chain.from_iterable(batches)
        # The first batch begins where the counter does, not at its first id.
        for _ in range(start - (first << _BATCH_BITS)):
            next(ids)
        # A fresh unique request (or message) id per call, same shape as a connection id.
        self.next: Callable[[], str] = ids.__next__


# The chain's own __next__, not a wrapper function: no Python frame per id.
new_request_id = _RequestIds(os.urandom(5), int.from_bytes(os.urandom(3), "big")).next


def api_id_for(name: str) -> str:
    """Return a stable 10-character lower-case alphanumeric API id derived from ``name``.

    The same name always yields the same id (on every node and across restarts), so events and
    management URLs agree without any shared state.
    """
    number = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    digits = []
    for _ in range(_API_ID_LENGTH):
        number, digit = divmod(number, 36)
        digits.append(_BASE36[digit])
    return "".join(digits)


def is_valid_connection_id(value: str) -> bool:
    """Tell whether ``value`` is well-formed as a connection id (1..128 printable ASCII, no spaces).

    Deliberately permissive: it separates garbage (answered 400 BadRequestException) from ids that
    merely do not exist (answered 410 GoneException), so every id hubbub could generate passes.
    """
    # isprintable() already rejects tabs, newlines and other control characters; the space is the
    # only printable ASCII whitespace left to exclude.
    return (
        0 < len(value) <= _MAX_CONNECTION_ID
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _trace_tails() -> list[str]:
    text = random.randbytes(12 * _PER_DRAW).hex()
    return [text[i : i + 24] for i in range(0, len(text), 24)]


_trace_tail = _Batched(_trace_tails).next
_trace_second: tuple[int, str] = (-1, "")  # the last second's "Root=1-<8 hex>-", one tuple


def new_trace_id(now_ms: int) -> str:
    """An ``X-Amzn-Trace-Id`` as API Gateway adds it: ``Root=1-<8 hex epoch seconds>-<24 hex>``."""
    # Unique, not secret (it names a request in logs): no system call per handshake, and 96
    # random bits as hex a batch at a time (formatting each was ~2,400 instructions).
    global _trace_second
    second = now_ms // 1000
    last = _trace_second
    if last[0] != second:
        last = _trace_second = (second, f"Root=1-{second:08x}-")
    return last[1] + _trace_tail()


# A version-4 UUID's fixed bits: the version nibble (4) and the variant's two bits (10).
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def new_invocation_id() -> str:
    """A Lambda invocation id (``context.aws_request_id``): a version-4 UUID in its usual text
    form, as ``str(uuid.uuid4())`` gives it. Unique, not secret (it names an invocation in
    logs): no system call per invocation, and none of ``uuid.UUID``'s checks."""
    bits = random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
