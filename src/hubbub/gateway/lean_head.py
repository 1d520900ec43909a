"""The request head the lean transport answers itself: a plain WebSocket upgrade, read strictly.

:func:`plain_upgrade` takes the bytes of a request head (up to its blank line) and says whether
it is exactly the upgrade :class:`hubbub.gateway.upgrade_aiohttp._OwnUpgrade` takes: ``GET``
of ``/{stage}`` (with any query), ``HTTP/1.1``, no body (no ``Content-Length`` or
``Transfer-Encoding``), no ``Expect``, ``Upgrade: websocket``, ``Connection`` naming
``upgrade``, ``Sec-WebSocket-Version: 13`` and a key of 16 bytes in base64. Anything unusual
answers None, and the connection goes to aiohttp, which answers it as it always did: a header
line that is not ``name: value`` with a token name, a folded line, a control character, a byte
outside ASCII, a header the upgrade reads that is sent twice.
"""

from __future__ import annotations

import binascii
import re
from typing import NamedTuple

# RFC 9110 §5.6.2 token characters, then OWS, then visible ASCII (and inner spaces/tabs).
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([!-~](?:[ \t!-~]*[!-~])?)?[ \t]*")
_TARGET = re.compile(rb"GET (/[!-~]*) HTTP/1\.1")
# Headers the upgrade reads (lower case): sent twice, aiohttp decides which counts.
_ONCE = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "host",
    }
)
# Headers that make a request one aiohttp must read (a body, an expectation).
_REFUSED = frozenset({"content-length", "transfer-encoding", "expect"})


class Upgrade(NamedTuple):
    """A plain upgrade request: its target, its headers as sent, the two the 101 needs."""

    target: str
    headers: tuple[tuple[str, str], ...]
    key: str
    protocols: str | None  # Sec-WebSocket-Protocol as offered, or None


def plain_upgrade(head: bytes, path: str) -> Upgrade | None:
    """The upgrade in ``head`` (the request line and header lines, without the blank line that
    ends them) when it is one the lean transport answers, else None (see the module docstring)."""
    lines = head.split(b"\r\n")
    match = _TARGET.fullmatch(lines[0])
    if match is None:
        return None
    target = match.group(1).decode("ascii")
    if target != path and target.partition("?")[0] != path:
        return None
    headers: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    fullmatch = _FIELD.fullmatch
    for line in lines[1:]:
        field = fullmatch(line)
        if field is None:
            return None
        raw_name, raw_value = field.groups()
        name = raw_name.decode("ascii")
        value = raw_value.decode("ascii") if raw_value is not None else ""
        headers.append((name, value))
        lower = name.lower()
        if lower in _REFUSED:
            return None
        if lower in _ONCE:
            if lower in seen:
                return None
            seen[lower] = value
    if seen.get("upgrade", "").lower() != "websocket" or seen.get("sec-websocket-version") != "13":
        return None
    connection = seen.get("connection", "").lower()
    if connection != "upgrade" and "upgrade" not in [t.strip() for t in connection.split(",")]:
        return None
    key = seen.get("sec-websocket-key", "")
    try:
        if len(binascii.a2b_base64(key.encode("ascii"), strict_mode=True)) != 16:
            return None
    except ValueError:
        return None
    return Upgrade(target, tuple(headers), key, seen.get("sec-websocket-protocol"))
