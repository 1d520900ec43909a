"""Presence on Redis: one member set per room, shared by every node (see
:class:`~hubbub.store.base.Presence` for the contract).

Key layout (``T`` is the store's hash-tagged prefix, as in :mod:`hubbub.store.redis_lua`, so these
keys share the slot of the registry's and every script below is atomic on Cluster too)::

    T presence:<room>        hash   connection id -> member JSON (user, joinedAt, node)
    T presence-data:<room>   hash   connection id -> presence data JSON (absent: null)
    T presence-who:<room>    hash   connection id -> user (absent: no user)
    T presence-users:<room>  hash   user -> members of that user in the room (distinct count)
    T presence-ids:<room>    zset   connection ids, score 0: lexicographic paging, O(1) count
    T presence-conn:<cid>    set    rooms the connection is present in (leave everywhere at once)
    T presence-pending       zset   "<cid>\\n<room>" -> deadline ms of a deferred leave

Each removal happens inside one script that returns the member only when it deleted it, so two
nodes racing to remove the same member (a reaper and a resumed session, two sweeps of
``presence-pending``) cannot both emit its leave. Rooms without presence have no keys here and
cost nothing: the gateway calls this module only for rooms joined with presence on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from hubbub.store.base import PresenceMember, PresencePage
from hubbub.store.redis_registry import DOWN_ERRORS, Link

_PRELUDE = """
local T = ARGV[1]
local function key(kind, name) return T .. kind .. ':' .. name end

local function leave(room, cid)
  local pk = key('presence', room)
  local meta = redis.call('HGET', pk, cid)
  if not meta then return false end
  local data = redis.call('HGET', key('presence-data', room), cid)
  local user = redis.call('HGET', key('presence-who', room), cid)
  redis.call('HDEL', pk, cid)
  redis.call('HDEL', key('presence-data', room), cid)
  redis.call('HDEL', key('presence-who', room), cid)
  redis.call('ZREM', key('presence-ids', room), cid)
  redis.call('SREM', key('presence-conn', cid), room)
  redis.call('ZREM', T .. 'presence-pending', cid .. '\\n' .. room)
  if user then
    local uk = key('presence-users', room)
    if redis.call('HINCRBY', uk, user, -1) <= 0 then redis.call('HDEL', uk, user) end
  end
  return {room, meta, data or ''}
end

-- ARGV: cid, meta, user ('' = none), data ('' = null). Returns the replaced entry or false.
local function enter(room, cid, meta, user, data)
  local old = leave(room, cid)
  redis.call('HSET', key('presence', room), cid, meta)
  if data ~= '' then redis.call('HSET', key('presence-data', room), cid, data) end
  if user ~= '' then
    redis.call('HSET', key('presence-who', room), cid, user)
    redis.call('HINCRBY', key('presence-users', room), user, 1)
  end
  redis.call('ZADD', key('presence-ids', room), 0, cid)
  redis.call('SADD', key('presence-conn', cid), room)
  return old
end
"""

ENTER = (
    _PRELUDE
    + """
return enter(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
"""
)

UPDATE = (
    _PRELUDE
    + """
local room, cid, data = ARGV[2], ARGV[3], ARGV[4]
local meta = redis.call('HGET', key('presence', room), cid)
if not meta then return false end
if data == '' then redis.call('HDEL', key('presence-data', room), cid)
else redis.call('HSET', key('presence-data', room), cid, data) end
return {room, meta, data}
"""
)

LEAVE = (
    _PRELUDE
    + """
return leave(ARGV[2], ARGV[3])
"""
)

LEAVE_ALL = (
    _PRELUDE
    + """
local cid = ARGV[2]
local out = {}
for _, room in ipairs(redis.call('SMEMBERS', key('presence-conn', cid))) do
  local left = leave(room, cid)
  if left then table.insert(out, left) end
end
return out
"""
)

DEFER = (
    _PRELUDE
    + """
local cid, until_ms = ARGV[2], ARGV[3]
local out = {}
for _, room in ipairs(redis.call('SMEMBERS', key('presence-conn', cid))) do
  local meta = redis.call('HGET', key('presence', room), cid)
  if meta then
    redis.call('ZADD', T .. 'presence-pending', until_ms, cid .. '\\n' .. room)
    local data = redis.call('HGET', key('presence-data', room), cid)
    table.insert(out, {room, meta, data or ''})
  end
end
return out
"""
)

TAKE_OVER = (
    _PRELUDE
    + """
local room, old_cid = ARGV[2], ARGV[3]
local old = leave(room, old_cid)
enter(room, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return old
"""
)

DUE = (
    _PRELUDE
    + """
local now, limit = ARGV[2], tonumber(ARGV[3])
local pk = T .. 'presence-pending'
local out = {}
for _, item in ipairs(redis.call('ZRANGEBYSCORE', pk, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', pk, item)
  local cut = string.find(item, '\\n', 1, true)
  local left = leave(string.sub(item, cut + 1), string.sub(item, 1, cut - 1))
  if left then table.insert(out, left) end
end
return out
"""
)

READ = (
    _PRELUDE
    + """
local room, start, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYLEX', key('presence-ids', room), start, '+', 'LIMIT', 0, limit)
local out = {}
for _, cid in ipairs(ids) do
  local meta = redis.call('HGET', key('presence', room), cid)
  local data = redis.call('HGET', key('presence-data', room), cid)
  table.insert(out, {room, meta or '', data or ''})
end
return out
"""
)

_SCRIPTS = ("ENTER", "UPDATE", "LEAVE", "LEAVE_ALL", "DEFER", "TAKE_OVER", "DUE", "READ")


def _meta(member: PresenceMember) -> bytes:
    return orjson.dumps(
        {"c": member.connection_id, "u": member.user, "j": member.joined_at, "n": member.node_id}
    )


def _data(data: Any) -> bytes:
    return b"" if data is None else orjson.dumps(data)


def _member(entry: Sequence[bytes]) -> tuple[str, PresenceMember]:
    room, meta, data = entry
    m = orjson.loads(meta)
    member = PresenceMember(
        connection_id=m["c"],
        user=m["u"],
        data=orjson.loads(data) if data else None,
        joined_at=int(m["j"]),
        node_id=m["n"],
    )
    return room.decode(), member


class RedisPresence:
    """The :class:`~hubbub.store.base.Presence` of ``redis://`` stores."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._scripts = {name: link.client.register_script(globals()[name]) for name in _SCRIPTS}

    async def _run(self, name: str, *args: str | int | bytes) -> Any:
        link = self._link
        try:
            return await self._scripts[name](keys=[link.key("nodes")], args=(link.tag, *args))
        except DOWN_ERRORS as exc:
            raise link.unavailable(exc) from exc

    async def enter(self, room: str, member: PresenceMember) -> PresenceMember | None:
        old = await self._run(
            "ENTER",
            room,
            member.connection_id,
            _meta(member),
            member.user or "",
            _data(member.data),
        )
        return _member(old)[1] if old else None

    async def update(self, room: str, connection_id: str, data: Any) -> PresenceMember | None:
        new = await self._run("UPDATE", room, connection_id, _data(data))
        return _member(new)[1] if new else None

    async def leave(self, room: str, connection_id: str) -> PresenceMember | None:
        old = await self._run("LEAVE", room, connection_id)
        return _member(old)[1] if old else None

    async def leave_all(self, connection_id: str) -> list[tuple[str, PresenceMember]]:
        return sorted(map(_member, await self._run("LEAVE_ALL", connection_id)), key=_room)

    async def defer(self, connection_id: str, until_ms: int) -> list[tuple[str, PresenceMember]]:
        return sorted(map(_member, await self._run("DEFER", connection_id, until_ms)), key=_room)

    async def take_over(
        self, room: str, old_connection_id: str, member: PresenceMember
    ) -> PresenceMember | None:
        old = await self._run(
            "TAKE_OVER",
            room,
            old_connection_id,
            member.connection_id,
            _meta(member),
            member.user or "",
            _data(member.data),
        )
        return _member(old)[1] if old else None

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, PresenceMember]]:
        return [_member(e) for e in await self._run("DUE", now_ms, limit)]

    async def members(self, room: str, limit: int, cursor: str | None) -> PresencePage:
        start = f"({cursor}" if cursor else "-"
        entries = await self._run("READ", room, start, limit + 1)
        members = [_member(e)[1] for e in entries if e[1]]
        chunk = members[:limit]
        more = len(entries) > limit
        return PresencePage(chunk, chunk[-1].connection_id if more and chunk else None)

    async def counts(self, room: str) -> tuple[int, int]:
        link = self._link
        try:
            async with link.client.pipeline(transaction=False) as pipe:
                pipe.zcard(link.key("presence-ids", room))
                pipe.hlen(link.key("presence-users", room))
                connections, users = await pipe.execute()
        except DOWN_ERRORS as exc:
            raise link.unavailable(exc) from exc
        return int(connections), int(users)


def _room(item: tuple[str, PresenceMember]) -> str:
    return item[0]


__all__ = ["RedisPresence"]
