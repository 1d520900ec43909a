"""Presence in the Python client: who is in a room, and its join/leave/update events.

::

    async with hubbub.client.connect(url, recovery=True) as ws:
        lobby = ws.room("lobby")
        lobby.on("join", lambda event: print(event.member.user, "arrived"))
        lobby.on("leave", lambda event: print(event.member.user, "left"))
        await ws.send_json({"action": "join", "room": "lobby"})  # the application joins it
        everyone = await lobby.presence()  # members and counts, asked of the gateway
        await lobby.set_presence({"status": "typing"})  # an ``update`` for the others

Presence rides on hubbub's own protocol (``recovery=True``, ``hubbub.v1``): the gateway sends
``{"hubbub": "presence", "room": R, "action": ..., "member": {...}}`` to the members of a room
joined with presence on; requests are ``{"hubbub": "presence.get" | "presence.set", "id": N,
...}`` answered by ``presence.members`` / ``presence.ok`` / ``error`` frames carrying the same id
(docs/clients.md, "Presence"). The gateway answers only for rooms the connection is a member of.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hubbub.client.errors import ClientError

__all__ = ["Member", "PresenceError", "PresenceEvent", "PresenceSet", "Room", "RoomPresence"]

log = logging.getLogger("hubbub.client")

Action = Literal["join", "leave", "update"]
ACTIONS = ("join", "leave", "update")


class PresenceError(ClientError):
    """The gateway refused a presence request (not a member of the room, data too large, ...)."""


@dataclass(frozen=True, slots=True)
class Member:
    connection_id: str
    user: str | None
    data: Any
    joined_at: int  # epoch ms

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Member:
        user = raw.get("user")
        joined = raw.get("joinedAt")
        return cls(
            connection_id=str(raw.get("connectionId", "")),
            user=user if isinstance(user, str) else None,
            data=raw.get("data"),
            joined_at=joined if isinstance(joined, int) else 0,
        )


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A member joined, left, or changed its data. ``previous_connection_id``: an ``update``
    after the member's client resumed its session on a new connection (no leave/join pair)."""

    room: str
    action: Action
    member: Member
    previous_connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceSet:
    """One page of a room's members and the room's counts; ``next`` is the cursor of the next
    page (pass it to :meth:`Room.presence`), None on the last one."""

    room: str
    connections: int
    users: int
    members: tuple[Member, ...]
    next: str | None


Callback = Callable[[PresenceEvent], object]


class RoomPresence:
    """The client's presence state: requests waiting for answers and room callbacks."""

    def __init__(self, send: Callable[[Any], Awaitable[None]]) -> None:
        self._send = send
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._callbacks: dict[tuple[str, str], list[Callback]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        try:
            await self._send({**message, "id": ident})
            answer = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(ident, None)
        if answer.get("hubbub") == "error":
            raise PresenceError(str(answer.get("message")))
        return answer

    def add(self, room: str, action: str, callback: Callback) -> Callable[[], None]:
        if action not in ACTIONS:
            raise ValueError(f"unknown presence event {action!r}; expected one of {ACTIONS}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        callbacks = self._callbacks.setdefault((room, action), [])
        callbacks.append(callback)

        def remove() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return remove

    def receive(self, frame: Mapping[str, Any]) -> bool:
        """Take a presence frame (an event or an answer); False if it is none of ours."""
        kind = frame.get("hubbub")
        if kind == "presence":
            self._event(frame)
            return True
        ident = frame.get("id")
        if kind in ("presence.members", "presence.ok", "error") and isinstance(ident, int):
            future = self._waiting.get(ident)
            if future is not None and not future.done():
                future.set_result(dict(frame))
            return True
        return False

    def _event(self, frame: Mapping[str, Any]) -> None:
        room, action, member = frame.get("room"), frame.get("action"), frame.get("member")
        if not isinstance(room, str) or action not in ACTIONS or not isinstance(member, dict):
            log.warning("dropped a malformed presence event for room %r", room)
            return
        previous = frame.get("previousConnectionId")
        event = PresenceEvent(
            room,
            action,
            Member.from_json(member),
            previous if isinstance(previous, str) else None,
        )
        for callback in list(self._callbacks.get((room, action), ())):
            try:
                result = callback(event)
            except Exception:
                log.exception("presence %s callback %r failed", action, callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


class Room:
    """A room as this client sees it: ``ws.room(name)``. Joining stays the application's
    business (a message its handler answers with ``rooms.join``)."""

    def __init__(self, name: str, state: RoomPresence) -> None:
        self.name = name
        self._state = state

    def on(self, action: Action, callback: Callback) -> Callable[[], None]:
        """Call ``callback(PresenceEvent)`` on each ``join``, ``leave`` or ``update`` in this
        room; returns a function that removes it. Async callbacks run as tasks."""
        return self._state.add(self.name, action, callback)

    async def presence(
        self, *, limit: int = 100, cursor: str | None = None, timeout: float = 10.0
    ) -> PresenceSet:
        """The room's counts and a page of its members (``limit`` 1-1000), asked of the
        gateway. Raises :class:`PresenceError` if this connection is not a member."""
        message: dict[str, Any] = {"hubbub": "presence.get", "room": self.name, "limit": limit}
        if cursor is not None:
            message["cursor"] = cursor
        answer = await self._state.request(message, timeout)
        raw = answer.get("members")
        nxt = answer.get("next")
        return PresenceSet(
            room=self.name,
            connections=int(answer.get("connections") or 0),
            users=int(answer.get("users") or 0),
            members=tuple(Member.from_json(m) for m in raw if isinstance(m, dict))
            if isinstance(raw, list)
            else (),
            next=nxt if isinstance(nxt, str) else None,
        )

    async def set_presence(self, data: Any, *, timeout: float = 10.0) -> None:
        """Replace this connection's presence data in the room (the others get an ``update``).
        Raises :class:`PresenceError` if it is not present there."""
        json.dumps(data)  # a TypeError here, not a refusal from the gateway
        message = {"hubbub": "presence.set", "room": self.name, "data": data}
        await self._state.request(message, timeout)
