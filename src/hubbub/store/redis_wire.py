"""A lean, pipelined RESP connection for the Redis calls made once per message.

redis-py spends about 110 µs of CPU per command on the client side (pool checkout, retry and
timeout wrappers, event dispatch, observability hooks); a room send on a node with a Redis store
makes two (the history append and ``ROOM_PUBLISH``), and on a node that shares its core with the
room's other node that time comes out of the fan-out. :class:`Wire` writes the same commands on one
connection per client, pipelined in order, and matches replies first-in first-out with hiredis
parsing them (about 35 µs per command).

It stands beside the redis-py client of a single server (``redis://``, ``rediss://``,
``unix://``; Sentinel and Cluster stay on redis-py) and behaves as that client does for its
callers:

- the same server, credentials, database, TLS context and timeouts: read from the redis-py
  client's own connection settings (:func:`open_wire`), so the URL means the same;
- error replies are redis-py's exception classes, built by redis-py's own mapping
  (``BaseParser.parse_error``): ``ResponseError``, ``NoScriptError``, ``ReadOnlyError``,
  ``OutOfMemoryError``...; ``NOSCRIPT`` (after ``SCRIPT FLUSH`` or a restart) loads the script
  and runs it again, as redis-py's ``Script`` does;
- a lost connection fails every pending call with ``redis.exceptions.ConnectionError``; a call
  not answered within the socket timeout fails with ``redis.exceptions.TimeoutError`` and the
  connection is dropped (the calls queued behind it fail with it); the next call dials again.

Unlike redis-py there is no immediate retry of a failed call: redis-py's retry re-dials a pooled
socket that went stale while idle (a restarted Redis), whereas this connection is always read, so
a server that closed it is noticed when it happens and the next call dials afresh.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from redis._parsers.base import BaseParser
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import (
    AuthenticationWrongNumberOfArgsError,
    InvalidResponse,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import format_error_message

from hubbub.store import redis_connect

try:
    import hiredis

    HIREDIS = True
except ImportError:  # pragma: no cover - the redis extra brings it; without it, redis-py only
    HIREDIS = False

Arg = str | bytes | int | float
MORE = object()  # hiredis: no complete reply buffered yet


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP, as redis-py would send it."""
    # hiredis' stub types the argument as a 1-tuple; it takes any number of arguments.
    packed: bytes = hiredis.pack_command(cast(Any, tuple(args)))
    return packed


class Script:
    """A Lua script run by its SHA1 (``EVALSHA``), as redis-py's ``Script`` does."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect: what redis-py's connection for the same URL would use."""

    name: str  # "host:port" or the socket path, in error messages (redis-py's wording)
    host: str = ""
    port: int = 0
    path: str = ""  # a Unix socket instead of host:port
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    client_name: str | None = None
    timeout: float = 1.0  # for a reply
    connect_timeout: float = 1.0

    def same_server(self, other: Endpoint) -> bool:
        """Whether ``other`` reaches the same server, database and user."""
        return (self.name, self.db, self.username) == (other.name, other.db, other.username)


def endpoint_of(client: Any) -> Endpoint | None:
    """The server a single-server redis-py client (``redis.asyncio.Redis``) dials, or None
    when it cannot be dialled the same way (a credential provider, a Sentinel-managed master)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if pool is None or kwargs is None or "connection_pool" in kwargs:
        return None  # a Sentinel pool passes itself to its connections
    conn = pool.connection_class(**kwargs)  # redis-py's defaults fill what the URL left out
    if conn.credential_provider is not None or type(pool).__name__.startswith("Sentinel"):
        return None
    if conn.username and not conn.password:
        return None  # redis-py sends "AUTH user None" then: nothing to agree with
    common: dict[str, Any] = {
        "name": conn._host_error(),
        "username": conn.username,
        "password": conn.password,
        "db": int(conn.db or 0),
        "client_name": conn.client_name,
        "timeout": conn.socket_timeout if conn.socket_timeout is not None else 1.0,
        "connect_timeout": (
            conn.socket_connect_timeout
            if conn.socket_connect_timeout is not None
            else conn.socket_timeout or 1.0
        ),
    }
    if isinstance(conn, UnixDomainSocketConnection):
        return Endpoint(path=conn.path, **common)
    tls = conn.ssl_context.get() if isinstance(conn, SSLConnection) else None
    return Endpoint(host=conn.host, port=int(conn.port), tls=tls, **common)


def open_wire(url: str, client: Any) -> Wire | None:
    """A :class:`Wire` to the server of ``url`` beside its redis-py ``client``, or None: keep
    redis-py (Sentinel, Cluster, a client :func:`endpoint_of` cannot follow, no hiredis)."""
    if not HIREDIS or urlsplit(url).scheme not in redis_connect.SERVER_SCHEMES:
        return None
    endpoint = endpoint_of(client)
    return None if endpoint is None else Wire(endpoint)


class RespProtocol(asyncio.Protocol):
    """One socket: commands written in order, replies matched to them first-in first-out.

    Each call has its deadline (the socket timeout after it was written): one timer per
    connection watches the oldest."""

    def __init__(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        self._endpoint = endpoint
        self._loop = loop
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=BaseParser.parse_error,
            notEnoughData=MORE,
        )
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._sent: collections.deque[float] = collections.deque()  # loop time of each
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self.open = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse as exc:
                self.fail(RedisConnectionError(f"Protocol error from {self._endpoint.name}: {exc}"))
                return
            if reply is MORE:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.fail(RedisConnectionError(f"Unexpected reply from {self._endpoint.name}"))
                return
            future = waiting.popleft()
            self._sent.popleft()
            if isinstance(reply, RedisConnectionError):
                # LOADING, NOAUTH...: redis-py raises these and drops the connection.
                if not future.done():
                    future.set_exception(reply)
                self.fail(RedisConnectionError(f"{reply} (from {self._endpoint.name})"))
                return
            if future.done():
                continue  # its caller was cancelled
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            error = RedisConnectionError(f"Connection closed by server ({self._endpoint.name}).")
        else:
            error = RedisConnectionError(
                f"Error while reading from {self._endpoint.name} : {exc.args}"
            )
        self.fail(error)

    # -- calls ----------------------------------------------------------------------------------
    def call(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        """Write one command now; the future resolves with its reply."""
        assert self._transport is not None
        loop = self._loop
        future = loop.create_future()
        self._transport.write(pack(args))
        now = loop.time()
        self._waiting.append(future)
        self._sent.append(now)
        if self._timer is None:
            self._timer = loop.call_at(now + self._endpoint.timeout, self._check_timeout)
        return future

    def _check_timeout(self) -> None:
        # One timer per connection, not per call: it is re-armed for the oldest pending call
        # when it fires, so a steady stream of calls creates one timer per timeout period.
        self._timer = None
        if not self._sent:
            return
        deadline = self._sent[0] + self._endpoint.timeout
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_timeout)
            return
        self.fail(RedisTimeoutError(f"Timeout reading from {self._endpoint.name}"))

    def fail(self, error: Exception) -> None:
        """Drop the connection; every pending call fails with ``error``."""
        self.open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        waiting, self._waiting = self._waiting, collections.deque()
        self._sent.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(error)


class Wire:
    """A client of one Redis server for the hot commands; dials lazily, on the first call after
    a loss. Calls are pipelined: each is written at once, whatever is still pending."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._protocol: RespProtocol | None = None
        self._dialing: asyncio.Task[RespProtocol] | None = None
        self._closed = False

    def call(self, *args: Arg) -> Awaitable[Any]:
        """Run one command (``call("PUBLISH", channel, frame)``); awaits its reply."""
        protocol = self._protocol
        if protocol is not None and protocol.open:
            return protocol.call(args)
        return self._call_after_dial(args)

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run ``script`` (``EVALSHA``); load it first if the server does not have it."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", script.body)
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def aclose(self) -> None:
        """Close the connection; pending and later calls fail with ConnectionError."""
        self._closed = True
        if self._dialing is not None:
            self._dialing.cancel()
        if self._protocol is not None:
            self._protocol.fail(RedisConnectionError("Connection closed by client."))
            self._protocol = None

    async def _call_after_dial(self, args: Sequence[Arg]) -> Any:
        protocol = await self._connected()
        if not protocol.open:  # lost again while this caller was waking up
            raise RedisConnectionError(f"Connection to {self.endpoint.name} lost.")
        return await protocol.call(args)

    async def _connected(self) -> RespProtocol:
        if self._closed:
            raise RedisConnectionError("Connection closed by client.")
        protocol = self._protocol
        if protocol is not None and protocol.open:
            return protocol
        if self._dialing is None:
            # One dial for all the callers that find the connection down at the same time.
            self._dialing = asyncio.get_running_loop().create_task(self._dial())
            self._dialing.add_done_callback(self._dialled)
        return await asyncio.shield(self._dialing)

    def _dialled(self, task: asyncio.Task[RespProtocol]) -> None:
        self._dialing = None
        if task.cancelled() or task.exception() is not None:
            return  # every caller waiting on it got the error (exception() marks it seen)
        protocol = task.result()
        if self._closed:
            protocol.fail(RedisConnectionError("Connection closed by client."))
        else:
            self._protocol = protocol

    async def _dial(self) -> RespProtocol:
        return await dial(self.endpoint, RespProtocol)


P = TypeVar("P", bound="RespProtocol")


async def dial(
    endpoint: Endpoint, factory: Callable[[Endpoint, asyncio.AbstractEventLoop], P]
) -> P:
    """Connect to ``endpoint`` and authenticate: a ``factory`` protocol ready for commands."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(endpoint.connect_timeout):
            if endpoint.path:
                _, protocol = await loop.create_unix_connection(
                    lambda: factory(endpoint, loop), endpoint.path
                )
            else:
                _, protocol = await loop.create_connection(
                    lambda: factory(endpoint, loop), endpoint.host, endpoint.port, ssl=endpoint.tls
                )
    except TimeoutError:
        raise RedisTimeoutError("Timeout connecting to server") from None
    except OSError as exc:
        raise RedisConnectionError(format_error_message(endpoint.name, exc)) from exc
    try:
        await _handshake(endpoint, protocol)
    except BaseException:
        protocol.fail(RedisConnectionError("Connection closed during the handshake."))
        raise
    return protocol


async def _handshake(endpoint: Endpoint, protocol: RespProtocol) -> None:
    """AUTH, then CLIENT SETNAME and SELECT, as redis-py's connection sends them; their replies
    are read under the socket timeout like any other."""
    if endpoint.password:
        credentials = (endpoint.username, endpoint.password) if endpoint.username else None
        try:
            await protocol.call(("AUTH", *(credentials or (endpoint.password,))))
        except AuthenticationWrongNumberOfArgsError:
            # Redis before 6 knows no users: the password alone (as redis-py does).
            await protocol.call(("AUTH", endpoint.password))
    pending = []
    if endpoint.client_name:
        pending.append(protocol.call(("CLIENT", "SETNAME", endpoint.client_name)))
    if endpoint.db:
        pending.append(protocol.call(("SELECT", endpoint.db)))
    if pending:
        await asyncio.gather(*pending)  # gather also collects the error of each


__all__ = [
    "MORE",
    "Endpoint",
    "RespProtocol",
    "Script",
    "Wire",
    "dial",
    "endpoint_of",
    "open_wire",
    "pack",
]
