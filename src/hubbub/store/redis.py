"""The Redis store (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
``redis+cluster://``): one registry and bus for many nodes.

Six modules: this one (bus, heartbeats, reaping, lifecycle), :mod:`hubbub.store.redis_registry`
(the registry and its local mirror), :mod:`hubbub.store.redis_lua` (key layout, Lua scripts, bus
frame), :mod:`hubbub.store.redis_connect` (URLs: one server, Sentinel, Cluster), and on one
server the lean connection for the per-message calls, :mod:`hubbub.store.redis_wire`, and the
bus subscriber on it, :mod:`hubbub.store.redis_subscriber` (Sentinel and Cluster use redis-py
throughout). Operators' view: ``docs/scaling.md``.

Theory of operation
-------------------
**Layout.** Every connection is a hash plus two small membership sets; rooms, users, the node's own
connections and a sorted set of all ids are indexes over them (see :mod:`hubbub.store.redis_lua`
for the key table). On one server all keys of one API share a hash tag; on Redis Cluster the
registry is split into 16 partitions by connection id, each its own slot, holding its connections
with their room and user index entries, so one API spreads over the shards. Either way each
operation on a connection that touches several keys is one Lua script within one slot: atomic,
one round trip. Reads that span connections (room members, listing, count, interest) merge the
partitions.

**Exactly-once removal.** ``remove`` and the reaper both end in the same ``drop`` step of a script,
which deletes the connection hash and its index entries and returns the record. Redis runs scripts
one at a time, so only the first caller sees the record; that caller alone runs ``$disconnect``.

**Interest routing.** ``room-nodes:<room>`` counts the members of each room per node, maintained by
the same scripts that join, leave and drop. A room send publishes only on the channels of nodes with
members (on one server the lookup and those publishes are one script, ``ROOM_PUBLISH``); a post to
one connection only on its node's channel. Pub/sub frames carry the payload as
raw bytes after a tiny netstring header (no JSON, no base64).

**Remote membership.** Joining a room (binding a user, setting attributes) can be asked of any node.
The script that changes Redis also publishes a notice on the owner's channel, so the owner's local
fan-out index (the hub) and its replay mirror follow, in order with later room messages.

**Heartbeats and reaping.** Each node refreshes ``alive:<node>`` (TTL = 3 heartbeat intervals)
every interval. Four times per interval every node runs ``CLAIM``: nodes whose alive key is gone
move from ``nodes`` to ``dead`` and are *fenced*. Survivors then ``REAP`` a dead node in batches:
``SPOP`` some of its connections and drop each in the same script, so two racing survivors share
the work and each connection is reaped (and gets its 1006 ``$disconnect``) exactly once.

**Fencing.** A node that was only slow (a long pause, a network partition) and comes back finds its
fence on the next heartbeat. The cluster already ran ``$disconnect`` for its registered
connections, so it closes them locally (their removal then finds nothing: no second
``$disconnect``), lifts the fence and registers what is left.

**Restarts under a fixed node id.** A new process lifts any fence on its id at start and, on its
first heartbeat, reaps the entries under its id that it does not hold (left by the previous
process). The alive key holds a per-process token, so two live processes sharing an id are
reported instead of silently reaping each other.

On Cluster, CLAIM fences a dead node in the control slot and the reaper copies the fence into
each partition before reaping it there. Known limit: a reaper that read the node as dead just
before the node lifted its fence may re-fence a partition; the node's next write there finds
the fence and the node surrenders its connections as any fenced node does (needless closes, but
still one ``$disconnect`` per connection).

**Failover.** With ``redis+sentinel://`` the client asks the Sentinels for the master on every
new connection, so once a replica is promoted the outage path below brings the node back: its
replay rewrites whatever the promoted replica missed (replication is asynchronous). Alive keys may
have expired meanwhile, so a node that just got Redis back claims no one for a grace period of one
alive-key TTL, long enough for every other node to heartbeat again.

**Outage.** Every call has a 1 s socket timeout and at most one reconnect attempt, so nothing hangs.
Reads that need the shared view raise :class:`~hubbub.errors.UnavailableError` (HTTP 503). Writes
about *this node's* connections cannot fail: they go to a local mirror first (records, rooms,
users, attributes), the node marks itself dirty, and keeps serving its sockets. The heartbeat loop
retries with backoff; once Redis answers it replays the mirror (``PUT`` rewrites each connection
exactly), removes what closed meanwhile, drops stale entries of this node (a previous process with
the same node id), and resubscribes. A Redis restart that lost the data is detected even when no
call failed: the node's alive key is missing at the next heartbeat.

Known limit: during a network partition in which *other* nodes still reach Redis, a connection that
closes on the cut-off node gets ``$disconnect`` there at once and may be reaped again by a survivor.
Pub/sub is at-most-once: messages published while a node is unsubscribed are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from hubbub.store import redis_lua as lua
from hubbub.store.base import BusHandler, ConnectionRecord, Delivery, ReapHandler
from hubbub.store.presence_redis import RedisPresence
from hubbub.store.recovery import Position, Recovery
from hubbub.store.recovery_redis import (
    HISTORY_ERRORS,
    RedisRecovery,
    history_unavailable,
    position,
)
from hubbub.store.redis_registry import (
    DOWN_ERRORS,
    Fenced,
    Link,
    RedisRegistry,
    call_reaped,
    parse_record,
    strs,
)
from hubbub.store.redis_subscriber import WireSubscription
from hubbub.wire.kinds import NOTICES

log = logging.getLogger("hubbub.store.redis")

MISSED_HEARTBEATS = 3
CLAIMS_PER_INTERVAL = 4  # dead nodes are noticed within 3 intervals + a quarter
FENCE_TTL_MS = 24 * 3600 * 1000
REAP_BATCH = 100
REAP_CONCURRENCY = 16  # $disconnect invocations in flight per reaping node


class RedisBus:
    """Cross-node delivery over Redis pub/sub: a channel per node plus one broadcast channel."""

    def __init__(self, link: Link, registry: RedisRegistry) -> None:
        self._link = link
        self._registry = registry
        self.node_id = link.node_id
        self.handler: BusHandler | None = None
        self.received = 0  # deliveries addressed to this node (interest routing is testable)
        self.tasks: set[asyncio.Task[Any]] = set()

    async def send(self, node_id: str, delivery: Delivery) -> None:
        if node_id == self.node_id:
            await self._deliver(delivery)
            return
        link = self._link
        try:
            await link.publish(
                f"{link.channels}node:{node_id}", lua.encode_frame(self.node_id, delivery)
            )
        except DOWN_ERRORS as exc:
            raise link.unavailable(exc) from exc

    async def publish(self, node_ids: Sequence[str], delivery: Delivery) -> None:
        link = self._link
        frame = lua.encode_frame(self.node_id, delivery)
        try:
            if "*" in node_ids:
                await link.publish(link.broadcast_channel, frame)
                return
            others = [n for n in node_ids if n != self.node_id]
            if len(others) == 1:
                await link.publish(f"{link.channels}node:{others[0]}", frame)
            elif others and link.sharded:
                # Each node's channel may live on another shard: one SPUBLISH per channel.
                await asyncio.gather(
                    *(link.publish(f"{link.channels}node:{node}", frame) for node in others)
                )
            elif others and link.wire is not None:
                # Pipelined on the lean connection: written at once, one round trip.
                wire = link.wire
                await asyncio.gather(
                    *(wire.call("PUBLISH", f"{link.channels}node:{node}", frame) for node in others)
                )
            elif others:
                async with link.client.pipeline(transaction=False) as pipe:
                    for node in others:
                        pipe.publish(f"{link.channels}node:{node}", frame)
                    await pipe.execute()
        except DOWN_ERRORS as exc:
            raise link.unavailable(exc) from exc
        if self.node_id in node_ids:
            await self._deliver(delivery)

    async def publish_room(self, room: str, delivery: Delivery) -> Mapping[str, int] | None:
        """Publish ``delivery`` to every other node with members in ``room`` and return the
        room's nodes (as :meth:`RedisRegistry.room_nodes`), in one round trip (``ROOM_PUBLISH``).
        None on Cluster, where the caller asks the registry and publishes per node."""
        link = self._link
        if link.sharded:
            return None
        keys = [link.key("room-nodes", room)]
        frame = lua.encode_frame(self.node_id, delivery)
        args: list[str | bytes] = [self.node_id, f"{link.channels}node:", frame]
        try:
            if link.wire is not None:
                raw = await link.wire.evalsha(link.room_publish, keys, args)
            else:
                raw = await link.scripts["ROOM_PUBLISH"](keys=keys, args=args)
        except DOWN_ERRORS as exc:
            raise link.unavailable(exc) from exc
        return _room_nodes(raw)

    async def publish_recorded(
        self, room: str, delivery: Delivery, recovery: Recovery, *, only_if_kept: bool = False
    ) -> tuple[Position | None, Mapping[str, int]] | None:
        """Record ``delivery`` in the room's history and publish it with its position, in one
        round trip (``RECORDED_ROOM_PUBLISH``), when the history is on this bus's server;
        None elsewhere (the caller appends, then calls :meth:`publish_room`). The position is
        None when ``only_if_kept`` and the room keeps no history: the message went out
        unrecorded."""
        link = self._link
        wire = link.wire
        if wire is None or not isinstance(recovery, RedisRecovery) or not recovery.on_server(wire):
            return None
        keys, args = recovery.append_call(room, delivery.data, only_if_kept)
        keys.append(link.key("room-nodes", room))
        args += [self.node_id, f"{link.channels}node:", lua.frame_head(self.node_id, delivery)]
        try:
            epoch, last, raw = await wire.evalsha(link.recorded_room_publish, keys, args)
        except HISTORY_ERRORS as exc:
            # As the append that came first on the two-step path: its error, not the bus's.
            raise history_unavailable(exc) from exc
        return position(epoch, last), _room_nodes(raw)

    async def receive(self, frame: bytes) -> None:
        """A message on one of our channels."""
        try:
            origin, delivery = lua.decode_frame(frame)
        except (ValueError, UnicodeDecodeError):
            log.warning("malformed bus frame dropped", extra={"fields": {"bytes": len(frame)}})
            return
        if origin == self.node_id:
            return  # our own broadcast, already delivered locally by the sender
        self.received += 1
        if delivery.kind in NOTICES:
            try:
                self._registry.apply_notice(delivery)
            except ValueError:  # bad JSON or UTF-8: only a foreign publisher could send that
                log.warning("malformed notice dropped", extra={"fields": {"kind": delivery.kind}})
                return
        if delivery.kind == "close":
            self.deliver_soon(delivery)  # closing awaits the registry: never stall the reader
        else:
            await self._deliver(delivery)

    def deliver_soon(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(delivery))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        if self.handler is None:
            return
        try:
            await self.handler(delivery)
        except Exception:
            log.exception(
                "bus delivery failed",
                extra={"fields": {"kind": delivery.kind, "target": delivery.target}},
            )


def _room_nodes(raw: Sequence[Any]) -> dict[str, int]:
    """The nodes with members from a room-nodes hash as HGETALL returns it."""
    nodes = {}
    for i in range(0, len(raw) - 1, 2):
        node, count = raw[i], int(raw[i + 1])
        if count > 0:
            nodes[node.decode() if isinstance(node, bytes) else str(node)] = count
    return nodes


class RedisStore:
    """``redis://``: registry + bus + heartbeats + reaping, with one lifecycle."""

    shared = True

    def __init__(
        self, url: str, *, node_id: str, key_prefix: str, heartbeat_interval: float = 2.0
    ) -> None:
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self._link = Link(url, node_id=node_id, key_prefix=key_prefix)
        self.registry = RedisRegistry(self._link)
        self.bus = RedisBus(self._link, self.registry)
        self.presence = RedisPresence(self._link)
        self.node_id = node_id
        self.heartbeat_interval = heartbeat_interval
        self._ttl_ms = int(heartbeat_interval * MISSED_HEARTBEATS * 1000)
        self._on_reaped: ReapHandler | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._disconnects: set[asyncio.Task[None]] = set()  # $disconnect of reaped connections
        self._subscribed = False
        self._fenced = False
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, handler: BusHandler, on_reaped: ReapHandler) -> None:
        self.bus.handler = handler
        self._on_reaped = on_reaped
        link = self._link
        # The first heartbeat replays and sweeps: entries a previous process with this node id
        # left behind are reaped then (not now: the gateway cannot run $disconnect yet).
        link.dirty = True
        pubsub: PubSub | None = None
        try:
            pubsub = await self._subscribe()
            # A new process owns no connection yet: lift any fence left on this node id.
            await self._hello(reset=True)
            link.up = True
        except DOWN_ERRORS as exc:
            link.last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "redis unreachable at start; serving local connections until it answers",
                extra={"fields": {"node": self.node_id, "error": link.last_error}},
            )
            if pubsub is not None:
                await _close_pubsub(pubsub)
                pubsub = None
        self._spawn("subscriber", self._subscriber_loop(pubsub))
        self._spawn("heartbeat", self._heartbeat_loop())
        self._spawn("reaper", self._reaper_loop())

    async def close(self) -> None:
        """Stop heartbeats, remove this node's entries, disconnect. Bounded in an outage."""
        if self._closed:
            return
        self._closed = True
        await self._cancel_tasks()
        link = self._link
        try:
            await self.registry.remove_all_local()
            await link.run("GOODBYE", self.node_id)
        except Exception as exc:  # shutting down: report, never raise into the drain
            log.warning(
                "could not deregister from redis; the other nodes will reap this node",
                extra={"fields": {"node": self.node_id, "error": f"{exc}"}},
            )
        link.up = False
        with contextlib.suppress(Exception):
            await link.aclose()

    async def kill(self) -> None:
        """Test aid: vanish like a SIGKILLed process (no goodbye, nothing removed)."""
        self._closed = True
        await self._cancel_tasks()
        self._link.up = False
        await self._link.aclose()

    def status(self) -> dict[str, Any]:
        link = self._link
        up = link.up and self._subscribed and not self._fenced
        status: dict[str, Any] = {
            "store": "redis",
            "ok": up,
            "node_id": self.node_id,
            "redis": "connected" if link.up else "down",
            "subscribed": self._subscribed,
            "deliveries_received": self.bus.received,
            "heartbeat_interval": self.heartbeat_interval,
        }
        if not link.up and link.last_error:
            status["error"] = link.last_error
        return status

    async def live_nodes(self) -> int:
        """How many nodes share this store now (the ``hubbub_cluster_nodes`` gauge)."""
        return int(await self._link.client.scard(self._link.key("nodes")))

    # -- background loops ---------------------------------------------------------------------
    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks[name] = asyncio.get_running_loop().create_task(
            coro, name=f"hubbub-redis-{name}"
        )

    async def _cancel_tasks(self) -> None:
        self._closed = True  # loops also check it: a cancellation can be lost inside redis-py
        pending = {*self._tasks.values(), *self.bus.tasks, *self._disconnects}
        self._tasks.clear()
        for _ in range(10):
            if not pending:
                return
            for task in pending:
                task.cancel()
            # asyncio.wait neither raises the tasks' errors nor swallows our own cancellation.
            _, pending = await asyncio.wait(pending, timeout=0.5)
        log.warning("redis store tasks did not stop", extra={"fields": {"tasks": len(pending)}})

    async def _subscribe(self) -> Any:  # PubSub, WireSubscription or ShardedSubscription
        link = self._link
        pubsub: Any
        try:
            if link.sharded:
                pubsub = ShardedSubscription(link.client)
                await pubsub.subscribe(link.node_channel, link.broadcast_channel)
            elif link.wire is not None:
                # One server: the lean connection's subscriber (redis_subscriber).
                pubsub = WireSubscription(link.wire.endpoint)
                await pubsub.subscribe(link.node_channel, link.broadcast_channel)
            else:
                pubsub = link.client.pubsub()
                await pubsub.subscribe(link.node_channel, link.broadcast_channel)
        except BaseException:
            await _close_pubsub(pubsub)
            raise
        self._subscribed = True
        return pubsub

    async def _subscriber_loop(self, pubsub: Any) -> None:
        failures = 0
        while not self._closed:
            try:
                if pubsub is None:
                    pubsub = await self._subscribe()
                failures = 0
                await self._pump(pubsub)
            except DOWN_ERRORS as exc:
                self._link.lost(exc)
            except Exception:
                log.exception("redis subscriber failed; resubscribing")
            finally:
                self._subscribed = False
                if pubsub is not None:
                    await _close_pubsub(pubsub)
                    pubsub = None
            failures += 1
            await asyncio.sleep(self._backoff(failures))

    async def _pump(self, pubsub: Any) -> None:
        # A socket can die without a reset (a host vanishes): when idle for an interval, ping;
        # if the next interval brings nothing either, not even the PONG, start over.
        if isinstance(pubsub, ShardedSubscription | WireSubscription):
            await pubsub.pump(self.bus.receive, self.heartbeat_interval, lambda: self._closed)
            return
        pinged = False
        while not self._closed:
            message = await pubsub.get_message(timeout=self.heartbeat_interval)
            if message is None:
                if pinged:
                    raise RedisConnectionError("pub/sub connection silent")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if message["type"] == "message":
                await self.bus.receive(message["data"])

    async def _heartbeat_loop(self) -> None:
        failures = 0
        delay = self.heartbeat_interval
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self._beat()
                failures = 0
                delay = self.heartbeat_interval
            except DOWN_ERRORS as exc:
                self._link.lost(exc)
                failures += 1
                delay = self._backoff(failures)
            except Exception:
                # A bug must not stop the heartbeat: this node would be declared dead.
                log.exception("redis heartbeat failed")
                self._link.dirty = True
                failures += 1
                delay = self._backoff(failures)

    async def _beat(self) -> None:
        link = self._link
        was_up = link.up
        existed = await self._hello(reset=False)
        if existed == 2:
            log.error(
                "another process heartbeats with this node id; node ids must be unique",
                extra={"fields": {"node": self.node_id}},
            )
        if existed < 0:
            await self._recover_fenced()
        elif existed == 0 or link.dirty or not was_up:
            if existed == 0:
                # Our alive key was gone: Redis restarted (or we stalled past the TTL before
                # anyone claimed us). Either way Redis may lack our connections: replay all.
                self.registry.forget_registrations()
            try:
                self._disconnect_later(await self.registry.resync())
            except Fenced:
                await self._recover_fenced()
        await self.registry.flush_touches()
        if not was_up:
            link.restored()

    async def _hello(self, *, reset: bool) -> int:
        link = self._link
        flag = "1" if reset else "0"
        existed = int(await link.run("HELLO", self.node_id, self._ttl_ms, flag, link.token))
        if reset and link.partitioned:
            for tag in link.partitions:
                await link.run("UNFENCE", self.node_id, tag=tag)
        return existed

    async def _recover_fenced(self) -> None:
        """The others declared us dead and reaped our registered connections: follow suit."""
        self._fenced = True
        gone = self.registry.surrender()
        log.warning(
            "this node was declared dead by the cluster; closing its reaped connections",
            extra={"fields": {"node": self.node_id, "connections": len(gone)}},
        )
        for cid in gone:
            # Their $disconnect already ran on a survivor; closing them removes nothing more.
            self.bus.deliver_soon(Delivery("close", cid, b""))
        await self._hello(reset=True)
        self._disconnect_later(await self.registry.resync())
        self._fenced = False

    async def _reaper_loop(self) -> None:
        period = self.heartbeat_interval / CLAIMS_PER_INTERVAL
        while not self._closed:
            await asyncio.sleep(period)
            if not self._link.up or self._in_grace():
                continue
            try:
                link = self._link
                dead = strs(await link.run("CLAIM", self.node_id, FENCE_TTL_MS, link.token))
                for node in dead:
                    if node != self.node_id:
                        await self._reap(node)
            except DOWN_ERRORS as exc:
                self._link.lost(exc)
            except Exception:
                log.exception("redis reaper failed")

    def _in_grace(self) -> bool:
        """Redis came back less than an alive-key TTL ago. After a Sentinel failover (or a
        Cluster shard's) that outlasted the TTL, the new master holds everyone's alive keys
        expired: claiming now would take the nodes that have not yet heartbeated again for dead.
        Every node noticed the same outage, so each is back within about an interval."""
        restored_at = self._link.restored_at
        return restored_at > 0 and time.monotonic() - restored_at < self._ttl_ms / 1000

    async def _reap(self, node: str) -> None:
        """Take (a share of) a dead node's connections out of Redis, then deliver their
        ``$disconnect`` in the background: they answer 410 without waiting for handlers."""
        link = self._link
        records: list[ConnectionRecord] = []
        for tag in link.partitions:
            if link.partitioned:  # one slot: CLAIM fenced it already, in the same script
                await link.run("FENCE", node, FENCE_TTL_MS, tag=tag)
            while True:
                batch = await link.run("REAP", node, REAP_BATCH, tag=tag)
                if not batch:
                    break
                records += [parse_record(b[1], b[2], b[3], b[0].decode()) for b in batch]
        if link.partitioned:
            await link.run("DONE", node)
        if records:
            log.warning(
                "reaped connections of a lost node",
                extra={"fields": {"node": node, "connections": len(records), "by": self.node_id}},
            )
        self._disconnect_later(records)

    def _disconnect_later(self, records: list[ConnectionRecord]) -> None:
        if not records:
            return
        task = asyncio.get_running_loop().create_task(self._disconnect_all(records))
        self._disconnects.add(task)
        task.add_done_callback(self._disconnects.discard)

    async def _disconnect_all(self, records: list[ConnectionRecord]) -> None:
        on_reaped = self._on_reaped
        assert on_reaped is not None
        slots = asyncio.Semaphore(REAP_CONCURRENCY)  # under the gateway's invocation cap

        async def one(record: ConnectionRecord) -> None:
            async with slots:
                await call_reaped(on_reaped, record)

        await asyncio.gather(*(one(r) for r in records))

    def _backoff(self, failures: int) -> float:
        base = min(self.heartbeat_interval, 0.1 * 2.0 ** min(failures, 10))
        return base * random.uniform(0.8, 1.2)


class ShardedSubscription:
    """Shard channels on Redis Cluster: one ClusterPubSub per channel, each read by its own task.

    redis-py's ClusterPubSub keeps one connection per shard and follows a channel whose slot
    moves (MOVED, a failover), but a single reader polls the shards in turn and splits its
    timeout between them, so a message on one shard waited up to half of it while the reader
    sat on the other. With one channel each, every reader blocks on its own socket.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pubsubs: list[Any] = []

    async def subscribe(self, *channels: str) -> None:
        for channel in channels:
            pubsub = self._client.pubsub()
            self._pubsubs.append(pubsub)
            await pubsub.ssubscribe(channel)

    async def pump(
        self,
        receive: Callable[[bytes], Awaitable[None]],
        timeout: float,
        closed: Callable[[], bool],
    ) -> None:
        """Deliver messages until closed; raise the first reader's error (the others stop)."""

        async def read(pubsub: Any) -> None:
            while not closed():
                message = await pubsub.get_sharded_message(timeout=timeout)
                if message is not None and message["type"] == "smessage":
                    await receive(message["data"])

        loop = asyncio.get_running_loop()
        readers = [loop.create_task(read(pubsub)) for pubsub in self._pubsubs]
        try:
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in readers:
                task.cancel()
            await asyncio.wait(readers)

    async def aclose(self) -> None:
        for pubsub in self._pubsubs:
            await _close_pubsub(pubsub)


async def _close_pubsub(pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()


def open_redis(
    url: str, *, node_id: str, key_prefix: str = "hubbub:", heartbeat_interval: float = 2.0
) -> RedisStore:
    """Factory used by :func:`hubbub.store.open_store` for redis://, rediss://, unix://,
    redis+sentinel:// and redis+cluster:// (see :mod:`hubbub.store.redis_connect`)."""
    return RedisStore(
        url, node_id=node_id, key_prefix=key_prefix, heartbeat_interval=heartbeat_interval
    )


__all__ = ["RedisBus", "RedisRegistry", "RedisStore", "open_redis"]
