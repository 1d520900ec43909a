"""The presence contract: memory and Redis answer :class:`~hubbub.store.base.Presence` alike.

Tests taking ``stores`` run once per implementation; ``redis_stores`` ones need a shared store
(two nodes racing for the same member).
"""

from __future__ import annotations

import asyncio
from typing import Any

from hubbub.store.base import PresenceMember
from tests.store.conftest import Stores


def member(
    cid: str, user: str | None = "ann", data: Any = None, node: str = "node-a"
) -> PresenceMember:
    return PresenceMember(cid, user, data, 1_700_000_000_000, node)


async def test_enter_is_a_join_then_an_update(stores: Stores) -> None:
    presence = (await stores()).store.presence
    assert await presence.enter("lobby", member("c1", data={"status": "here"})) is None
    old = await presence.enter("lobby", member("c1", data={"status": "away"}))
    assert old == member("c1", data={"status": "here"})
    page = await presence.members("lobby", 10, None)
    assert page.members == [member("c1", data={"status": "away"})]
    assert page.next_cursor is None


async def test_counts_are_connections_and_distinct_users(stores: Stores) -> None:
    presence = (await stores()).store.presence
    await presence.enter("lobby", member("c1", "ann"))
    await presence.enter("lobby", member("c2", "ann"))
    await presence.enter("lobby", member("c3", "bob"))
    await presence.enter("lobby", member("c4", None))
    await presence.enter("other", member("c5", "eve"))
    assert await presence.counts("lobby") == (4, 2)
    await presence.leave("lobby", "c1")
    assert await presence.counts("lobby") == (3, 2)
    await presence.leave("lobby", "c2")
    assert await presence.counts("lobby") == (2, 1)
    assert await presence.counts("nowhere") == (0, 0)


async def test_reentering_under_another_user_moves_the_count(stores: Stores) -> None:
    presence = (await stores()).store.presence
    await presence.enter("lobby", member("c1", "ann"))
    await presence.enter("lobby", member("c1", "bob"))
    assert await presence.counts("lobby") == (1, 1)
    await presence.leave("lobby", "c1")
    assert await presence.counts("lobby") == (0, 0)


async def test_update_replaces_data_of_members_only(stores: Stores) -> None:
    presence = (await stores()).store.presence
    await presence.enter("lobby", member("c1", data={"a": 1}))
    updated = await presence.update("lobby", "c1", {"b": [1, "x", None]})
    assert updated == member("c1", data={"b": [1, "x", None]})
    assert (await presence.members("lobby", 10, None)).members == [updated]
    assert await presence.update("lobby", "c1", None) == member("c1", data=None)
    assert await presence.update("lobby", "nope", {"a": 1}) is None
    assert await presence.update("nowhere", "c1", {"a": 1}) is None


async def test_data_keeps_every_json_shape(stores: Stores) -> None:
    presence = (await stores()).store.presence
    for i, data in enumerate([{}, [], "", 0, 1.5, False, "é ✓", {"nested": {"list": []}}]):
        await presence.enter("lobby", member(f"c{i}", data=data))
        got = (await presence.members("lobby", 100, None)).members
        assert next(m.data for m in got if m.connection_id == f"c{i}") == data


async def test_leave_returns_the_member_once(stores: Stores) -> None:
    presence = (await stores()).store.presence
    await presence.enter("lobby", member("c1"))
    results = await asyncio.gather(*(presence.leave("lobby", "c1") for _ in range(20)))
    assert [r for r in results if r is not None] == [member("c1")]
    assert await presence.leave("lobby", "c1") is None
    assert await presence.counts("lobby") == (0, 0)


async def test_leave_all_leaves_every_room_once(stores: Stores) -> None:
    presence = (await stores()).store.presence
    for room in ("b", "a", "c"):
        await presence.enter(room, member("c1", data=room))
    await presence.enter("a", member("c2"))
    left = await presence.leave_all("c1")
    assert left == [(r, member("c1", data=r)) for r in ("a", "b", "c")]
    assert await presence.leave_all("c1") == []
    assert await presence.counts("a") == (1, 1)


async def test_paging_lists_every_member_once_in_id_order(stores: Stores) -> None:
    presence = (await stores()).store.presence
    ids = [f"conn-{i:03d}" for i in range(57)]
    for cid in reversed(ids):
        await presence.enter("big", member(cid, user=f"u{cid[-1]}"))
    seen: list[str] = []
    cursor = None
    while True:
        page = await presence.members("big", 10, cursor)
        seen += [m.connection_id for m in page.members]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids
    assert await presence.counts("big") == (57, 10)


async def test_a_cursor_that_left_still_marks_the_place(stores: Stores) -> None:
    presence = (await stores()).store.presence
    for cid in ("a", "b", "c", "d"):
        await presence.enter("r", member(cid))
    page = await presence.members("r", 2, None)
    assert page.next_cursor == "b"
    await presence.leave("r", "b")
    rest = await presence.members("r", 2, page.next_cursor)
    assert [m.connection_id for m in rest.members] == ["c", "d"]
    assert rest.next_cursor is None


async def test_deferred_members_stay_until_due(stores: Stores) -> None:
    presence = (await stores()).store.presence
    await presence.enter("a", member("c1"))
    await presence.enter("b", member("c1", data=1))
    deferred = await presence.defer("c1", 5_000)
    assert deferred == [("a", member("c1")), ("b", member("c1", data=1))]
    assert await presence.counts("a") == (1, 1)
    assert await presence.due(4_999, 100) == []
    assert await presence.due(5_000, 100) == deferred
    assert await presence.due(6_000, 100) == []
    assert await presence.counts("a") == (0, 0)


async def test_due_is_bounded_by_its_limit(stores: Stores) -> None:
    presence = (await stores()).store.presence
    for i in range(5):
        await presence.enter("r", member(f"c{i}"))
        await presence.defer(f"c{i}", 10)
    assert len(await presence.due(10, 3)) == 3
    assert len(await presence.due(10, 3)) == 2


async def test_take_over_replaces_a_deferred_member_silently(stores: Stores) -> None:
    presence = (await stores()).store.presence
    await presence.enter("lobby", member("old", data={"s": 1}))
    await presence.defer("old", 10)
    new = member("new", data={"s": 1})
    assert await presence.take_over("lobby", "old", new) == member("old", data={"s": 1})
    assert await presence.due(100, 10) == []  # the deferred leave went with the old entry
    assert (await presence.members("lobby", 10, None)).members == [new]
    assert await presence.counts("lobby") == (1, 1)


async def test_take_over_after_the_leave_is_a_join(stores: Stores) -> None:
    presence = (await stores()).store.presence
    await presence.enter("lobby", member("old"))
    await presence.defer("old", 10)
    assert len(await presence.due(10, 10)) == 1
    assert await presence.take_over("lobby", "old", member("new")) is None
    assert [m.connection_id for m in (await presence.members("lobby", 10, None)).members] == ["new"]


async def test_leave_cancels_a_deferred_leave(stores: Stores) -> None:
    presence = (await stores()).store.presence
    await presence.enter("lobby", member("c1"))
    await presence.defer("c1", 10)
    assert await presence.leave("lobby", "c1") == member("c1")
    assert await presence.due(100, 10) == []


async def test_names_are_opaque(stores: Stores) -> None:
    presence = (await stores()).store.presence
    room = "room:with spaces/and\u00e9:colons\\n"
    await presence.enter(room, member("id=with/odd:chars", "user:é x"))
    await presence.defer("id=with/odd:chars", 1)
    assert [r for r, _ in await presence.due(1, 10)] == [room]


async def test_every_node_sees_the_same_presence(redis_stores: Stores) -> None:
    a, b = await redis_stores("node-a"), await redis_stores("node-b")
    await a.store.presence.enter("lobby", member("c1", node="node-a"))
    await b.store.presence.enter("lobby", member("c2", "bob", node="node-b"))
    assert await a.store.presence.counts("lobby") == (2, 2)
    listed = (await b.store.presence.members("lobby", 10, None)).members
    assert [(m.connection_id, m.node_id) for m in listed] == [("c1", "node-a"), ("c2", "node-b")]


async def test_racing_nodes_get_each_due_member_once(redis_stores: Stores) -> None:
    a, b = await redis_stores("node-a"), await redis_stores("node-b")
    for i in range(30):
        await a.store.presence.enter("lobby", member(f"c{i:02d}"))
        await a.store.presence.defer(f"c{i:02d}", 10)
    got = await asyncio.gather(*(n.store.presence.due(10, 4) for n in (a, b) for _ in range(10)))
    ids = sorted(m.connection_id for batch in got for _, m in batch)
    assert ids == [f"c{i:02d}" for i in range(30)]
