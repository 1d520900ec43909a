"""One client connection: its state, limits and timeouts.

Theory of operation. A :class:`Connection` is created only after ``$connect`` accepted the
handshake and the 101 went out; from then on it is in the hub and the registry, so the management
API can reach it. The read loop (``messages.py``) turns each text message into a MESSAGE event and
starts its invocation as a task (invocations of one connection run concurrently, as on AWS),
bounded by a per-connection cap. The loop ends when the peer closes, the TCP connection drops, a
limit is hit (binary frame 1003, oversized frame/message 1009) or the gateway closes it
(DeleteConnection 1000, idle/max-duration/shutdown 1001, slow consumer 1013). Whoever closes first
records the code and reason with :meth:`Connection.set_close`; the first record wins and becomes
the ``$disconnect`` event's ``disconnectStatusCode`` / ``disconnectReason``.

Memory. An idle connection should cost little more than the WebSocket library's own objects, so a
connection holds only what it uses: its rooms, users, tasks, outbox and recovery positions are
created on first use, its MESSAGE event template when its first message arrives, and it carries no
timer of its own.

Timeouts. One :class:`Timeouts` per gateway enforces the idle timeout and the maximum duration
of every connection from a single periodic tick (``call_later`` handles cost ~1.3 KB per
connection for the two timers). Each connection sits in the bucket of the tick at or after its
earliest deadline; when that tick comes, the connection is closed if a deadline has passed, or
moved to the bucket of its new earliest deadline (messages postpone the idle deadline without any
per-message timer work). Connections are closed at most one tick late, never early.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from hubbub.aws.events import ApiContext, ConnectionContext, MessageEventFactory
from hubbub.gateway.limits import TokenBucket
from hubbub.store.recovery import Position
from hubbub.wire.close import IDLE, MAX_DURATION, Close, CloseCode

if TYPE_CHECKING:
    from hubbub.gateway.transport_aiohttp import Socket


def now_ms() -> int:
    # time_ns() rather than int(time() * 1000): an int straight away, no float to convert.
    return time.time_ns() // 1_000_000


class Connection:
    __slots__ = (
        "_api",
        "_close",
        "_drainer",
        "_factory",
        "_joined",
        "_outbox",
        "_rooms",
        "_tasks",
        "_users",
        "closing",
        "context",
        "due",
        "held",
        "id",
        "in_flight",
        "last_active",
        "outbox_bytes",
        "rate",
        "resumed",
        "retired",
        "session",
        "socket",
        "strikes",
    )

    def __init__(self, socket: Socket, context: ConnectionContext, api: ApiContext):
        self.id = context.connection_id
        self.socket = socket
        self.context = context
        self.last_active = context.connected_at
        self.in_flight = 0
        self.closing = False
        self.retired = False  # unregistered from hub + registry
        self.outbox_bytes = 0
        self.rate: TokenBucket | None = None  # message rate limit, when configured
        self.strikes = 0  # consecutive messages refused by the rate limit
        # Recovery (hubbub.v1): the session token, and room envelopes held back during a resume.
        self.session: str | None = None
        self.resumed: str | None = None  # the token of the session this connection resumed
        self.held: list[tuple[str, int, bytes]] | None = None
        self.due: int | None = None  # the Timeouts bucket this connection sits in
        self._api = api
        self._factory: MessageEventFactory | None = None
        # Created on first use (see "Memory" above): an empty set alone is 216 bytes, a deque 624.
        self._rooms: set[str] | None = None
        self._users: set[str] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._outbox: deque[bytes] | None = None
        self._joined: dict[str, Position] | None = None
        self._close: tuple[int, str] | None = None
        self._drainer: asyncio.Task[None] | None = None

    # -- state created on first use ------------------------------------------------------------
    @property
    def factory(self) -> MessageEventFactory:
        """Builds this connection's MESSAGE events (made when the first message needs it)."""
        factory = self._factory
        if factory is None:
            factory = self._factory = MessageEventFactory(self._api, self.context)
        return factory

    @property
    def rooms(self) -> set[str]:
        rooms = self._rooms
        if rooms is None:
            rooms = self._rooms = set()
        return rooms

    @property
    def users(self) -> set[str]:
        users = self._users
        if users is None:
            users = self._users = set()
        return users

    def memberships(self) -> tuple[set[str] | None, set[str] | None]:
        """The rooms and users sets, None where never created (reading them creates neither)."""
        return self._rooms, self._users

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        """The connection's running invocations (and close tasks)."""
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        return tasks

    @property
    def outbox(self) -> deque[bytes]:
        """Messages waiting to be compressed and sent (permessage-deflate connections only)."""
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = deque()
        return outbox

    @property
    def joined(self) -> dict[str, Position]:
        """Room -> its head when this connection joined (recovery)."""
        joined = self._joined
        if joined is None:
            joined = self._joined = {}
        return joined

    # -- close bookkeeping -------------------------------------------------------------------
    def set_close(self, code: int, reason: str) -> None:
        """Record why the connection closes; the first caller wins."""
        if self._close is None:
            self._close = (int(code), reason)  # a plain int in the $disconnect event

    @property
    def close_status(self) -> tuple[int, str]:
        return self._close or (CloseCode.ABNORMAL.value, "")

    async def close(self, code: int, reason: str) -> None:
        """Server-initiated close with a closing handshake."""
        self.set_close(code, reason)
        if self.closing:
            return
        self.closing = True
        await self.socket.close(code, reason)

    def expire(self, why: Close) -> None:
        """Close with ``why`` from a callback (a timeout), as a task the drain waits for."""
        if not self.closing:
            task = asyncio.get_running_loop().create_task(self.close(*why))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    # -- compressed sends ---------------------------------------------------------------------
    def enqueue_compressed(self, payload: bytes, limit: int) -> bool:
        """Queue a message for a compressed connection; False when the queue is over ``limit``."""
        if self.outbox_bytes > limit:
            return False
        self.outbox.append(payload)
        self.outbox_bytes += len(payload)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(drain_outbox(self))
        return True

    def stop_drainer(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()


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


class Timeouts:
    """The idle timeout and maximum duration of every connection, from one periodic tick.

    See "Timeouts" in the module docstring. A timeout of 0 is off. The tick is 1 s, or a tenth of
    the shortest timeout when that is shorter, so a connection closes at most that late.
    """

    def __init__(self, idle_timeout: float, max_duration: float) -> None:
        self._idle_ms = idle_timeout * 1000
        self._max_ms = max_duration * 1000
        shortest = min((t for t in (idle_timeout, max_duration) if t > 0), default=0.0)
        self._tick = min(1.0, shortest / 10)
        self._tick_ms = self._tick * 1000
        # Bucket number (deadline in ms / tick, rounded up) -> its connections, in arrival order.
        self._buckets: dict[int, dict[Connection, None]] = {}
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """How many connections are watched."""
        return self._count

    def add(self, conn: Connection) -> None:
        """Start enforcing the timeouts of a newly opened connection."""
        if self._tick <= 0:
            return
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._tick, self._sweep)
        self._place(conn, now_ms())

    def remove(self, conn: Connection) -> None:
        """Stop watching a connection (it is closing for another reason)."""
        due = conn.due
        if due is not None:
            conn.due = None
            bucket = self._buckets[due]
            del bucket[conn]
            self._count -= 1
            if not bucket:
                del self._buckets[due]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline(self, conn: Connection) -> tuple[float, Close]:
        """The connection's earliest deadline (epoch ms) and the close it leads to."""
        deadline, why = math.inf, IDLE
        if self._max_ms > 0:
            deadline, why = conn.context.connected_at + self._max_ms, MAX_DURATION
        if self._idle_ms > 0 and conn.last_active + self._idle_ms < deadline:
            deadline, why = conn.last_active + self._idle_ms, IDLE
        return deadline, why

    def _place(self, conn: Connection, now: int) -> None:
        """Close the connection if a deadline has passed, else put it in its deadline's bucket."""
        deadline, why = self._deadline(conn)
        if deadline <= now:
            conn.expire(why)
            return
        # The first bucket whose time is at or after the deadline: never early.
        due = conn.due = math.ceil(deadline / self._tick_ms)
        bucket = self._buckets.get(due)
        if bucket is None:
            bucket = self._buckets[due] = {}
        bucket[conn] = None
        self._count += 1

    def _sweep(self) -> None:
        now = now_ms()
        last = now // self._tick_ms  # the last bucket whose time has come
        # Every deadline is less than the shortest timeout away, so there are at most that many
        # ticks' worth of buckets (600 with the defaults): walking their keys once a tick is
        # cheaper than keeping an ordered structure up to date on every add.
        for number in sorted(b for b in self._buckets if b <= last):
            bucket = self._buckets.pop(number)
            self._count -= len(bucket)
            for conn in bucket:
                conn.due = None
                self._place(conn, now)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._tick, self._sweep) if self._buckets else None
