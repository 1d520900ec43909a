"""The embedded store: every structure is a dict in this process (``memory://``).

It is exact for one node. Cross-node delivery has nowhere to go, so the bus only answers for its
own node id (which the gateway serves locally before ever reaching the bus).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hubbub.store.base import BusHandler, ConnectionRecord, Delivery, Page, ReapHandler
from hubbub.store.presence_memory import MemoryPresence

if TYPE_CHECKING:
    from hubbub.store.recovery import Position, Recovery


class MemoryRegistry:
    """Connection registry in plain dicts; O(1) per operation, O(members) per member listing."""

    def __init__(self) -> None:
        self._connections: dict[str, ConnectionRecord] = {}
        # room -> {connection id: its node}; ordered, so listings are stable.
        self._rooms: dict[str, dict[str, str]] = {}
        # room -> {node: members there}, kept with _rooms so room_nodes, asked on every room
        # send, costs O(nodes) instead of a walk over the members.
        self._room_nodes: dict[str, dict[str, int]] = {}
        self._users: dict[str, dict[str, None]] = {}  # dict as an ordered set

    async def add(self, record: ConnectionRecord) -> None:
        self._connections[record.connection_id] = record

    async def remove(self, connection_id: str) -> ConnectionRecord | None:
        record = self._connections.pop(connection_id, None)
        if record is None:
            return None
        for room in record.rooms:
            self._leave(room, connection_id)
        for user in record.users:
            _discard(self._users, user, connection_id)
        return record

    async def get(self, connection_id: str) -> ConnectionRecord | None:
        return self._connections.get(connection_id)

    async def touch(self, connection_id: str, now_ms: int) -> None:
        record = self._connections.get(connection_id)
        if record is not None:
            record.last_active_at = now_ms

    async def set_attributes(self, connection_id: str, attributes: dict[str, Any]) -> bool:
        record = self._connections.get(connection_id)
        if record is None:
            return False
        record.attributes = attributes
        return True

    async def join(self, room: str, connection_id: str) -> bool:
        record = self._connections.get(connection_id)
        if record is None:
            return False
        record.own_rooms().add(room)
        members = self._rooms.setdefault(room, {})
        if connection_id not in members:
            members[connection_id] = record.node_id
            counts = self._room_nodes.setdefault(room, {})
            counts[record.node_id] = counts.get(record.node_id, 0) + 1
        return True

    async def leave(self, room: str, connection_id: str) -> bool:
        record = self._connections.get(connection_id)
        if record is None:
            return False
        record.own_rooms().discard(room)
        self._leave(room, connection_id)
        return True

    def _leave(self, room: str, connection_id: str) -> None:
        members = self._rooms.get(room)
        node = members.pop(connection_id, None) if members is not None else None
        if node is None:
            return
        if not members:
            del self._rooms[room]
            del self._room_nodes[room]
            return
        counts = self._room_nodes[room]
        counts[node] -= 1
        if not counts[node]:
            del counts[node]

    async def room_members(self, room: str) -> list[str]:
        return list(self._rooms.get(room, ()))

    async def bind_user(self, user: str, connection_id: str) -> bool:
        record = self._connections.get(connection_id)
        if record is None:
            return False
        record.own_users().add(user)
        self._users.setdefault(user, {})[connection_id] = None
        return True

    async def user_connections(self, user: str) -> list[str]:
        return list(self._users.get(user, ()))

    async def list_connections(self, limit: int, cursor: str | None) -> Page:
        # The cursor is the last id returned; dicts keep insertion order, so paging is stable
        # while connections come and go (a removed cursor id restarts after the nearest survivor
        # would need an index, so we fall back to a positional scan - fine for an admin listing).
        ids = list(self._connections)
        start = 0
        if cursor:
            try:
                start = ids.index(cursor) + 1
            except ValueError:
                start = 0
        chunk = ids[start : start + limit]
        more = start + limit < len(ids)
        return Page(chunk, chunk[-1] if more and chunk else None)

    async def count(self) -> int:
        return len(self._connections)

    async def room_nodes(self, room: str) -> Mapping[str, int]:
        return dict(self._room_nodes.get(room, {}))  # a copy: callers must not see later changes


def _discard(index: dict[str, dict[str, None]], key: str, member: str) -> None:
    members = index.get(key)
    if members is not None:
        members.pop(member, None)
        if not members:
            del index[key]


class MemoryBus:
    """Single-node bus: deliveries addressed to this node are handed straight back."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._handler: BusHandler | None = None

    def attach(self, handler: BusHandler) -> None:
        self._handler = handler

    async def send(self, node_id: str, delivery: Delivery) -> None:
        if node_id == self.node_id and self._handler is not None:
            await self._handler(delivery)

    async def publish(self, node_ids: Sequence[str], delivery: Delivery) -> None:
        if self.node_id in node_ids and self._handler is not None:
            await self._handler(delivery)

    async def publish_room(self, room: str, delivery: Delivery) -> Mapping[str, int] | None:
        del room, delivery  # one node: no other node to publish to
        return None

    async def publish_recorded(
        self, room: str, delivery: Delivery, recovery: Recovery, *, only_if_kept: bool = False
    ) -> tuple[Position | None, Mapping[str, int]] | None:
        del room, delivery, recovery, only_if_kept  # one node: the caller appends
        return None


class MemoryStore:
    """``memory://``: registry and bus in this process."""

    shared = False  # one process: nothing to tell other nodes

    def __init__(self, node_id: str = "local") -> None:
        self.registry = MemoryRegistry()
        self.bus = MemoryBus(node_id)
        self.presence = MemoryPresence()

    async def start(self, handler: BusHandler, on_reaped: ReapHandler) -> None:
        del on_reaped  # one node: nobody else's connections to reap
        self.bus.attach(handler)

    async def close(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"store": "memory", "ok": True}


def open_memory(
    url: str, *, node_id: str, key_prefix: str = "", heartbeat_interval: float = 2.0
) -> MemoryStore:
    """Factory used by :func:`hubbub.store.open_store` for ``memory://``."""
    del url, key_prefix, heartbeat_interval  # nothing to configure: the process is the store
    return MemoryStore(node_id)
