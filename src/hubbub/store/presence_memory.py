"""Presence in this process (``memory://``), exact for one node.

The contract is :class:`~hubbub.store.base.Presence`.
"""

from __future__ import annotations

import bisect
from dataclasses import replace
from typing import Any

from hubbub.store.base import PresenceMember, PresencePage


class MemoryPresence:
    """Dicts per room; O(1) per change, O(members log members) per listed page."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, PresenceMember]] = {}
        self._users: dict[str, dict[str, int]] = {}  # room -> user -> its members there
        self._of: dict[str, set[str]] = {}  # connection id -> rooms it is present in
        self._pending: dict[tuple[str, str], int] = {}  # (room, connection id) -> deadline ms

    async def enter(self, room: str, member: PresenceMember) -> PresenceMember | None:
        members = self._rooms.setdefault(room, {})
        old = members.get(member.connection_id)
        if old is not None:
            self._uncount(room, old.user)
        members[member.connection_id] = member
        self._of.setdefault(member.connection_id, set()).add(room)
        if member.user is not None:
            users = self._users.setdefault(room, {})
            users[member.user] = users.get(member.user, 0) + 1
        return old

    async def update(self, room: str, connection_id: str, data: Any) -> PresenceMember | None:
        members = self._rooms.get(room)
        old = members.get(connection_id) if members is not None else None
        if members is None or old is None:
            return None
        new = members[connection_id] = replace(old, data=data)
        return new

    async def leave(self, room: str, connection_id: str) -> PresenceMember | None:
        members = self._rooms.get(room)
        old = members.pop(connection_id, None) if members is not None else None
        if members is None or old is None:
            return None
        if not members:
            del self._rooms[room]
        self._uncount(room, old.user)
        rooms = self._of.get(connection_id)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._of[connection_id]
        self._pending.pop((room, connection_id), None)
        return old

    async def leave_all(self, connection_id: str) -> list[tuple[str, PresenceMember]]:
        left = []
        for room in sorted(self._of.get(connection_id, ())):
            member = await self.leave(room, connection_id)
            if member is not None:
                left.append((room, member))
        return left

    async def defer(self, connection_id: str, until_ms: int) -> list[tuple[str, PresenceMember]]:
        deferred = []
        for room in sorted(self._of.get(connection_id, ())):
            self._pending[(room, connection_id)] = until_ms
            deferred.append((room, self._rooms[room][connection_id]))
        return deferred

    async def take_over(
        self, room: str, old_connection_id: str, member: PresenceMember
    ) -> PresenceMember | None:
        old = await self.leave(room, old_connection_id)
        await self.enter(room, member)
        return old

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, PresenceMember]]:
        ready = [key for key, deadline in self._pending.items() if deadline <= now_ms][:limit]
        left = []
        for room, cid in ready:
            member = await self.leave(room, cid)
            if member is not None:
                left.append((room, member))
        return left

    async def members(self, room: str, limit: int, cursor: str | None) -> PresencePage:
        members = self._rooms.get(room, {})
        ids = sorted(members)
        start = bisect.bisect_right(ids, cursor) if cursor else 0
        chunk = ids[start : start + limit]
        more = start + limit < len(ids)
        return PresencePage([members[c] for c in chunk], chunk[-1] if more and chunk else None)

    async def counts(self, room: str) -> tuple[int, int]:
        return len(self._rooms.get(room, ())), len(self._users.get(room, ()))

    def _uncount(self, room: str, user: str | None) -> None:
        if user is None:
            return
        users = self._users[room]
        users[user] -= 1
        if not users[user]:
            del users[user]
            if not users:
                del self._users[room]
