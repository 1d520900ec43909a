"""The service layer: every management operation, once, for both the HTTP API and in-process calls.

``await gateway.connections.post(cid, data)`` and ``POST /{stage}/@connections/{cid}`` run the same
code. Local connections are served straight from the hub; connections on other nodes are reached
through the store's bus (interest-based: only the node holding a connection, only the nodes that
have members in a room).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

from hubbub.errors import BadRequestError, GoneError, PayloadTooLargeError
from hubbub.gateway.metrics import Metrics
from hubbub.store.base import Delivery, Page, Store
from hubbub.store.recovery import Recovery
from hubbub.wire.close import NORMAL
from hubbub.wire.kinds import NOTICES
from hubbub.wire.session import Envelope

if TYPE_CHECKING:
    from hubbub.gateway.connection import Connection
    from hubbub.gateway.hub import Hub
    from hubbub.gateway.presence import RoomPresence

T = TypeVar("T")

MAX_NAME = 128
MAX_ATTRIBUTES_BYTES = 4096


def check_name(kind: str, name: str) -> str:
    """Room and user names: 1-128 characters, no control characters."""
    if not 1 <= len(name) <= MAX_NAME:
        raise BadRequestError(f"{kind} name must be 1-{MAX_NAME} characters, got {len(name)}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise BadRequestError(f"{kind} name must not contain control characters")
    return name


def as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


class LocalCloser(Protocol):
    """Closes a connection of this node on behalf of DeleteConnection: gone for the API at
    once (retired, its ``$disconnect`` scheduled), then closed (the connection lifecycle)."""

    async def close_local(self, conn: Connection, code: int, reason: str) -> None: ...


class Services:
    """Shared state for the four service groups below."""

    def __init__(
        self,
        hub: Hub,
        store: Store,
        *,
        max_post_bytes: int,
        metrics: Metrics | None = None,
        closer: LocalCloser | None = None,
        presence: RoomPresence | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        """``closer``: None only where no connection is local (a bare service layer);
        ``recovery``: when history is on (``[history]``)."""
        self.hub = hub
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self.registry = store.registry
        self.bus = store.bus
        self.node_id = store.bus.node_id
        self.max_post_bytes = max_post_bytes
        self.recovery = recovery
        self.presence = presence
        self._closer = closer

    async def close_local(self, conn: Connection, code: int, reason: str) -> bool:
        """Close a local connection through the closer; False without one."""
        if self._closer is None:
            return False
        await self._closer.close_local(conn, code, reason)
        return True

    def check_size(self, data: bytes) -> bytes:
        if len(data) > self.max_post_bytes:
            raise PayloadTooLargeError(
                f"Payload of {len(data)} bytes exceeds the limit of {self.max_post_bytes}"
            )
        return data

    async def owner(self, connection_id: str) -> str:
        """The node holding a connection; GoneError if none does."""
        if connection_id in self.hub.connections:
            return self.node_id
        record = await self.registry.get(connection_id)
        if record is None:
            raise GoneError()
        return record.node_id

    async def deliver_local(self, delivery: Delivery) -> int:
        """Bus callback: a delivery addressed to this node."""
        hub = self.hub
        if delivery.kind == "connection":
            conn = hub.connections.get(delivery.target)
            return int(conn is not None and hub.send(conn, delivery.data))
        if delivery.kind == "room":
            envelope = None
            if delivery.epoch is not None:
                envelope = Envelope(delivery.target, delivery.epoch, delivery.offset, delivery.data)
            return hub.send_room(delivery.target, delivery.data, delivery.exclude, envelope)
        if delivery.kind == "user":
            members = hub.users.get(delivery.target)
            return hub.fan_out(list(members.values()), delivery.data) if members else 0
        if delivery.kind == "broadcast":
            return hub.broadcast(delivery.data)
        if delivery.kind == "close":
            conn = hub.connections.get(delivery.target)
            if conn is None:
                return 0
            return int(await self.close_local(conn, *NORMAL))
        if delivery.kind in NOTICES:
            # Another node changed one of our connections in the shared registry: follow locally.
            applied = self.apply_notice(delivery)
            presence = self.presence
            if (
                delivery.kind == "leave"
                and presence is not None
                and presence.tracks(delivery.target)
            ):
                await presence.left(delivery.data.decode(), delivery.target)
            return applied
        if delivery.kind == "presence" and self.presence is not None:
            return self.presence.deliver(delivery.target, delivery.data)
        if delivery.kind == "presence-track" and self.presence is not None:
            await self.presence.track(delivery.target, delivery.data.decode())
            return 1
        return 0

    def apply_notice(self, delivery: Delivery) -> int:
        conn = self.hub.connections.get(delivery.target)
        if conn is None:
            return 0
        if delivery.kind == "attributes":
            conn.context.attributes = orjson.loads(delivery.data)
            conn.factory.refresh()
        elif delivery.kind == "join":
            self.hub.join(delivery.data.decode(), conn)
        elif delivery.kind == "leave":
            self.hub.leave(delivery.data.decode(), conn)
        else:
            self.hub.bind_user(delivery.data.decode(), conn)
        return 1


class Connections:
    """``@connections``: the AWS operations plus listing and attributes."""

    def __init__(self, s: Services) -> None:
        self._s = s
        # Posts post_soon accepted in handlers' threads, in order, for the loop to send. One
        # wake-up of the loop per batch, not per post: a flush is scheduled only when none is
        # pending. The flag is read and set without a lock: a race only schedules one flush too
        # many, which finds nothing to send.
        self._accepted: deque[tuple[Connection, bytes]] = deque()
        self._flushing = False

    async def post(self, connection_id: str, data: bytes | str) -> None:
        """PostToConnection. GoneError (410) for unknown ids, PayloadTooLargeError (413)."""
        s = self._s
        payload = s.check_size(as_bytes(data))
        s.metrics.messages_out["post"] += 1
        conn = s.hub.connections.get(connection_id)
        if conn is not None:
            if not s.hub.send(conn, payload):
                raise GoneError()
            return
        node = await s.owner(connection_id)
        await s.bus.send(node, Delivery("connection", connection_id, payload))

    def post_soon(
        self, connection_id: str, payload: bytes, loop: asyncio.AbstractEventLoop
    ) -> bool:
        """From any thread: accept a post to a local, open connection and send it on ``loop``
        without waiting; False when only :meth:`post` on the loop can answer (an unknown or
        remote id, a closing connection, a payload over the limit: all its errors).

        Reads only (one dict lookup, two flags), so it is safe off the loop. A connection that
        closes between this check and the send loses the message, as a post that API Gateway
        accepted just before the client left does.
        """
        s = self._s
        conn = s.hub.connections.get(connection_id)
        if (
            conn is None
            or conn.closing
            or len(payload) > s.max_post_bytes
            or not conn.socket.writable
        ):
            return False
        self._accepted.append((conn, payload))
        if not self._flushing:
            self._flushing = True
            try:
                loop.call_soon_threadsafe(self._send_accepted)
            except BaseException:
                self._flushing = False  # (a closed loop) the next post tries again
                raise
        return True

    def _send_accepted(self) -> None:
        """On the loop: every post accepted since the last flush, in the order accepted."""
        self._flushing = False  # before draining: a post appended from now on is seen
        s = self._s
        accepted = self._accepted
        while accepted:
            conn, payload = accepted.popleft()
            s.metrics.messages_out["post"] += 1  # here, on the loop: counters are not locked
            s.hub.send(conn, payload)

    async def post_many(self, connection_ids: list[str], data: bytes | str) -> int:
        """Send one message to many connections; local ones share one frame. Unknown ids skip."""
        s = self._s
        payload = s.check_size(as_bytes(data))
        local = []
        remote = []
        for cid in connection_ids:
            conn = s.hub.connections.get(cid)
            if conn is not None:
                local.append(conn)
            else:
                remote.append(cid)
        delivered = s.hub.fan_out(local, payload)
        for cid in remote:
            try:
                await self.post(cid, payload)
                delivered += 1
            except GoneError:
                pass
        return delivered

    async def get(self, connection_id: str) -> dict[str, Any]:
        """GetConnection: connectedAt, lastActiveAt (epoch ms), identity, attributes."""
        s = self._s
        conn = s.hub.connections.get(connection_id)
        if conn is not None:
            ctx = conn.context
            return {
                "connectedAt": ctx.connected_at,
                "lastActiveAt": conn.last_active,
                "sourceIp": ctx.source_ip,
                "userAgent": ctx.user_agent,
                "attributes": ctx.attributes,
            }
        record = await s.registry.get(connection_id)
        if record is None:
            raise GoneError()
        return {
            "connectedAt": record.connected_at,
            "lastActiveAt": record.last_active_at,
            "sourceIp": record.source_ip,
            "userAgent": record.user_agent,
            "attributes": record.attributes,
        }

    async def delete(self, connection_id: str) -> None:
        """DeleteConnection: close with 1000 "Connection Closed Normally"."""
        s = self._s
        conn = s.hub.connections.get(connection_id)
        if conn is not None and await s.close_local(conn, *NORMAL):
            return
        node = await s.owner(connection_id)
        await s.bus.send(node, Delivery("close", connection_id, b""))

    async def list(self, limit: int = 100, cursor: str | None = None) -> Page:
        if not 1 <= limit <= 1000:
            raise BadRequestError("limit must be between 1 and 1000")
        return await self._s.registry.list_connections(limit, cursor)

    async def count(self) -> int:
        return await self._s.registry.count()

    async def set_attributes(self, connection_id: str, attributes: dict[str, Any]) -> None:
        """Keep a small JSON object with the connection; later events carry it."""
        if not isinstance(attributes, dict):
            raise BadRequestError("attributes must be a JSON object")
        size = len(orjson.dumps(attributes))
        if size > MAX_ATTRIBUTES_BYTES:
            raise BadRequestError(
                f"attributes are {size} bytes of JSON; the limit is {MAX_ATTRIBUTES_BYTES}"
            )
        s = self._s
        if not await s.registry.set_attributes(connection_id, attributes):
            raise GoneError()
        conn = s.hub.connections.get(connection_id)
        if conn is not None:
            conn.context.attributes = attributes
            conn.factory.refresh()

    async def get_attributes(self, connection_id: str) -> dict[str, Any]:
        info = await self.get(connection_id)
        return info["attributes"] or {}


class Rooms:
    """Named groups of connections; sends cost O(members)."""

    def __init__(self, s: Services) -> None:
        self._s = s

    async def join(
        self,
        room: str,
        connection_id: str,
        *,
        presence: bool | None = None,
        data: Any = None,
    ) -> None:
        """Add to a room. With presence (``presence=True``, presence ``data``, or a room
        matching ``[presence] rooms``) the member is listed by :meth:`presence` and its
        recovery-enabled fellow members are told (docs/rooms-and-users.md, "Presence")."""
        s = self._s
        check_name("room", room)
        tracked = s.presence is not None and s.presence.wanted(room, presence, data)
        if tracked and s.presence is not None:
            s.presence.check_data(data)  # before anything changes
        conn = s.hub.connections.get(connection_id)
        if conn is not None and conn.session is not None and s.recovery is not None:
            # Where this member's history starts, in case it never receives a message here.
            conn.joined.setdefault(room, await s.recovery.head(room))
        if not await s.registry.join(room, connection_id):
            raise GoneError()
        if conn is not None:
            s.hub.join(room, conn)
        elif s.recovery is not None and s.recovery.keep_interval is not None:
            # A history several nodes share keeps only rooms a recovery-enabled client is in
            # (Recovery.append's only_if_kept): mark this one now if the member, held by
            # another node, is one, so that every node records the room's messages from now on.
            record = await s.registry.get(connection_id)
            if record is not None and record.session is not None:
                await s.recovery.head(room)
        if tracked and s.presence is not None:
            await s.presence.enter(room, connection_id, data)

    async def leave(self, room: str, connection_id: str) -> None:
        s = self._s
        check_name("room", room)
        if not await s.registry.leave(room, connection_id):
            raise GoneError()
        conn = s.hub.connections.get(connection_id)
        if conn is not None:
            s.hub.leave(room, conn)
            if s.presence is not None and s.presence.tracks(connection_id, room):
                await s.presence.left(room, connection_id)

    async def presence(
        self, room: str, *, limit: int = 100, cursor: str | None = None, summary: bool = False
    ) -> dict[str, Any]:
        """Who is present: ``{"room", "connections", "users", "members": [{"connectionId",
        "user", "data", "joinedAt"}, ...], "next": cursor | None}`` (counts only with
        ``summary``). ``connections`` and ``users`` count the whole room, ``members`` is one
        page of at most ``limit`` (1-1000) in connection id order; pass ``next`` as ``cursor``
        for the next page."""
        s = self._s
        check_name("room", room)
        assert s.presence is not None
        return await s.presence.listing(room, limit=limit, cursor=cursor, summary=summary)

    async def set_presence(self, room: str, connection_id: str, data: Any) -> None:
        """Replace a present member's presence data (an ``update`` event); BadRequestError if
        the connection is not present in the room."""
        s = self._s
        check_name("room", room)
        assert s.presence is not None
        await s.presence.update(room, connection_id, data)

    async def send(self, room: str, data: bytes | str, *, exclude: str | None = None) -> int:
        """Deliver to every member (but ``exclude``); returns how many members it was sent to."""
        s = self._s
        check_name("room", room)
        payload = s.check_size(as_bytes(data))
        s.metrics.messages_out["room"] += 1
        envelope = None
        delivery = Delivery("room", room, payload, exclude)
        nodes: Mapping[str, int] | None = None
        recovery = s.recovery
        needed = recovery is not None and s.hub.has_session(room)
        if recovery is not None and (needed or recovery.tracks(room)):
            # A room message gets a position in the room's history whether its members are here
            # or not: a client that is away right now resumes from it. Rooms that no
            # recovery-enabled client ever joined have no history to keep: tracks() names the
            # rooms that may have one, and a shared history decides itself unless a member
            # here needs it (only_if_kept). With the history on the bus's Redis server,
            # recording and publishing are one round trip.
            recorded = await s.bus.publish_recorded(
                room, delivery, recovery, only_if_kept=not needed
            )
            if recorded is None:
                position = await recovery.append(room, payload, only_if_kept=not needed)
            else:
                position, nodes = recorded  # published, with its position if it has one
            if position is not None:
                envelope = Envelope(room, position.epoch, position.offset, payload)
                delivery = Delivery(
                    "room", room, payload, exclude, epoch=position.epoch, offset=position.offset
                )
        if nodes is None:
            # On one Redis server the lookup and the publish to the other nodes are one round
            # trip.
            nodes = await s.bus.publish_room(room, delivery)
        published = nodes is not None
        if nodes is None:
            nodes = await s.registry.room_nodes(room)
        delivered = 0
        remote = []
        has_remote = any(node != s.node_id for node in nodes)
        excluded_on = await self._remote_member_node(room, exclude) if has_remote else None
        for node, members in nodes.items():
            if node == s.node_id:
                delivered += s.hub.send_room(room, payload, exclude, envelope)
            else:
                remote.append(node)
                delivered += members - (node == excluded_on)
        if remote and not published:
            await s.bus.publish(remote, delivery)
        return delivered

    publish = send

    async def _remote_member_node(self, room: str, exclude: str | None) -> str | None:
        """The node of an excluded member held elsewhere, so the count leaves it out."""
        if exclude is None or exclude in self._s.hub.connections:
            return None
        record = await self._s.registry.get(exclude)
        return record.node_id if record is not None and room in record.rooms else None

    async def members(self, room: str) -> list[str]:
        check_name("room", room)
        return await self._s.registry.room_members(room)


class Users:
    """Bind connections to an application user id; send to or disconnect all of them."""

    def __init__(self, s: Services, connections: Connections) -> None:
        self._s = s
        self._connections = connections

    async def bind(self, user: str, connection_id: str) -> None:
        s = self._s
        check_name("user", user)
        if not await s.registry.bind_user(user, connection_id):
            raise GoneError()
        conn = s.hub.connections.get(connection_id)
        if conn is not None:
            s.hub.bind_user(user, conn)

    async def connections(self, user: str) -> list[str]:
        check_name("user", user)
        return await self._s.registry.user_connections(user)

    async def send(self, user: str, data: bytes | str) -> int:
        check_name("user", user)
        self._s.metrics.messages_out["user"] += 1
        ids = await self._s.registry.user_connections(user)
        return await self._connections.post_many(ids, data)

    async def disconnect(self, user: str) -> int:
        ids = await self.connections(user)
        results = await asyncio.gather(
            *(self._connections.delete(cid) for cid in ids), return_exceptions=True
        )
        return sum(1 for r in results if not isinstance(r, BaseException))


class GatewayApi:
    """What handlers get as ``context.gateway``, and what :class:`~hubbub.gateway.app.Gateway`
    exposes as ``gw.connections``, ``gw.rooms``, ``gw.users`` and ``gw.broadcast``."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self.connections = Connections(services)
        self.rooms = Rooms(services)
        self.users = Users(services, self.connections)

    async def broadcast(self, data: bytes | str) -> int:
        """Send to every connection on every node."""
        s = self._s
        payload = s.check_size(as_bytes(data))
        s.metrics.messages_out["broadcast"] += 1
        delivered = s.hub.broadcast(payload)
        total = await s.registry.count()
        others = total - len(s.hub.connections)
        if others > 0:
            await s.bus.publish(["*"], Delivery("broadcast", "*", payload))
            delivered += others
        return delivered


class SyncGatewayApi:
    """A blocking facade over :class:`GatewayApi` for plain ``def`` handlers (run in threads).

    ``context.gateway.rooms.send("lobby", "hi")`` blocks the handler's thread, never the loop.
    """

    def __init__(self, api: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._api = api
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._api, name)
        if asyncio.iscoroutinefunction(target):
            loop = self._loop

            def call(*args: Any, **kwargs: Any) -> Any:
                future = asyncio.run_coroutine_threadsafe(target(*args, **kwargs), loop)
                return future.result()

            return call
        if isinstance(target, Connections | Rooms | Users):
            return SyncGatewayApi(target, self._loop)
        return target
