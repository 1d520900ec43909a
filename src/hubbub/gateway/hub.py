"""Local fan-out: frame once, write many; never await a slow peer.

Theory of operation. Every open connection on this node is in ``connections``; room and user
membership of *local* connections is mirrored in ``rooms``/``users`` so that a room send costs
O(members of the room), whatever else is connected. A send builds the text frame once and writes the
same bytes to each socket's transport. Writing never blocks: asyncio buffers what the kernel does
not take yet, and the buffered size is our per-connection send queue. When it passes
``send_queue_bytes`` the consumer is too slow: it is dropped (1013, "Send queue full") rather than
letting memory grow or the room wait. Connections that negotiated permessage-deflate cannot share
frames; they get their own ordered outbox drained by one task each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hubbub.gateway.transport import frame_text
from hubbub.store.recovery import Position

if TYPE_CHECKING:
    from hubbub.gateway.connection import Connection

log = logging.getLogger("hubbub.hub")

SLOW_CONSUMER_CODE = 1013
SLOW_CONSUMER_REASON = "Send queue full"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A room message's position; the wrapped payload is built only if a member needs it."""

    room: str
    epoch: str
    offset: int
    data: bytes

    def payload(self) -> bytes:
        from hubbub.gateway.recovery import envelope

        return envelope(self.room, Position(self.epoch, self.offset), self.data)


class Hub:
    def __init__(self, send_queue_bytes: int) -> None:
        self.connections: dict[str, Connection] = {}
        self.rooms: dict[str, dict[str, Connection]] = {}
        self.users: dict[str, dict[str, Connection]] = {}
        self._limit = send_queue_bytes
        self.frames_built = 0  # counted so tests can prove "frame once"
        self.writes = 0

    # -- membership -------------------------------------------------------------------------
    def add(self, conn: Connection) -> None:
        self.connections[conn.id] = conn

    def remove(self, conn: Connection) -> None:
        self.connections.pop(conn.id, None)
        for room in conn.rooms:
            _discard(self.rooms, room, conn.id)
        for user in conn.users:
            _discard(self.users, user, conn.id)
        conn.rooms.clear()
        conn.users.clear()

    def join(self, room: str, conn: Connection) -> None:
        conn.rooms.add(room)
        self.rooms.setdefault(room, {})[conn.id] = conn

    def leave(self, room: str, conn: Connection) -> None:
        conn.rooms.discard(room)
        _discard(self.rooms, room, conn.id)

    def bind_user(self, user: str, conn: Connection) -> None:
        conn.users.add(user)
        self.users.setdefault(user, {})[conn.id] = conn

    # -- delivery ---------------------------------------------------------------------------
    def send(self, conn: Connection, payload: bytes) -> bool:
        """Deliver one text message to one connection; False if it is closing."""
        self.frames_built += 1
        return self._write(conn, payload, frame_text(payload))

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
        frame = frame_text(payload)
        self.frames_built += 1
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
        if conn.closing or not sock.writable:
            return False
        if sock.compressed:
            if not conn.enqueue_compressed(payload, self._limit):
                self._drop_slow(conn)
                return False
            return True
        sock.write(frame)
        self.writes += 1
        if sock.buffered() > self._limit:
            self._drop_slow(conn)
        return True

    def _drop_slow(self, conn: Connection) -> None:
        log.warning(
            "slow consumer dropped",
            extra={"fields": {"connectionId": conn.id, "buffered": conn.socket.buffered()}},
        )
        conn.closing = True
        conn.set_close(SLOW_CONSUMER_CODE, SLOW_CONSUMER_REASON)
        # It is not reading, so a closing handshake would never finish: drop the TCP connection.
        conn.socket.abort()


def _discard(index: dict[str, dict[str, Connection]], key: str, cid: str) -> None:
    members = index.get(key)
    if members is not None:
        members.pop(cid, None)
        if not members:
            del index[key]


async def drain_outbox(conn: Connection) -> None:
    """Send queued messages of a compressed connection in order (one task per connection)."""
    outbox = conn.outbox
    while outbox:
        payload = outbox.popleft()
        conn.outbox_bytes -= len(payload)
        try:
            await conn.socket.send(payload)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            outbox.clear()
            return
