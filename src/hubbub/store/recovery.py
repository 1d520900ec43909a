"""Room history and client sessions: what lets a reconnecting client miss nothing.

Theory of operation. Every room message gets a per-room ``offset`` (1, 2, 3, ...) within an
``epoch`` (a random id fixed when the room's history is created; a store that loses its history —
a memory store after a restart — starts a new epoch, so a client can tell "nothing missed" from
"history gone"). Each room keeps the last ``size`` messages for at most ``ttl`` seconds.

A *session* is what the gateway must restore for a client that comes back on a new connection:
its rooms, user bindings and attributes, under an unguessable token. It is written when the
connection ends (by its node, or by the node that reaps a dead node's connections) and expires
``ttl`` seconds later. It belongs to the authorizer principal of the connection that made it (only
a connection of that principal may resume it), and one live connection at a time may hold it: a
resume *claims* the token for its connection (a lease, released when that connection ends, and
expiring with the session if its node dies first).

One ``Recovery`` implementation per store: memory (one node, this process), SQLite (one node,
survives restarts) and Redis streams (many nodes).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from hubbub.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Position:
    epoch: str
    offset: int


@dataclass(slots=True)
class Session:
    rooms: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    attributes: dict[str, Any] | None = None
    # Each room's head when the connection joined it: the resume point for a room in which the
    # client never received a message (so it has no position of its own to present).
    joined: dict[str, Position] = field(default_factory=dict)
    # Presence kept for a resume (hubbub.gateway.presence): the closed connection's id and its
    # presence data per room; the resumed connection takes its place without a leave and a join.
    connection_id: str | None = None
    presence: dict[str, Any] = field(default_factory=dict)
    # The authorizer's principalId of the connection that made it (None: no authorizer).
    principal: str | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "rooms": self.rooms,
            "users": self.users,
            "attributes": self.attributes,
            "joined": {r: [p.epoch, p.offset] for r, p in self.joined.items()},
            "principal": self.principal,
        }
        if self.presence:
            value["connectionId"] = self.connection_id
            value["presence"] = self.presence
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Session:
        joined = value.get("joined") or {}
        return cls(
            rooms=list(value.get("rooms") or []),
            users=list(value.get("users") or []),
            attributes=value.get("attributes"),
            joined={r: Position(str(e), int(o)) for r, (e, o) in joined.items()},
            connection_id=value.get("connectionId"),
            presence=dict(value.get("presence") or {}),
            principal=value.get("principal"),
        )


@dataclass(frozen=True, slots=True)
class Missed:
    """Result of a history read: the messages after a position, or why they cannot be given."""

    messages: list[tuple[int, bytes]]
    position: Position
    reason: str | None = None  # None = complete; else "epoch changed" / "window passed"

    @property
    def complete(self) -> bool:
        return self.reason is None


class Recovery(Protocol):
    async def append(self, room: str, data: bytes) -> Position:
        """Record one room message; return its position."""
        ...

    async def since(self, room: str, after: Position | None) -> Missed:
        """Messages of ``room`` after ``after`` (all kept ones when None), oldest first."""
        ...

    async def head(self, room: str) -> Position:
        """The position of the room's latest message (offset 0 when there is none yet)."""
        ...

    async def save_session(self, token: str, session: Session, ttl: float) -> None: ...

    async def load_session(self, token: str) -> Session | None: ...

    async def claim_session(self, token: str, holder: str, ttl: float) -> bool:
        """Make ``holder`` (a connection id) the one connection resuming ``token``, for at most
        ``ttl`` seconds; False when another holder has it."""
        ...

    async def release_session(self, token: str, holder: str) -> None:
        """End ``holder``'s claim on ``token`` (nothing if another holder has it)."""
        ...

    async def close(self) -> None: ...


def new_token() -> str:
    return secrets.token_urlsafe(24)


def new_epoch() -> str:
    return secrets.token_hex(4)


def missed_from(
    entries: Sequence[tuple[int, bytes]], epoch: str, last: int, after: Position | None
) -> Missed:
    """Shared rule for every implementation: entries are (offset, data), oldest first."""
    head = Position(epoch, last)
    if after is None:
        return Missed(list(entries), head)
    if after.epoch != epoch:
        return Missed([], head, "epoch changed")
    if after.offset >= last:
        return Missed([], head)
    oldest = entries[0][0] if entries else last + 1
    if after.offset + 1 < oldest:
        return Missed([], head, "window passed")
    return Missed([(o, d) for o, d in entries if o > after.offset], head)


class _RoomLog:
    __slots__ = ("entries", "epoch", "last")

    def __init__(self, size: int) -> None:
        self.epoch = new_epoch()
        self.last = 0
        self.entries: deque[tuple[int, bytes, float]] = deque(maxlen=size)


class MemoryRecovery:
    """History and sessions in this process (``memory://``)."""

    def __init__(self, *, size: int, ttl: float) -> None:
        self._size = size
        self._ttl = ttl
        self._rooms: dict[str, _RoomLog] = {}
        self._sessions: dict[str, tuple[float, Session]] = {}
        self._holders: dict[str, tuple[float, str]] = {}  # token -> (expiry, connection id)

    async def append(self, room: str, data: bytes) -> Position:
        log = self._rooms.get(room)
        if log is None:
            log = self._rooms[room] = _RoomLog(self._size)
        log.last += 1
        log.entries.append((log.last, data, time.monotonic()))
        return Position(log.epoch, log.last)

    async def since(self, room: str, after: Position | None) -> Missed:
        log = self._rooms.get(room)
        if log is None:
            log = self._rooms[room] = _RoomLog(self._size)
        horizon = time.monotonic() - self._ttl
        while log.entries and log.entries[0][2] < horizon:
            log.entries.popleft()
        entries = [(o, d) for o, d, _ in log.entries]
        return missed_from(entries, log.epoch, log.last, after)

    async def head(self, room: str) -> Position:
        log = self._rooms.get(room)
        if log is None:
            log = self._rooms[room] = _RoomLog(self._size)
        return Position(log.epoch, log.last)

    async def save_session(self, token: str, session: Session, ttl: float) -> None:
        now = time.monotonic()
        self._sessions[token] = (now + ttl, session)
        if len(self._sessions) % 1024 == 0:  # amortised expiry sweep
            for key in [k for k, (exp, _) in self._sessions.items() if exp < now]:
                del self._sessions[key]
            for key in [k for k, (exp, _) in self._holders.items() if exp < now]:
                del self._holders[key]

    async def load_session(self, token: str) -> Session | None:
        item = self._sessions.get(token)
        if item is None or item[0] < time.monotonic():
            return None
        return Session.from_json(item[1].to_json())  # a copy: callers mutate it

    async def claim_session(self, token: str, holder: str, ttl: float) -> bool:
        now = time.monotonic()
        current = self._holders.get(token)
        if current is not None and current[0] >= now and current[1] != holder:
            return False
        self._holders[token] = (now + ttl, holder)
        return True

    async def release_session(self, token: str, holder: str) -> None:
        current = self._holders.get(token)
        if current is not None and current[1] == holder:
            del self._holders[token]

    async def close(self) -> None:
        return None


def sqlite_history_path(config: Any) -> Path | None:
    """The file of ``[history] url = "sqlite:///..."`` (relative to the config's folder)."""
    url = config.history.url or config.store.url
    if not config.history.enabled or urlsplit(url).scheme != "sqlite":
        return None
    rest = url[len("sqlite://") :]
    path = Path(rest.lstrip("/") if url.startswith("sqlite:///./") else rest)
    return path if path.is_absolute() else Path(config.base_dir) / path


def open_recovery(config: Any) -> Recovery | None:
    """The history/session store named by ``[history]`` (following ``[store]`` by default)."""
    history = config.history
    if not history.enabled:
        return None
    url = history.url or config.store.url
    scheme = urlsplit(url).scheme
    path = sqlite_history_path(config)
    if path is not None:
        from hubbub.store.recovery_sqlite import SqliteRecovery

        return SqliteRecovery(path, size=history.size, ttl=history.ttl)
    if scheme in ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"):
        from hubbub.store.recovery_redis import RedisRecovery

        try:
            return RedisRecovery(
                url, key_prefix=config.store.key_prefix, size=history.size, ttl=history.ttl
            )
        except ValueError as exc:  # a malformed redis+sentinel:// or redis+cluster:// URL
            raise ConfigError("history.url" if history.url else "store.url", str(exc)) from exc
    return MemoryRecovery(size=history.size, ttl=history.ttl)
