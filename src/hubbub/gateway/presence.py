"""Presence: who is in a room, cluster-wide, with join, leave and update events.

Theory of operation. A room has presence when it matches ``[presence] rooms`` or a join asks for
it (``rooms.join(room, cid, presence=True, data=...)``). Only then does anything here run: for
every other room a join, a leave or a send costs no store call more than before (a pattern match
in this process at most).

The members live in the store's :class:`~hubbub.store.base.Presence` (memory or Redis, the same
contract). This node remembers which of *its own* connections are present where
(``RoomPresence._local``), so that a closing connection without presence costs nothing either; a
connection of another node joined with presence is announced to its node (a ``presence-track``
delivery), whose registry notices already follow joins and leaves the same way.

Events (:mod:`hubbub.aws.presence`) go to the recovery-enabled members of the room on every node
with members (as a ``presence`` delivery) and, when ``[presence] route`` names a route, to its
handler as a Lambda event, once per event cluster-wide: each event is emitted by the node whose
store call changed the member set, and every removal returns the member to one caller only.

Leaving:

- a leave or a close removes the member at once and emits ``leave``;
- a recovery-enabled connection that drops is *deferred*: it stays present for ``grace`` seconds,
  and its session keeps its presence data. A resume within that time takes its place (one
  ``update`` carrying ``previousConnectionId``, no leave/join pair); otherwise a sweep on any node
  finds it due and emits its ``leave``;
- when a node dies, the survivor that reaps each of its connections removes (or defers) its
  presence in the same way, within the three heartbeats of the reaping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import orjson

from hubbub.aws.ids import new_request_id
from hubbub.aws.presence import event_body, presence_event, presence_frame
from hubbub.errors import BadRequestError, GoneError
from hubbub.store.base import ConnectionRecord, Delivery, PresenceMember, Store

if TYPE_CHECKING:
    from hubbub.aws.events import ApiContext
    from hubbub.config import PresenceConfig
    from hubbub.gateway.connection import Connection
    from hubbub.gateway.hub import Hub
    from hubbub.gateway.invoke import Invoker, Route
    from hubbub.store.recovery import Session

log = logging.getLogger("hubbub.presence")

SWEEP_BATCH = 100
MAX_PAGE = 1000
EventHook = Callable[[dict[str, Any]], None]


def _now_ms() -> int:
    return int(time.time() * 1000)


def user_of(authorizer: Any, users: AbstractSet[str]) -> str | None:
    """The member's user: the authorizer's principalId when bound, else its first bound user."""
    principal = (authorizer or {}).get("principalId")
    if principal is not None and str(principal) in users:
        return str(principal)
    return min(users) if users else None


class RoomPresence:
    """The presence service of one gateway (see the module docstring)."""

    def __init__(self, hub: Hub, store: Store, config: PresenceConfig) -> None:
        self._hub = hub
        self._registry = store.registry
        self._bus = store.bus
        self._node_id = store.bus.node_id
        self._store = store.presence
        self._patterns = config.rooms
        self._max_data = config.max_data_bytes
        self._grace_ms = int(config.grace * 1000)
        self.sweep_interval = min(1.0, max(0.05, config.grace / 4))
        self._local: dict[str, set[str]] = {}  # our connection id -> rooms it is present in
        self.on_event: EventHook | None = None  # the presence route, when configured
        self.emitted = 0  # events this node emitted (tests and the benchmark count them)
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_loop(), name="hubbub-presence-sweep"
        )

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # -- decisions ----------------------------------------------------------------------------
    def wanted(self, room: str, presence: bool | None, data: Any) -> bool:
        """Does this join track presence? Pure: no store call."""
        if presence is not None:
            return presence
        if data is not None:
            return True
        return any(fnmatchcase(room, pattern) for pattern in self._patterns)

    def tracks(self, connection_id: str, room: str | None = None) -> bool:
        """Is this node's connection present in ``room`` (in any room without one)? Checked
        before awaiting anything, so that leaves and closes without presence stay free."""
        rooms = self._local.get(connection_id)
        if not rooms:
            return False
        return room is None or room in rooms

    def check_data(self, data: Any) -> Any:
        try:
            size = len(orjson.dumps(data))
        except TypeError:
            raise BadRequestError("presence data must be JSON") from None
        if size > self._max_data:
            raise BadRequestError(
                f"presence data is {size} bytes of JSON; the limit is {self._max_data} "
                "([presence] max_data_bytes)"
            )
        return data

    # -- changes ------------------------------------------------------------------------------
    async def enter(self, room: str, connection_id: str, data: Any) -> None:
        """``connection_id`` (already a member of ``room``) becomes present, or updates."""
        self.check_data(data)
        if room in self._local.get(connection_id, ()):
            await self.update(room, connection_id, data)  # present already: keeps joinedAt
            return
        conn = self._hub.connections.get(connection_id)
        if conn is not None:
            user = user_of(conn.context.authorizer, conn.users)
            node = self._node_id
        else:
            record = await self._registry.get(connection_id)
            if record is None:
                raise GoneError()
            user, node = user_of(record.authorizer, record.users), record.node_id
        member = PresenceMember(connection_id, user, data, _now_ms(), node)
        old = await self._store.enter(room, member)
        if conn is not None:
            self._local.setdefault(connection_id, set()).add(room)
        else:
            await self._bus.send(node, Delivery("presence-track", connection_id, room.encode()))
        await self.emit(room, "update" if old is not None else "join", member)

    async def update(self, room: str, connection_id: str, data: Any) -> None:
        self.check_data(data)
        member = await self._store.update(room, connection_id, data)
        if member is None:
            raise BadRequestError(f"connection {connection_id} is not present in room {room!r}")
        await self.emit(room, "update", member)

    async def left(self, room: str, connection_id: str) -> None:
        """A connection of this node left ``room``: its leave, if it was present."""
        rooms = self._local.get(connection_id)
        if not rooms or room not in rooms:
            return
        rooms.discard(room)
        if not rooms:
            del self._local[connection_id]
        member = await self._store.leave(room, connection_id)
        if member is not None:
            await self.emit(room, "leave", member)

    async def retired(self, connection_id: str, *, resumable: bool) -> dict[str, Any]:
        """A connection of this node closed. Returns what its recovery session keeps (see
        :meth:`resumed`); nothing, and no store call, when it was present nowhere."""
        if self._local.pop(connection_id, None) is None:
            return {}
        return await self._gone(connection_id, resumable)

    async def reaped(self, record: ConnectionRecord) -> dict[str, Any]:
        """A dead node's connection, reaped by this node (one store call per connection)."""
        return await self._gone(record.connection_id, record.session is not None)

    async def _gone(self, connection_id: str, resumable: bool) -> dict[str, Any]:
        if resumable and self._grace_ms > 0:
            deferred = await self._store.defer(connection_id, _now_ms() + self._grace_ms)
            return {room: {"data": m.data, "joinedAt": m.joined_at} for room, m in deferred}
        for room, member in await self._store.leave_all(connection_id):
            await self.emit(room, "leave", member)
        return {}

    async def resumed(self, conn: Connection, session: Session) -> None:
        """``conn`` resumed ``session``: it takes the old connection's place in each room
        (an ``update`` naming the previous id), or joins if the old one has left meanwhile."""
        user = user_of(conn.context.authorizer, conn.users)
        for room, kept in session.presence.items():
            if room not in conn.rooms or not isinstance(kept, dict):
                continue
            joined_at = kept.get("joinedAt")
            member = PresenceMember(
                conn.id,
                user,
                kept.get("data"),
                joined_at if isinstance(joined_at, int) else _now_ms(),
                self._node_id,
            )
            old = await self._store.take_over(room, session.connection_id or "", member)
            self._local.setdefault(conn.id, set()).add(room)
            if old is None:
                await self.emit(room, "join", member)
            else:
                await self.emit(room, "update", member, previous=old.connection_id)

    async def track(self, connection_id: str, room: str) -> None:
        """Another node made our connection present in ``room`` (a ``presence-track``)."""
        if connection_id in self._hub.connections:
            self._local.setdefault(connection_id, set()).add(room)
            return
        member = await self._store.leave(room, connection_id)  # it closed meanwhile
        if member is not None:
            await self.emit(room, "leave", member)

    # -- events -------------------------------------------------------------------------------
    async def emit(
        self, room: str, action: str, member: PresenceMember, previous: str | None = None
    ) -> None:
        body = event_body(room, action, member.to_json(), previous)
        frame = presence_frame(body)
        self.deliver(room, frame)
        nodes = await self._registry.room_nodes(room)
        others = [node for node in nodes if node != self._node_id]
        if others:
            await self._bus.publish(others, Delivery("presence", room, frame))
        self.emitted += 1
        if self.on_event is not None:
            self.on_event(body)

    def deliver(self, room: str, frame: bytes) -> int:
        """Write an event frame to this node's recovery-enabled members of ``room``."""
        hub = self._hub
        conns = hub.protocol_members(room)
        return hub.fan_out(conns, frame) if conns else 0

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception as exc:  # Redis away: the next sweep catches up
                log.warning("presence sweep failed", extra={"fields": {"error": f"{exc}"}})

    async def sweep(self) -> int:
        """Emit the leaves of deferred members whose grace ended (on any node: whoever takes
        them from the store). Returns how many."""
        total = 0
        while True:
            due = await self._store.due(_now_ms(), SWEEP_BATCH)
            for room, member in due:
                await self.emit(room, "leave", member)
            total += len(due)
            if len(due) < SWEEP_BATCH:
                return total

    # -- reads --------------------------------------------------------------------------------
    async def listing(
        self, room: str, *, limit: int = 100, cursor: str | None = None, summary: bool = False
    ) -> dict[str, Any]:
        """Counts, and unless ``summary`` a page of members (``next``: the cursor of the next
        page, None on the last)."""
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequestError(f"limit must be between 1 and {MAX_PAGE}")
        connections, users = await self._store.counts(room)
        out: dict[str, Any] = {"room": room, "connections": connections, "users": users}
        if not summary:
            page = await self._store.members(room, limit, cursor or None)
            out["members"] = [m.to_json() for m in page.members]
            out["next"] = page.next_cursor
        return out

    # -- the hubbub.v1 control messages of a client ----------------------------------------
    async def control(self, conn: Connection, message: dict[str, Any]) -> bytes:
        """``presence.get`` (list a room) and ``presence.set`` (change one's own data), for
        rooms the connection is a member of."""
        kind, room, ident = message.get("hubbub"), message.get("room"), message.get("id")
        try:
            if not isinstance(room, str) or room not in conn.rooms:
                raise BadRequestError(f"not a member of room {room!r}")
            if kind == "presence.get":
                limit = message.get("limit", 100)
                cursor = message.get("cursor")
                if not isinstance(limit, int) or isinstance(limit, bool):
                    raise BadRequestError("limit must be an integer")
                if cursor is not None and not isinstance(cursor, str):
                    raise BadRequestError("cursor must be a string")
                listing = await self.listing(room, limit=limit, cursor=cursor)
                return orjson.dumps({"hubbub": "presence.members", "id": ident, **listing})
            if kind == "presence.set":
                await self.update(room, conn.id, message.get("data"))
                return orjson.dumps({"hubbub": "presence.ok", "id": ident, "room": room})
            raise BadRequestError(f"unknown control message {kind!r}")
        except BadRequestError as exc:
            return orjson.dumps({"hubbub": "error", "id": ident, "message": exc.message})


def route_hook(
    invoker: Invoker,
    routes: Mapping[str, Route],
    api: ApiContext | None,
    route_key: str,
    tasks: set[asyncio.Task[Any]],
) -> EventHook:
    """The ``on_event`` hook that invokes ``[presence] route`` with each event, in the
    background (the gateway's drain waits for ``tasks``). The route is looked up in ``routes``
    at each event: a hot reload replaces it there."""
    assert api is not None

    async def invoke(body: dict[str, Any]) -> None:
        request_id = new_request_id()
        event = presence_event(api, route_key, body, request_id=request_id, now_ms=_now_ms())
        await invoker.invoke_awaited(
            routes[route_key],
            event,
            connection_id=body["member"]["connectionId"],
            request_id=request_id,
        )

    def hook(body: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(invoke(body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return hook
