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
_COUNTER_MASK = (1 << 48) - 1
_LOW_BITS = 22  # the counter bits in the last four characters (6 + 6 + 6 + 4, then "=")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)  # 12 bits -> two characters
# 10 bits -> a character, a character holding 4 bits (and 2 zero bits), and the padding.
_ENDS = tuple(a + _ALPHABET[b << 2] + "=" for a in _ALPHABET for b in range(16))


class _RequestIds:
    """``base64url(prefix + counter)`` built from strings, at half the cost of encoding bytes.

    The first 11 characters change only every 2**22 ids: they are encoded once per block and the
    last four come from two lookup tables (two ids per message were ~5 % of the routed path).
    The result equals ``urlsafe_b64encode(prefix + counter.to_bytes(6, "big"))``.
    """

    __slots__ = ("_block", "_counter", "_prefix")

    def __init__(self, prefix: bytes, start: int) -> None:
        self._prefix = prefix
        self._counter = itertools.count(start)
        # (counter >> _LOW_BITS, its 11 characters), replaced as one object: thread-safe.
        self._block = (-1, "")

    def next(self) -> str:
        """Return a fresh unique request (or message) id, same shape as a connection id."""
        n = next(self._counter) & _COUNTER_MASK
        block = self._block
        if block[0] != n >> _LOW_BITS:
            block = self._new_block(n >> _LOW_BITS)
        return block[1] + _PAIRS[n >> 10 & 0xFFF] + _ENDS[n & 0x3FF]

    def _new_block(self, high: int) -> tuple[int, str]:
        first = (high << _LOW_BITS).to_bytes(6, "big")
        block = (high, base64.urlsafe_b64encode(self._prefix + first).decode("ascii")[:11])
        self._block = block
        return block


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
