"""The two small interfaces behind which shared state lives.

``Registry`` answers *who is connected, where, and to what* (connections, rooms, users,
attributes). ``Bus`` carries a delivery to the node that holds a connection, or to the nodes that
have members in a room. The in-memory store implements both trivially for one node; the Redis store
implements them for many. The gateway never knows which one it has.

The store never imports the gateway: the gateway registers a :class:`BusHandler` and the store calls
it back when a delivery for this node arrives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hubbub.wire.kinds import DeliveryKind

if TYPE_CHECKING:
    from hubbub.store.recovery import Position, Recovery


@dataclass(slots=True)
class ConnectionRecord:
    """What the shared registry knows about one connection."""

    connection_id: str
    node_id: str
    connected_at: int  # epoch ms
    last_active_at: int  # epoch ms
    source_ip: str
    user_agent: str
    attributes: dict[str, Any] | None = None
    # Enough of the handshake to build a $disconnect event on another node (node loss).
    host: str = ""
    authorizer: dict[str, Any] | None = None
    # Recovery session token of an opted-in client: whoever removes the record saves the session.
    session: str | None = None
    # Shared empty sets until the first join or bind (own_rooms, own_users): most connections
    # join nothing, and two empty sets per record are 432 bytes of every idle connection.
    rooms: Set[str] = frozenset()
    users: Set[str] = frozenset()

    def own_rooms(self) -> set[str]:
        """``rooms`` as a set this record may change (made on first use)."""
        rooms = self.rooms
        if not isinstance(rooms, set):
            rooms = self.rooms = set(rooms)
        return rooms

    def own_users(self) -> set[str]:
        """``users`` as a set this record may change (made on first use)."""
        users = self.users
        if not isinstance(users, set):
            users = self.users = set(users)
        return users


@dataclass(frozen=True, slots=True)
class Page:
    connection_ids: list[str]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message crossing nodes. ``kind`` says how the receiving node fans it out.

    - ``"connection"``: ``target`` is a connection id;
    - ``"room"``: ``target`` is a room, ``exclude`` an optional connection id;
    - ``"broadcast"``: every local connection;
    - ``"close"``: ``target`` is a connection id to close (DeleteConnection).

    A shared store also tells the node holding a connection when another node changed it, so the
    holder's local fan-out index follows (``target`` is the connection id):

    - ``"join"`` / ``"leave"``: ``data`` is the room (UTF-8);
    - ``"bind"``: ``data`` is the user (UTF-8);
    - ``"attributes"``: ``data`` is the new attributes object (JSON).

    Presence (:mod:`hubbub.gateway.presence`) adds two kinds:

    - ``"presence"``: ``target`` is a room, ``data`` an event frame for its hubbub.v1 members;
    - ``"presence-track"``: ``target`` is a connection of the receiving node that another node
      made present in the room ``data`` (UTF-8), so its close removes that presence.
    """

    kind: DeliveryKind
    target: str
    data: bytes
    exclude: str | None = None
    # Room messages with history: their position, so receiving nodes can wrap them for
    # recovery-enabled clients (hubbub.gateway.recovery).
    epoch: str | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class PresenceMember:
    """A member of a room's presence set: a connection, its user and its presence data."""

    connection_id: str
    user: str | None
    data: Any  # a small JSON value (None: no data)
    joined_at: int  # epoch ms
    node_id: str

    def to_json(self) -> dict[str, Any]:
        """The member as clients, handlers and the management API see it."""
        return {
            "connectionId": self.connection_id,
            "user": self.user,
            "data": self.data,
            "joinedAt": self.joined_at,
        }


@dataclass(frozen=True, slots=True)
class PresencePage:
    members: list[PresenceMember]
    next_cursor: str | None


class Presence(Protocol):
    """Who is present in which room (only rooms joined with presence on).

    Every method that removes a member returns it only to the first caller, on every node: the
    leave event of a member is emitted by whoever got it back, exactly once. A *deferred* member
    (its connection dropped with a recovery session) stays listed until its deadline; then
    :meth:`due` hands it to one caller, unless :meth:`take_over` gave its place to the connection
    that resumed the session.
    """

    async def enter(self, room: str, member: PresenceMember) -> PresenceMember | None:
        """Add or replace ``member``; return the entry it replaced (an update) or None (a join)."""
        ...

    async def update(self, room: str, connection_id: str, data: Any) -> PresenceMember | None:
        """Replace a member's data; return the updated member, None if it is not present."""
        ...

    async def leave(self, room: str, connection_id: str) -> PresenceMember | None: ...

    async def leave_all(self, connection_id: str) -> list[tuple[str, PresenceMember]]:
        """Remove the connection from every room's presence; (room, member) for each."""
        ...

    async def defer(self, connection_id: str, until_ms: int) -> list[tuple[str, PresenceMember]]:
        """Schedule the connection's leave from every room for ``until_ms``; the members stay."""
        ...

    async def take_over(
        self, room: str, old_connection_id: str, member: PresenceMember
    ) -> PresenceMember | None:
        """Put ``member`` in place of the old connection's entry (a resumed session); return the
        old entry, or None when it had left already (``member`` is then added as a join)."""
        ...

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, PresenceMember]]:
        """Remove up to ``limit`` deferred members whose deadline passed; (room, member) each."""
        ...

    async def members(self, room: str, limit: int, cursor: str | None) -> PresencePage:
        """A page of members ordered by connection id; ``cursor`` is the last id of a page."""
        ...

    async def counts(self, room: str) -> tuple[int, int]:
        """(connections, distinct users) present in ``room``; members without a user count
        as connections only."""
        ...


class BusHandler(Protocol):
    async def __call__(self, delivery: Delivery) -> int:
        """Deliver locally; return how many local connections received it."""
        ...


class ReapHandler(Protocol):
    async def __call__(self, record: ConnectionRecord) -> None:
        """A connection of a dead node was removed by this node: deliver its ``$disconnect``."""
        ...


class Registry(Protocol):
    """Connection registry. Every method is safe to call from any node."""

    async def add(self, record: ConnectionRecord) -> None: ...

    async def remove(self, connection_id: str) -> ConnectionRecord | None:
        """Forget a connection and its memberships; return the record only to the first caller.

        Exactly-once ``$disconnect`` hangs on this: whoever gets the record delivers it.
        """
        ...

    async def get(self, connection_id: str) -> ConnectionRecord | None: ...

    async def touch(self, connection_id: str, now_ms: int) -> None:
        """Record activity (``lastActiveAt``)."""
        ...

    async def set_attributes(self, connection_id: str, attributes: dict[str, Any]) -> bool:
        """Replace the connection's attributes; False if the connection is unknown."""
        ...

    async def join(self, room: str, connection_id: str) -> bool:
        """Add to a room; False if the connection is unknown."""
        ...

    async def leave(self, room: str, connection_id: str) -> bool: ...

    async def room_members(self, room: str) -> list[str]: ...

    async def bind_user(self, user: str, connection_id: str) -> bool: ...

    async def user_connections(self, user: str) -> list[str]: ...

    async def list_connections(self, limit: int, cursor: str | None) -> Page: ...

    async def count(self) -> int: ...

    async def room_nodes(self, room: str) -> Mapping[str, int]:
        """Nodes with members in ``room`` and how many each (interest-based routing)."""
        ...


class Bus(Protocol):
    """Cross-node delivery. A single-node store delivers nothing remotely."""

    node_id: str

    async def send(self, node_id: str, delivery: Delivery) -> None: ...

    async def publish(self, node_ids: Sequence[str], delivery: Delivery) -> None: ...

    async def publish_room(self, room: str, delivery: Delivery) -> Mapping[str, int] | None:
        """A room send in one step where the store can: publish ``delivery`` to every other node
        with members in ``room`` and return the room's nodes (as :meth:`Registry.room_nodes`).
        None where it cannot: the caller asks the registry, then calls :meth:`publish`."""
        ...

    async def publish_recorded(
        self, room: str, delivery: Delivery, recovery: Recovery, *, only_if_kept: bool = False
    ) -> tuple[Position | None, Mapping[str, int]] | None:
        """A room send with history in one step where the store can (the history on the bus's
        own server): record ``delivery`` in ``recovery``, publish it with that position as
        :meth:`publish_room` does, and return the position and the room's nodes. None where it
        cannot: the caller appends to ``recovery``, then calls :meth:`publish_room`. With
        ``only_if_kept`` (as :meth:`Recovery.append`) the position is None when the room keeps
        no history: the message was published without one."""
        ...


class Store(Protocol):
    """A registry and a bus with one lifecycle, opened from a URL."""

    registry: Registry
    bus: Bus
    presence: Presence
    # Several processes or nodes share it (hubbub.store.schemes): what a connection does must be
    # written where the others read it (lastActiveAt on every message, for one).
    shared: bool

    async def start(self, handler: BusHandler, on_reaped: ReapHandler) -> None:
        """Connect, subscribe this node's deliveries to ``handler``, begin heartbeats.

        ``on_reaped`` is called once per connection of a dead node that this node removed from
        the registry (the removal is atomic, so exactly one survivor gets each connection).
        """
        ...

    async def close(self) -> None:
        """Stop heartbeats and remove this node's own entries (graceful shutdown)."""
        ...

    def status(self) -> dict[str, Any]:
        """For /health: at least ``{"store": url-scheme, "ok": bool}``."""
        ...
