"""Room history in Redis streams and sessions in Redis strings: recovery across nodes.

Per room, three keys share one hash slot (``{room:<name>}``), so the append script runs on Redis
Cluster too: the epoch, the last offset (INCR) and a stream whose entry ids are ``0-<offset>`` (so
offsets stay contiguous and ordered) capped near ``size`` entries. All three expire ``ttl`` seconds
after the room's last message; a room whose history expired starts a new epoch, which clients see as
"epoch changed". Sessions are plain keys with a TTL.

As in memory, rooms nobody can recover cost nothing: a room keeps a history (its epoch key exists)
once a recovery-enabled client joins it on any node (:meth:`RedisRecovery.head`) or resumes in it
(:meth:`RedisRecovery.since`), and a node whose recovery-enabled connections are in a room keeps
its history alive while they are (:meth:`RedisRecovery.keep`). A message to any other room is sent
without being recorded (``append(..., only_if_kept=True)`` answers None).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

import orjson
from redis.exceptions import RedisClusterException, RedisError

from hubbub.errors import ConfigError, UnavailableError
from hubbub.store import redis_lua as lua
from hubbub.store import redis_wire
from hubbub.store.recovery import (
    Missed,
    Position,
    Session,
    history_key,
    missed_from,
    new_epoch,
)
from hubbub.store.redis_registry import client_for

# Rooms kept by one keep() call at once: within the connection pool, so none waits long.
KEEP_BATCH = 50

# RedisClusterException (no node reachable, a slot without a master) is not a RedisError.
HISTORY_ERRORS = (RedisError, RedisClusterException)

# A session's holder: set if free (or already ours), refreshed; 1 when it is ours now.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def history_unavailable(exc: BaseException) -> UnavailableError:
    return UnavailableError(f"room history unavailable: {exc}")


def position(epoch: Any, last: Any) -> Position | None:
    """The Position from HISTORY_APPEND's reply ``{epoch, last}``; None when the message was not
    recorded (``only_if_kept`` and the room keeps no history)."""
    if epoch is None:
        return None
    return Position(epoch.decode() if isinstance(epoch, bytes) else str(epoch), int(last))


class RedisRecovery:
    def __init__(self, url: str, *, key_prefix: str, size: int, ttl: float) -> None:
        # Short timeouts and a single retry: during an outage a room send answers 503 quickly.
        self._redis: Any = client_for(url)
        self._prefix = key_prefix
        self._size = size
        self._ttl = ttl
        self._ttl_s = max(1, int(ttl))  # the keys' TTL
        self._append = self._redis.register_script(lua.HISTORY_APPEND)
        # One append per room message: on one server it takes the lean pipelined connection
        # (see redis_wire) instead of redis-py's; None on Sentinel and Cluster.
        self._wire = redis_wire.open_wire(url, self._redis)
        self._append_script = redis_wire.Script(lua.HISTORY_APPEND)
        self._keep = self._redis.register_script(lua.HISTORY_KEEP)
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)

    def _keys(self, room: str) -> list[str]:
        tag = f"{self._prefix}{{room:{room}}}"
        return [f"{tag}:epoch", f"{tag}:last", f"{tag}:history"]

    @property
    def keep_interval(self) -> float | None:
        """Seconds between two :meth:`keep` calls: a third of the TTL, so one late or failed
        call does not lose a history."""
        return self._ttl_s / 3

    def append_call(
        self, room: str, data: bytes, only_if_kept: bool
    ) -> tuple[list[str], list[redis_wire.Arg]]:
        """KEYS and ARGV of HISTORY_APPEND (redis_lua) for one message."""
        args: list[redis_wire.Arg] = [
            # only_if_kept never starts a history: no epoch to make (it costs a getrandom).
            "" if only_if_kept else new_epoch(),
            self._size,
            data,
            time.time(),
            self._ttl_s,
            b"1" if only_if_kept else b"0",
        ]
        return self._keys(room), args

    def on_server(self, wire: redis_wire.Wire) -> bool:
        """Whether the history lives on the server (and database) ``wire`` talks to."""
        return self._wire is not None and self._wire.endpoint.same_server(wire.endpoint)

    async def append(
        self, room: str, data: bytes, *, only_if_kept: bool = False
    ) -> Position | None:
        keys, args = self.append_call(room, data, only_if_kept)
        try:
            if self._wire is not None:
                epoch, last = await self._wire.evalsha(self._append_script, keys, args)
            else:
                epoch, last = await self._append(keys=keys, args=args)
        except HISTORY_ERRORS as exc:
            raise history_unavailable(exc) from exc
        return position(epoch, last)

    async def since(self, room: str, after: Position | None) -> Missed:
        epoch_key, last_key, stream = self._keys(room)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(epoch_key)
                pipe.get(last_key)
                start = f"(0-{after.offset}" if after is not None and after.offset > 0 else "-"
                pipe.xrange(stream, start, "+")
                epoch, last, entries = await pipe.execute()
            epoch = await self._epoch(epoch_key, epoch)
        except HISTORY_ERRORS as exc:
            raise UnavailableError(f"room history unavailable: {exc}") from exc
        horizon = time.time() - self._ttl
        kept = []
        for entry_id, fields in entries:
            if float(fields[b"t"]) >= horizon:
                kept.append((int(entry_id.split(b"-")[1]), bytes(fields[b"d"])))
        epoch_text = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        # XRANGE started just after the position, so a gap before the first kept entry means
        # the window passed (missed_from checks it).
        return missed_from(kept, epoch_text, int(last or 0), after)

    async def _epoch(self, key: str, found: Any) -> Any:
        """The room's epoch: ``found``, or, with no history yet, one created now (a racing
        node's wins) so that positions handed out from now on match."""
        if found is not None:
            return found
        epoch = new_epoch().encode()
        # With the keys' TTL: a room joined and then left, with no message, is forgotten too.
        if await self._redis.set(key, epoch, nx=True, ex=self._ttl_s):
            return epoch
        return await self._redis.get(key) or epoch

    async def head(self, room: str) -> Position:
        epoch_key, last_key, _ = self._keys(room)
        try:
            epoch, last = await self._redis.mget(epoch_key, last_key)
            epoch = await self._epoch(epoch_key, epoch)
        except HISTORY_ERRORS as exc:
            raise UnavailableError(f"room history unavailable: {exc}") from exc
        return Position(epoch.decode() if isinstance(epoch, bytes) else str(epoch), int(last or 0))

    async def save_session(self, token: str, session: Session, ttl: float) -> None:
        try:
            await self._redis.set(
                f"{self._prefix}session:{token}",
                orjson.dumps(session.to_json()),
                ex=max(1, int(ttl)),
            )
        except HISTORY_ERRORS as exc:
            raise UnavailableError(f"sessions unavailable: {exc}") from exc

    async def load_session(self, token: str) -> Session | None:
        try:
            raw = await self._redis.get(f"{self._prefix}session:{token}")
        except HISTORY_ERRORS as exc:
            raise UnavailableError(f"sessions unavailable: {exc}") from exc
        return None if raw is None else Session.from_json(orjson.loads(raw))

    async def claim_session(self, token: str, holder: str, ttl: float) -> bool:
        try:
            won = await self._claim(
                keys=[f"{self._prefix}session-holder:{token}"], args=[holder, max(1, int(ttl))]
            )
        except RedisError as exc:
            raise UnavailableError(f"sessions unavailable: {exc}") from exc
        return bool(won)

    async def release_session(self, token: str, holder: str) -> None:
        try:
            await self._release(keys=[f"{self._prefix}session-holder:{token}"], args=[holder])
        except RedisError as exc:
            raise UnavailableError(f"sessions unavailable: {exc}") from exc

    async def keep(self, rooms: Collection[str]) -> None:
        """Keep the history of ``rooms`` (where this node has recovery-enabled members) for
        another TTL, or start one where it expired: a script per room, :data:`KEEP_BATCH` at a
        time (on Cluster each room's keys may live on another shard)."""
        batch = list(rooms)
        try:
            for start in range(0, len(batch), KEEP_BATCH):
                await asyncio.gather(
                    *(
                        self._keep(keys=self._keys(room), args=[new_epoch(), self._ttl_s])
                        for room in batch[start : start + KEEP_BATCH]
                    )
                )
        except HISTORY_ERRORS as exc:
            raise history_unavailable(exc) from exc

    def tracks(self, room: str) -> bool:
        # A recovery-enabled client of another node may be in any room: the append script
        # decides, from whether the room keeps a history (only_if_kept).
        return True

    async def close(self) -> None:
        try:
            if self._wire is not None:
                await self._wire.aclose()
        finally:
            await self._redis.aclose()


def open_redis_history(url: str, config: Any) -> RedisRecovery:
    """Factory named by :mod:`hubbub.store.schemes` for the Redis schemes."""
    history = config.history
    try:
        return RedisRecovery(
            url, key_prefix=config.store.key_prefix, size=history.size, ttl=history.ttl
        )
    except ValueError as exc:  # a malformed redis+sentinel:// or redis+cluster:// URL
        raise ConfigError(history_key(config), str(exc)) from exc
