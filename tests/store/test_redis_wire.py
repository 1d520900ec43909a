"""The lean pipelined Redis connection (``hubbub.store.redis_wire``) against real servers.

It must look like redis-py to its callers: the same exception classes for error replies, the same
server, credentials and database for a URL, ConnectionError when the connection is lost and
TimeoutError when Redis does not answer in time. Most tests run on a private ``redis-server``
(``scripts/ensure_redis.py``), since they flush scripts, kill clients, set passwords or sleep it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub.gateway.tls import ensure_local_tls
from hubbub.store import redis_wire
from hubbub.store.redis_connect import connect
from hubbub.store.redis_wire import Endpoint, Script, Wire, endpoint_of, open_wire
from scripts.ensure_redis import RedisProcess, RedisUnavailable
from scripts.ports import free_port

pytestmark = pytest.mark.redis


def _start(server: RedisProcess) -> RedisProcess:
    try:
        server.start()
    except RedisUnavailable as exc:
        server.close()
        pytest.fail(f"needs redis-server: {exc}")
    return server


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    """A private Redis that allows DEBUG and listens on a Unix socket too."""
    proc = RedisProcess()
    proc.extra = [
        "--enable-debug-command", "local",
        "--unixsocket", str(proc.dir / "redis.sock"),
        "--unixsocketperm", "700",
    ]  # fmt: skip
    yield _start(proc)
    proc.close()


@contextlib.asynccontextmanager
async def wire_for(url: str) -> AsyncIterator[Wire]:
    client = connect(url)
    wire = open_wire(url, client)
    assert wire is not None
    try:
        yield wire
    finally:
        await wire.aclose()
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_py(url: str) -> AsyncIterator[Any]:
    client = connect(url)
    try:
        yield client
    finally:
        await client.aclose()


# -- pipelining -------------------------------------------------------------------------------


async def test_concurrent_calls_are_answered_in_the_order_they_were_made(
    server: RedisProcess,
) -> None:
    async with wire_for(server.url) as wire:
        await wire.call("DEL", "counter")
        calls = [wire.call("INCR", "counter") for _ in range(500)]
        assert await asyncio.gather(*calls) == list(range(1, 501))
        # Mixed replies (status, bulk, integer, array, nil) each reach their own caller.
        replies = await asyncio.gather(
            wire.call("SET", "k", b"\x00raw"),
            wire.call("GET", "k"),
            wire.call("RPUSH", "l", "a", "b"),
            wire.call("LRANGE", "l", 0, -1),
            wire.call("GET", "missing"),
            wire.call("DEL", "l"),
        )
        assert replies == [b"OK", b"\x00raw", 2, [b"a", b"b"], None, 1]


async def test_a_cancelled_call_does_not_shift_the_replies(server: RedisProcess) -> None:
    async with wire_for(server.url) as wire:
        slow = asyncio.ensure_future(wire.call("BLPOP", "nothing-here", "0.2"))
        after = asyncio.ensure_future(wire.call("ECHO", "mine"))
        await asyncio.sleep(0.01)
        slow.cancel()
        assert await after == b"mine"
        assert await wire.call("ECHO", "next") == b"next"


# -- error replies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("ERR something went wrong", ResponseError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", ResponseError),
        ("NOSCRIPT No matching script", NoScriptError),
        ("READONLY You can't write against a read only replica.", ReadOnlyError),
        ("OOM command not allowed when used memory > 'maxmemory'.", OutOfMemoryError),
        ("LOADING Redis is loading the dataset in memory", BusyLoadingError),
    ],
)
async def test_error_replies_raise_what_redis_py_raises(
    server: RedisProcess, reply: str, kind: type[Exception]
) -> None:
    # A script can answer any error reply: the same one reaches both clients.
    script = "return redis.error_reply(ARGV[1])"
    async with wire_for(server.url) as wire, redis_py(server.url) as client:
        with pytest.raises(kind) as ours:
            await wire.call("EVAL", script, 0, reply)
        with pytest.raises(kind) as theirs:
            await client.eval(script, 0, reply)
        assert type(ours.value) is type(theirs.value)
        assert ours.value.args == theirs.value.args
        # The connection is still usable (a LOADING reply drops it, as redis-py does: the next
        # call dials again).
        assert await wire.call("PING") == b"PONG"


async def test_a_real_error_reply_is_the_same_exception(server: RedisProcess) -> None:
    async with wire_for(server.url) as wire, redis_py(server.url) as client:
        await client.set("a-string", "x")
        with pytest.raises(ResponseError) as ours:
            await wire.call("LPUSH", "a-string", "y")
        with pytest.raises(ResponseError) as theirs:
            await client.lpush("a-string", "y")
        assert (type(ours.value), ours.value.args) == (type(theirs.value), theirs.value.args)


async def test_a_flushed_script_is_loaded_again_transparently(server: RedisProcess) -> None:
    script = Script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
    async with wire_for(server.url) as wire, redis_py(server.url) as client:
        await client.delete("runs")
        assert await wire.evalsha(script, ["runs"], ["x"]) == [b"runs", b"x", 1]
        await client.script_flush()
        assert await client.script_exists(script.sha) == [False]
        # Several callers at once, as on a busy node after a Redis restart.
        replies = await asyncio.gather(*(wire.evalsha(script, ["runs"], [i]) for i in range(5)))
        assert sorted(r[2] for r in replies) == [2, 3, 4, 5, 6]
        assert await client.script_exists(script.sha) == [True]
        # The same SHA1 as redis-py's Script: both share the server's script cache.
        assert client.register_script(script.body).sha == script.sha


# -- connection loss and timeouts -------------------------------------------------------------


async def test_a_killed_connection_fails_pending_calls_and_the_next_call_reconnects(
    server: RedisProcess,
) -> None:
    async with wire_for(server.url) as wire, redis_py(server.url) as client:
        first_id = await wire.call("CLIENT", "ID")
        pending = [asyncio.ensure_future(wire.call("BLPOP", "never", "0")) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert await client.client_kill_filter(_id=first_id) == 1
        for call in pending:
            with pytest.raises(RedisConnectionError):
                await call
        second_id = await wire.call("CLIENT", "ID")
        assert second_id != first_id


async def test_a_call_to_a_stopped_server_fails_fast_with_connection_error() -> None:
    port = free_port()  # nothing listens there
    async with wire_for(f"redis://127.0.0.1:{port}/0") as wire:
        started = time.monotonic()
        with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{port}"):
            await wire.call("PING")
        assert time.monotonic() - started < 0.5


async def test_a_sleeping_server_times_out_and_the_connection_is_dropped(
    server: RedisProcess,
) -> None:
    async with wire_for(server.url) as wire, redis_py(server.url) as client:
        before = await wire.call("CLIENT", "ID")
        sleeper = asyncio.ensure_future(client.execute_command("DEBUG", "SLEEP", "1.6"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        calls = [wire.call("PING") for _ in range(3)]
        for call in calls:
            with pytest.raises(RedisTimeoutError):
                await call
        assert 0.8 < time.monotonic() - started < 2.0  # the socket timeout (1 s), once
        with contextlib.suppress(RedisTimeoutError, RedisConnectionError):
            await sleeper  # redis-py's own call may time out too
        assert await wire.call("CLIENT", "ID") != before


class _Silent(asyncio.Protocol):
    """A server that answers the first ``answers`` commands with +OK, then nothing."""

    def __init__(self, answers: int, connections: list[asyncio.Transport]) -> None:
        self.answers = answers
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.connections.append(transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        commands = data.count(b"*")  # commands without arrays in their arguments
        for _ in range(commands):
            if self.answers > 0:
                self.answers -= 1
                self.transport.write(b"+OK\r\n")


async def test_each_call_gets_its_own_deadline() -> None:
    connections: list[asyncio.Transport] = []
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Silent(1, connections), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    wire = Wire(Endpoint(name=f"127.0.0.1:{port}", host="127.0.0.1", port=port, timeout=0.3))
    try:
        assert await wire.call("PING") == b"OK"  # answered: arms the connection's timer
        await asyncio.sleep(0.2)
        sent = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await wire.call("PING")  # never answered: fails 0.3 s after it was sent
        waited = time.monotonic() - sent
        assert 0.28 < waited < 0.9
        await asyncio.sleep(0.05)
        assert connections[0].is_closing()  # dropped...
        assert await wire.call("PING") == b"OK"  # ...and dialled again for the next call
        assert len(connections) == 2
    finally:
        await wire.aclose()
        listener.close()


async def test_a_closed_wire_refuses_calls(server: RedisProcess) -> None:
    async with wire_for(server.url) as wire:
        assert await wire.call("PING") == b"PONG"
        await wire.aclose()
        with pytest.raises(RedisConnectionError):
            await wire.call("PING")


# -- URLs: the server, credentials and database redis-py would use ---------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "redis://",
        "redis://:p%40ss@cache.internal:7000/4",
        "redis://app:secret@cache.internal/2",
        "redis://cache.internal:6380?db=5",
        "rediss://app:secret@cache.internal:6390/1?ssl_cert_reqs=none",
        "unix:///run/redis.sock?db=3",
        "unix://:pw@/run/redis.sock",
    ],
)
def test_urls_mean_what_they_mean_to_redis_py(url: str) -> None:
    endpoint = endpoint_of(aioredis.Redis.from_url(url))
    assert endpoint is not None
    parsed = parse_url(url)
    assert endpoint.db == parsed.get("db", 0)
    assert endpoint.username == parsed.get("username")
    assert endpoint.password == parsed.get("password")
    if url.startswith("unix:"):
        assert endpoint.path == parsed["path"]
    else:
        assert (endpoint.host, endpoint.port) == (
            parsed.get("host", "localhost"),
            parsed.get("port", 6379),
        )
        assert (endpoint.tls is not None) == url.startswith("rediss:")


@pytest.mark.parametrize(
    "url", ["redis+sentinel://127.0.0.1:26379/mymaster", "redis+cluster://127.0.0.1:7000"]
)
def test_sentinel_and_cluster_stay_on_redis_py(url: str) -> None:
    assert open_wire(url, connect(url)) is None


def test_without_hiredis_the_per_message_calls_stay_on_redis_py(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "redis://127.0.0.1:6379/0"
    assert open_wire(url, connect(url)) is not None
    monkeypatch.setattr(redis_wire, "HIREDIS", False)
    assert open_wire(url, connect(url)) is None


@pytest.fixture
def locked_server() -> Iterator[RedisProcess]:
    """A private Redis whose default user gets a password once it is up."""
    yield (proc := _start(RedisProcess()))
    proc.close()


async def test_password_user_and_database_from_the_url(locked_server: RedisProcess) -> None:
    base = f"127.0.0.1:{locked_server.port}"
    async with redis_py(f"redis://{base}/0") as admin:
        await admin.execute_command("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "+@all")
        await admin.config_set("requirepass", "def-pw")
    async with redis_py(f"redis://:def-pw@{base}/3") as client:
        await client.set("where", "db3")
        async with wire_for(f"redis://:def-pw@{base}/3?client_name=lean") as wire:
            assert await wire.call("GET", "where") == b"db3"
            assert await wire.call("ACL", "WHOAMI") == b"default"
            assert await wire.call("CLIENT", "GETNAME") == b"lean"
        async with wire_for(f"redis://app:app-pw@{base}/2") as wire:
            assert await wire.call("ACL", "WHOAMI") == b"app"
            assert await wire.call("GET", "where") is None  # db 2, not 3
    for bad in (f"redis://:wrong@{base}/0", f"redis://app:wrong@{base}/0", f"redis://{base}/0"):
        async with wire_for(bad) as wire, redis_py(bad) as client:
            with pytest.raises(RedisConnectionError) as ours:
                await wire.call("SET", "k", "v")
            with pytest.raises(RedisConnectionError) as theirs:
                await client.set("k", "v")
            assert isinstance(ours.value, AuthenticationError) == isinstance(
                theirs.value, AuthenticationError
            )


async def test_a_unix_socket_url(server: RedisProcess) -> None:
    async with wire_for(f"unix://{server.dir / 'redis.sock'}?db=1") as wire:
        await wire.call("SET", "over-unix", "1")
        async with redis_py(f"redis://127.0.0.1:{server.port}/1") as client:
            assert await client.get("over-unix") == b"1"


async def test_a_rediss_url_verifies_the_server_certificate(tmp_path: Path) -> None:
    tls = ensure_local_tls(tmp_path / "ca", ["127.0.0.1"], trust_bundle=None)
    tls_port = free_port()
    proc = RedisProcess()
    proc.extra = [
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tls.cert),
        "--tls-key-file", str(tls.key),
        "--tls-ca-cert-file", str(tls.ca_cert),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    _start(proc)
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={tls.ca_cert}"
        async with wire_for(url) as wire:
            assert await wire.call("ECHO", "over tls") == b"over tls"
        other = ensure_local_tls(tmp_path / "other", ["127.0.0.1"], trust_bundle=None)
        async with wire_for(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={other.ca_cert}") as w:
            with pytest.raises(RedisConnectionError):
                await w.call("PING")  # an unknown CA: refused, like redis-py
    finally:
        proc.close()
