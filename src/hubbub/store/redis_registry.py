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
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import orjson
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub.errors import UnavailableError
from hubbub.store import redis_connect, redis_wire
from hubbub.store import redis_lua as lua
from hubbub.store.base import ConnectionRecord, Delivery, Page, ReapHandler

log = logging.getLogger("hubbub.store.redis")

T = TypeVar("T")

# What "Redis cannot serve us" looks like. ReadOnlyError: we reached a replica (failover under
# way); OutOfMemoryError: maxmemory reached and writes refused; MasterDownError: a replica lost it.
# Cluster: no node reachable, a slot without a master (RedisClusterException), CLUSTERDOWN and
# TRYAGAIN (ClusterDownError, TryAgainError) while the cluster fails over or migrates a slot.
DOWN_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    MasterDownError,
    RedisClusterException,
    ClusterDownError,
    TryAgainError,
    builtins.TimeoutError,
    OSError,
)
SOCKET_TIMEOUT = redis_connect.SOCKET_TIMEOUT
POOL_SIZE = redis_connect.POOL_SIZE
# Pool connections that scripted calls leave free (see Link.run): for heartbeats, the bus and
# plain commands, which a burst of thousands of registry writes must not starve.
RESERVED_CONNECTIONS = 10
PRIORITY_SCRIPTS = frozenset({"HELLO", "CLAIM"})  # the heartbeat: it keeps this node alive


def client_for(url: str) -> Any:
    """A client with short timeouts, for calls that must answer quickly during an outage: one
    server, a Sentinel-managed master or a Cluster (:func:`hubbub.store.redis_connect.connect`)."""
    return redis_connect.connect(url)


RESYNC_CHUNK = 500
# Redis Cluster: one API's registry is split over this many hash slots (by connection id), so it
# is not pinned to one shard. Everything about one connection stays in its partition: each script
# remains atomic in one slot. Control keys (nodes, alive, dead) stay in the API's own slot.
PARTITIONS = 16


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
        self.client = client_for(url)
        # Redis Cluster: pub/sub is sharded (SPUBLISH/SSUBSCRIBE), so a message crosses only the
        # shard that owns its channel instead of every node of the cluster.
        self.sharded = redis_connect.is_cluster(url)
        self.scripts = {
            name: self.client.register_script(getattr(lua, name))
            for name in ("PUT", "REMOVE", "GET", "TOUCH", "CHANGE", "HELLO", "CLAIM", "REAP")
        }
        for name in ("GOODBYE", "FENCE", "UNFENCE", "DONE", "ROOM_PUBLISH"):
            self.scripts[name] = self.client.register_script(getattr(lua, name))
        # The calls made once per message (bus publishes, ROOM_PUBLISH) on one server take a
        # lean pipelined connection instead of redis-py's (see redis_wire); None elsewhere.
        self.wire = redis_wire.open_wire(url, self.client)
        self.room_publish = redis_wire.Script(lua.ROOM_PUBLISH)
        self.recorded_room_publish = redis_wire.Script(lua.RECORDED_ROOM_PUBLISH)
        # Partition tags: [tag] on one server (the layout is exactly one slot), PARTITIONS slots
        # on Redis Cluster.
        self.partitions = (
            [lua.partition_tag(self.tag, i) for i in range(PARTITIONS)]
            if self.sharded
            else [self.tag]
        )
        self.up = False
        self.restored_at = 0.0  # monotonic time Redis last came back after an outage
        self.dirty = False  # a local write did not reach Redis: replay the mirror when back
        self.last_error = ""
        self.losses = 0  # calls Redis did not answer, ever (see run)
        self._slots = asyncio.Semaphore(POOL_SIZE - RESERVED_CONNECTIONS)

    @property
    def partitioned(self) -> bool:
        return len(self.partitions) > 1

    def part(self, connection_id: str) -> str:
        """The tag of the partition that holds ``connection_id`` (and its rooms and users)."""
        if len(self.partitions) == 1:
            return self.tag
        return self.partitions[zlib.crc32(connection_id.encode()) % len(self.partitions)]

    def key(self, kind: str, name: str = "", tag: str | None = None) -> str:
        tag = tag or self.tag
        return f"{tag}{kind}:{name}" if name else f"{tag}{kind}"

    async def run(
        self, script: str, *args: str | int | bytes, client: Any = None, tag: str | None = None
    ) -> Any:
        """Run a script with the layout's conventions (KEYS[1] = anchor, ARGV[1] = key tag):
        in the control slot, or in the partition ``tag``.

        Scripts queue here, a fixed number at a time, rather than in the pool: the pool makes a
        caller wait at most SOCKET_TIMEOUT for a connection, so a burst (20,000 clients closing
        at once, each a REMOVE) used to fail its tail as if Redis were down, and a node whose
        heartbeat then failed too was reaped by the others while it ran its own ``$disconnect``
        events: two each. Waiting here is backpressure, not an outage; the heartbeat's scripts
        skip the queue. A caller that queued while Redis failed another call fails at once, so
        a real outage does not make the queue wait one timeout per call.
        """
        tag = tag or self.tag
        call = self.scripts[script](keys=[tag + "nodes"], args=(tag, *args), client=client)
        if script in PRIORITY_SCRIPTS:
            return await call
        losses = self.losses
        async with self._slots:
            if self.losses != losses:
                call.close()
                raise RedisConnectionError(f"Redis failed meanwhile: {self.last_error}")
            return await call

    async def read_all(self, command: str, kind: str, name: str = "", *args: Any) -> list[Any]:
        """``command <key kind:name> *args`` in every partition (one pipeline on Cluster)."""
        if len(self.partitions) == 1:
            return [await getattr(self.client, command)(self.key(kind, name), *args)]
        keys = [self.key(kind, name, tag) for tag in self.partitions]
        return list(await self.client.read_many(command, keys, *args))

    async def publish(self, channel: str, frame: bytes) -> None:
        if self.wire is not None:
            await self.wire.call("PUBLISH", channel, frame)
        elif self.sharded:
            await self.client.spublish(channel, frame)
        else:
            await self.client.publish(channel, frame)

    async def aclose(self) -> None:
        """Close the clients (redis-py's pool and the lean connection)."""
        try:
            if self.wire is not None:
                await self.wire.aclose()
        finally:
            await self.client.aclose()

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
            self.restored_at = time.monotonic()
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
                await link.run("PUT", *_put_args(record), tag=link.part(record.connection_id))
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
            dropped, fenced, alive = await link.run(
                "REMOVE", connection_id, self.node_id, tag=link.part(connection_id)
            )
            if not dropped and link.partitioned and entry is not None and not fenced:
                # The alive key lives in the control slot, not in the connection's partition.
                alive = await link.client.exists(link.key("alive", self.node_id))
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
            found = await self._link.run("GET", connection_id, tag=self._link.part(connection_id))
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
            await self._link.run("TOUCH", connection_id, now_ms, tag=self._link.part(connection_id))
        except DOWN_ERRORS as exc:
            raise self._link.unavailable(exc) from exc

    async def set_attributes(self, connection_id: str, attributes: dict[str, Any]) -> bool:
        def apply(record: ConnectionRecord) -> None:
            record.attributes = attributes

        return await self._change("attributes", connection_id, orjson.dumps(attributes), apply)

    async def join(self, room: str, connection_id: str) -> bool:
        return await self._change("join", connection_id, room, lambda r: r.own_rooms().add(room))

    async def leave(self, room: str, connection_id: str) -> bool:
        return await self._change(
            "leave", connection_id, room, lambda r: r.own_rooms().discard(room)
        )

    async def bind_user(self, user: str, connection_id: str) -> bool:
        return await self._change("bind", connection_id, user, lambda r: r.own_users().add(user))

    async def room_members(self, room: str) -> list[str]:
        return await self._members("room", room)

    async def user_connections(self, user: str) -> list[str]:
        return await self._members("user", user)

    async def _members(self, kind: str, name: str) -> list[str]:
        sets = await self._read(self._link.read_all("smembers", kind, name))
        return [member for found in sets for member in strs(found)]

    async def list_connections(self, limit: int, cursor: str | None) -> Page:
        # Lexicographic paging over a zset (one per partition, merged): stable while connections
        # come and go, and a cursor whose connection closed meanwhile still marks the place.
        start = f"({cursor}" if cursor else "-"
        found = await self._read(
            self._link.read_all("zrangebylex", "conns", "", start, "+", 0, limit + 1)
        )
        ids = sorted(cid for part in found for cid in strs(part))[: limit + 1]
        chunk = ids[:limit]
        return Page(chunk, chunk[-1] if len(ids) > limit else None)

    async def count(self) -> int:
        return sum(int(n) for n in await self._read(self._link.read_all("zcard", "conns")))

    async def room_nodes(self, room: str) -> Mapping[str, int]:
        parts = await self._read(self._link.read_all("hgetall", "room-nodes", room))
        nodes: dict[str, int] = {}
        for raw in parts:
            for node, n in zip(strs(raw), (int(v) for v in raw.values()), strict=True):
                nodes[node] = nodes.get(node, 0) + n
        return {node: n for node, n in nodes.items() if n > 0}

    # -- helpers ------------------------------------------------------------------------------
    async def _read(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except DOWN_ERRORS as exc:
            raise self._link.unavailable(exc) from exc

    async def _change(
        self,
        op: Literal["attributes", "join", "leave", "bind"],
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
                "CHANGE", link.channels, self.node_id, op, connection_id, value,
                "1" if link.sharded else "0", tag=link.part(connection_id),
            )  # fmt: skip
            if isinstance(changed, bytes):  # Cluster: the owner's node id, to be told by us
                notice = Delivery(op, connection_id, value if isinstance(value, bytes) else
                                  value.encode())  # fmt: skip
                await link.publish(
                    f"{link.channels}node:{changed.decode()}",
                    lua.encode_frame(self.node_id, notice),
                )
                changed = 1
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
            cid = entry.record.connection_id
            result = await self._link.run("PUT", *_put_args(entry.record), tag=self._link.part(cid))
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
            await self._link.run("REMOVE", cid, self.node_id, tag=self._link.part(cid))
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
                record.own_rooms().add(name)
            elif delivery.kind == "leave":
                record.own_rooms().discard(name)
            else:
                record.own_users().add(name)
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
                await link.run("REMOVE", cid, self.node_id, tag=link.part(cid))
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
        for entry in chunk:
            entry.replayed = entry.version
        if self._link.sharded:
            # A Cluster pipeline does not load scripts (a promoted replica has none cached).
            link = self._link
            results = await asyncio.gather(
                *(
                    link.run("PUT", *_put_args(e.record), tag=link.part(e.record.connection_id))
                    for e in chunk
                )
            )
        else:
            async with self._link.client.pipeline(transaction=False) as pipe:
                for entry in chunk:
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
        parts = await link.read_all("smembers", "node-conns", self.node_id)
        for cid in (member for part in parts for member in strs(part)):
            if cid in self._local:
                continue
            dropped, _, _ = await link.run("REMOVE", cid, self.node_id, tag=link.part(cid))
            if dropped:
                swept.append(parse_record(dropped[1], dropped[2], dropped[3], cid))
        return swept

    async def flush_touches(self) -> None:
        if not self._touches:
            return
        touches, self._touches = self._touches, {}
        by_tag: dict[str, list[str | int]] = {}
        for cid, ms in touches.items():
            by_tag.setdefault(self._link.part(cid), []).extend((cid, ms))
        try:
            for tag, args in by_tag.items():
                await self._link.run("TOUCH", *args, tag=tag)
        except DOWN_ERRORS:
            # Not worth a replay of everything: lastActiveAt is advisory. Keep the newest.
            self._touches = {**touches, **self._touches}
            raise

    async def remove_all_local(self) -> None:
        """Graceful shutdown: drop whatever is still ours (normally nothing after the drain)."""
        for cid in list(self._local):
            await self.remove(cid)
        for cid in list(self._pending_removals):
            await self._link.run("REMOVE", cid, self.node_id, tag=self._link.part(cid))
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
