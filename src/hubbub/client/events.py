"""State events of a client connection, and the registry of their callbacks.

One API: ``ws.on(name, callback)`` registers ``callback(event)`` and returns a function that
removes it. Events are frozen dataclasses; the names and their order over one outage are::

    open        a socket is open (the first one, and each one after a reconnect)
    close       a socket closed, or the client ended without one (final when not will_reconnect)
    reconnecting  the next attempt is scheduled after ``delay`` seconds
    reconnected   a new socket is open and the resubscribe + queued messages were sent
    recovered     (``recovery=True`` only) the gateway restored the session and replayed every
                  room message missed while away
    not_recovered (``recovery=True`` only) something was missed for good: resync

    open -> close(will_reconnect) -> reconnecting -> [reconnecting ...] -> open -> reconnected

With ``recovery=True`` each ``reconnected`` is preceded by exactly one ``recovered`` or
``not_recovered`` (queued sends are flushed between the two; a socket lost before the gateway
answered emits neither, and the next one resumes again)::

    open -> close(will_reconnect) -> reconnecting ... -> open -> recovered -> reconnected

Plain callbacks run inline, in that order, on the client's task: keep them short (the socket
is not read while they run). A callback that returns an awaitable (an ``async def``) is run
as a separate task, so it cannot stall the socket. Callback exceptions are logged, never raised
into the client.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from hubbub.client.recovery import RoomReport

__all__ = [
    "EVENT_NAMES",
    "Close",
    "Event",
    "EventName",
    "Listeners",
    "NotRecovered",
    "Open",
    "Reconnected",
    "Reconnecting",
    "Recovered",
    "RoomReport",
]

log = logging.getLogger("hubbub.client")

EventName = Literal["open", "close", "reconnecting", "reconnected", "recovered", "not_recovered"]
EVENT_NAMES: Final[frozenset[str]] = frozenset(get_args(EventName))


@dataclass(frozen=True, slots=True)
class Open:
    """A socket opened. ``reconnect`` is False for the client's first socket only."""

    url: str
    reconnect: bool


@dataclass(frozen=True, slots=True)
class Close:
    """A socket closed (or the client ended without one).

    ``code``/``reason`` come from the close frame (1006 when none arrived); ``by_server`` is False
    when this client closed it; ``will_reconnect`` False marks the last event of the client.
    ``error`` is the exception that ended it, if any.
    """

    code: int
    reason: str
    by_server: bool
    will_reconnect: bool
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """Attempt number ``attempt`` (1 = the first of this outage) starts in ``delay`` seconds.

    ``error`` is why the previous socket or attempt failed (``None`` after a clean close code).
    """

    attempt: int
    delay: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Reconnected:
    """Back online after ``attempts`` attempts and ``downtime`` seconds without a socket."""

    attempts: int
    downtime: float


@dataclass(frozen=True, slots=True)
class Recovered:
    """After a reconnect the gateway restored the session (rooms, user bindings, attributes) and
    replayed, in order, every room message missed while away; ``rooms`` has the report per room."""

    rooms: Mapping[str, RoomReport] = field(default_factory=dict)

    @property
    def replayed(self) -> int:
        """Room messages replayed in all (duplicates the client dropped included)."""
        return sum(report.replayed for report in self.rooms.values())


@dataclass(frozen=True, slots=True)
class NotRecovered:
    """After a reconnect something was missed for good: the application must resync.

    ``resumed`` True: the session is back (rooms rejoined, users and attributes restored) but the
    rooms in ``lost`` have a gap (``reason`` is the first one's: ``"window passed"`` or
    ``"epoch changed"``). ``resumed`` False: nothing was restored and the rooms must be joined
    again (``on_reconnect_send(..., skip_if_resumed=True)`` does that); ``reason`` is
    ``"session expired"`` (away longer than the gateway's ``[history] ttl``, or its history was
    lost), ``"no session"`` (the previous socket never got a session token), ``"unsupported"``
    (the server did not accept ``hubbub.v1``) or ``"timeout"`` (no answer in
    ``recovery_timeout``).
    """

    reason: str
    resumed: bool = False
    rooms: Mapping[str, RoomReport] = field(default_factory=dict)

    @property
    def lost(self) -> tuple[str, ...]:
        """The rooms whose missed messages could not be replayed."""
        return tuple(room for room, report in self.rooms.items() if not report.recovered)


Event = Open | Close | Reconnecting | Reconnected | Recovered | NotRecovered
Callback = Callable[[Any], object]


class Listeners:
    """Callbacks by event name, called in registration order."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENT_NAMES}
        self._tasks: set[asyncio.Task[Any]] = set()

    def add(self, name: str, callback: Callback) -> Callable[[], None]:
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; expected one of {sorted(EVENT_NAMES)}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        callbacks = self._callbacks[name]
        callbacks.append(callback)

        def remove() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    def emit(self, name: EventName, event: Event) -> None:
        for callback in list(self._callbacks[name]):
            try:
                result = callback(event)
            except Exception:
                log.exception("%s callback %r failed", name, callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event callback failed", exc_info=task.exception())
