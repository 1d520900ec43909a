"""Store fixtures: the contract suite runs once per implementation (``memory://``, ``redis://``,
``redis+sentinel://``, ``redis+cluster://``).

``stores(node_id)`` opens and starts a store of the parametrised kind; every store of one test
shares one key prefix (so they form one cluster) and is closed, and its keys deleted, afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hubbub.store import ConnectionRecord, Delivery, Store, open_store
from tests.store.redis_server import delete_prefix, unique_prefix

# Short, so that reaping tests are quick; dead = 3 intervals.
HEARTBEAT = 0.2


@dataclass
class Node:
    """A started store plus what its callbacks saw."""

    store: Store
    node_id: str
    deliveries: list[Delivery] = field(default_factory=list)
    reaped: list[ConnectionRecord] = field(default_factory=list)

    async def handle(self, delivery: Delivery) -> int:
        self.deliveries.append(delivery)
        return 1

    async def on_reaped(self, record: ConnectionRecord) -> None:
        self.reaped.append(record)

    @property
    def registry(self):  # type: ignore[no-untyped-def]  # the protocol, for brevity in tests
        return self.store.registry


Stores = Callable[..., Awaitable[Node]]


# The shared stores: one Redis server, a Sentinel-managed master, a three-master Cluster.
SHARED = ("redis", "sentinel", "cluster")
REDIS_FIXTURES = {"redis_url", "private_redis", "sentinel_url", "cluster_url"}


@pytest.fixture(params=["memory", *SHARED])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=SHARED)
def shared_store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever ends up using a Redis server is marked, so `-m "not redis"` runs without one.
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        param = params.get("store_url", params.get("shared_store_url"))
        fixtures = set(getattr(item, "fixturenames", ()))
        if param in SHARED or (param is None and fixtures & REDIS_FIXTURES):
            item.add_marker(pytest.mark.redis)


@contextlib.asynccontextmanager
async def _cluster(url: str) -> AsyncIterator[Stores]:
    prefix = unique_prefix()
    opened: list[Node] = []

    async def open_node(node_id: str = "node-a", *, heartbeat: float = HEARTBEAT) -> Node:
        store = open_store(url, node_id=node_id, key_prefix=prefix, heartbeat_interval=heartbeat)
        node = Node(store, node_id)
        await store.start(node.handle, node.on_reaped)
        opened.append(node)
        return node

    try:
        yield open_node
    finally:
        for node in opened:
            await node.store.close()
        if url != "memory://":
            # An outage test may leave its (private, throwaway) server stopped.
            with contextlib.suppress(RedisConnectionError):
                await delete_prefix(url, prefix)


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[Stores]:
    """Nodes on the parametrised store (one node is all ``memory://`` can be)."""
    async with _cluster(store_url) as open_node:
        yield open_node


@pytest.fixture
async def redis_stores(shared_store_url: str) -> AsyncIterator[Stores]:
    """Nodes sharing one Redis (server, Sentinel or Cluster): the multi-node contract."""
    async with _cluster(shared_store_url) as open_node:
        yield open_node


def record(cid: str, node_id: str = "node-a", **extra: object) -> ConnectionRecord:
    """A connection record with recognisable field values."""
    fields: dict[str, object] = {
        "connection_id": cid,
        "node_id": node_id,
        "connected_at": 1_700_000_000_000,
        "last_active_at": 1_700_000_000_000,
        "source_ip": "203.0.113.7",
        "user_agent": "pytest/1.0",
    }
    fields.update(extra)
    return ConnectionRecord(**fields)  # type: ignore[arg-type]
