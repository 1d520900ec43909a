"""What is particular to ``redis+cluster://`` (the shared contract runs in test_contract.py):
node channels are shard channels spread over the shards, and one reachable node is enough."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.crc import key_slot

from hubbub.store import Delivery
from hubbub.store.recovery_redis import RedisRecovery
from hubbub.store.redis_connect import connect, parse
from tests.helpers import eventually
from tests.store.conftest import Stores, _cluster, record
from tests.store.redis_server import delete_prefix, unique_prefix


async def _shard_of(cluster_url: str, channel: str) -> tuple[str, int]:
    client = connect(cluster_url)
    try:
        await client.initialize()
        node = client.get_node_from_key(channel)
        return node.host, node.port
    finally:
        await client.aclose()


def _node_ids_on_distinct_slots(prefix: str, count: int) -> list[str]:
    """Node ids whose channels fall on slots in different thirds of the slot space (with three
    masters from ``redis-cli --cluster create``: on different shards)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < count:
        name = f"node-{i}"
        third = key_slot(f"{prefix}node:{name}".encode()) * 3 // 16384
        found.setdefault(third, name)
        i += 1
    return [found[k] for k in sorted(found)]


async def test_node_channels_are_shard_channels_on_several_shards(cluster_url: str) -> None:
    async with _cluster(cluster_url) as open_node:
        await _check_shard_channels(open_node, cluster_url)


async def _check_shard_channels(open_node: Stores, cluster_url: str) -> None:
    nodes = [await open_node("node-a")]
    prefix = nodes[0].store._link.channels  # type: ignore[attr-defined]
    spread = [await open_node(n) for n in _node_ids_on_distinct_slots(prefix, 3)]
    channels_at: dict[tuple[str, int], list[str]] = {}
    for n in spread:
        channel = f"{prefix}node:{n.node_id}"
        channels_at.setdefault(await _shard_of(cluster_url, channel), []).append(channel)
    assert len(channels_at) == 3
    for (host, port), channels in channels_at.items():
        server = aioredis.Redis(host=host, port=port)
        try:
            counts = await server.execute_command("PUBSUB", "SHARDNUMSUB", *channels)
            assert counts[1::2] == [1] * len(channels)
            # Not classic channels: a PUBLISH-based bus would show subscribers here.
            numsub = await server.execute_command("PUBSUB", "NUMSUB", *channels)
            assert numsub[1::2] == [0] * len(channels)
        finally:
            await server.aclose()
    await nodes[0].store.bus.publish([spread[1].node_id], Delivery("room", "r", b"m", "x"))
    await eventually(lambda: spread[1].deliveries, message="delivery over a shard channel")
    assert [d.data for d in spread[1].deliveries] == [b"m"]
    assert spread[0].deliveries == spread[2].deliveries == []


async def test_one_reachable_node_is_enough(cluster_url: str) -> None:
    host, port = parse(cluster_url).hosts[0]
    one = f"redis+cluster://{host}:{port}"
    prefix = unique_prefix()
    history = RedisRecovery(one, key_prefix=prefix, size=5, ttl=60)
    try:
        # Rooms hash to every shard: each append is redirected (MOVED) or routed by the slot map.
        rooms = [f"room-{i}" for i in range(30)]
        slots = {key_slot(f"{prefix}{{room:{r}}}:last".encode()) * 3 // 16384 for r in rooms}
        assert slots == {0, 1, 2}
        for room in rooms:
            assert (await history.append(room, b"x")).offset == 1
        for room in rooms:
            missed = await history.since(room, None)
            assert [data for _, data in missed.messages] == [b"x"]
    finally:
        await history.close()
        await delete_prefix(cluster_url, prefix)


async def test_registry_works_through_a_single_seed_node(cluster_url: str) -> None:
    from hubbub.store import open_store

    host, port = parse(cluster_url).hosts[-1]
    prefix = unique_prefix()
    store = open_store(f"redis+cluster://{host}:{port}", node_id="seed", key_prefix=prefix)

    async def handle(delivery: Delivery) -> int:
        return 1

    async def reaped(_: object) -> None:
        return None

    await store.start(handle, reaped)
    try:
        await store.registry.add(record("c1", "seed"))
        assert (await store.registry.get("c1")) is not None
        assert await store.registry.join("lobby", "c1")
        assert await store.registry.room_members("lobby") == ["c1"]
    finally:
        await store.close()
        await delete_prefix(cluster_url, prefix)


async def test_unreachable_cluster_at_start_serves_local_connections() -> None:
    import socket

    import pytest

    from hubbub.errors import UnavailableError
    from hubbub.store import open_store

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = open_store(
        f"redis+cluster://127.0.0.1:{port}", node_id="alone", key_prefix=unique_prefix()
    )

    async def handle(delivery: Delivery) -> int:
        return 1

    async def reaped(_: object) -> None:
        return None

    await store.start(handle, reaped)  # RedisClusterUnreachableError is an outage, not a crash
    try:
        status = store.status()
        assert status["redis"] == "down"
        assert "RedisClusterUnreachableError" in status["error"]
        await store.registry.add(record("mine", "alone"))  # own connections: the local mirror
        assert (await store.registry.get("mine")) is not None
        with pytest.raises(UnavailableError):
            await store.registry.count()
    finally:
        await store.close()


async def test_unreachable_cluster_makes_history_unavailable_not_an_error() -> None:
    import socket

    import pytest

    from hubbub.errors import UnavailableError

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    history = RedisRecovery(
        f"redis+cluster://127.0.0.1:{port}", key_prefix=unique_prefix(), size=5, ttl=60
    )
    try:
        with pytest.raises(UnavailableError):
            await history.append("room", b"x")
    finally:
        await history.close()


async def test_one_apis_registry_spreads_over_every_shard(cluster_url: str) -> None:
    async with _cluster(cluster_url) as open_node:
        a = await open_node("node-a")
        b = await open_node("node-b")
        cids = [f"c{i}" for i in range(60)]
        for i, cid in enumerate(cids):
            owner = a if i % 2 else b
            await owner.registry.add(record(cid, owner.node_id))
            await owner.registry.join("lobby", cid)
        prefix = a.store._link.channels  # type: ignore[attr-defined]
        per_master = []
        for host, port in parse(cluster_url).hosts:
            server = aioredis.Redis(host=host, port=port)
            try:
                keys = [k async for k in server.scan_iter(match=f"{{{prefix}/*conn:*")]
            finally:
                await server.aclose()
            per_master.append(len(keys))
        assert all(n > 0 for n in per_master), per_master
        assert sum(per_master) == len(cids)
        # The spread is invisible through the registry: every view is whole.
        assert await a.registry.count() == 60
        assert sorted(await b.registry.room_members("lobby")) == sorted(cids)
        assert await a.registry.room_nodes("lobby") == {"node-a": 30, "node-b": 30}
        page, seen = await a.registry.list_connections(7, None), []
        while True:
            seen += page.connection_ids
            if page.next_cursor is None:
                break
            page = await a.registry.list_connections(7, page.next_cursor)
        assert seen == sorted(cids)
