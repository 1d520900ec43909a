"""The in-memory room history is bounded in total and expires on its own (issue 17)."""

from __future__ import annotations

import sys

from hubbub.store.recovery import ENTRY_OVERHEAD, MemoryRecovery, Position
from tests.helpers import eventually


def test_entry_overhead_covers_what_a_kept_message_costs() -> None:
    entry = (123456, b"", 1.5)
    assert sys.getsizeof(entry) + sys.getsizeof(b"") + 8 <= ENTRY_OVERHEAD  # 8: the deque slot


async def test_100k_rooms_stay_within_max_rooms_and_max_bytes() -> None:
    history = MemoryRecovery(size=1000, ttl=300, max_bytes=1_000_000, max_rooms=5_000)
    try:
        for i in range(100_000):
            await history.append(f"room-{i}", b"x" * 100)
            assert history.rooms <= 5_000
            assert history.bytes <= 1_000_000
        assert history.messages == history.bytes // (100 + ENTRY_OVERHEAD)
        # The newest rooms are kept; the oldest were forgotten, with their epoch.
        newest = await history.since("room-99999", None)
        assert newest.messages == [(1, b"x" * 100)]
        forgotten = await history.since("room-0", Position("old", 1))
        assert forgotten.reason == "epoch changed"
    finally:
        await history.close()


async def test_max_bytes_drops_the_oldest_message_anywhere() -> None:
    history = MemoryRecovery(size=1000, ttl=300, max_bytes=10 * (1000 + ENTRY_OVERHEAD))
    try:
        first = await history.append("a", b"1" * 1000)
        for _ in range(10):
            await history.append("b", b"2" * 1000)
        assert history.messages == 10
        missed = await history.since("a", Position(first.epoch, 0))
        assert missed.reason == "window passed"  # a's only message made room for b's
    finally:
        await history.close()


async def test_the_per_room_size_bounds_each_room_and_the_index_stays_compact() -> None:
    history = MemoryRecovery(size=3, ttl=300)
    try:
        for i in range(20_000):
            await history.append("a", str(i).encode())
        assert history.messages == 3
        assert len(history._order) < 2 * 1024 + 10  # stale references are compacted away
        missed = await history.since("a", None)
        assert [o for o, _ in missed.messages] == [19_998, 19_999, 20_000]
    finally:
        await history.close()


async def test_messages_and_rooms_expire_after_ttl_without_any_resume() -> None:
    history = MemoryRecovery(size=1000, ttl=0.3)
    try:
        for i in range(1000):
            await history.append(f"room-{i}", b"payload")
        assert (history.rooms, history.messages) == (1000, 1000)
        await eventually(lambda: history.messages == 0, timeout=5, message="messages to expire")
        assert history.bytes == 0
        await eventually(lambda: history.rooms == 0, timeout=5, message="rooms to be forgotten")
    finally:
        await history.close()
