"""The store contract: every implementation answers the Registry and Bus protocols alike.

Tests taking ``stores`` run once on ``memory://`` and once on a real Redis (marked ``redis``).
Multi-node behaviour (the bus between nodes, reaping) only exists on a shared store; those tests
take ``redis_stores``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from hubbub.store.redis_connect import is_cluster
from tests.helpers import eventually
from tests.store.conftest import HEARTBEAT, Node, Stores, record
from tests.store.redis_server import delete_prefix, unique_prefix

# -- records --------------------------------------------------------------------------------


async def test_added_record_is_returned_with_every_field(stores: Stores) -> None:
    node = await stores()
    rec = record(
        "c1",
        host="example.test",
        attributes={"name": "ada", "n": [1, 2]},
        authorizer={"principalId": "u-1", "claims": {"scope": "x"}},
        session="recovery-token",
    )
    await node.registry.add(rec)
    got = await node.registry.get("c1")
    assert got == rec


async def test_unknown_connection_is_none(stores: Stores) -> None:
    node = await stores()
    assert await node.registry.get("nope") is None
    assert await node.registry.remove("nope") is None


async def test_remove_returns_the_record_once(stores: Stores) -> None:
    node = await stores()
    await node.registry.add(record("c1"))
    first = await node.registry.remove("c1")
    assert first is not None
    assert first.connection_id == "c1"
    assert await node.registry.remove("c1") is None
    assert await node.registry.get("c1") is None


async def test_concurrent_removes_yield_exactly_one_record(stores: Stores) -> None:
    node = await stores()
    await node.registry.add(record("c1"))
    results = await asyncio.gather(*(node.registry.remove("c1") for _ in range(50)))
    assert sum(r is not None for r in results) == 1


async def test_removed_record_carries_its_rooms_and_users(stores: Stores) -> None:
    node = await stores()
    await node.registry.add(record("c1"))
    await node.registry.join("lobby", "c1")
    await node.registry.bind_user("ada", "c1")
    removed = await node.registry.remove("c1")
    assert removed is not None
    assert removed.rooms == {"lobby"}
    assert removed.users == {"ada"}


async def test_remove_leaves_rooms_users_and_interest(stores: Stores) -> None:
    node = await stores()
    await node.registry.add(record("c1"))
    await node.registry.add(record("c2"))
    for room in ("lobby", "games"):
        await node.registry.join(room, "c1")
    await node.registry.join("lobby", "c2")
    await node.registry.bind_user("ada", "c1")
    await node.registry.remove("c1")
    assert await node.registry.room_members("lobby") == ["c2"]
    assert await node.registry.room_members("games") == []
    assert await node.registry.user_connections("ada") == []
    assert dict(await node.registry.room_nodes("lobby")) == {"node-a": 1}
    assert dict(await node.registry.room_nodes("games")) == {}


async def test_touch_updates_last_active(stores: Stores) -> None:
    node = await stores()
    await node.registry.add(record("c1"))
    await node.registry.touch("c1", 1_700_000_123_456)
    got = await node.registry.get("c1")
    assert got is not None
    assert got.last_active_at == 1_700_000_123_456


async def test_set_attributes_replaces_them(stores: Stores) -> None:
    node = await stores()
    await node.registry.add(record("c1", attributes={"old": True}))
    assert await node.registry.set_attributes("c1", {"new": 1})
    got = await node.registry.get("c1")
    assert got is not None
    assert got.attributes == {"new": 1}
    assert not await node.registry.set_attributes("nope", {"x": 1})


# -- rooms and users ------------------------------------------------------------------------


async def test_join_and_leave_a_room(stores: Stores) -> None:
    node = await stores()
    await node.registry.add(record("c1"))
    await node.registry.add(record("c2"))
    assert await node.registry.join("lobby", "c1")
    assert await node.registry.join("lobby", "c2")
    assert sorted(await node.registry.room_members("lobby")) == ["c1", "c2"]
    assert await node.registry.leave("lobby", "c1")
    assert await node.registry.room_members("lobby") == ["c2"]
    got = await node.registry.get("c2")
    assert got is not None
    assert got.rooms == {"lobby"}


async def test_joining_twice_counts_once(stores: Stores) -> None:
    node = await stores()
    await node.registry.add(record("c1"))
    await node.registry.join("lobby", "c1")
    await node.registry.join("lobby", "c1")
    assert await node.registry.room_members("lobby") == ["c1"]
    assert dict(await node.registry.room_nodes("lobby")) == {"node-a": 1}
    await node.registry.leave("lobby", "c1")
    await node.registry.leave("lobby", "c1")  # leaving a room one is not in is fine
    assert dict(await node.registry.room_nodes("lobby")) == {}


async def test_membership_of_unknown_connection_is_refused(stores: Stores) -> None:
    node = await stores()
    assert not await node.registry.join("lobby", "nope")
    assert not await node.registry.leave("lobby", "nope")
    assert not await node.registry.bind_user("ada", "nope")
    assert await node.registry.room_members("lobby") == []


async def test_room_nodes_counts_members_per_node(stores: Stores) -> None:
    node = await stores()
    for cid, owner in (("a1", "node-a"), ("a2", "node-a"), ("b1", "node-b"), ("b2", "node-b")):
        await node.registry.add(record(cid, owner))
    for cid in ("a1", "a2", "b1"):
        await node.registry.join("lobby", cid)
    assert dict(await node.registry.room_nodes("lobby")) == {"node-a": 2, "node-b": 1}
    assert dict(await node.registry.room_nodes("empty")) == {}


async def test_room_nodes_follow_leaves_and_removals(stores: Stores) -> None:
    node = await stores()
    for cid, owner in (("a1", "node-a"), ("a2", "node-a"), ("b1", "node-b")):
        await node.registry.add(record(cid, owner))
        await node.registry.join("lobby", cid)
    await node.registry.leave("lobby", "b1")
    assert dict(await node.registry.room_nodes("lobby")) == {"node-a": 2}
    await node.registry.remove("a1")
    assert dict(await node.registry.room_nodes("lobby")) == {"node-a": 1}
    await node.registry.join("lobby", "b1")
    await node.registry.remove("a2")
    assert dict(await node.registry.room_nodes("lobby")) == {"node-b": 1}


async def test_users_bind_many_connections(stores: Stores) -> None:
    node = await stores()
    for cid in ("c1", "c2", "c3"):
        await node.registry.add(record(cid))
    await node.registry.bind_user("ada", "c1")
    await node.registry.bind_user("ada", "c2")
    await node.registry.bind_user("bob", "c3")
    assert sorted(await node.registry.user_connections("ada")) == ["c1", "c2"]
    assert await node.registry.user_connections("nobody") == []


async def test_names_are_opaque(stores: Stores) -> None:
    # Key separators and hash-tag braces in names must not collide with the layout.
    node = await stores()
    await node.registry.add(record("c1"))
    await node.registry.add(record("c2"))
    await node.registry.join("x:nodes", "c1")
    await node.registry.join("{x}", "c2")
    await node.registry.join("x", "c2")
    assert await node.registry.room_members("x:nodes") == ["c1"]
    assert await node.registry.room_members("{x}") == ["c2"]
    assert dict(await node.registry.room_nodes("x")) == {"node-a": 1}
    await node.registry.bind_user("é 🙂", "c1")
    assert await node.registry.user_connections("é 🙂") == ["c1"]


# -- listing --------------------------------------------------------------------------------


async def test_listing_pages_through_every_connection_once(stores: Stores) -> None:
    node = await stores()
    ids = [f"c{i}" for i in range(7)]
    for cid in ids:
        await node.registry.add(record(cid))
    assert await node.registry.count() == 7
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await node.registry.list_connections(3, cursor)
        seen += page.connection_ids
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == ids
    assert pages == 3


async def test_count_follows_adds_and_removes(stores: Stores) -> None:
    node = await stores()
    assert await node.registry.count() == 0
    await node.registry.add(record("c1"))
    await node.registry.add(record("c2"))
    await node.registry.remove("c1")
    assert await node.registry.count() == 1
    page = await node.registry.list_connections(10, None)
    assert page.connection_ids == ["c2"]
    assert page.next_cursor is None


# -- bus on one node ------------------------------------------------------------------------


async def test_deliveries_to_this_node_reach_its_handler(stores: Stores) -> None:
    from hubbub.store import Delivery

    node = await stores()
    await node.store.bus.send("node-a", Delivery("connection", "c1", b"hi"))
    await node.store.bus.publish(["node-a"], Delivery("room", "lobby", b"yo", "c1"))
    assert node.deliveries == [
        Delivery("connection", "c1", b"hi"),
        Delivery("room", "lobby", b"yo", "c1"),
    ]


async def test_status_says_ok(stores: Stores) -> None:
    node = await stores()
    status = node.store.status()
    assert status["ok"] is True
    assert status["store"] in {"memory", "redis"}


# -- several nodes on a shared store (Redis) ------------------------------------------------


async def test_every_node_sees_the_same_registry(redis_stores: Stores) -> None:
    a, b = await redis_stores("node-a"), await redis_stores("node-b")
    await a.registry.add(record("c1", "node-a", attributes={"k": "v"}))
    await b.registry.join("lobby", "c1")
    got = await b.registry.get("c1")
    assert got is not None
    assert got.node_id == "node-a"
    assert got.rooms == {"lobby"}
    assert await a.registry.room_members("lobby") == ["c1"]
    assert await b.registry.count() == 1


async def test_send_reaches_only_the_addressed_node(redis_stores: Stores) -> None:
    from hubbub.store import Delivery

    a, b, c = [await redis_stores(n) for n in ("node-a", "node-b", "node-c")]
    payload = bytes(range(256)) + "ünïcode".encode()  # raw bytes survive the frame
    await a.store.bus.send("node-b", Delivery("connection", "c1", payload))
    await eventually(lambda: b.deliveries, message="delivery on node-b")
    assert b.deliveries == [Delivery("connection", "c1", payload)]
    assert c.deliveries == []
    assert a.deliveries == []
    assert b.store.status()["deliveries_received"] == 1
    assert c.store.status()["deliveries_received"] == 0


async def test_publish_reaches_the_listed_nodes_only(redis_stores: Stores) -> None:
    from hubbub.store import Delivery

    a, b, c, d = [await redis_stores(n) for n in ("node-a", "node-b", "node-c", "node-d")]
    await a.store.bus.publish(["node-b", "node-c"], Delivery("room", "lobby", b"m", "x1"))
    await eventually(lambda: b.deliveries and c.deliveries, message="room deliveries")
    assert b.deliveries == c.deliveries == [Delivery("room", "lobby", b"m", "x1")]
    # A later message proves d was skipped, not merely slow: d receives only that one.
    await a.store.bus.send("node-d", Delivery("connection", "z", b"probe"))
    await eventually(lambda: d.deliveries, message="probe on node-d")
    assert [x.data for x in d.deliveries] == [b"probe"]
    assert a.deliveries == []


async def test_broadcast_reaches_every_other_node(redis_stores: Stores) -> None:
    from hubbub.store import Delivery

    a, b, c = [await redis_stores(n) for n in ("node-a", "node-b", "node-c")]
    await a.store.bus.publish(["*"], Delivery("broadcast", "*", b"all"))
    await eventually(lambda: b.deliveries and c.deliveries, message="broadcast")
    assert b.deliveries == c.deliveries == [Delivery("broadcast", "*", b"all")]
    assert a.deliveries == []  # the sender serves its own connections itself
    assert a.store.status()["deliveries_received"] == 0


async def test_remote_membership_change_notifies_the_owner(redis_stores: Stores) -> None:
    from hubbub.store import Delivery

    a, b = await redis_stores("node-a"), await redis_stores("node-b")
    await a.registry.add(record("c1", "node-a"))
    await b.registry.join("lobby", "c1")
    await b.registry.bind_user("ada", "c1")
    await b.registry.set_attributes("c1", {"x": 1})
    await b.registry.leave("lobby", "c1")
    await eventually(lambda: len(a.deliveries) == 4, message="four notices on node-a")
    assert a.deliveries == [
        Delivery("join", "c1", b"lobby"),
        Delivery("bind", "c1", b"ada"),
        Delivery("attributes", "c1", b'{"x":1}'),
        Delivery("leave", "c1", b"lobby"),
    ]
    # The owner changing its own connection tells nobody.
    await a.registry.join("games", "c1")
    assert b.deliveries == []


async def test_touch_reaches_other_nodes_with_the_heartbeat(redis_stores: Stores) -> None:
    a, b = await redis_stores("node-a"), await redis_stores("node-b")
    await a.registry.add(record("c1", "node-a"))
    await a.registry.touch("c1", 1_800_000_000_000)

    async def seen() -> bool:
        got = await b.registry.get("c1")
        return got is not None and got.last_active_at == 1_800_000_000_000

    await eventually_async(seen, timeout=10 * HEARTBEAT, message="lastActiveAt on node-b")


async def test_graceful_close_removes_only_that_node(redis_stores: Stores) -> None:
    a, b = await redis_stores("node-a"), await redis_stores("node-b")
    await a.registry.add(record("a1", "node-a"))
    await b.registry.add(record("b1", "node-b"))
    await b.registry.join("lobby", "a1")
    await b.registry.join("lobby", "b1")
    await a.store.close()
    assert await b.registry.get("a1") is None
    assert await b.registry.room_members("lobby") == ["b1"]
    assert dict(await b.registry.room_nodes("lobby")) == {"node-b": 1}
    assert b.reaped == []  # a graceful exit is not a node loss


async def kill(node: Node) -> None:
    """Make a node vanish like a SIGKILLed process."""
    await node.store.kill()  # type: ignore[attr-defined]  # RedisStore's test aid


async def test_dead_node_is_reaped_once_by_racing_survivors(redis_stores: Stores) -> None:
    a = await redis_stores("node-a")
    b, c = await redis_stores("node-b"), await redis_stores("node-c")
    ids = [f"a{i}" for i in range(250)]  # more than one reaping batch
    for cid in ids:
        await a.registry.add(record(cid, "node-a"))
        await a.registry.join("lobby", cid)
        await a.registry.bind_user("ada", cid)
    await b.registry.add(record("b1", "node-b"))
    await b.registry.join("lobby", "b1")
    killed = time.monotonic()
    await kill(a)
    await eventually(
        lambda: len(b.reaped) + len(c.reaped) >= len(ids),
        timeout=10 * 3 * HEARTBEAT,
        message="every connection of node-a reaped",
    )
    detected = time.monotonic() - killed
    reaped = [r.connection_id for r in b.reaped + c.reaped]
    assert sorted(reaped) == sorted(ids)  # each exactly once, across both survivors
    assert all(r.node_id == "node-a" and r.user_agent == "pytest/1.0" for r in b.reaped + c.reaped)
    assert await b.registry.room_members("lobby") == ["b1"]
    assert dict(await c.registry.room_nodes("lobby")) == {"node-b": 1}
    assert await c.registry.user_connections("ada") == []
    assert await b.registry.count() == 1
    assert detected < 3 * HEARTBEAT + 2.0  # TTL of 3 intervals (+ a claim period, + reaping)


async def test_restarted_node_with_a_fixed_id_reaps_its_previous_life(
    redis_stores: Stores,
) -> None:
    old = await redis_stores("fixed")
    await old.registry.add(record("c1", "fixed"))
    await old.registry.join("lobby", "c1")
    await kill(old)
    new = await redis_stores("fixed")  # back before anyone noticed the death
    await eventually(lambda: new.reaped, timeout=10 * HEARTBEAT, message="sweep of c1")
    assert [r.connection_id for r in new.reaped] == ["c1"]
    assert await new.registry.get("c1") is None
    assert await new.registry.room_members("lobby") == []


async def test_fenced_node_surrenders_its_reaped_connections(redis_stores: Stores) -> None:
    from hubbub.store import Delivery

    a, b = await redis_stores("node-a"), await redis_stores("node-b")
    await a.registry.add(record("a1", "node-a"))
    # node-a stalls (a long pause): its heartbeat stops, it is declared dead and reaped...
    store = a.store
    heartbeat = store._tasks.pop("heartbeat")  # type: ignore[attr-defined]
    heartbeat.cancel()
    await eventually(lambda: b.reaped, timeout=10 * 3 * HEARTBEAT, message="a1 reaped")
    # ...then resumes: it must close a1 (already given its $disconnect) and not bring it back.
    store._spawn("heartbeat", store._heartbeat_loop())  # type: ignore[attr-defined]
    await eventually(
        lambda: Delivery("close", "a1", b"") in a.deliveries, message="node-a closes a1"
    )
    assert await a.registry.remove("a1") is None  # no second $disconnect
    await eventually(lambda: a.store.status()["ok"], message="node-a healthy again")
    await a.registry.add(record("a2", "node-a"))
    got = await b.registry.get("a2")
    assert got is not None
    assert [r.connection_id for r in b.reaped] == ["a1"]


async def eventually_async(predicate, timeout: float = 5.0, message: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Like :func:`eventually` for an async predicate."""
    from tests.helpers import TIME_SCALE

    deadline = time.monotonic() + timeout * TIME_SCALE
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {message}")
        await asyncio.sleep(0.02)


async def test_close_racing_its_own_registration_leaves_no_ghost(redis_stores: Stores) -> None:
    # A connection may be removed while its registration is still on the wire; either order in
    # Redis must give exactly one record and leave nothing behind (no ghost to reap later).
    a, b = await redis_stores("node-a"), await redis_stores("node-b")
    results = []
    for i in range(100):
        cid = f"r{i}"
        _, removed = await asyncio.gather(
            a.registry.add(record(cid, "node-a")), a.registry.remove(cid)
        )
        results.append(removed)
    assert all(r is not None for r in results)
    assert await b.registry.count() == 0
    a.store._link.dirty = True  # type: ignore[attr-defined]  # force a replay + sweep
    await eventually(lambda: not a.store._link.dirty, message="replay")  # type: ignore[attr-defined]
    assert a.reaped == b.reaped == []


async def test_records_share_no_room_or_user_sets(stores: Stores) -> None:
    # A record holds no set of its own until its first join or bind (432 bytes per idle
    # connection), and one record's join never shows in another's.
    node = await stores()
    await node.registry.add(record("c1"))
    await node.registry.add(record("c2"))
    await node.registry.join("r", "c1")
    await node.registry.bind_user("u", "c1")
    one, two = await node.registry.get("c1"), await node.registry.get("c2")
    assert one is not None
    assert two is not None
    assert (set(one.rooms), set(one.users)) == ({"r"}, {"u"})
    assert (set(two.rooms), set(two.users)) == (set(), set())
    assert record("c3").rooms is record("c4").rooms  # the shared empty set, not a new one


async def test_publish_room_looks_up_and_publishes_in_one_step(
    redis_stores: Stores, shared_store_url: str
) -> None:
    """A room send on one Redis server: the room's nodes come back and every other node with
    members gets the delivery, from one script; on Cluster the caller does both steps."""
    from hubbub.store import Delivery

    a, b, c = [await redis_stores(n) for n in ("node-a", "node-b", "node-c")]
    for cid, owner in (("a1", "node-a"), ("b1", "node-b"), ("b2", "node-b"), ("c1", "node-c")):
        await a.registry.add(record(cid, owner))
    for cid in ("a1", "b1", "b2"):
        await a.registry.join("lobby", cid)
    delivery = Delivery("room", "lobby", b"m", "b2")
    nodes = await a.store.bus.publish_room("lobby", delivery)
    if is_cluster(shared_store_url):
        assert nodes is None
        return
    assert nodes == {"node-a": 1, "node-b": 2}

    def rooms(node: Node) -> list[Delivery]:  # without the join notices the owners got
        return [x for x in node.deliveries if x.kind == "room"]

    await eventually(lambda: rooms(b), message="the room delivery on node-b")
    assert rooms(b) == [delivery]
    # node-c has no member in the room: a later probe is all it receives.
    await a.store.bus.send("node-c", Delivery("connection", "c1", b"probe"))
    await eventually(lambda: [x for x in c.deliveries if x.kind == "connection"], message="probe")
    assert rooms(c) == []
    assert rooms(a) == []


async def test_a_recorded_room_send_is_one_step_only_beside_its_history(
    stores: Stores, store_url: str
) -> None:
    """The history on the bus's own single server: one script records and publishes (see
    tests/store/test_redis.py); anywhere else the caller appends and publishes itself."""
    from hubbub.store import Delivery
    from hubbub.store.recovery import MemoryRecovery
    from hubbub.store.recovery_redis import RedisRecovery

    node = await stores("node-a")
    delivery = Delivery("room", "lobby", b"m")
    memory = MemoryRecovery(size=5, ttl=60)
    assert await node.store.bus.publish_recorded("lobby", delivery, memory) is None
    if store_url == "memory://":
        return
    prefix = unique_prefix()
    history = RedisRecovery(store_url, key_prefix=prefix, size=5, ttl=60)
    try:
        recorded = await node.store.bus.publish_recorded("lobby", delivery, history)
        if store_url.startswith("redis://"):
            assert recorded is not None
            assert recorded[0].offset == 1
        else:  # Sentinel and Cluster: redis-py, two steps
            assert recorded is None
    finally:
        await history.close()
        await delete_prefix(store_url, prefix)
