"""The Redis connection registry, and the link (client, scripts, health) the store shares.

What lives where is described in :mod:`hubbub.store.redis_lua`; how the pieces behave together
(exactly-once removal, fencing, outage replay) in :mod:`hubbub.store.redis`. This module holds the
part that must be exact: every :class:`~hubbub.store.base.Registry` method, plus the local *mirror*
of this node's own connections from which Redis is rebuilt after an outage or a restart.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub.errors import UnavailableError
from hubbub.store import redis_lua as lua
from hubbub.store.base import ConnectionRecord, Delivery, Page, ReapHandler

log = logging.getLogger("hubbub.store.redis")

T = TypeVar("T")

# What "Redis cannot serve us" looks like. ReadOnlyError: we reached a replica (failover under
# way); OutOfMemoryError: maxmemory reached and writes refused; MasterDownError: a replica lost it.
DOWN_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    MasterDownError,
    builtins.TimeoutError,
    OSError,
)
SOCKET_TIMEOUT = 1.0
POOL_SIZE = 100  # redis-py's default; per process, shared by registry, bus and heartbeats
# Pool connections that scripted calls leave free (see Link.run): for heartbeats, the bus and
# plain commands, which a burst of thousands of registry writes must not starve.
RESERVED_CONNECTIONS = 10
PRIORITY_SCRIPTS = frozenset({"HELLO", "CLAIM"})  # the heartbeat: it keeps this node alive


def client_for(url: str) -> aioredis.Redis:
    """A client with short timeouts, for calls that must answer quickly during an outage.

    Its pool makes a caller wait (up to SOCKET_TIMEOUT) for a free connection when all are busy:
    redis-py's default pool raises at once instead, and a burst of handshakes (each a registry
    write) then failed writes and heartbeats alike, which can get a live node reaped by others.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        # One immediate retry re-dials a pooled socket that a Redis restart closed; more would
        # only make a caller wait during a real outage.
        retry=Retry(NoBackoff(), 1),
        decode_responses=False,
    )
    return aioredis.Redis.from_pool(pool)  # from_pool: closing the client closes the pool too


RESYNC_CHUNK = 500


@dataclass(slots=True)
class _Local:
    """This node's own connection, as the node knows it (the truth Redis is rebuilt from)."""

    record: ConnectionRecord
    registered: bool = False  # Redis acknowledged it since the last restart of Redis
    version: int = 0  # bumped on every local change: a replay racing a change is repeated
    replayed: int = -1  # the version the last replay wrote


class Fenced(Exception):  # internal: never leaves the store
    """The other nodes declared this node dead (see :mod:`hubbub.store.redis`, "Fencing")."""


class Link:
    """The client, the scripts and the up/down state shared by registry, bus and store."""

    def __init__(self, url: str, *, node_id: str, key_prefix: str) -> None:
        self.node_id = node_id
        # Written into our alive key: another process heartbeating with our node id shows up.
        self.token = uuid.uuid4().hex
        self.tag = lua.hash_tagged(key_prefix)
        self.channels = key_prefix
        self.node_channel = f"{key_prefix}node:{node_id}"
        self.broadcast_channel = f"{key_prefix}broadcast"
        self.anchor = self.tag + "nodes"  # KEYS[1] of every script: routes it to our slot
        self.client = client_for(url)
        self.scripts = {
            name: self.client.register_script(getattr(lua, name))
            for name in ("PUT", "REMOVE", "GET", "TOUCH", "CHANGE", "HELLO", "CLAIM", "REAP")
        }
        self.scripts["GOODBYE"] = self.client.register_script(lua.GOODBYE)
        self.up = False
        self.dirty = False  # a local write did not reach Redis: replay the mirror when back
        self.last_error = ""
        self.losses = 0  # calls Redis did not answer, ever (see run)
        self._slots = asyncio.Semaphore(POOL_SIZE - RESERVED_CONNECTIONS)

    def key(self, kind: str, name: str = "") -> str:
        return f"{self.tag}{kind}:{name}" if name else f"{self.tag}{kind}"

    async def run(self, script: str, *args: str | int | bytes, client: Any = None) -> Any:
        """Run a script with the layout's conventions (KEYS[1] = anchor, ARGV[1] = key tag).

        Scripts queue here, a fixed number at a time, rather than in the pool: the pool makes a
        caller wait at most SOCKET_TIMEOUT for a connection, so a burst (20,000 clients closing
        at once, each a REMOVE) used to fail its tail as if Redis were down, and a node whose
        heartbeat then failed too was reaped by the others while it ran its own ``$disconnect``
        events: two each. Waiting here is backpressure, not an outage; the heartbeat's scripts
        skip the queue. A caller that queued while Redis failed another call fails at once, so
        a real outage does not make the queue wait one timeout per call.
        """
        call = self.scripts[script](keys=[self.anchor], args=(self.tag, *args), client=client)
        if script in PRIORITY_SCRIPTS:
            return await call
        losses = self.losses
        async with self._slots:
            if self.losses != losses:
                call.close()
                raise RedisConnectionError(f"Redis failed meanwhile: {self.last_error}")
            return await call

    def lost(self, exc: BaseException) -> None:
        """Redis did not answer: remember to replay, and say so once."""
        self.dirty = True
        self.losses += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.up:
            self.up = False
            log.warning(
                "redis unreachable; serving local connections only",
                extra={"fields": {"node": self.node_id, "error": self.last_error}},
            )

    def restored(self) -> None:
        if not self.up:
            self.up = True
            log.info("redis connection restored", extra={"fields": {"node": self.node_id}})

    def unavailable(self, exc: BaseException) -> UnavailableError:
        self.lost(exc)
        return UnavailableError("The shared store (Redis) is unreachable; retry later")


class RedisRegistry:
    """The shared connection registry, with a local mirror of this node's own connections."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self.node_id = link.node_id
        self._local: dict[str, _Local] = {}
        self._pending_removals: set[str] = set()  # closed while Redis was away
        self._surrendered: set[str] = set()  # reaped by others while we were fenced
        self._touches: dict[str, int] = {}

    # -- Registry protocol --------------------------------------------------------------------
    async def add(self, record: ConnectionRecord) -> None:
        link = self._link
        if record.node_id != self.node_id:
            try:
                await link.run("PUT", *_put_args(record))
            except DOWN_ERRORS as exc:
                raise link.unavailable(exc) from exc
            return
        entry = _Local(_copy(record))
        self._local[record.connection_id] = entry
        await self._put(entry)

    async def remove(self, connection_id: str) -> ConnectionRecord | None:
        link = self._link
        entry = self._local.pop(connection_id, None)
        # Read now: a registration still in flight may be acknowledged while we wait below.
        registered = entry is not None and entry.registered
        surrendered = connection_id in self._surrendered
        self._surrendered.discard(connection_id)
        self._touches.pop(connection_id, None)
        try:
            dropped, fenced, alive = await link.run("REMOVE", connection_id, self.node_id)
        except DOWN_ERRORS as exc:
            if entry is not None:
                # Ours: $disconnect runs now (serve local connections); Redis is fixed on replay.
                self._pending_removals.add(connection_id)
                link.lost(exc)
                return entry.record
            if surrendered:
                return None
            raise link.unavailable(exc) from exc
        if dropped:
            return parse_record(dropped[1], dropped[2], dropped[3], connection_id)
        if entry is not None and not fenced and (not alive or not registered):
            # Redis never had it, or lost it (restart): nobody else can have removed it, since
            # only a fenced node's connections are reaped. We are the first and only caller.
            return entry.record
        return None

    async def get(self, connection_id: str) -> ConnectionRecord | None:
        entry = self._local.get(connection_id)
        try:
            found = await self._link.run("GET", connection_id)
        except DOWN_ERRORS as exc:
            if entry is not None:
                self._link.lost(exc)
                return _copy(entry.record)
            raise self._link.unavailable(exc) from exc
        if not found:
            return _copy(entry.record) if entry is not None else None
        record = parse_record(found[0], found[1], found[2], connection_id)
        if entry is not None:  # touches of our own connections reach Redis with the heartbeat
            record.last_active_at = max(record.last_active_at, entry.record.last_active_at)
        return record

    async def touch(self, connection_id: str, now_ms: int) -> None:
        entry = self._local.get(connection_id)
        if entry is not None:
            # Batched: written by the heartbeat, one script for all of them.
            entry.record.last_active_at = now_ms
            self._touches[connection_id] = now_ms
            return
        try:
            await self._link.run("TOUCH", connection_id, now_ms)
        except DOWN_ERRORS as exc:
            raise self._link.unavailable(exc) from exc

    async def set_attributes(self, connection_id: str, attributes: dict[str, Any]) -> bool:
        def apply(record: ConnectionRecord) -> None:
            record.attributes = attributes

        return await self._change("attributes", connection_id, orjson.dumps(attributes), apply)

    async def join(self, room: str, connection_id: str) -> bool:
        return await self._change("join", connection_id, room, lambda r: r.rooms.add(room))

    async def leave(self, room: str, connection_id: str) -> bool:
        return await self._change("leave", connection_id, room, lambda r: r.rooms.discard(room))

    async def bind_user(self, user: str, connection_id: str) -> bool:
        return await self._change("bind", connection_id, user, lambda r: r.users.add(user))

    async def room_members(self, room: str) -> list[str]:
        return strs(await self._read(self._link.client.smembers(self._link.key("room", room))))

    async def user_connections(self, user: str) -> list[str]:
        return strs(await self._read(self._link.client.smembers(self._link.key("user", user))))

    async def list_connections(self, limit: int, cursor: str | None) -> Page:
        # Lexicographic paging over a zset: stable while connections come and go, and a cursor
        # whose connection closed meanwhile still marks the place.
        start = f"({cursor}" if cursor else "-"
        ids = strs(
            await self._read(
                self._link.client.zrangebylex(self._link.key("conns"), start, "+", 0, limit + 1)
            )
        )
        chunk = ids[:limit]
        return Page(chunk, chunk[-1] if len(ids) > limit else None)

    async def count(self) -> int:
        return int(await self._read(self._link.client.zcard(self._link.key("conns"))))

    async def room_nodes(self, room: str) -> Mapping[str, int]:
        raw = await self._read(self._link.client.hgetall(self._link.key("room-nodes", room)))
        nodes = dict(zip(strs(raw), (int(v) for v in raw.values()), strict=True))
        return {node: n for node, n in nodes.items() if n > 0}

    # -- helpers ------------------------------------------------------------------------------
    async def _read(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except DOWN_ERRORS as exc:
            raise self._link.unavailable(exc) from exc

    async def _change(
        self,
        op: str,
        connection_id: str,
        value: str | bytes,
        apply: Callable[[ConnectionRecord], object],
    ) -> bool:
        link = self._link
        entry = self._local.get(connection_id)
        if entry is not None:
            apply(entry.record)
            entry.version += 1
        try:
            changed = await link.run(
                "CHANGE", link.channels, self.node_id, op, connection_id, value
            )
        except DOWN_ERRORS as exc:
            if entry is None:
                raise link.unavailable(exc) from exc
            link.lost(exc)  # ours: the mirror has it, the replay will write it
            return True
        if entry is not None:
            if not changed:
                link.dirty = True  # Redis lost our connection (restart): replay soon
            return True
        return bool(changed)

    async def _put(self, entry: _Local) -> None:
        try:
            result = await self._link.run("PUT", *_put_args(entry.record))
            if result == 1:
                entry.registered = True
                await self._unless_removed_meanwhile(entry)
            else:  # fenced: the heartbeat will notice and recover; until then it stays local
                self._link.dirty = True
        except DOWN_ERRORS as exc:
            self._link.lost(exc)

    async def _unless_removed_meanwhile(self, entry: _Local) -> None:
        """A ``remove`` that overtook this entry's PUT found nothing in Redis (and the local
        record delivered ``$disconnect``); the PUT then wrote a ghost. Take it out again."""
        cid = entry.record.connection_id
        if self._local.get(cid) is not entry:
            self._pending_removals.add(cid)  # if Redis fails now, the replay removes it
            await self._link.run("REMOVE", cid, self.node_id)
            self._pending_removals.discard(cid)

    def apply_notice(self, delivery: Delivery) -> None:
        """Another node changed one of our connections in Redis; keep the mirror exact."""
        entry = self._local.get(delivery.target)
        if entry is None:
            return
        record = entry.record
        if delivery.kind == "attributes":
            record.attributes = orjson.loads(delivery.data)
        else:
            name = delivery.data.decode()
            if delivery.kind == "join":
                record.rooms.add(name)
            elif delivery.kind == "leave":
                record.rooms.discard(name)
            else:
                record.users.add(name)
        entry.version += 1

    # -- recovery -----------------------------------------------------------------------------
    def forget_registrations(self) -> None:
        """Redis no longer has our connections (it restarted): none counts as registered."""
        for entry in self._local.values():
            entry.registered = False

    def surrender(self) -> list[str]:
        """We were fenced: our registered connections were (or are being) reaped by others.

        They leave the mirror (their removal will no longer fall back to the local record) and
        are returned so the store can close them.
        """
        gone = [cid for cid, entry in self._local.items() if entry.registered]
        for cid in gone:
            del self._local[cid]
            self._surrendered.add(cid)
            self._touches.pop(cid, None)
        return gone

    async def resync(self) -> list[ConnectionRecord]:
        """Make Redis exact for this node again.

        Returns the stale entries under our node id it removed (the caller delivers their
        ``$disconnect``); raises :class:`Fenced` if the cluster declared us dead meanwhile.
        """
        link = self._link
        link.dirty = False
        try:
            for cid in list(self._pending_removals):
                await link.run("REMOVE", cid, self.node_id)
                self._pending_removals.discard(cid)
            todo = list(self._local.values())
            while todo:
                chunk, todo = todo[:RESYNC_CHUNK], todo[RESYNC_CHUNK:]
                await self._put_many(chunk)
                # A local change raced the replay (its own write may have landed first): again.
                todo.extend(e for e in chunk if e.version != e.replayed)
            return await self._sweep()
        except BaseException:
            link.dirty = True
            raise

    async def _put_many(self, chunk: list[_Local]) -> None:
        async with self._link.client.pipeline(transaction=False) as pipe:
            for entry in chunk:
                entry.replayed = entry.version
                await self._link.run("PUT", *_put_args(entry.record), client=pipe)
            results = await pipe.execute()
        for entry, result in zip(chunk, results, strict=True):
            if result != 1:
                raise Fenced()
            entry.registered = True
        for entry in chunk:
            await self._unless_removed_meanwhile(entry)

    async def _sweep(self) -> list[ConnectionRecord]:
        """Entries under our node id that we do not hold: a previous process with this id, or
        connections surrendered while fenced. They are lost connections: reap them."""
        link = self._link
        swept = []
        for cid in strs(await link.client.smembers(link.key("node-conns", self.node_id))):
            if cid in self._local:
                continue
            dropped, _, _ = await link.run("REMOVE", cid, self.node_id)
            if dropped:
                swept.append(parse_record(dropped[1], dropped[2], dropped[3], cid))
        return swept

    async def flush_touches(self) -> None:
        if not self._touches:
            return
        touches, self._touches = self._touches, {}
        args: list[str | int] = []
        for cid, ms in touches.items():
            args += [cid, ms]
        try:
            await self._link.run("TOUCH", *args)
        except DOWN_ERRORS:
            # Not worth a replay of everything: lastActiveAt is advisory. Keep the newest.
            self._touches = {**touches, **self._touches}
            raise

    async def remove_all_local(self) -> None:
        """Graceful shutdown: drop whatever is still ours (normally nothing after the drain)."""
        for cid in list(self._local):
            await self.remove(cid)
        for cid in list(self._pending_removals):
            await self._link.run("REMOVE", cid, self.node_id)
            self._pending_removals.discard(cid)


# -- records on the wire ------------------------------------------------------------------
def _put_args(record: ConnectionRecord) -> list[str | int | bytes]:
    fields: list[str | int | bytes] = [
        "node", record.node_id,
        "connectedAt", record.connected_at,
        "lastActiveAt", record.last_active_at,
        "sourceIp", record.source_ip,
        "userAgent", record.user_agent,
        "host", record.host,
    ]  # fmt: skip
    if record.attributes is not None:
        fields += ["attributes", orjson.dumps(record.attributes)]
    if record.authorizer is not None:
        fields += ["authorizer", orjson.dumps(record.authorizer)]
    if record.session is not None:
        fields += ["session", record.session]
    rooms, users = sorted(record.rooms), sorted(record.users)
    return [
        record.connection_id,
        record.node_id,
        len(fields),
        *fields,
        len(rooms),
        *rooms,
        len(users),
        *users,
    ]


def parse_record(
    flat: Sequence[bytes], rooms: Iterable[bytes], users: Iterable[bytes], connection_id: str
) -> ConnectionRecord:
    f = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
    attributes = f.get("attributes")
    authorizer = f.get("authorizer")
    return ConnectionRecord(
        connection_id=connection_id,
        node_id=f["node"].decode(),
        connected_at=int(f.get("connectedAt", 0)),
        last_active_at=int(f.get("lastActiveAt", 0)),
        source_ip=f.get("sourceIp", b"").decode(),
        user_agent=f.get("userAgent", b"").decode(),
        attributes=orjson.loads(attributes) if attributes is not None else None,
        host=f.get("host", b"").decode(),
        authorizer=orjson.loads(authorizer) if authorizer is not None else None,
        session=f["session"].decode() if "session" in f else None,
        rooms={r.decode() for r in rooms},
        users={u.decode() for u in users},
    )


def _copy(record: ConnectionRecord) -> ConnectionRecord:
    return replace(record, rooms=set(record.rooms), users=set(record.users))


def strs(values: Iterable[bytes | str]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


async def call_reaped(on_reaped: ReapHandler, record: ConnectionRecord) -> None:
    try:
        await on_reaped(record)
    except Exception:
        log.exception(
            "reaped-connection handler failed",
            extra={"fields": {"connectionId": record.connection_id}},
        )
