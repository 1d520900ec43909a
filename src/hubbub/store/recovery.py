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

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from hubbub.store.schemes import load, scheme_of


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
    @property
    def keep_interval(self) -> float | None:
        """Seconds between two :meth:`keep` calls of a node; None for a store that needs none."""
        ...

    async def append(
        self, room: str, data: bytes, *, only_if_kept: bool = False
    ) -> Position | None:
        """Record one room message; return its position. With ``only_if_kept``, a history that
        several nodes share records only into a room that keeps a history already (a
        recovery-enabled client joined or resumed in it, on any node) and answers None for any
        other room; a history of one node records anyway (the gateway asks it only for the rooms
        :meth:`tracks` names)."""
        ...

    async def keep(self, rooms: Collection[str]) -> None:
        """Keep the history of ``rooms``, where this node has recovery-enabled members, however
        long nobody sends to them (see ``keep_interval``)."""
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

    def tracks(self, room: str) -> bool:
        """Whether a message to ``room`` must be recorded even when no recovery-enabled client
        of this node is in it (always, for stores shared by several nodes or restarts)."""
        ...


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


# What one kept message costs beyond its payload (its tuple, the bytes object's header and the
# deque slot, measured with sys.getsizeof on CPython 3.11/3.12), so max_bytes bounds real memory.
ENTRY_OVERHEAD = 120


class _RoomLog:
    __slots__ = ("entries", "epoch", "last", "touched")

    def __init__(self, now: float) -> None:
        self.epoch = new_epoch()
        self.last = 0
        self.entries: deque[tuple[int, bytes, float]] = deque()
        self.touched = now  # the last append, head or since: when the log may be forgotten


class MemoryRecovery:
    """History and sessions in this process (``memory://``).

    Bounded in total, not only per room: at most ``size`` messages per room, ``max_rooms`` rooms
    (the least recently used one is forgotten first) and ``max_bytes`` for every kept message
    together (payload plus :data:`ENTRY_OVERHEAD`; the oldest message anywhere goes first).
    Messages expire ``ttl`` seconds after they were kept, from a periodic sweep (a tenth of the
    ttl, at most a second) whether or not anyone resumes, and a room whose every message expired
    and that nobody touched within ``ttl`` is forgotten with its epoch (as Redis forgets an
    expired stream): a client resuming in it is told "epoch changed". Rooms no recovery-enabled
    client joined are not recorded at all (see :meth:`tracks`).

    ``_order`` lists every kept message as (log, offset, time), oldest first, so expiry and the
    byte bound cost O(messages dropped); entries already dropped by the per-room or room cap
    stay in it as stale references until they reach its front or it is compacted.
    """

    keep_interval: float | None = None  # one node: it records where its own members need it

    def __init__(
        self,
        *,
        size: int,
        ttl: float,
        max_bytes: int = 64 * 1024 * 1024,
        max_rooms: int = 100_000,
    ) -> None:
        self._size = size
        self._ttl = ttl
        self._max_bytes = max_bytes
        self._max_rooms = max_rooms
        self._rooms: OrderedDict[str, _RoomLog] = OrderedDict()  # least recently touched first
        self._order: deque[tuple[_RoomLog, int, float]] = deque()
        self._stale = 0  # entries of _order whose message is gone already
        self.bytes = 0  # kept payloads plus ENTRY_OVERHEAD each
        self.messages = 0
        self._sessions: dict[str, tuple[float, Session]] = {}
        self._holders: dict[str, tuple[float, str]] = {}  # token -> (expiry, connection id)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def rooms(self) -> int:
        """How many rooms have a log (for introspection and tests)."""
        return len(self._rooms)

    def tracks(self, room: str) -> bool:
        """Whether ``room`` has a log. A room gets one when a recovery-enabled client joins it
        (:meth:`head`) or resumes in it (:meth:`since`); the gateway records a room message only
        if the room has a log or a recovery-enabled member, so rooms nobody can recover cost
        nothing."""
        return room in self._rooms

    def _log(self, room: str, now: float) -> _RoomLog:
        log = self._rooms.get(room)
        if log is None:
            while len(self._rooms) >= self._max_rooms:
                _, oldest = self._rooms.popitem(last=False)
                self._drop_all(oldest)
            log = self._rooms[room] = _RoomLog(now)
            if self._timer is None:
                tick = max(0.01, min(1.0, self._ttl / 10))
                self._timer = asyncio.get_running_loop().call_later(tick, self._sweep, tick)
        else:
            log.touched = now
            self._rooms.move_to_end(room)
        return log

    async def append(self, room: str, data: bytes, *, only_if_kept: bool = False) -> Position:
        now = time.monotonic()
        log = self._log(room, now)
        log.last += 1
        log.entries.append((log.last, data, now))
        self._order.append((log, log.last, now))
        self.bytes += len(data) + ENTRY_OVERHEAD
        self.messages += 1
        if len(log.entries) > self._size:
            self._drop_first(log)
            self._stale += 1
        while self.bytes > self._max_bytes:
            self._pop_oldest()
        if self._stale > 1024 and self._stale * 2 > len(self._order):
            self._compact()
        return Position(log.epoch, log.last)

    async def since(self, room: str, after: Position | None) -> Missed:
        self._expire(time.monotonic())
        log = self._log(room, time.monotonic())
        entries = [(o, d) for o, d, _ in log.entries]
        return missed_from(entries, log.epoch, log.last, after)

    async def head(self, room: str) -> Position:
        log = self._log(room, time.monotonic())
        return Position(log.epoch, log.last)

    # -- bounds and expiry ---------------------------------------------------------------------
    def _drop_first(self, log: _RoomLog) -> None:
        _, data, _ = log.entries.popleft()
        self.bytes -= len(data) + ENTRY_OVERHEAD
        self.messages -= 1

    def _drop_all(self, log: _RoomLog) -> None:
        self._stale += len(log.entries)
        while log.entries:
            self._drop_first(log)

    def _pop_oldest(self) -> float:
        """Drop the oldest entry of ``_order`` (its message, unless gone already); its time."""
        log, offset, stamp = self._order.popleft()
        if log.entries and log.entries[0][0] == offset:
            self._drop_first(log)
        else:
            self._stale -= 1
        return stamp

    def _compact(self) -> None:
        self._order = deque(
            item for item in self._order if item[0].entries and item[0].entries[0][0] <= item[1]
        )
        self._stale = 0

    def _expire(self, now: float) -> None:
        horizon = now - self._ttl
        order = self._order
        while order and order[0][2] < horizon:
            self._pop_oldest()
        rooms = self._rooms
        while rooms:
            room, log = next(iter(rooms.items()))
            if log.touched >= horizon or log.entries:
                break
            del rooms[room]

    def _sweep(self, tick: float) -> None:
        self._expire(time.monotonic())
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(tick, self._sweep, tick) if self._rooms else None

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

    async def keep(self, rooms: Collection[str]) -> None:
        return None  # never called: keep_interval is None

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def sqlite_path(url: str, base_dir: Path) -> Path:
    """The file of a ``sqlite:`` URL: ``sqlite:///history.db`` is relative to ``base_dir`` (the
    config's folder), ``sqlite:////abs/history.db`` absolute (docs/configuration.md)."""
    rest = url[len("sqlite://") :]
    path = Path(rest[1:] if rest.startswith("/") else rest)
    return path if path.is_absolute() else base_dir / path


def sqlite_history_path(config: Any) -> Path | None:
    """The file of ``[history] url = "sqlite:///..."`` (relative to the config's folder)."""
    url = config.history.url or config.store.url
    if not config.history.enabled or urlsplit(url).scheme != "sqlite":
        return None
    return sqlite_path(url, Path(config.base_dir))


def history_key(config: Any) -> str:
    """The config key whose URL names the history: its own, or the store's it follows."""
    return "history.url" if config.history.url else "store.url"


def open_memory_history(url: str, config: Any) -> MemoryRecovery:
    """Factory named by :mod:`hubbub.store.schemes` for ``memory://``."""
    del url  # nothing to configure: the process is the store
    history = config.history
    return MemoryRecovery(
        size=history.size,
        ttl=history.ttl,
        max_bytes=history.max_bytes,
        max_rooms=history.max_rooms,
    )


def open_recovery(config: Any) -> Recovery | None:
    """The history/session store named by ``[history]`` (following ``[store]`` by default),
    opened by the factory :mod:`hubbub.store.schemes` names for the URL's scheme."""
    if not config.history.enabled:
        return None
    url = config.history.url or config.store.url
    scheme = scheme_of(url)
    if scheme is None:  # load_config refuses it; a Config built in code keeps it in memory
        return open_memory_history(url, config)
    recovery: Recovery = load(scheme.history, history_key(config), scheme)(url, config)
    return recovery
