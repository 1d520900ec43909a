"""Which Redis a store URL names, and a client for it: one server, Sentinel, or Cluster.

- ``redis://[[user]:password@]host:6379/0`` (also ``rediss://``, ``unix:///path?db=0``): one
  server;
- ``redis+sentinel://[[user]:password@]s1:26379,s2:26379/service[/db]``: the master of
  ``service`` as the Sentinels name it, followed through failovers;
- ``redis+cluster://[[user]:password@]n1:7000,n2:7001``: a Redis Cluster; any reachable node is
  enough to discover the others.

The credentials in the URL are the data servers' (master, replicas, cluster nodes); Sentinels are
asked without a password. Every client gets short timeouts, so that a call during an outage or a
failover fails fast (see :mod:`hubbub.store.redis`, "Outage") instead of hanging.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

SOCKET_TIMEOUT = 1.0
POOL_SIZE = 100  # redis-py's default; per process, shared by registry, bus and heartbeats

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
SERVER_SCHEMES = ("redis", "rediss", "unix")
SCHEMES = (*SERVER_SCHEMES, SENTINEL_SCHEME, CLUSTER_SCHEME)


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``redis+sentinel://`` or ``redis+cluster://`` URL."""

    kind: str  # "sentinel" or "cluster"
    hosts: tuple[tuple[str, int], ...]
    service: str = ""  # Sentinel: the monitored master's name
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme == CLUSTER_SCHEME


def parse(url: str) -> Target:
    """Parse a Sentinel or Cluster URL; ValueError (saying what is wrong) if malformed."""
    parts = urlsplit(url)
    if parts.scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise ValueError(f"not a {SENTINEL_SCHEME}:// or {CLUSTER_SCHEME}:// URL: {url!r}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(item, url) for item in hostlist.split(",") if item.strip())
    if not hosts:
        raise ValueError(f"{url!r} names no host (host:port[,host:port...])")
    path = [p for p in parts.path.split("/") if p]
    user, secret = unquote(username) or None, unquote(password) or None
    if parts.scheme == CLUSTER_SCHEME:
        if path not in ([], ["0"]):
            raise ValueError(f"{url!r}: Redis Cluster has database 0 only (no path, or /0)")
        return Target("cluster", hosts, username=user, password=secret)
    if not path or len(path) > 2:
        raise ValueError(
            f"{url!r}: expected {SENTINEL_SCHEME}://host:port[,host:port...]/service[/db]"
        )
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"{url!r}: database must be a number, got {db!r}")
    return Target(
        "sentinel", hosts, service=unquote(path[0]), db=int(db), username=user, password=secret
    )


def _host_port(item: str, url: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{url!r}: {item.strip()!r} is not host:port")
    return host.strip("[]"), int(port)


class _SentinelBlockingPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's pool, waiting for a free connection like :func:`connect`'s plain pool.

    Closing it also closes the connections to the Sentinels (redis-py leaves those open)."""

    async def aclose(self) -> None:
        await super().aclose()
        close = getattr(self.sentinel_manager, "aclose", None)  # redis-py 8 has it
        if close is not None:
            await close()


class _BoundedCluster(RedisCluster):
    """A Cluster client whose callers wait for a free connection instead of failing.

    RedisCluster raises MaxConnectionsError as soon as one node's pool is exhausted (its pub/sub
    borrows from the same pools). Bounding the commands in flight below a pool's size makes
    callers queue, like the blocking pool of a single server; waiting longer than
    SOCKET_TIMEOUT fails like a timeout (the store treats that as Redis being unavailable).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = asyncio.Semaphore(POOL_SIZE - 10)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(SOCKET_TIMEOUT):
            await self._in_flight.acquire()
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._in_flight.release()

    async def read_many(self, command: str, keys: list[str], *args: Any) -> list[Any]:
        """``command key *args`` for each key, as one pipeline: one round trip per shard
        (a pipeline holds at most one connection per node, so it counts as one command)."""
        async with asyncio.timeout(SOCKET_TIMEOUT):
            await self._in_flight.acquire()
        try:
            async with self.pipeline(transaction=False) as pipe:
                for key in keys:
                    getattr(pipe, command)(key, *args)
                return list(await pipe.execute())
        finally:
            self._in_flight.release()


def connect(url: str) -> Any:
    """A client (``redis.asyncio.Redis`` or ``RedisCluster``) for any URL of :data:`SCHEMES`.

    The pool of a single server or Sentinel master makes a caller wait (up to SOCKET_TIMEOUT) for
    a free connection when all are busy: redis-py's default pool raises at once instead, and a
    burst of handshakes (each a registry write) then failed writes and heartbeats alike, which can
    get a live node reaped by others.
    """
    common: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "decode_responses": False,
    }
    # One immediate retry re-dials a pooled socket that a Redis restart closed; more would only
    # make a caller wait during a real outage.
    retry = Retry(NoBackoff(), 1)
    scheme = urlsplit(url).scheme
    if scheme in SERVER_SCHEMES:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=SOCKET_TIMEOUT, retry=retry, **common
        )
        return aioredis.Redis.from_pool(pool)  # from_pool: closing the client closes the pool
    target = parse(url)
    credentials: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        if not hasattr(RedisCluster, "pubsub"):
            raise ValueError(
                f"redis+cluster:// needs sharded pub/sub in redis-py 8 or newer "
                f"(pip install 'redis>=8'; found redis {redis.__version__})"
            )
        return _BoundedCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            max_connections=POOL_SIZE,
            # After a failed attempt, refresh the slot map and try once more, at once. The
            # default (three more, with backoff) kept a call waiting through a whole failover,
            # to land seconds later on the promoted replica.
            retry=retry,
            **credentials,
            **common,
        )
    sentinel = Sentinel(
        list(target.hosts),
        sentinel_kwargs={"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": 1.0},
    )
    return sentinel.master_for(
        target.service,
        connection_pool_class=_SentinelBlockingPool,
        max_connections=POOL_SIZE,
        timeout=SOCKET_TIMEOUT,
        db=target.db,
        retry=retry,
        **credentials,
        **common,
    )


__all__ = ["SCHEMES", "Target", "connect", "is_cluster", "parse"]
