"""What only the Redis store has: its wire formats, and its behaviour when Redis goes away.

Outage tests run their own ``redis-server`` (``scripts/ensure_redis.py``'s ``start_redis``) so
they can stop and restart it without disturbing the shared server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from hubbub.errors import UnavailableError
from hubbub.store import Delivery
from hubbub.store.recovery import Position
from hubbub.store.recovery_redis import RedisRecovery
from hubbub.store.redis_connect import connect
from hubbub.store.redis_lua import decode_frame, encode_frame, hash_tagged, partition_tag
from hubbub.store.redis_registry import POOL_SIZE
from scripts.ensure_redis import RedisProcess, RedisUnavailable, start_redis
from tests.helpers import eventually
from tests.store.conftest import HEARTBEAT, Node, Stores, _cluster, record
from tests.store.redis_server import delete_prefix, unique_prefix
from tests.store.test_contract import eventually_async

# -- pure parts -------------------------------------------------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    origin=names,
    kind=names,
    target=names,
    exclude=st.one_of(st.none(), names.filter(bool)),
    epoch=st.one_of(st.none(), names.filter(bool)),
    offset=st.integers(min_value=0, max_value=2**63),
    data=st.binary(max_size=300),
)
def test_frame_round_trips(
    *,
    origin: str,
    kind: str,
    target: str,
    exclude: str | None,
    epoch: str | None,
    offset: int,
    data: bytes,
) -> None:
    delivery = Delivery(kind, target, data, exclude, epoch=epoch, offset=offset)
    assert decode_frame(encode_frame(origin, delivery)) == (origin, delivery)


def test_frame_keeps_the_payload_raw() -> None:
    frame = encode_frame("n1", Delivery("room", "lobby", b'{"a":1}', "c9", epoch="e1", offset=7))
    assert frame == b'2:n14:room5:lobby2:c92:e11:7{"a":1}'


@pytest.mark.parametrize("frame", [b"", b"3:ab", b"x:ab", b"1:a1:b1:c9:abc", b"1:a1:b1:c0:0:"])
def test_malformed_frame_is_rejected(frame: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):  # int(), index() or truncation: all ValueError
        decode_frame(frame)


@pytest.mark.parametrize(
    ("prefix", "tag"),
    [
        ("hubbub:", "{hubbub:}"),
        ("app1:", "{app1:}"),
        ("{tenant7}:", "{tenant7}:"),  # the operator picked the slot
        ("x:{y}:", "x:{y}:"),
        ("{}:", "{{}:}"),  # an empty tag would hash the whole key: wrap it
        ("", "{hubbub}"),
    ],
)
def test_every_key_of_an_api_shares_one_hash_tag(prefix: str, tag: str) -> None:
    assert hash_tagged(prefix) == tag


@pytest.mark.parametrize(
    ("prefix", "partition"),
    [("hubbub:", "{hubbub:/3}"), ("x:{y}:", "x:{y/3}:"), ("{}:", "{{/3}:}"), ("", "{hubbub/3}")],
)
def test_a_partition_is_the_apis_tag_with_its_number(prefix: str, partition: str) -> None:
    tag = hash_tagged(prefix)
    assert partition_tag(tag, 3) == partition
    assert key_slot(partition.encode()) != key_slot(tag.encode())


# -- outage -----------------------------------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    try:
        server = start_redis()
    except RedisUnavailable as exc:
        pytest.fail(f"needs redis-server: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def outage_stores(private_redis: RedisProcess) -> AsyncIterator[Stores]:
    async with _cluster(private_redis.url) as open_node:
        yield open_node


async def test_outage_keeps_local_work_and_fails_shared_reads_fast(
    outage_stores: Stores, private_redis: RedisProcess
) -> None:
    a, b = await outage_stores("node-a"), await outage_stores("node-b")
    await a.registry.add(record("a1", "node-a"))
    await b.registry.add(record("b1", "node-b"))
    await asyncio.to_thread(private_redis.kill)
    # Writes about our own connections succeed locally...
    await a.registry.add(record("a2", "node-a"))
    assert await a.registry.join("lobby", "a2")
    removed = await a.registry.remove("a1")
    assert removed is not None  # ...and a closing connection still gets its $disconnect.
    # Reads that need the shared view fail at once with 503, never hang.
    started = time.monotonic()
    with pytest.raises(UnavailableError):
        await a.registry.get("b1")
    with pytest.raises(UnavailableError):
        await a.registry.room_members("lobby")
    assert time.monotonic() - started < 2.0
    # The per-message calls (lean connection, redis_wire) fail as fast, and count as losses.
    losses = a.store._link.losses  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(UnavailableError):
        await a.store.bus.publish_room("lobby", Delivery("room", "lobby", b"x"))
    with pytest.raises(UnavailableError):
        await a.store.bus.send("node-b", Delivery("connection", "b1", b"x"))
    assert time.monotonic() - started < 1.0
    assert a.store._link.losses == losses + 2  # type: ignore[attr-defined]
    await eventually(lambda: not a.store.status()["ok"], message="node-a reports the outage")
    status = a.store.status()
    assert status["redis"] == "down"
    assert "error" in status


async def test_registry_is_exact_again_after_redis_restarts_empty(
    outage_stores: Stores, private_redis: RedisProcess
) -> None:
    a, b = await outage_stores("node-a"), await outage_stores("node-b")
    for cid in ("a1", "a2", "a3"):
        await a.registry.add(record(cid, "node-a"))
    await a.registry.join("lobby", "a1")
    await b.registry.add(record("b1", "node-b"))
    await b.registry.join("lobby", "b1")
    await asyncio.to_thread(private_redis.kill)
    await a.registry.remove("a2")  # closes during the outage
    await a.registry.bind_user("ada", "a3")  # changes during the outage
    await asyncio.to_thread(private_redis.start)  # persistence is off: it comes back empty

    async def exact() -> bool:
        try:
            return (
                await b.registry.count() == 3
                and sorted(await b.registry.room_members("lobby")) == ["a1", "b1"]
                and await b.registry.user_connections("ada") == ["a3"]
                and await b.registry.get("a2") is None
                and dict(await b.registry.room_nodes("lobby")) == {"node-a": 1, "node-b": 1}
            )
        except UnavailableError:
            return False

    await eventually_async(exact, timeout=10 * HEARTBEAT + 3, message="registry rebuilt")
    await eventually(
        lambda: a.store.status()["ok"] and b.store.status()["ok"], message="both nodes healthy"
    )
    # Deliveries flow again (both nodes resubscribed), room sends included.
    await a.store.bus.send("node-b", Delivery("connection", "b1", b"back"))
    await eventually(lambda: b.deliveries, message="delivery after the restart")
    nodes = await a.store.bus.publish_room("lobby", Delivery("room", "lobby", b"room"))
    assert nodes == {"node-a": 1, "node-b": 1}
    await eventually(lambda: len(b.deliveries) == 2, message="room send after the restart")
    # Nobody was mistaken for dead: no reaping happened.
    assert a.reaped == b.reaped == []


async def test_node_started_during_an_outage_joins_when_redis_returns(
    private_redis: RedisProcess,
) -> None:
    await asyncio.to_thread(private_redis.stop)
    async with _cluster(private_redis.url) as open_node:
        started = time.monotonic()
        a = await open_node("node-a")
        assert time.monotonic() - started < 3.0
        assert a.store.status()["redis"] == "down"
        await a.registry.add(record("a1", "node-a"))
        await asyncio.to_thread(private_redis.start)
        b: Node = await open_node("node-b")

        async def registered() -> bool:
            try:
                return await b.registry.get("a1") is not None
            except UnavailableError:
                return False

        await eventually_async(registered, timeout=10 * HEARTBEAT + 3, message="a1 registered")


async def test_room_history_fails_fast_in_an_outage_and_recovers(
    private_redis: RedisProcess,
) -> None:
    history = RedisRecovery(private_redis.url, key_prefix="h:", size=10, ttl=60)
    try:
        before = await history.append("lobby", b"one")
        await asyncio.to_thread(private_redis.kill)
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            await history.append("lobby", b"lost")
        assert time.monotonic() - started < 1.0
        await asyncio.to_thread(private_redis.start)  # empty: a new epoch begins
        after = await history.append("lobby", b"two")
        assert after.offset == 1
        assert after.epoch != before.epoch
        assert (await history.since("lobby", None)).messages == [(1, b"two")]
    finally:
        await history.close()


async def test_a_burst_wider_than_the_pool_waits_for_connections(
    outage_stores: Stores,
) -> None:
    # More concurrent writes than the pool has connections (a burst of handshakes): each waits
    # for a free connection instead of failing, so none is lost and the store stays up.
    a = await outage_stores("node-a")
    ids = [f"burst{i}" for i in range(3 * POOL_SIZE)]
    await asyncio.gather(*(a.registry.add(record(cid, "node-a")) for cid in ids))
    assert a.store.status()["ok"]
    got = await asyncio.gather(*(a.registry.get(cid) for cid in ids))
    assert [r.connection_id if r else None for r in got] == ids


async def _published(listener: Any) -> bytes:
    """The next message a pub/sub subscriber gets (after its subscribe confirmations)."""
    message = None
    while message is None or message["type"] != "message":
        message = await listener.get_message(timeout=2.0)
        assert message is not None
    return bytes(message["data"])


async def test_a_recorded_room_send_is_append_and_publish_in_one_round_trip(
    redis_url: str, private_redis: RedisProcess
) -> None:
    async with _cluster(redis_url) as open_node:
        a, b = await open_node("node-a"), await open_node("node-b")
        prefix = a.store._link.channels  # type: ignore[attr-defined]
        for cid, owner in (("a1", "node-a"), ("b1", "node-b"), ("b2", "node-b")):
            await a.registry.add(record(cid, owner))
            await a.registry.join("lobby", cid)
        history = RedisRecovery(redis_url, key_prefix=prefix, size=10, ttl=60)
        listener = connect(redis_url).pubsub()
        await listener.subscribe(f"{prefix}node:node-b")
        try:
            await history.append("lobby", b"before")  # the two-step path took offset 1
            delivery = Delivery("room", "lobby", b"\x00hello", "b2")
            recorded = await a.store.bus.publish_recorded("lobby", delivery, history)
            assert recorded is not None
            position, nodes = recorded
            assert nodes == {"node-a": 1, "node-b": 2}
            assert position.offset == 2
            assert position == await history.head("lobby")  # the same epoch as the first
            assert (await history.since("lobby", None)).messages == [
                (1, b"before"),
                (2, b"\x00hello"),
            ]
            # On the bus: the very bytes encode_frame gives for the delivery with its position.
            sent = Delivery(
                "room", "lobby", b"\x00hello", "b2", epoch=position.epoch, offset=position.offset
            )
            assert await _published(listener) == encode_frame("node-a", sent)
            await eventually(lambda: sent in b.deliveries, message="node-b got it, positioned")
            # History elsewhere (another server): two steps, the caller's.
            other = RedisRecovery(private_redis.url, key_prefix=prefix, size=10, ttl=60)
            try:
                assert await a.store.bus.publish_recorded("lobby", delivery, other) is None
            finally:
                await other.close()
        finally:
            await listener.aclose()
            await history.close()


async def test_a_room_nobody_can_recover_is_published_without_a_history(redis_url: str) -> None:
    # No recovery-enabled client ever joined "hall": the one-round-trip send publishes the
    # frame encode_frame gives for the delivery without a position, and leaves no history key.
    async with _cluster(redis_url) as open_node:
        a, b = await open_node("node-a"), await open_node("node-b")
        prefix = a.store._link.channels  # type: ignore[attr-defined]
        for cid, owner in (("a1", "node-a"), ("b1", "node-b")):
            await a.registry.add(record(cid, owner))
            await a.registry.join("hall", cid)
        history = RedisRecovery(redis_url, key_prefix=prefix, size=10, ttl=60)
        raw = connect(redis_url)
        listener = raw.pubsub()
        await listener.subscribe(f"{prefix}node:node-b")
        try:
            delivery = Delivery("room", "hall", b"hi", None)
            recorded = await a.store.bus.publish_recorded(
                "hall", delivery, history, only_if_kept=True
            )
            assert recorded == (None, {"node-a": 1, "node-b": 1})
            assert await _published(listener) == encode_frame("node-a", delivery)
            await eventually(lambda: delivery in b.deliveries, message="node-b got it, plain")
            assert [k async for k in raw.scan_iter(match=f"{prefix}{{room:hall}}*")] == []
            # Once a recovery-enabled client joins (head), the same send records.
            head = await history.head("hall")
            recorded = await a.store.bus.publish_recorded(
                "hall", delivery, history, only_if_kept=True
            )
            assert recorded is not None
            assert recorded[0] == Position(head.epoch, 1)
        finally:
            await listener.aclose()
            await raw.aclose()
            await history.close()


async def test_keep_holds_a_quiet_room_s_history_with_its_epoch(redis_url: str) -> None:
    prefix = unique_prefix()
    history = RedisRecovery(redis_url, key_prefix=prefix, size=10, ttl=60)
    raw = connect(redis_url)
    keys = [f"{prefix}{{room:quiet}}:{k}" for k in ("epoch", "last", "history")]
    try:
        first = await history.append("quiet", b"one")
        for key in keys:  # as if the room had been quiet for most of its TTL
            await raw.expire(key, 2)
        await history.keep(["quiet", "gone"])
        assert [await raw.ttl(key) for key in keys] == [60, 60, 60]
        second = await history.append("quiet", b"two", only_if_kept=True)
        assert second == Position(first.epoch, 2)
        # A room whose history had expired starts a new one (a new epoch), kept as long.
        assert await raw.ttl(f"{prefix}{{room:gone}}:epoch") == 60
        assert await history.append("gone", b"x", only_if_kept=True) is not None
        # A join's head() marks the room with the same TTL: left with no message, it goes.
        await history.head("joined-once")
        assert 0 < await raw.ttl(f"{prefix}{{room:joined-once}}:epoch") <= 60
    finally:
        await delete_prefix(redis_url, prefix)
        await raw.aclose()
        await history.close()


async def test_a_node_whose_alive_key_is_gone_claims_no_one(redis_url: str) -> None:
    # What a promoted replica looks like after a failover that outlasted the alive-key TTL:
    # everyone's alive key is gone. A claim still in flight from before the failover must not
    # take the other nodes for dead; once the caller heartbeats again it may.
    from hubbub.store.redis_connect import connect

    async with _cluster(redis_url) as open_node:
        a = await open_node("node-a", heartbeat=30.0)
        await open_node("node-b", heartbeat=30.0)
        link = a.store._link  # type: ignore[attr-defined]
        raw = connect(redis_url)
        try:
            await raw.delete(link.key("alive", "node-a"), link.key("alive", "node-b"))
            assert await link.run("CLAIM", "node-a", 60_000, link.token) == []
            assert not await raw.exists(link.key("fenced", "node-b"))
            await a.store._hello(reset=False)  # type: ignore[attr-defined]
            assert await link.run("CLAIM", "node-a", 60_000, link.token) == [b"node-b"]
        finally:
            await raw.aclose()


async def test_a_burst_of_thousands_of_closes_is_backpressure_not_an_outage(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # 10,000 clients closing at once are 10,000 REMOVE scripts: the pool let each wait only 1 s
    # for a connection, so the tail failed as if Redis were down, the node marked itself down,
    # and once its heartbeat failed too the others reaped it while it ran its own $disconnect
    # events (two each). Scripts now queue in the node for a pool connection (Link.run, the same
    # queue whatever the URL: this runs on the plain server, not on the session's Sentinel and
    # Cluster deployments, which the failover tests take through failovers).
    # Heartbeats at the production default (2 s): the burst runs in this test's own event loop,
    # and on a busy machine a 10,000-coroutine gather can hold it past 3 x 0.2 s, which would
    # be the test starving its own heartbeats, not the store failing.
    async with _cluster(redis_url) as open_node:
        a = await open_node("node-a", heartbeat=2.0)
        b = await open_node("node-b", heartbeat=2.0)
        await _burst_of_closes(a, b, caplog)


async def _burst_of_closes(a: Node, b: Node, caplog: pytest.LogCaptureFixture) -> None:
    ids = [f"close{i}" for i in range(10_000)]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        await asyncio.gather(*(a.registry.add(record(cid, "node-a")) for cid in chunk))
    removed = await asyncio.gather(*(a.registry.remove(cid) for cid in ids))
    assert [r.connection_id if r else None for r in removed] == ids
    assert a.store.status()["ok"]
    assert "redis unreachable" not in caplog.text
    assert await b.registry.count() == 0
    assert not b.reaped
