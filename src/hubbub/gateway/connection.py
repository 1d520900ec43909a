"""One client connection: its state, read loop, limits and timers.

Theory of operation. A :class:`Connection` is created only after ``$connect`` accepted the
handshake and the 101 went out; from then on it is in the hub and the registry, so the management
API can reach it. The read loop turns each text message into a MESSAGE event and starts its
invocation as a task (invocations of one connection run concurrently, as on AWS), bounded by a
per-connection cap. The loop ends when the peer closes, the TCP connection drops, a limit is hit
(binary frame 1003, oversized frame/message 1009) or the gateway closes it (DeleteConnection 1000,
idle/max-duration/shutdown 1001, slow consumer 1013). Whoever closes first records the code and
reason with :meth:`Connection.set_close`; the first record wins and becomes the ``$disconnect``
event's ``disconnectStatusCode`` / ``disconnectReason``.

Timers: one ``call_later`` handle for the idle timeout, re-armed lazily (when it fires early
because there was activity, it re-arms for the remaining time), and one for the maximum duration.
No per-message timer work.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from hubbub.aws.events import ConnectionContext, MessageEventFactory
from hubbub.gateway.limits import TokenBucket
from hubbub.store.recovery import Position

if TYPE_CHECKING:
    from hubbub.gateway.transport import Socket

# Close codes and reasons hubbub uses (documented in docs/compatibility.md).
NORMAL = (1000, "Connection Closed Normally")
IDLE = (1001, "Idle timeout")
MAX_DURATION = (1001, "Maximum connection duration reached")
GOING_AWAY = (1001, "Going away")
BINARY = (1003, "Binary frames are not supported")
NO_STATUS = 1005
ABNORMAL = 1006


def now_ms() -> int:
    return int(time.time() * 1000)


class Connection:
    __slots__ = (
        "_close",
        "_drainer",
        "_idle_timer",
        "_max_timer",
        "closing",
        "context",
        "factory",
        "held",
        "id",
        "in_flight",
        "joined",
        "last_active",
        "outbox",
        "outbox_bytes",
        "rate",
        "retired",
        "rooms",
        "session",
        "socket",
        "strikes",
        "tasks",
        "users",
    )

    def __init__(self, socket: Socket, context: ConnectionContext, factory: MessageEventFactory):
        self.id = context.connection_id
        self.socket = socket
        self.context = context
        self.factory = factory
        self.last_active = context.connected_at
        self.in_flight = 0
        self.closing = False
        self.retired = False  # unregistered from hub + registry
        self.rooms: set[str] = set()
        self.users: set[str] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.outbox: deque[bytes] = deque()
        self.outbox_bytes = 0
        self.rate: TokenBucket | None = None  # message rate limit, when configured
        self.strikes = 0  # consecutive messages refused by the rate limit
        # Recovery (hubbub.v1): the session token, and room envelopes held back during a resume.
        self.session: str | None = None
        self.held: list[tuple[str, int, bytes]] | None = None
        self.joined: dict[str, Position] = {}  # room -> its head when this connection joined
        self._close: tuple[int, str] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._max_timer: asyncio.TimerHandle | None = None

    # -- close bookkeeping -------------------------------------------------------------------
    def set_close(self, code: int, reason: str) -> None:
        """Record why the connection closes; the first caller wins."""
        if self._close is None:
            self._close = (code, reason)

    @property
    def close_status(self) -> tuple[int, str]:
        return self._close or (ABNORMAL, "")

    async def close(self, code: int, reason: str) -> None:
        """Server-initiated close with a closing handshake."""
        self.set_close(code, reason)
        if self.closing:
            return
        self.closing = True
        await self.socket.close(code, reason)

    # -- compressed sends ---------------------------------------------------------------------
    def enqueue_compressed(self, payload: bytes, limit: int) -> bool:
        """Queue a message for a compressed connection; False when the queue is over ``limit``."""
        from hubbub.gateway.hub import drain_outbox

        if self.outbox_bytes > limit:
            return False
        self.outbox.append(payload)
        self.outbox_bytes += len(payload)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(drain_outbox(self))
        return True

    # -- timers -------------------------------------------------------------------------------
    def arm_timers(self, idle_timeout: float, max_duration: float) -> None:
        loop = asyncio.get_running_loop()
        if idle_timeout > 0:
            self._idle_timer = loop.call_later(idle_timeout, self._check_idle, idle_timeout)
        if max_duration > 0:
            self._max_timer = loop.call_later(max_duration, self._expire, MAX_DURATION)

    def _check_idle(self, idle_timeout: float) -> None:
        remaining = idle_timeout - (now_ms() - self.last_active) / 1000
        if remaining > 0.001:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(remaining, self._check_idle, idle_timeout)
        else:
            self._expire(IDLE)

    def _expire(self, why: tuple[int, str]) -> None:
        if not self.closing:
            task = asyncio.get_running_loop().create_task(self.close(*why))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def cancel_timers(self) -> None:
        for handle in (self._idle_timer, self._max_timer):
            if handle is not None:
                handle.cancel()
        self._idle_timer = self._max_timer = None
        if self._drainer is not None:
            self._drainer.cancel()
