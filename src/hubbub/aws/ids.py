"""Identifiers in the shapes AWS API Gateway uses.

Connection, request and message ids look like ``R1kmxc2VNjMCFIA=``: 16 characters of base64 ending
in ``=``. AWS does not document how it builds them; hubbub encodes 11 random bytes with the
url-safe alphabet (``A-Z a-z 0-9 - _``), which gives exactly that length and padding and keeps
``/`` and ``+`` out of ids that travel in URL paths.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import random
from collections.abc import Iterator

__all__ = [
    "api_id_for",
    "is_valid_connection_id",
    "new_connection_id",
    "new_request_id",
    "new_trace_id",
]

_ID_BYTES = 11  # 11 bytes -> 15 base64 characters + one "=" of padding = 16
_MAX_CONNECTION_ID = 128
_API_ID_LENGTH = 10
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class _RandomChunks:
    """Connection ids' random bytes, drawn from the OS 256 ids at a time.

    Still ``os.urandom`` bytes, each handed out once, with one system call per 256 ids instead
    of one per handshake. ``next`` on a list iterator is atomic, so threads drawing at the same
    time get different chunks; a forked child drops what its parent drew.
    """

    __slots__ = ("_chunks",)

    _PER_DRAW = 256

    def __init__(self) -> None:
        self._chunks: Iterator[bytes] = iter(())
        os.register_at_fork(after_in_child=self.forget)

    def forget(self) -> None:
        self._chunks = iter(())

    def next(self) -> bytes:
        chunk = next(self._chunks, None)
        if chunk is None:
            data = os.urandom(_ID_BYTES * self._PER_DRAW)
            chunks = iter([data[i : i + _ID_BYTES] for i in range(0, len(data), _ID_BYTES)])
            self._chunks = chunks
            chunk = next(chunks)
        return chunk


_connection_bytes = _RandomChunks().next


def new_connection_id() -> str:
    """Return a fresh random connection id such as ``R1kmxc2VNjMCFIA=``."""
    return base64.urlsafe_b64encode(_connection_bytes()).decode("ascii")


# Request and message ids must be unique, not secret: a random 5-byte prefix per process plus a
# 6-byte counter gives the same 16-character shape without a system call per message. Connection
# ids stay fully random: they name sockets.
_BATCH_BITS = 10  # the counter bits in the last three characters (6 + 4, then "=")
_BATCH_MASK = (1 << (48 - _BATCH_BITS)) - 1  # the counter wraps at 48 bits
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# 10 bits -> a character, a character holding 4 bits (and 2 zero bits), and the padding.
_ENDS = tuple(a + _ALPHABET[b << 2] + "=" for a in _ALPHABET for b in range(16))


class _RequestIds:
    """``base64url(prefix + counter)``, made 1,024 at a time.

    The ids of one batch share their first 13 characters (the prefix and the counter's high 38
    bits), encoded once per batch; the last three come from a table. Handing one out is then one
    ``next`` on a list iterator, which is atomic, so threads drawing at the same time get
    different ids; two threads refilling at once take different batches from the counter (the
    rest of one of them is skipped, never repeated). Two ids per message were ~6 % of the routed
    path when each was built on its own. The result equals
    ``urlsafe_b64encode(prefix + counter.to_bytes(6, "big"))``.
    """

    __slots__ = ("_batches", "_ids", "_prefix", "_start")

    def __init__(self, prefix: bytes, start: int) -> None:
        self._prefix = prefix
        self._start = start  # the first batch begins here, not at its first id
        self._batches = itertools.count(start >> _BATCH_BITS)
        self._ids: Iterator[str] = iter(())

    def next(self) -> str:
        """Return a fresh unique request (or message) id, same shape as a connection id."""
        request_id = next(self._ids, None)
        if request_id is None:
            request_id = self._refill()
        return request_id

    def _refill(self) -> str:
        number = next(self._batches)
        batch = number & _BATCH_MASK
        first = batch << _BATCH_BITS
        head = base64.urlsafe_b64encode(self._prefix + first.to_bytes(6, "big")).decode("ascii")
        head = head[:13]
        skip = self._start - (number << _BATCH_BITS) if number == self._start >> _BATCH_BITS else 0
        ids = iter([head + end for end in _ENDS[skip:]])
        self._ids = ids
        return next(ids)


# The bound method itself, not a wrapper function: one call less per id.
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


def new_trace_id(now_ms: int) -> str:
    """An ``X-Amzn-Trace-Id`` as API Gateway adds it: ``Root=1-<8 hex epoch seconds>-<24 hex>``."""
    # Unique, not secret (it names a request in logs): no system call per handshake.
    return f"Root=1-{now_ms // 1000:08x}-{random.getrandbits(96):024x}"
