"""The Redis store's wire formats: key layout, Lua scripts, and the bus frame.

Kept apart from :mod:`hubbub.store.redis` (the asyncio side) because these are *data*: what lives in
Redis and what crosses a channel. See that module's docstring for how they are used.

Key layout. ``T`` is the key prefix wrapped in a Redis Cluster hash tag (``hubbub:`` becomes
``{hubbub:}``), so every key of one API hashes to one slot and every script below may touch any of
them atomically, on a single server and on Cluster alike. The variable part is always last, after a
fixed type word, so no room, user or node name can collide with another key::

    T conn:<cid>          hash   node, connectedAt, lastActiveAt, sourceIp, userAgent, host,
                                 attributes (JSON), authorizer (JSON), session (recovery token)
    T conn-rooms:<cid>    set    rooms of the connection
    T conn-users:<cid>    set    users bound to the connection
    T room:<room>         set    connection ids
    T room-nodes:<room>   hash   node id -> members of the room on that node (interest routing)
    T user:<user>         set    connection ids
    T conns               zset   every connection id, score 0: lexicographic paging, O(1) count
    T node-conns:<node>   set    connection ids held by the node (what a reaper removes)
    T nodes               set    live node ids
    T alive:<node>        string the node process's token, TTL = 3 heartbeat intervals;
                                 gone = the node is dead
    T dead                set    nodes claimed dead whose connections are still being reaped
    T fenced:<node>       string a node was declared dead (TTL 1 day); it must not re-register
                                 the connections the others reaped

On Redis Cluster the registry is split into partitions so that one API is not pinned to one
shard: partition ``i`` has the tag ``T/i`` (``{hubbub:/3}``, its own slot; see
:func:`partition_tag`) and a connection lives in the partition its id hashes to, together with
its ``conn``, ``conn-rooms``, ``conn-users`` keys and its entries in the ``room``,
``room-nodes``, ``user``, ``conns`` and ``node-conns`` keys *of that partition* (each partition
indexes its own connections; readers merge the partitions). So the scripts that touch one
connection stay in one slot and stay atomic. ``nodes``, ``alive``, ``dead`` and ``fenced`` live
under ``T`` (the control slot); ``fenced`` is also copied into each partition by the reaper
(FENCE) so that PUT can check it in its own slot. On a single server there is one partition:
``T`` itself.

Channels are not keys: ``<prefix>node:<node>`` per node and ``<prefix>broadcast``. On Redis
Cluster they are shard channels (SSUBSCRIBE/SPUBLISH), placed by their own slot: each node's
channel lives on whichever shard its name hashes to, apart from the registry's.

Every script gets ``KEYS[1]`` = ``T nodes`` (only so Cluster routes it to the right slot) and
``ARGV[1]`` = ``T``, with ``T`` the control tag or a partition's; the other keys it touches share
the slot by construction.
"""

from __future__ import annotations

from typing import cast

from hubbub.store.base import Delivery
from hubbub.wire.kinds import DeliveryKind

# Shared by every script: key naming, the atomic removal of one connection, and membership.
_PRELUDE = """
local T = ARGV[1]
local function key(kind, name) return T .. kind .. ':' .. name end

-- The bus frame (see encode_frame): netstrings origin, kind, target, exclude, epoch, offset;
-- then the raw data. Notices have no exclude and no history position: three empty fields.
local function frame(origin, kind, target, data)
  return #origin .. ':' .. origin .. #kind .. ':' .. kind
    .. #target .. ':' .. target .. '0:0:0:' .. data
end

local function uncount(room, node)
  local nk = key('room-nodes', room)
  if redis.call('HINCRBY', nk, node, -1) <= 0 then redis.call('HDEL', nk, node) end
end

-- Forget a connection and every index entry that names it. Returns {cid, fields, rooms, users}
-- to the caller that actually deleted the hash and false to everyone after: exactly-once.
local function drop(cid)
  local ck = key('conn', cid)
  local fields = redis.call('HGETALL', ck)
  if #fields == 0 then return false end
  local node = redis.call('HGET', ck, 'node')
  local rk, uk = key('conn-rooms', cid), key('conn-users', cid)
  local rooms = redis.call('SMEMBERS', rk)
  for _, room in ipairs(rooms) do
    redis.call('SREM', key('room', room), cid)
    uncount(room, node)
  end
  local users = redis.call('SMEMBERS', uk)
  for _, user in ipairs(users) do redis.call('SREM', key('user', user), cid) end
  redis.call('DEL', ck, rk, uk)
  redis.call('SREM', key('node-conns', node), cid)
  redis.call('ZREM', T .. 'conns', cid)
  return {cid, fields, rooms, users}
end

local function join(cid, node, room)
  if redis.call('SADD', key('conn-rooms', cid), room) == 1 then
    redis.call('SADD', key('room', room), cid)
    redis.call('HINCRBY', key('room-nodes', room), node, 1)
  end
end

local function leave(cid, node, room)
  if redis.call('SREM', key('conn-rooms', cid), room) == 1 then
    redis.call('SREM', key('room', room), cid)
    uncount(room, node)
  end
end

local function bind(cid, user)
  redis.call('SADD', key('conn-users', cid), user)
  redis.call('SADD', key('user', user), cid)
end
"""

# PUT: (re)write one connection with its memberships, replacing whatever Redis had for it.
# ARGV: T, cid, node, nfields, fields..., nrooms, rooms..., nusers, users...
# Returns 1, or -1 when the node is fenced (declared dead: it must not register anything).
PUT = (
    _PRELUDE
    + """
local cid, node = ARGV[2], ARGV[3]
if redis.call('EXISTS', key('fenced', node)) == 1 then return -1 end
drop(cid)
local i = 4
local n = tonumber(ARGV[i])
local fields = {}
for j = 1, n do fields[j] = ARGV[i + j] end
redis.call('HSET', key('conn', cid), unpack(fields))
redis.call('SADD', key('node-conns', node), cid)
redis.call('ZADD', T .. 'conns', 0, cid)
i = i + n + 1
n = tonumber(ARGV[i])
for j = 1, n do join(cid, node, ARGV[i + j]) end
i = i + n + 1
n = tonumber(ARGV[i])
for j = 1, n do bind(cid, ARGV[i + j]) end
return 1
"""
)

# REMOVE: ARGV: T, cid, caller node. Returns {dropped-or-nil, caller fenced?, caller alive?}; the
# two flags let the owner tell "a reaper took it" from "Redis lost it" (restart).
REMOVE = (
    _PRELUDE
    + """
local dropped = drop(ARGV[2])
return {dropped, redis.call('EXISTS', key('fenced', ARGV[3])),
        redis.call('EXISTS', key('alive', ARGV[3]))}
"""
)

# GET: ARGV: T, cid. Returns {fields, rooms, users} or nil.
GET = (
    _PRELUDE
    + """
local cid = ARGV[2]
local fields = redis.call('HGETALL', key('conn', cid))
if #fields == 0 then return false end
return {fields, redis.call('SMEMBERS', key('conn-rooms', cid)),
        redis.call('SMEMBERS', key('conn-users', cid))}
"""
)

# TOUCH: ARGV: T, cid1, ms1, cid2, ms2, ... Only existing connections (never resurrect a hash).
TOUCH = (
    _PRELUDE
    + """
for i = 2, #ARGV, 2 do
  local ck = key('conn', ARGV[i])
  if redis.call('EXISTS', ck) == 1 then redis.call('HSET', ck, 'lastActiveAt', ARGV[i + 1]) end
end
return 0
"""
)

# CHANGE: join / leave / bind / attributes on any connection, from any node.
# ARGV: T, channel prefix, calling node, op, cid, value, sharded. Returns 0 for an unknown
# connection. When the connection lives on another node, that node is told in the same atomic step
# (a PUBLISH on its channel) so its local fan-out index and its replay mirror follow. On Redis
# Cluster (sharded = '1') a script may only publish on its own slot, so it returns the owner's
# node id instead and the caller sends the notice (SPUBLISH) right after.
CHANGE = (
    _PRELUDE
    + """
local channels, origin, op, cid, value = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local sharded = ARGV[7] == '1'
local node = redis.call('HGET', key('conn', cid), 'node')
if not node then return 0 end
if op == 'join' then join(cid, node, value)
elseif op == 'leave' then leave(cid, node, value)
elseif op == 'bind' then bind(cid, value)
elseif op == 'attributes' then redis.call('HSET', key('conn', cid), 'attributes', value)
else return redis.error_reply('unknown op ' .. op) end
if node ~= origin then
  if sharded then return node end
  redis.call('PUBLISH', channels .. 'node:' .. node, frame(origin, op, cid, value))
end
return 1
"""
)

# HELLO (the heartbeat): ARGV: T, node, ttl ms, reset, token. Returns 1 if our alive key was
# still there, 0 if it had expired or vanished (Redis restarted: re-register everything), 2 if it
# held another process's token (a second process uses this node id), -1 if fenced.
# ``reset`` = 1 lifts the fence: used at start (a new process owns nothing) and after this node
# has surrendered the connections the others reaped.
HELLO = (
    _PRELUDE
    + """
local node, token = ARGV[2], ARGV[5]
if ARGV[4] == '1' then
  redis.call('DEL', key('fenced', node))
  redis.call('SREM', T .. 'dead', node)
elseif redis.call('EXISTS', key('fenced', node)) == 1 then
  return -1
end
local previous = redis.call('GET', key('alive', node))
redis.call('SET', key('alive', node), token, 'PX', ARGV[3])
redis.call('SADD', T .. 'nodes', node)
if not previous then return 0 end
if previous == token then return 1 end
return 2
"""
)

# CLAIM: ARGV: T, calling node, fence ttl ms, its token. Moves every node whose alive key is gone
# from ``nodes`` to ``dead`` (fencing it) and returns the ``dead`` set: the nodes left to reap.
# Only a caller whose own alive key holds its token claims: after a failover to a replica on
# which the alive keys expired, a claim still in flight from before must not take the nodes that
# have not heartbeated again for dead (the caller heartbeats first, then waits out a grace).
CLAIM = (
    _PRELUDE
    + """
local nodes = T .. 'nodes'
if redis.call('GET', key('alive', ARGV[2])) ~= ARGV[4] then
  return redis.call('SMEMBERS', T .. 'dead')
end
for _, node in ipairs(redis.call('SMEMBERS', nodes)) do
  if node ~= ARGV[2] and redis.call('EXISTS', key('alive', node)) == 0 then
    redis.call('SREM', nodes, node)
    redis.call('SADD', T .. 'dead', node)
    redis.call('SET', key('fenced', node), '1', 'PX', ARGV[3])
  end
end
return redis.call('SMEMBERS', T .. 'dead')
"""
)

# REAP: ARGV: T, dead node, batch size. Pops up to a batch of the node's connections and drops
# each (atomically, in this script): survivors racing on one node share the work, and each
# connection is returned to exactly one of them. The node leaves ``dead`` when it has none left.
REAP = (
    _PRELUDE
    + """
local node = ARGV[2]
-- Dead (single slot), or fenced in this partition by the reaper (Cluster: see FENCE).
if redis.call('SISMEMBER', T .. 'dead', node) == 0
    and redis.call('EXISTS', key('fenced', node)) == 0 then
  return {}
end
local out = {}
for _, cid in ipairs(redis.call('SPOP', key('node-conns', node), ARGV[3])) do
  local dropped = drop(cid)
  if dropped then out[#out + 1] = dropped end
end
if redis.call('SCARD', key('node-conns', node)) == 0 then redis.call('SREM', T .. 'dead', node) end
return out
"""
)

# GOODBYE: ARGV: T, node. Graceful shutdown, after the node removed its connections.
GOODBYE = (
    _PRELUDE
    + """
local node = ARGV[2]
redis.call('DEL', key('alive', node))
redis.call('SREM', T .. 'nodes', node)
return redis.call('SCARD', key('node-conns', node))
"""
)


# Redis Cluster only, where the registry is split into partitions (see partition_tag): the
# reaper fences a dead node in each partition before reaping it there (PUT checks the fence in
# its own slot), a node that lifts its fence lifts it in each partition, and the reaper takes the
# node out of ``dead`` once every partition is empty. ARGV: T, node[, fence ttl ms].
FENCE = (
    _PRELUDE
    + """
redis.call('SET', key('fenced', ARGV[2]), '1', 'PX', ARGV[3])
return 1
"""
)
UNFENCE = (
    _PRELUDE
    + """
redis.call('DEL', key('fenced', ARGV[2]))
return 1
"""
)
DONE = (
    _PRELUDE
    + """
redis.call('SREM', T .. 'dead', ARGV[2])
return 1
"""
)

# A room send on one server (not Cluster): the room's nodes and the publish to each other node
# with members, one round trip instead of HGETALL then PUBLISH. KEYS[1] = room-nodes:<room>;
# ARGV: this node, the node channels' prefix, the bus frame. Returns the hash as HGETALL does.
# Not on Cluster: there each node's channel may live on another shard (SPUBLISH).
ROOM_PUBLISH = """
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do
  if raw[i] ~= ARGV[1] and tonumber(raw[i + 1]) > 0 then
    redis.call('PUBLISH', ARGV[2] .. raw[i], ARGV[3])
  end
end
return raw
"""


# A room's history (hubbub.store.recovery_redis): KEYS[1..3] = the room's epoch, last offset and
# stream; ARGV[1..6] = an epoch for a room without one, the stream's size, the message, the time,
# the keys' TTL, and "1" to record only into a room that keeps a history already (its epoch key
# exists) or "0" to start one. Leaves the room's epoch and the message's offset in ``epoch`` and
# ``last``, both false when the message was not recorded.
_HISTORY_APPEND = """
local epoch = redis.call('GET', KEYS[1])
local last = false
if epoch or ARGV[6] ~= '1' then
  if not epoch then
    epoch = ARGV[1]
    redis.call('SET', KEYS[1], epoch)
  end
  last = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '0-' .. last, 'd', ARGV[3], 't', ARGV[4])
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
end
"""
HISTORY_APPEND = _HISTORY_APPEND + "return {epoch, last}\n"

# A room's history kept while a recovery-enabled member is in the room, however quiet it is:
# KEYS[1..3] as HISTORY_APPEND's; ARGV[1] = an epoch for a room without one, ARGV[2] = the TTL.
# The three keys expire together, so a kept room never has an epoch without its offsets.
HISTORY_KEEP = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 0
"""

# A room send with history when the history and the bus are one server: HISTORY_APPEND then
# ROOM_PUBLISH in one round trip, the published frame carrying the position the append gave
# (encode_frame's bytes: ARGV[9] is frame_head's, then the epoch and offset netstrings, empty when
# the message was not recorded, then the message). KEYS[4] = room-nodes:<room>; ARGV[7], ARGV[8]
# = this node, the node channels' prefix. Returns {epoch, offset, the room-nodes hash as HGETALL
# does}.
RECORDED_ROOM_PUBLISH = (
    _HISTORY_APPEND
    + """
local frame
if last then
  local offset = string.format('%d', last)
  frame = ARGV[9] .. #epoch .. ':' .. epoch .. #offset .. ':' .. offset .. ARGV[3]
else
  frame = ARGV[9] .. '0:0:' .. ARGV[3]
end
local raw = redis.call('HGETALL', KEYS[4])
for i = 1, #raw, 2 do
  if raw[i] ~= ARGV[7] and tonumber(raw[i + 1]) > 0 then
    redis.call('PUBLISH', ARGV[8] .. raw[i], frame)
  end
end
return {epoch, last, raw}
"""
)


def partition_tag(tag: str, index: int) -> str:
    """Partition ``index`` of a hash tag: ``{hubbub:}`` becomes ``{hubbub:/3}`` (its own slot)."""
    start = tag.find("{")
    end = tag.find("}", start + 2)
    return f"{tag[:end]}/{index}{tag[end:]}"


def hash_tagged(key_prefix: str) -> str:
    """The prefix of every key: ``key_prefix`` as a Cluster hash tag, unless it already has one."""
    start = key_prefix.find("{")
    if start >= 0 and key_prefix.find("}", start + 2) > start:
        return key_prefix  # the operator chose the slot: "{app}:" or "tenant:{7}:"
    return "{" + (key_prefix or "hubbub") + "}"


def encode_frame(origin: str, delivery: Delivery) -> bytes:
    """One bus message: netstrings (origin, kind, target, exclude, epoch, offset), then the raw
    data, never escaped or re-encoded (no base64, no JSON). Empty exclude/epoch mean None, an
    empty offset 0 (room epochs and connection ids are never empty)."""
    offset = str(delivery.offset) if delivery.offset else ""
    parts = [frame_head(origin, delivery)]
    for text in (delivery.epoch or "", offset):
        raw = text.encode()
        parts.append(b"%d:%s" % (len(raw), raw))
    parts.append(delivery.data)
    return b"".join(parts)


def frame_head(origin: str, delivery: Delivery) -> bytes:
    """The start of :func:`encode_frame`'s bytes, up to the position (origin, kind, target,
    exclude), for RECORDED_ROOM_PUBLISH, which appends the position it takes."""
    parts = []
    for text in (origin, delivery.kind, delivery.target, delivery.exclude or ""):
        raw = text.encode()
        parts.append(b"%d:%s" % (len(raw), raw))
    return b"".join(parts)


def decode_frame(frame: bytes) -> tuple[str, Delivery]:
    """Inverse of :func:`encode_frame`: ``(origin node, delivery)``. ValueError if malformed."""
    fields: list[str] = []
    pos = 0
    for _ in range(6):
        colon = frame.index(b":", pos)
        size = int(frame[pos:colon])
        start = colon + 1
        if size < 0 or start + size > len(frame):
            raise ValueError("truncated bus frame")
        fields.append(frame[start : start + size].decode())
        pos = start + size
    origin, kind, target, exclude, epoch, offset = fields
    # Any string another node sent: a kind this node does not know is delivered to no one.
    return origin, Delivery(
        cast(DeliveryKind, kind),
        target,
        frame[pos:],
        exclude or None,
        epoch=epoch or None,
        offset=int(offset or 0),
    )
