"""Local fan-out: frame once, write many; never await a slow peer.

Theory of operation. Every open connection on this node is in ``connections``; room and user
membership of *local* connections is mirrored in ``rooms``/``users`` so that a room send costs
O(members of the room), whatever else is connected. A send builds the frame once and writes the
same bytes to each socket's transport. Writing never blocks: asyncio buffers what the kernel does
not take yet, and the buffered size is our per-connection send queue. When it passes
``send_queue_bytes`` the consumer is too slow: it is dropped (1013, "Send queue full") rather than
letting memory grow or the room wait. Connections that negotiated permessage-deflate cannot share
frames; they get their own ordered outbox drained by one task each.

The common recipient takes the shared frame as is: not compressed, not recovery-enabled (those get
a per-room envelope). Each room therefore also keeps its members split (:class:`Members`): the
plain ones as bare sockets, written in one tight loop (:meth:`Socket.broadcast`), the others one by
one. Both facts are fixed before a connection can join anything (compression is negotiated in the
handshake, the recovery session assigned before :meth:`Hub.add`). The tight loop does not look at
``Connection.closing``: a connection only sets it right before closing its WebSocket or aborting
its transport, which the socket's own checks see. The plain members are laid out for that loop
(:class:`Recipients`) on the first send after one came or went, and reused until the next change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hubbub.gateway.transport_aiohttp import Recipients, Socket
from hubbub.wire.close import SLOW_CONSUMER
from hubbub.wire.frames import SHORT_TEXT_HEADS, frame_message, frame_text
from hubbub.wire.session import Envelope

if TYPE_CHECKING:
    from hubbub.gateway.connection import Connection

log = logging.getLogger("hubbub.hub")


class Members:
    """The local members of a room (or of the node), split for fan-out; see the module docstring."""

    __slots__ = ("_recipients", "plain", "special")

    def __init__(self) -> None:
        self.plain: dict[str, Socket] = {}  # take the shared frame: written by Socket.broadcast
        self.special: dict[str, Connection] = {}  # compressed or recovery-enabled: one by one
        self._recipients: Recipients | None = None  # ``plain`` laid out for Socket.broadcast

    def add(self, conn: Connection) -> None:
        if conn.session is None and not conn.socket.compressed:
            self.plain[conn.id] = conn.socket
            self._recipients = None
        else:
            self.special[conn.id] = conn

    def discard(self, cid: str) -> None:
        if self.plain.pop(cid, None) is not None:
            self._recipients = None
        self.special.pop(cid, None)

    def recipients(self) -> Recipients:
        """``plain`` as :meth:`Socket.broadcast` takes it: built on the first send after a
        member came or went, then reused. A member that closes stays in it until the hub
        removes it (Socket.broadcast checks every socket's state on each send)."""
        recipients = self._recipients
        if recipients is None:
            recipients = self._recipients = Recipients(self.plain.values())
        return recipients

    def __bool__(self) -> bool:
        return bool(self.plain or self.special)


class Hub:
    def __init__(self, send_queue_bytes: int) -> None:
        self.connections: dict[str, Connection] = {}
        self.users: dict[str, dict[str, Connection]] = {}
        self._everyone = Members()
        self._room_members: dict[str, Members] = {}
        self._limit = send_queue_bytes
        self.frames_built = 0  # counted so tests can prove "frame once"
        self.writes = 0  # frames written to clients (exported by /metrics)
        self.slow_drops = 0

    # -- membership -------------------------------------------------------------------------
    @property
    def rooms(self) -> dict[str, set[str]]:
        """Each room's local member ids (for introspection and tests), derived on each call."""
        return {room: m.plain.keys() | m.special.keys() for room, m in self._room_members.items()}

    def add(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        self._everyone.add(conn)

    def remove(self, conn: Connection) -> None:
        self.connections.pop(conn.id, None)
        self._everyone.discard(conn.id)
        # Most connections join no room and bind no user: their sets were never made, and
        # are not made now just to be walked and cleared.
        rooms, users = conn.memberships()
        if rooms:
            for room in rooms:
                self._leave_index(room, conn.id)
            rooms.clear()
        if users:
            for user in users:
                _discard(self.users, user, conn.id)
            users.clear()

    def join(self, room: str, conn: Connection) -> None:
        """Add ``conn`` to ``room``; nothing if it has left the hub (closed while the caller
        awaited the registry: adding it then would keep a dead member for good)."""
        if self.connections.get(conn.id) is not conn:
            return
        conn.rooms.add(room)
        members = self._room_members.get(room)
        if members is None:
            members = self._room_members[room] = Members()
        members.add(conn)

    def has_session(self, room: str) -> bool:
        """Whether a recovery-enabled connection of this node is in ``room``."""
        members = self._room_members.get(room)
        return members is not None and any(c.session is not None for c in members.special.values())

    def leave(self, room: str, conn: Connection) -> None:
        conn.rooms.discard(room)
        self._leave_index(room, conn.id)

    def _leave_index(self, room: str, cid: str) -> None:
        members = self._room_members.get(room)
        if members is not None:
            members.discard(cid)
            if not members:
                del self._room_members[room]

    def rooms_with_sessions(self) -> list[str]:
        """The rooms a recovery-enabled connection of this node is in (their history is kept:
        :class:`hubbub.gateway.recovery.Resumer`)."""
        return [room for room in self._room_members if self.has_session(room)]

    def protocol_members(self, room: str) -> list[Connection]:
        """The local members of ``room`` that speak hubbub.v1 (presence events go to them)."""
        members = self._room_members.get(room)
        if members is None:
            return []
        return [c for c in members.special.values() if c.session is not None]

    def bind_user(self, user: str, conn: Connection) -> None:
        """Bind ``conn`` to ``user``; nothing if it has left the hub (as for :meth:`join`)."""
        if self.connections.get(conn.id) is not conn:
            return
        conn.users.add(user)
        self.users.setdefault(user, {})[conn.id] = conn

    # -- delivery ---------------------------------------------------------------------------
    def send(self, conn: Connection, payload: bytes) -> bool:
        """Deliver one message to one connection; False if it is closing.

        A text frame when the payload is UTF-8, else a binary one (:func:`frame_message`).
        """
        self.frames_built += 1
        # frame_message's short ASCII case and _write's plain-socket path written out: a route
        # response comes here once per message, and each Python call is a sizeable part of it.
        if conn.closing:
            return False
        sock = conn.socket
        if sock.compressed:
            return self._enqueue(conn, payload)  # framed per socket: no shared frame to build
        n = len(payload)
        if n < 126 and payload.isascii():
            frame = SHORT_TEXT_HEADS[n] + payload
        else:
            frame = frame_message(payload)
        buffered = sock.offer(frame)
        if buffered < 0:  # not writable: nothing was written
            return False
        self.writes += 1
        if buffered > self._limit:
            self._drop_slow(conn)
        return True

    def send_room(
        self,
        room: str,
        payload: bytes,
        exclude: str | None = None,
        envelope: Envelope | None = None,
    ) -> int:
        """Deliver one message to the room's local members (but ``exclude``); returns the count.

        With ``envelope`` (a room message with history), recovery-enabled members get the wrapped
        form instead.
        """
        members = self._room_members.get(room)
        return self._send_members(members, payload, exclude, envelope) if members else 0

    def broadcast(self, payload: bytes) -> int:
        """Deliver one message to every local connection; returns the count."""
        return self._send_members(self._everyone, payload, None, None)

    def _send_members(
        self, members: Members, payload: bytes, exclude: str | None, envelope: Envelope | None
    ) -> int:
        frame = frame_message(payload)
        self.frames_built += 1
        delivered = 0
        plain = members.plain
        if plain:
            skip = plain.get(exclude) if exclude is not None else None
            delivered, over = Socket.broadcast(members.recipients(), frame, self._limit, skip)
            self.writes += delivered
            if over:
                self._drop_over(plain, over)
        if members.special:
            conns = list(members.special.values())
            delivered += self._fan_out_framed(conns, payload, frame, exclude, envelope)
        return delivered

    def fan_out(
        self,
        conns: Iterable[Connection],
        payload: bytes,
        exclude: str | None = None,
        envelope: Envelope | None = None,
    ) -> int:
        """Deliver one message to many connections, framing it once. Returns the count.

        With ``envelope`` (a room message with history), recovery-enabled connections get the
        wrapped form instead, also framed once.
        """
        self.frames_built += 1
        return self._fan_out_framed(conns, payload, frame_message(payload), exclude, envelope)

    def _fan_out_framed(
        self,
        conns: Iterable[Connection],
        payload: bytes,
        frame: bytes,
        exclude: str | None,
        envelope: Envelope | None,
    ) -> int:
        delivered = 0
        write = self._write
        wrapped = wrapped_frame = b""
        for conn in conns:
            if conn.id == exclude:
                continue
            if envelope is not None and conn.session is not None:
                if not wrapped:
                    wrapped = envelope.payload()
                    wrapped_frame = frame_text(wrapped)
                    self.frames_built += 1
                if conn.held is not None:  # resuming: the replay goes first, then these
                    conn.held.append((envelope.room, envelope.offset, wrapped))
                    delivered += 1
                elif write(conn, wrapped, wrapped_frame):
                    delivered += 1
            elif write(conn, payload, frame):
                delivered += 1
        return delivered

    def _write(self, conn: Connection, payload: bytes, frame: bytes) -> bool:
        sock = conn.socket
        if conn.closing:
            return False
        if sock.compressed:
            return self._enqueue(conn, payload)
        buffered = sock.offer(frame)
        if buffered < 0:  # not writable: nothing was written
            return False
        self.writes += 1
        if buffered > self._limit:
            self._drop_slow(conn)
        return True

    def _enqueue(self, conn: Connection, payload: bytes) -> bool:
        """A compressed socket's message, to its ordered outbox (framed and deflated there)."""
        if not conn.socket.writable:
            return False
        if not conn.enqueue_compressed(payload, self._limit):
            self._drop_slow(conn)
            return False
        return True

    def _drop_over(self, plain: dict[str, Socket], over: list[Socket]) -> None:
        """Drop the connections whose sockets :meth:`Socket.broadcast` found over the limit."""
        slow = set(over)
        for cid in [cid for cid, sock in plain.items() if sock in slow]:
            conn = self.connections.get(cid)
            if conn is not None:
                self._drop_slow(conn)

    def _drop_slow(self, conn: Connection) -> None:
        self.slow_drops += 1
        log.warning(
            "slow consumer dropped",
            extra={"fields": {"connectionId": conn.id, "buffered": conn.socket.buffered()}},
        )
        conn.closing = True
        conn.set_close(*SLOW_CONSUMER)
        # It is not reading, so a closing handshake would never finish: drop the TCP connection.
        conn.socket.abort()


def _discard(index: dict[str, dict[str, Connection]], key: str, cid: str) -> None:
    members = index.get(key)
    if members is not None:
        members.pop(cid, None)
        if not members:
            del index[key]
