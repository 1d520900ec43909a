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

__all__ = ["api_id_for", "is_valid_connection_id", "new_connection_id", "new_request_id"]

_ID_BYTES = 11  # 11 bytes -> 15 base64 characters + one "=" of padding = 16
_MAX_CONNECTION_ID = 128
_API_ID_LENGTH = 10
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_connection_id() -> str:
    """Return a fresh random connection id such as ``R1kmxc2VNjMCFIA=``."""
    return base64.urlsafe_b64encode(os.urandom(_ID_BYTES)).decode("ascii")


# Request and message ids must be unique, not secret: a random 5-byte prefix per process plus a
# 6-byte counter gives the same 16-character shape without a system call per message (two ids
# per message were 4% of the routed path). Connection ids stay fully random: they name sockets.
_REQUEST_PREFIX = os.urandom(5)
_request_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_request_id() -> str:
    """Return a fresh unique request (or message) id, same shape as a connection id."""
    n = next(_request_counter) & 0xFFFFFFFFFFFF
    return base64.urlsafe_b64encode(_REQUEST_PREFIX + n.to_bytes(6, "big")).decode("ascii")


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
