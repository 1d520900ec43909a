"""Plain HTTP requests and responses, and the WebSocket handshake, as the gateway sees them.

The transport adapter (:mod:`hubbub.gateway.transport_aiohttp`) builds these from its library's
objects; everything above it (the management API, the authorizers, admission) speaks only these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field


def find_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of a header, matched case-insensitively (names keep the client's case)."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


def find_headers(headers: Iterable[tuple[str, str]], *lowered: str) -> list[str | None]:
    """:func:`find_header` for each of the ``lowered`` names (in lower case), in one pass over
    ``headers``: each name lowered once rather than once per name looked up."""
    found: list[str | None] = [None] * len(lowered)
    left = len(lowered)
    for key, value in headers:
        lower = key.lower()
        if lower in lowered:
            index = lowered.index(lower)
            if found[index] is None:
                found[index] = value
                left -= 1
                if not left:
                    break
    return found


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request as the management API sees it."""

    method: str
    raw_path: str  # still percent-encoded, without the query string
    query_string: str
    headers: tuple[tuple[str, str], ...]  # original case, in order
    body: bytes
    remote: str

    def header(self, name: str) -> str | None:
        return find_header(self.headers, name)


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(slots=True)
class Handshake:
    """The WebSocket upgrade request, before anything is answered. Read only, though not frozen:
    a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, about
    7,500 instructions more per handshake (``dataclasses.replace`` gives a changed copy)."""

    path: str
    query_string: str
    headers: tuple[tuple[str, str], ...]  # original case, in order
    remote: str
    port: int = 0  # the listener's port the client reached
    scheme: str = "http"  # "https" on a TLS listener

    def header(self, name: str) -> str | None:
        return find_header(self.headers, name)
