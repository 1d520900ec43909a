"""One contract for room history and sessions, run on memory, SQLite and Redis (one server,
Sentinel, Cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.store.recovery import MemoryRecovery, Position, Recovery, Session
from hubbub.store.recovery_redis import RedisRecovery
from hubbub.store.recovery_sqlite import SqliteRecovery
from tests.store.redis_server import delete_prefix, unique_prefix


@pytest.fixture(params=["memory", "sqlite", "redis", "sentinel", "cluster"])
async def recovery(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Recovery]:
    impl: Recovery
    cleanup = None
    if request.param == "memory":
        impl = MemoryRecovery(size=5, ttl=60)
    elif request.param == "sqlite":
        impl = SqliteRecovery(tmp_path / "h.db", size=5, ttl=60)
    else:
        url = request.getfixturevalue(f"{request.param}_url")
        prefix = unique_prefix()
        impl = RedisRecovery(url, key_prefix=prefix, size=5, ttl=60)
        cleanup = (url, prefix)
    yield impl
    await impl.close()
    if cleanup is not None:
        await delete_prefix(*cleanup)


async def test_offsets_are_contiguous_per_room(recovery: Recovery) -> None:
    positions = [await recovery.append("a", f"m{i}".encode()) for i in range(3)]
    other = await recovery.append("b", b"x")
    assert [p.offset for p in positions] == [1, 2, 3]
    assert len({p.epoch for p in positions}) == 1
    assert other.offset == 1


async def test_since_returns_what_came_after_a_position(recovery: Recovery) -> None:
    first = await recovery.append("a", b"one")
    await recovery.append("a", b"two")
    await recovery.append("a", b"three")
    missed = await recovery.since("a", first)
    assert missed.complete
    assert missed.messages == [(2, b"two"), (3, b"three")]
    assert missed.position == Position(first.epoch, 3)


async def test_since_the_head_is_empty_and_complete(recovery: Recovery) -> None:
    head = await recovery.append("a", b"one")
    missed = await recovery.since("a", head)
    assert missed.complete
    assert missed.messages == []


async def test_since_none_returns_everything_kept(recovery: Recovery) -> None:
    for i in range(3):
        await recovery.append("a", f"m{i}".encode())
    assert [o for o, _ in (await recovery.since("a", None)).messages] == [1, 2, 3]


async def test_a_position_older_than_the_window_is_refused(recovery: Recovery) -> None:
    first = await recovery.append("a", b"0")
    for i in range(12):  # size is 5 (Redis trims approximately, so go well past it)
        await recovery.append("a", str(i).encode())
    for _ in range(200):  # and enough to make Redis' approximate MAXLEN trim for sure
        await recovery.append("a", b".")
    missed = await recovery.since("a", first)
    assert missed.reason == "window passed"
    assert missed.messages == []


async def test_another_epoch_is_refused(recovery: Recovery) -> None:
    await recovery.append("a", b"x")
    missed = await recovery.since("a", Position("not-this-epoch", 1))
    assert missed.reason == "epoch changed"


async def test_unknown_room_has_an_epoch_for_later_positions(recovery: Recovery) -> None:
    empty = await recovery.since("new", None)
    assert empty.messages == []
    first = await recovery.append("new", b"x")
    assert first.epoch == empty.position.epoch


async def test_sessions_round_trip_and_expire(recovery: Recovery) -> None:
    session = Session(rooms=["a", "b"], users=["ann"], attributes={"nick": "ann"})
    await recovery.save_session("tok", session, ttl=60)
    loaded = await recovery.load_session("tok")
    assert loaded is not None
    assert loaded.to_json() == session.to_json()
    assert await recovery.load_session("other") is None
    await recovery.save_session("short", session, ttl=0.001)
    import asyncio

    await asyncio.sleep(1.1)  # Redis TTLs have one-second resolution
    assert await recovery.load_session("short") is None


async def test_head_is_the_latest_position(recovery: Recovery) -> None:
    empty = await recovery.head("h")
    assert empty.offset == 0
    await recovery.append("h", b"a")
    second = await recovery.append("h", b"b")
    assert await recovery.head("h") == second
    assert second.epoch == empty.epoch


async def test_a_session_keeps_its_principal(recovery: Recovery) -> None:
    await recovery.save_session("tok", Session(rooms=["a"], principal="alice"), ttl=60)
    loaded = await recovery.load_session("tok")
    assert loaded is not None
    assert loaded.principal == "alice"


async def test_one_holder_claims_a_session_at_a_time(recovery: Recovery) -> None:
    assert await recovery.claim_session("tok", "conn-1", ttl=60)
    assert await recovery.claim_session("tok", "conn-1", ttl=60)  # its own claim again
    assert not await recovery.claim_session("tok", "conn-2", ttl=60)
    assert await recovery.claim_session("other", "conn-2", ttl=60)  # per token
    await recovery.release_session("tok", "conn-2")  # not its claim: nothing happens
    assert not await recovery.claim_session("tok", "conn-2", ttl=60)
    await recovery.release_session("tok", "conn-1")
    assert await recovery.claim_session("tok", "conn-2", ttl=60)


async def test_a_claim_expires(recovery: Recovery) -> None:
    # A holder whose node died never releases: its claim ends with the session's ttl.
    assert await recovery.claim_session("tok", "conn-1", ttl=0.001)
    import asyncio

    await asyncio.sleep(1.1)  # Redis TTLs have one-second resolution
    assert await recovery.claim_session("tok", "conn-2", ttl=60)


async def test_a_joined_room_records_what_any_node_sends(recovery: Recovery) -> None:
    # head() is what a recovery-enabled client's join does: from then on the room keeps a
    # history on every store, so a node with no such member of its own (only_if_kept) records
    # into it too.
    head = await recovery.head("joined")
    first = await recovery.append("joined", b"x", only_if_kept=True)
    assert first == Position(head.epoch, 1)
    assert (await recovery.since("joined", head)).messages == [(1, b"x")]


async def test_a_room_nobody_can_recover_is_recorded_only_once_kept(recovery: Recovery) -> None:
    unrecorded = await recovery.append("plain", b"x", only_if_kept=True)
    if recovery.keep_interval is None:
        # One node: the gateway asks only for the rooms tracks() names, and those it records.
        assert unrecorded is not None
        return
    assert unrecorded is None
    await recovery.keep(["plain"])  # a node with a recovery-enabled member in it
    kept = await recovery.append("plain", b"y", only_if_kept=True)
    assert kept is not None
    assert (await recovery.since("plain", None)).messages == [(kept.offset, b"y")]
    assert kept.offset == 1
