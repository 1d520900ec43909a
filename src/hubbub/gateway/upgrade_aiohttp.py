"""The public listener: its WebSocket upgrade, through aiohttp's request loop or hubbub's own path.

:func:`start_public` serves ``/{stage}``. A plain upgrade on a plain TCP connection takes
:class:`_OwnUpgrade`, which ``http_limits`` hands each connection's first request: ``$connect``
and the 101 on the task aiohttp started for the connection, without ``web.Request``, router,
request task or ``WebSocketResponse.prepare``. Every other request (and every handshake whose
answer aiohttp shapes itself) goes to aiohttp's loop and ``websocket_entry``. Both paths build the
same :class:`~hubbub.wire.http.Handshake` and end in the same :class:`Socket`; the socket itself,
its frames and the listener's limits are :mod:`hubbub.gateway.transport_aiohttp`'s,
:mod:`hubbub.gateway.frames_aiohttp`'s and :mod:`hubbub.gateway.http_limits`'s.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import os
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.http_websocket import WS_KEY, WebSocketWriter
from aiohttp.http_writer import _serialize_headers
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict, CIMultiDictProxy

from hubbub.gateway.http_limits import ConnectionLimits
from hubbub.gateway.lean_upgrade import LeanEntry
from hubbub.gateway.transport_aiohttp import (
    Accept,
    HandshakeHandler,
    Listener,
    Socket,
    SocketOptions,
    _HubbubWebSocketResponse,
    _limits,
    _serve,
)
from hubbub.wire.http import Handshake, HttpResponse


def lean_transport() -> bool:
    """Whether plain-TCP public listeners without compression or PROXY protocol use the lean
    transport (:mod:`hubbub.gateway.lean_upgrade`): yes unless ``HUBBUB_LEAN_TRANSPORT=0`` (for
    A/B comparisons with aiohttp's path)."""
    return os.environ.get("HUBBUB_LEAN_TRANSPORT", "1") != "0"


def _upgrade_refusal(headers: CIMultiDictProxy[str]) -> web.Response | None:
    """The answer to an upgrade request that can never succeed (RFC 6455 §4.2.1), or None."""
    connection = headers.get("Connection", "").lower()
    # The usual single token first: the list of tokens costs more than the rest of the checks.
    if connection != "upgrade" and "upgrade" not in [t.strip() for t in connection.split(",")]:
        return _bad_upgrade("Connection: Upgrade is required")
    version = headers.get("Sec-WebSocket-Version")
    if version is None:  # a malformed handshake, like a missing key
        return _bad_upgrade("Sec-WebSocket-Version is required")
    if version != "13":
        # RFC 6455 §4.2.2: a version we do not speak is 426 naming the one we do, so the client
        # can retry with it (RFC 6455 §4.4); a 426 must also say which protocol to upgrade to
        # (RFC 9110 §15.5.22).
        return web.Response(
            status=426,
            text="Upgrade Required: Sec-WebSocket-Version must be 13\n",
            headers={"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
        )
    try:
        # strict_mode: what b64decode(validate=True) checks, without its regular expression
        # (a fifth of this function's time).
        key = binascii.a2b_base64(
            headers.get("Sec-WebSocket-Key", "").encode("ascii"), strict_mode=True
        )
    except (ValueError, UnicodeEncodeError):
        key = b""
    if len(key) != 16:
        return _bad_upgrade("Sec-WebSocket-Key must be 16 bytes in base64")
    return None


def _bad_upgrade(problem: str) -> web.Response:
    return web.Response(status=400, text=f"Bad Request: {problem}\n")


def _handshake(
    target: str, raw_headers: Iterable[tuple[bytes, bytes]], protocol: Any, *, secure: bool
) -> Handshake:
    """The upgrade request ``target`` (its raw path and query) with ``raw_headers``, as
    ``protocol`` (aiohttp's, one per connection) received it."""
    raw_path, _, query = target.partition("?")  # (_split_path, without its call)
    # The client a trusted proxy named in its PROXY protocol header, else the TCP peer. The
    # addresses are cached on the protocol once asked for (aiohttp asks when it builds a
    # request): each get_extra_info is a getpeername/getsockname system call under uvloop.
    peer = getattr(protocol, "proxied", None) or protocol.peername
    local = protocol.sockname
    # Positional: keyword arguments cost about 1,300 instructions more.
    return Handshake(
        raw_path,
        query,
        # The case the client sent; API Gateway events keep it too.
        tuple([(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]),
        str(peer[0]) if peer else "",
        int(local[1]) if local else 0,
        "https" if secure else "http",
    )


class _UpgradedRequest:
    """The request of a WebSocketResponse :class:`_OwnUpgrade` started: what the response still
    asks of its request once upgraded (its protocol and transport, for the heartbeat and for
    closing) and of its payload writer (``drain`` when it closes), without aiohttp's
    ``web.Request`` and the parsed request it keeps for the connection's whole life."""

    __slots__ = ("_protocol", "path")

    method = "GET"

    def __init__(self, protocol: RequestHandler, path: str) -> None:
        self._protocol = protocol
        self.path = path

    @property
    def protocol(self) -> RequestHandler:
        return self._protocol

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._protocol.transport

    async def drain(self) -> None:
        # aiohttp's StreamWriter.drain: wait only while the transport is paused.
        protocol = self._protocol
        if protocol.transport is not None and protocol._paused:
            await protocol._drain_helper()


# Response headers of an Accept that aiohttp's path would merge with its own (its handshake
# headers replace them; Date and Server are only added when absent; 101 drops the body's).
# An Accept with one of them takes that path, so the 101 stays what aiohttp writes.
_MERGED_HEADERS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "date",
        "server",
        "content-length",
        "transfer-encoding",
    }
)


# The 101 of _OwnUpgrade._answer without headers of the handler's or a subprotocol, around its
# two values (the accept key, then the date): the bytes aiohttp's _serialize_headers writes for
# it (tests/gateway/test_transport_upgrade.py compares them).
_PLAIN_101_START = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)
_PLAIN_101_END = b"\r\nServer: " + SERVER_SOFTWARE.encode("utf-8") + b"\r\n\r\n"


class _OwnUpgrade:
    """The public listener's own upgrade path (``ConnectionLimits.first_request``).

    A connection whose first request is a plain WebSocket upgrade to ``/{stage}`` (GET,
    HTTP/1.1, no body, no ``Expect``, no extension offer when compression is on, and nothing
    ``_upgrade_refusal`` would refuse) gets its ``$connect`` and then its 101 here, on the task
    aiohttp started for the connection: no ``web.Request``, router, second task per request, or
    ``WebSocketResponse.prepare``. That is about a fifth of a handshake's instructions, and the
    parsed request is not kept for the connection's whole life (aiohttp's request loop holds it
    until its handler returns, and its response holds the request). The 101 is the same bytes
    aiohttp writes (its own serializer, headers in its order).

    Everything else goes to aiohttp's request loop, unchanged: other requests and paths, and
    any handshake whose answer aiohttp shapes itself. A refusal, an error of ``$connect``, a
    subprotocol the client did not offer, or response headers aiohttp would merge
    (:data:`_MERGED_HEADERS`) are kept for the connection (:meth:`decided`) and the request
    goes through aiohttp's loop to ``websocket_entry``, which answers with them: ``$connect``
    still runs once. Listeners with TLS do not use this path.
    """

    __slots__ = ("_compression", "_decided", "_on_handshake", "_options", "_path", "_template")

    def __init__(self, path: str, on_handshake: HandshakeHandler, options: SocketOptions) -> None:
        self._path = path
        self._on_handshake = on_handshake
        self._options = options
        self._compression = options.compression
        self._template = _websocket_template(options)  # the response of every handshake taken
        self._decided: dict[RequestHandler, Accept | HttpResponse | Exception] = {}

    def decided(self, protocol: RequestHandler) -> Accept | HttpResponse | Exception | None:
        """The answer this path (or the lean transport, :mod:`hubbub.gateway.lean_upgrade`) got
        for the connection's upgrade request and left to aiohttp."""
        lean = getattr(protocol, "lean_decision", None)
        if lean is not None:
            protocol.lean_decision = None  # type: ignore[attr-defined]
            return lean  # type: ignore[no-any-return]
        return self._decided.pop(protocol, None) if self._decided else None

    def _takes(self, message: Any, payload: Any) -> bool:
        if (
            getattr(message, "method", None) != "GET"  # (a parse error has none)
            or payload is not EMPTY_PAYLOAD
            or not message.upgrade
            or message.version != HttpVersion11
        ):
            return False
        target: str = message.path
        if target != self._path and target.partition("?")[0] != self._path:
            return False
        headers = message.headers
        if headers.get("Upgrade", "").lower() != "websocket" or "Expect" in headers:
            return False
        if self._compression and "Sec-WebSocket-Extensions" in headers:
            return False  # permessage-deflate is negotiated by aiohttp
        return _upgrade_refusal(headers) is None

    async def __call__(self, proto: RequestHandler) -> None:
        if getattr(proto, "lean_decision", None) is not None:
            # The lean transport ran $connect and left its answer to aiohttp's path
            # (websocket_entry takes it through decided()).
            try:
                await RequestHandler.start(proto)
            finally:
                left = self.decided(proto)
                if isinstance(left, Accept):  # the request never reached websocket_entry
                    left.gone()
            return
        messages = proto._messages
        if proto._force_close or len(messages) != 1 or not self._takes(*messages[0]):
            await RequestHandler.start(proto)
            return
        message: Any = messages[0][0]
        # As while aiohttp's handler runs: a shutdown waits for the handshake (shutdown()).
        proto._request_in_progress = True
        decision: Accept | HttpResponse | Exception
        try:
            decision = await self._on_handshake(
                _handshake(message.path, message.raw_headers, proto, secure=False)
            )
        except Exception as exc:  # websocket_entry raises it again, in aiohttp's handler
            decision = exc
        except BaseException:  # cancelled: as aiohttp's request loop ends then
            _handled(proto)
            proto.force_close()
            raise
        transport = proto.transport
        if proto._force_close or transport is None or transport.is_closing():
            _handled(proto)  # the client left during $connect: nothing to answer
            if isinstance(decision, Accept):
                decision.gone()
            _finished(proto)
            return
        answer = self._answer(message.headers, decision) if isinstance(decision, Accept) else None
        if answer is None or not isinstance(decision, Accept):
            _handled(proto)
            self._decided[proto] = decision
            try:
                await RequestHandler.start(proto)
            finally:
                self._decided.pop(proto, None)
            return
        # This frame lives as long as the connection: let go of the request (its queue too,
        # which set_parser replaces) and of the 101 once written.
        del message, messages
        proto._messages.popleft()
        if proto._parser is not None:
            proto._parser.message_consumed()
        if proto._manager is not None:
            proto._manager.requests_count += 1
        head, subprotocol = answer
        del answer
        ws = _websocket_from(self._template, subprotocol)
        transport.write(head)
        del head
        request = start_upgraded(ws, proto, transport, self._path, subprotocol)
        try:
            await request.drain()
        except (ConnectionError, RuntimeError):
            ws.release_reader()
            _handled(proto)
            decision.gone()
            _finished(proto)
            return
        run = decision.run(Socket(ws, transport))
        del decision  # (see websocket_entry)
        try:
            await run
            if ws._closed:
                # The usual end (the close handshake is over): write_eof would only find that,
                # through three coroutines (write_eof, ours and aiohttp's close).
                ws._eof_sent = True
            else:
                await ws.write_eof()  # what aiohttp does with the response its handler returns
        except Exception as exc:
            proto.log_exception("Error handling request", exc_info=exc)
            proto.force_close()
        except BaseException:
            proto.force_close()
            raise
        finally:
            ws.release_reader()
            _handled(proto)
        _finished(proto)

    @staticmethod
    def _answer(headers: Mapping[str, str], accept: Accept) -> tuple[bytes, str | None] | None:
        """The 101 aiohttp would write for ``accept`` and its subprotocol, or None when
        aiohttp's path should answer (see the class docstring)."""
        subprotocol = accept.subprotocol or None
        offered = headers.get("Sec-WebSocket-Protocol")
        if offered is None:
            subprotocol = None  # aiohttp names a subprotocol only when the client offered one
        elif subprotocol is None or subprotocol not in [p.strip() for p in offered.split(",")]:
            return None  # no overlap: aiohttp logs it and answers without one
        out: dict[str, str] = {}
        if accept.headers:
            seen: set[str] = set()
            for name, value in accept.headers.items():
                lower = name.lower()
                if lower in _MERGED_HEADERS or lower in seen:  # aiohttp's are case-insensitive
                    return None
                seen.add(lower)
                out[name] = value
        # aiohttp's order: the Accept's headers, its handshake headers, then Date and Server.
        key = headers["Sec-WebSocket-Key"].encode()
        # binascii directly: base64.b64encode is a Python wrapper around this very call.
        digest = hashlib.sha1(key + WS_KEY).digest()
        accept_key = binascii.b2a_base64(digest, newline=False)
        if not out and not subprotocol:
            # The usual 101 (no headers of the handler's, no subprotocol): what the serializer
            # below writes, from its constant parts. Every value is ASCII without control
            # characters (base64, aiohttp's date), so there is nothing for it to refuse; its
            # check of each character was about 5,000 instructions per handshake.
            date = rfc822_formatted_time().encode("ascii")
            return b"".join(
                (_PLAIN_101_START, accept_key, b"\r\nDate: ", date, _PLAIN_101_END)
            ), None
        out["Upgrade"] = "websocket"
        out["Connection"] = "upgrade"
        out["Sec-WebSocket-Accept"] = accept_key.decode()
        if subprotocol:
            out["Sec-WebSocket-Protocol"] = subprotocol
        out["Date"] = rfc822_formatted_time()
        out["Server"] = SERVER_SOFTWARE
        try:
            # A plain dict where aiohttp's signature names its CIMultiDict: its C serializer
            # only iterates the items.
            head = _serialize_headers("HTTP/1.1 101 Switching Protocols", out)  # type: ignore[arg-type]
        except ValueError:  # a control character aiohttp refuses to write: its path answers
            return None
        return head, subprotocol


def _handled(proto: RequestHandler) -> None:
    """The end of a request for aiohttp's shutdown(), as aiohttp's request task ends it."""
    proto._request_in_progress = False
    waiter = proto._handler_waiter
    if waiter is not None:
        waiter.set_result(None)


def _finished(proto: RequestHandler) -> None:
    """The end of aiohttp's request loop (RequestHandler.start) for a connection it keeps no
    longer."""
    if not proto._force_close:
        proto._task_handler = None
        if proto.transport is not None:
            proto.transport.close()


_WebSocketTemplate = tuple[tuple[str, Any], ...]


def _websocket_template(options: SocketOptions) -> _WebSocketTemplate:
    """The attributes the response :func:`_websocket` builds for ``options`` gets from its
    ``__init__`` (aiohttp's and ours), in the order they are set: see
    :func:`_websocket_from`."""
    return tuple(vars(_websocket(options, None)).items())


def _websocket_from(
    template: _WebSocketTemplate, subprotocol: str | None
) -> _HubbubWebSocketResponse:
    """What ``_websocket(options, subprotocol)`` returns, built from
    ``_websocket_template(options)``: the same attributes with the same values, set in the same
    order (so the instance keeps Python's compact attribute layout), and a new dict and header
    map of its own where the template holds those. Three ``__init__`` calls passing a dozen
    keyword arguments on were about 24,000 instructions per handshake; this is a tenth of that.
    tests/gateway/test_transport_upgrade.py compares the two for every option that matters."""
    ws = _new_response(_HubbubWebSocketResponse)
    for name, value in template:
        setattr(ws, name, value)
    # The only mutable values __init__ sets (the test checks that): each response its own.
    ws._state = {}
    ws._headers = CIMultiDict()
    if subprotocol:
        ws._protocols = (subprotocol,)
    return ws


_new_response = object.__new__


def _websocket(options: SocketOptions, subprotocol: str | None) -> _HubbubWebSocketResponse:
    return _HubbubWebSocketResponse(
        max_frame=options.max_frame_bytes,
        max_message=options.max_message_bytes,
        pong_timeout=options.ping_timeout,
        heartbeat=options.ping_interval or None,
        protocols=(subprotocol,) if subprotocol else (),
        compress=options.compression,
        # aiohttp refuses sizes >= max_msg_size; a message of exactly the limit is allowed.
        max_msg_size=options.max_message_bytes + 1,
        autoclose=True,
        autoping=True,
        timeout=options.close_timeout,
    )


async def start_public(
    *,
    host: str,
    port: int,
    stage: str,
    on_handshake: HandshakeHandler,
    options: SocketOptions,
    static_dir: Path | None,
    extra_files: Iterable[tuple[str, Path, str]] = (),
    max_header_bytes: int = 16384,
    reuse_port: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    probes: Mapping[str, Callable[[], Awaitable[HttpResponse]]] | None = None,
    proxy_from: Callable[[str], bool] | None = None,
) -> Listener:
    """Serve the WebSocket endpoint at ``/{stage}`` and optional static files.

    ``ssl_context``: wss:// (and https:// pages). ``probes``: plain GET paths answered by a
    function (``/healthz``, ``/readyz`` for load balancers), before any static file.
    ``proxy_from``: peers that send a PROXY protocol header first (``[server] proxy_protocol``).
    """

    # Plain TCP connections whose first request is a common upgrade take hubbub's own path.
    own = _OwnUpgrade(f"/{stage}", on_handshake, options) if ssl_context is None else None

    async def websocket_entry(request: web.Request) -> web.StreamResponse:
        # An upgrade request whose answer _OwnUpgrade already has (its $connect ran there).
        decision = own.decided(request.protocol) if own is not None else None
        if isinstance(decision, Exception):
            raise decision
        if decision is None:
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return web.Response(
                    status=426,
                    text=f"Upgrade Required: /{stage} is a WebSocket endpoint\n",
                    headers={"Upgrade": "websocket"},
                )
            refusal = _upgrade_refusal(request.headers)
            if refusal is not None:
                # Checked before $connect runs: an upgrade that cannot succeed never reaches
                # a handler.
                return refusal
            decision = await on_handshake(
                _handshake(
                    request.raw_path, request.raw_headers, request.protocol, secure=request.secure
                )
            )
        if isinstance(decision, HttpResponse):
            return web.Response(
                status=decision.status, headers=decision.headers, body=decision.body
            )
        ws = _websocket(options, decision.subprotocol)
        for name, value in decision.headers.items():
            ws.headers[name] = value
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError):
            # The client left before the 101: nothing to answer, but aiohttp needs a response
            # it can finish without complaining (an unprepared WebSocketResponse is not one).
            decision.gone()
            return web.Response(status=400)
        transport = request.transport
        if transport is None:  # peer vanished between handshake and 101
            ws.release_reader()
            decision.gone()
            return ws
        run = decision.run(Socket(ws, transport))  # type: ignore[arg-type,unused-ignore]
        # This frame lives as long as the connection: let the decision (and what it refers to)
        # go now rather than hold it in a local.
        del decision
        try:
            await run
        finally:
            ws.release_reader()
        return ws

    # The handshake timeout bounds how long a TCP connection may take to send its (upgrade)
    # request, so silent and slowloris clients are dropped; an idle keep-alive connection (after
    # a static file) gets no longer.
    limits = ConnectionLimits(
        max_header_bytes=max_header_bytes,
        header_timeout=options.handshake_timeout,
        idle_timeout=options.handshake_timeout,
        max_pending=options.max_pending_handshakes,
        proxy_from=proxy_from,
        first_request=own,
    )
    if lean_transport() and own is not None and not options.compression and proxy_from is None:
        limits.lean = LeanEntry(f"/{stage}", on_handshake, options, limits, own._answer)
    app = web.Application(handler_args=_limits(max_header_bytes, options.handshake_timeout))
    app.router.add_get(f"/{stage}", websocket_entry)
    for url_path, probe in (probes or {}).items():
        app.router.add_get(url_path, _probe_handler(probe))
    for url_path, file_path, content_type in extra_files:
        app.router.add_get(url_path, _file_handler(file_path, content_type))
    if static_dir is not None:
        index = static_dir / "index.html"
        if index.is_file():
            app.router.add_get("/", _file_handler(index, "text/html; charset=utf-8"))
        app.router.add_static("/", static_dir, follow_symlinks=False)
    return await _serve(app, host, port, limits, ssl_context=ssl_context, reuse_port=reuse_port)


def _probe_handler(
    probe: Callable[[], Awaitable[HttpResponse]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(request: web.Request) -> web.Response:
        response = await probe()
        return web.Response(status=response.status, headers=response.headers, body=response.body)

    return answer


def _file_handler(
    path: Path, content_type: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        del request
        return web.FileResponse(path, headers={"Content-Type": content_type})

    return handler


def start_upgraded(
    ws: _HubbubWebSocketResponse,
    proto: RequestHandler,
    transport: asyncio.Transport,
    path: str,
    subprotocol: str | None,
) -> _UpgradedRequest:
    """What ``ws.prepare`` sets up after writing the 101, for a 101 :class:`_OwnUpgrade`
    wrote itself (an upgrade it takes has no permessage-deflate). The caller then awaits
    the returned request's ``drain``, as ``prepare`` does."""
    ws._loop = proto._loop
    ws.force_close()
    ws._compress = 0
    request = _UpgradedRequest(proto, path)
    ws._req = request  # type: ignore[assignment]
    ws._payload_writer = request  # type: ignore[assignment]
    writer = WebSocketWriter(proto, transport, limit=ws._writer_limit)
    ws._post_start(request, subprotocol, writer)
    return request
