"""The HTTP/1.1 the Runtime API endpoint speaks, without I/O: a request parser and the answers.

Runtimes send few, small requests, one at a time, on a keep-alive connection: ``GET .../next``
and a ``POST`` with a JSON body. :class:`Parser` takes the bytes of one connection as they come
and gives back :class:`Request`\\ s (the body whole: ``Content-Length`` or chunked, within
``max_body``), :data:`CONTINUE` where the client waits for ``100 Continue``, or a
:class:`Malformed` with the status to answer before closing. Nothing the peer sends can make it
buffer more than one head (64 KB) and one body (``max_body``), or wait for bytes that a
well-formed request does not promise.

A body over ``max_body`` gives a request with ``too_large`` set (and no body) as soon as its
head says so (``Content-Length``) or its chunks pass the limit; the rest of the body is read and
dropped, so the connection stays usable, except after ``Expect: 100-continue`` (the client may
never send the body it was not asked for: the request then says ``keep_alive=False``).
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote

import orjson

MAX_HEAD = 64 * 1024  # a request line and its headers
MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions, or one trailer line

REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(rb"[0-9]{1,15}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
# A request line with an origin-form target, then header lines with token names (see
# _parse_simple_head); the groups: method, target, HTTP minor version, the header lines.
_SIMPLE_HEAD = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (/[!-~]*) HTTP/1\.([01])"
    r"((?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*)*)"
)


class Request(NamedTuple):
    """One request: ``path`` without its query, percent-decoded; header names lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool = True
    too_large: bool = False


class Malformed(NamedTuple):
    """A request that cannot be read: answer ``status`` with ``message``, then close."""

    status: int
    error_type: str
    message: str


class Continue(NamedTuple):
    """The client sent ``Expect: 100-continue`` and waits for ``100 Continue``."""


CONTINUE = Continue()
Event = Request | Malformed | Continue

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _DEAD = range(7)


class Parser:
    """The requests of one connection; see the module docstring."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._buffer = bytearray()
        self._state = _HEAD
        self._head: Request | None = None  # the request whose body is being read
        self._remaining = 0  # body (or chunk) bytes still to come
        self._body = bytearray()
        self._dropping = False  # the body is over max_body: read and dropped
        self._announced = False  # the too_large request went out already
        # The last head without a body, and its request: a runtime asks for its next event with
        # the same bytes every time, which then need no parsing (its headers dict is shared by
        # those requests: nothing changes a request's headers).
        self._last_head = b""
        self._last_request: Request | None = None

    def feed(self, data: bytes) -> list[Event]:
        """What ``data`` completes, in order. After a :class:`Malformed` nothing more comes."""
        if self._state == _DEAD:
            return []
        self._buffer += data
        events: list[Event] = []
        while True:
            event = self._step()
            if event is None:
                return events
            events.append(event)
            if isinstance(event, Malformed):
                self._state = _DEAD
                self._buffer.clear()
                return events

    # -- one step: an event, or None when more bytes are needed ------------------------------

    def _step(self) -> Event | None:
        state = self._state
        if state == _HEAD:
            return self._read_head()
        if state == _BODY:
            return self._read_body()
        if state == _CHUNK_SIZE:
            return self._read_chunk_size()
        if state == _CHUNK_DATA:
            return self._read_chunk_data()
        if state == _CHUNK_END:
            if len(self._buffer) < 2:
                return None
            if self._buffer[:2] != b"\r\n":
                return _bad("a chunk is not followed by CRLF")
            del self._buffer[:2]
            self._state = _CHUNK_SIZE
            return self._read_chunk_size()
        if state == _TRAILERS:
            return self._read_trailers()
        return None

    def _read_head(self) -> Event | None:
        buffer = self._buffer
        while buffer[:2] == b"\r\n":  # empty lines before a request line are allowed
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                return Malformed(
                    431,
                    "RequestHeaderFieldsTooLarge",
                    f"the request line and headers are over {MAX_HEAD} bytes",
                )
            return None
        if end > MAX_HEAD:
            return Malformed(
                431,
                "RequestHeaderFieldsTooLarge",
                f"the request line and headers are over {MAX_HEAD} bytes",
            )
        raw = bytes(buffer[:end])
        del buffer[: end + 4]
        if raw == self._last_head and self._last_request is not None:
            return self._last_request
        head = _parse_simple_head(raw) or _parse_head(raw.split(b"\r\n"))
        if isinstance(head, Malformed):
            return head
        request, framing, length = head
        if framing == "length" and length == 0 and not _expects_continue(request):
            self._last_head, self._last_request = raw, request
            return request
        if framing == "chunked":
            self._start_body(request)
            self._state = _CHUNK_SIZE
            return CONTINUE if _expects_continue(request) else self._read_chunk_size()
        if length == 0:
            return request
        if length <= len(buffer) and length <= self.max_body and not _expects_continue(request):
            # The whole body came with its head (a runtime's answer, usually): no body state.
            body = bytes(buffer[:length])
            del buffer[:length]
            return Request(request.method, request.path, request.headers, body, request.keep_alive)
        self._start_body(request)
        self._remaining = length
        self._state = _BODY
        if length > self.max_body:
            self._dropping = True
            self._announced = True
            if _expects_continue(request):
                # Not asked for its body, the client may never send it: end with this answer.
                self._state = _DEAD
                return request._replace(keep_alive=False, too_large=True)
            return request._replace(too_large=True)
        return CONTINUE if _expects_continue(request) else self._read_body()

    def _start_body(self, request: Request) -> None:
        self._head = request
        self._body = bytearray()
        self._dropping = False
        self._announced = False

    def _read_body(self) -> Event | None:
        take = min(self._remaining, len(self._buffer))
        if not self._dropping:
            self._body += self._buffer[:take]
        del self._buffer[:take]
        self._remaining -= take
        if self._remaining:
            return None
        return self._finish()

    def _read_chunk_size(self) -> Event | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
        if end < 0:
            if len(buffer) > MAX_CHUNK_LINE:
                return _bad(f"a chunk-size line is over {MAX_CHUNK_LINE} bytes")
            return None
        size = bytes(buffer[:end]).split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(size):
            return _bad(f"invalid chunk size {size[:40]!r}")
        del buffer[: end + 2]
        self._remaining = int(size, 16)
        if self._remaining == 0:
            self._state = _TRAILERS
            return self._read_trailers()
        self._state = _CHUNK_DATA
        return self._read_chunk_data()

    def _read_chunk_data(self) -> Event | None:
        take = min(self._remaining, len(self._buffer))
        if not self._dropping:
            self._body += self._buffer[:take]
            if len(self._body) > self.max_body:
                self._dropping = True
                self._body = bytearray()
        del self._buffer[:take]
        self._remaining -= take
        if self._remaining:
            return None
        self._state = _CHUNK_END
        return self._step()

    def _read_trailers(self) -> Event | None:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
            if end < 0:
                if len(buffer) > MAX_CHUNK_LINE:
                    return _bad(f"a trailer line is over {MAX_CHUNK_LINE} bytes")
                return None
            del buffer[: end + 2]
            if end == 0:
                return self._finish()

    def _finish(self) -> Event | None:
        request = self._head
        assert request is not None
        self._head = None
        self._state = _HEAD
        if self._announced:  # answered when its head came; the body was dropped
            return self._step()
        if self._dropping:
            return request._replace(too_large=True)
        body, self._body = bytes(self._body), bytearray()
        return request._replace(body=body)


def _parse_simple_head(raw: bytes) -> tuple[Request, str, int] | None:
    """What :func:`_parse_head` makes of a common head, in fewer steps (a runtime sends two per
    invocation): an origin-form target, HTTP/1.x, well-formed headers, each named once, no
    Transfer-Encoding. None for anything else, which :func:`_parse_head` then reads (and names
    what is wrong with it)."""
    text = raw.decode("latin-1")
    match = _SIMPLE_HEAD.fullmatch(text)
    if match is None:
        return None
    method, target, minor, block = match.groups()
    headers: dict[str, str] = {}
    for line in block.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        key = name.lower()
        if key in headers:
            return None
        headers[key] = value.strip(" \t")
    if "transfer-encoding" in headers:
        return None
    length = headers.get("content-length")
    if length is not None and not _DIGITS.fullmatch(length.encode("latin-1")):
        return None
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "%" in path:
        path = unquote(path)
    connection = headers.get("connection")
    if connection is None:
        keep_alive = minor == "1"
    else:
        options = {t.strip() for t in connection.lower().split(",")}
        keep_alive = "close" not in options if minor == "1" else "keep-alive" in options
    request = Request(method, path, headers, b"", keep_alive)
    return request, "length", 0 if length is None else int(length)


def _parse_head(lines: list[bytes]) -> Malformed | tuple[Request, str, int]:
    """A request line and its headers: the request (no body yet), its framing (``length`` or
    ``chunked``) and its Content-Length."""
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        return _bad(f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/"):
            return Malformed(505, "HTTPVersionNotSupported", f"{version[:20]!r} is not HTTP/1.x")
        return _bad(f"malformed request line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return _bad(f"malformed header line {line[:100]!r}")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in headers:
            if key == "content-length" and headers[key] != text:
                return _bad("conflicting Content-Length headers")
            headers[key] = f"{headers[key]}, {text}"
            continue
        headers[key] = text
    path = _path(target)
    if path is None:
        return _bad(f"malformed request target {target[:100]!r}")
    connection = {t.strip() for t in headers.get("connection", "").lower().split(",")}
    # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep.
    keep_alive = "close" not in connection if version == b"HTTP/1.1" else "keep-alive" in connection
    request = Request(method.decode("ascii"), path, headers, b"", keep_alive)
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if "content-length" in headers:
            return _bad("both Content-Length and Transfer-Encoding")
        if encoding.strip().lower() != "chunked":
            return Malformed(
                501, "NotImplemented", f"Transfer-Encoding {encoding[:40]!r} is not supported"
            )
        return request, "chunked", 0
    length = headers.get("content-length")
    if length is None:
        return request, "length", 0
    if not _DIGITS.fullmatch(length.encode("latin-1")):
        return _bad(f"invalid Content-Length {length[:40]!r}")
    return request, "length", int(length)


def _path(target: bytes) -> str | None:
    """The path of an origin-form (``/a/b?q``) or absolute-form (``http://h/a/b``) target."""
    if target.startswith((b"http://", b"https://")):
        slash = target.find(b"/", target.find(b"//") + 2)
        target = b"/" if slash < 0 else target[slash:]
    if not target.startswith(b"/"):
        return None
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return None
    return unquote(text.split("?", 1)[0].split("#", 1)[0])


def _expects_continue(request: Request) -> bool:
    return request.headers.get("expect", "").lower() == "100-continue"


def _bad(message: str) -> Malformed:
    return Malformed(400, "BadRequest", message)


# -- answers ---------------------------------------------------------------------------------

CONTINUE_BYTES = b"HTTP/1.1 100 Continue\r\n\r\n"


def answer(
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    keep_alive: bool = True,
    content_type: str = "application/json",
) -> bytes:
    """One response, framed by Content-Length (the endpoint never sends chunks)."""
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"]
    head.append(f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n")
    if headers:
        head.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    if not keep_alive:
        head.append("Connection: close\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1") + body


def error_answer(status: int, error_type: str, message: str, *, keep_alive: bool = True) -> bytes:
    """An error as the Runtime API gives it: ``{"errorMessage", "errorType"}``."""
    body = orjson.dumps({"errorMessage": message, "errorType": error_type})
    return answer(status, body, keep_alive=keep_alive)
