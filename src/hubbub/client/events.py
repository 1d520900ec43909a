"""State events of a client connection, and the registry of their callbacks.

One API: ``ws.on(name, callback)`` registers ``callback(event)`` and returns a function that
removes it. Events are frozen dataclasses; the names and their order over one outage are::

    open        a socket is open (the first one, and each one after a reconnect)
    close       a socket closed, or the client ended without one (final when not will_reconnect)
    reconnecting  the next attempt is scheduled after ``delay`` seconds
    reconnected   a new socket is open and the resubscribe + queued messages were sent
    recovered / not_recovered   reserved for the opt-in recovery protocol (not emitted yet)

    open -> close(will_reconnect) -> reconnecting -> [reconnecting ...] -> open -> reconnected

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
    """Reserved: the gateway restored this session's rooms and replayed what was missed."""

    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NotRecovered:
    """Reserved: the gateway could not restore the session; the application must resync."""

    detail: Mapping[str, Any] = field(default_factory=dict)


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
