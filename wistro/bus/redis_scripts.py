"""The Redis bus's Lua scripts, and the numbering and encoding of a commit (``CommitEncoder``).

Each script runs atomically in Redis and builds its keys from the prefix it is given (the layout
of ``redis_keys``; the consumer group is ``workers``):

* ``COMMIT``: a group commit (``redis.RedisBus``): the deliveries written (``XADD``), the
  delayed ones (``ZADD``), the entries given back, the acknowledgements (``XACK`` + ``XDEL``,
  counted only when the ``XACK`` removed the entry) and the run ledger, in one go. A commit is
  numbered by its committer (one per bus instance) and Redis keeps the number of the last one it
  applied (``{prefix}:commit:{committer}``, ten minutes), so a commit sent again after its reply
  was lost is not applied twice. It returns the runs it ended.
* ``ANNOUNCE``: runs that ended, from ``ending`` to the ``ended`` stream, each once.
* ``MOVE``: the due delayed deliveries into their streams.
* ``HEARTBEAT``, ``RECLAIM``, ``FORGET``: a consumer's entries kept, dead consumers' entries
  claimed, a consumer that holds nothing removed from its groups (``redis_consumer``).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

_now = time.time

RUN_TTL_S = 7 * 24 * 3600  # a run hash nobody touched for this long is dropped

# The operations a bus buffers for its next commit, by their first item:
#   (PUB, delivery), (DELAYED, delivery, due), (ACK, stream, id, trace), (REQUEUE, stream, id,
#   body), (OPEN, run opened, holds), (RELEASE, trace), (NOTE, trace, events, errors).
PUB, DELAYED, ACK, REQUEUE, OPEN, RELEASE, NOTE = range(7)

# ARGV: prefix, committer id, now, run ttl, commit number (each committer's grow; one it sent
# before is not applied again: a commit is resent when its reply was lost), then sections, each a
# count and its items:
#   XADD (stream, body); ZADD delayed (score, member); requeue (stream, id, body);
#   ack (stream, id, trace); ledger (trace, opened, trigger, topic, start, origin, version,
#   delta, events, errors).
# Returns {applied (1, or 0 when this commit was applied before), ended...}, each ended run
# {trace, trigger, topic, start, origin, events, errors, end, version}.
COMMIT = """
local p, now, ttl = ARGV[1], ARGV[3], tonumber(ARGV[4])
local ck, seq = p .. ':commit:' .. ARGV[2], tonumber(ARGV[5])
if seq <= tonumber(redis.call('GET', ck) or '0') then
  return {0}
end
redis.call('SET', ck, seq, 'EX', 600)
local i = 6
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('XADD', ARGV[i], '*', 'd', ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZADD', p .. ':delayed', ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local r = redis.pcall('XACK', ARGV[i], 'workers', ARGV[i + 1])
  if r == 1 then
    redis.call('XDEL', ARGV[i], ARGV[i + 1])
    redis.call('XADD', ARGV[i], '*', 'd', ARGV[i + 2])
  end
  i = i + 3
end
local acked, order = {}, {}
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local r = redis.pcall('XACK', ARGV[i], 'workers', ARGV[i + 1])
  if r == 1 then
    redis.call('XDEL', ARGV[i], ARGV[i + 1])
    local t = ARGV[i + 2]
    if t ~= '' then
      if not acked[t] then acked[t] = 0; order[#order + 1] = t end
      acked[t] = acked[t] - 1
    end
  end
  i = i + 3
end
local out = {1}
local function settle(t, key, d, opened)
  local left = redis.call('HINCRBY', key, 'pending', d)
  redis.call('EXPIRE', key, ttl)
  if left <= 0 and (opened or left - d > 0) then
    redis.call('HSET', key, 'end', now)
    redis.call('ZADD', p .. ':ending', now, t)
    local h = redis.call('HMGET', key, 'trigger', 'topic', 'start', 'origin', 'events', 'errors',
                         'version')
    out[#out + 1] = {t, h[1] or '', h[2] or '', h[3] or '0', h[4] or '', h[5] or '0',
                     h[6] or '0', now, h[7] or ''}
  end
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local t = ARGV[i]
  local key = p .. ':run:' .. t
  local opened = ARGV[i + 1] == '1'
  if opened then
    redis.call('HSET', key, 'trigger', ARGV[i + 2], 'topic', ARGV[i + 3], 'start', ARGV[i + 4],
               'origin', ARGV[i + 5], 'version', ARGV[i + 6], 'events', 0, 'errors', 0)
  end
  local d = tonumber(ARGV[i + 7]) + (acked[t] or 0)
  acked[t] = nil
  if opened or redis.call('EXISTS', key) == 1 then
    local events, errors = tonumber(ARGV[i + 8]), tonumber(ARGV[i + 9])
    if events ~= 0 then redis.call('HINCRBY', key, 'events', events) end
    if errors ~= 0 then redis.call('HINCRBY', key, 'errors', errors) end
    settle(t, key, d, opened)
  end
  i = i + 10
end
for _, t in ipairs(order) do
  local d = acked[t]
  if d then
    local key = p .. ':run:' .. t
    if redis.call('EXISTS', key) == 1 then settle(t, key, d, false) end
  end
end
return out
"""

# ARGV: prefix, maxlen, traces. Announces those still in ``ending`` (once: the ZREM decides).
ANNOUNCE = """
local p = ARGV[1]
local n = 0
for i = 3, #ARGV do
  local t = ARGV[i]
  if redis.call('ZREM', p .. ':ending', t) == 1 then
    local key = p .. ':run:' .. t
    local h = redis.call('HGETALL', key)
    redis.call('XADD', p .. ':ended', 'MAXLEN', '~', ARGV[2], '*', 'trace_id', t, unpack(h))
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""

# ARGV: prefix, now, limit. Moves due delayed deliveries into their streams; returns
# {moved, the next due time or false}. A member is a 16-character id, then the delivery's JSON.
MOVE = """
local p = ARGV[1]
local z = p .. ':delayed'
local due = redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do
  local body = string.sub(m, 17)
  local ok, d = pcall(cjson.decode, body)
  if ok and type(d) == 'table' and type(d['step']) == 'string' then
    local q = d['step']
    if type(d['version']) == 'string' then q = q .. '@' .. d['version'] end
    redis.call('XADD', p .. ':q:' .. q, '*', 'd', body)
  end
  redis.call('ZREM', z, m)
end
local nxt = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false}
"""

# ARGV: consumer, then per stream: key, count, ids. Resets the idle time of this consumer's
# entries (only those it still owns: one another worker claimed stays that worker's).
HEARTBEAT = """
local me = ARGV[1]
local i = 2
local kept = 0
while i <= #ARGV do
  local key, n = ARGV[i], tonumber(ARGV[i + 1])
  for j = 1, n do
    local id = ARGV[i + 1 + j]
    local mine = redis.pcall('XPENDING', key, 'workers', id, id, 1, me)
    if type(mine) == 'table' and mine[1] then
      redis.call('XCLAIM', key, 'workers', me, 0, id, 'JUSTID')
      kept = kept + 1
    end
  end
  i = i + 2 + n
end
return kept
"""

# ARGV: consumer, min idle ms, count, keys. Claims entries idle longer than the visibility
# timeout; returns {key, id, body, deliveries (this one included)} for each.
RECLAIM = """
local me, idle, count = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV do
  local key = ARGV[i]
  local pend = redis.pcall('XPENDING', key, 'workers', 'IDLE', idle, '-', '+', count)
  if type(pend) == 'table' and not pend.err then
    for _, e in ipairs(pend) do
      local got = redis.call('XCLAIM', key, 'workers', me, idle, e[1])
      local entry = got[1]
      if entry and entry[2] then
        local body = ''
        for k = 1, #entry[2], 2 do
          if entry[2][k] == 'd' then body = entry[2][k + 1] end
        end
        out[#out + 1] = {key, e[1], body, e[4] + 1}
      end
    end
  end
end
return out
"""

# ARGV: consumer, keys. Removes this consumer from each group where it holds nothing.
FORGET = """
for i = 2, #ARGV do
  local mine = redis.pcall('XPENDING', ARGV[i], 'workers', '-', '+', 1, ARGV[1])
  if type(mine) == 'table' and not mine.err and not mine[1] then
    redis.pcall('XGROUP', 'DELCONSUMER', ARGV[i], 'workers', ARGV[1])
  end
end
return 0
"""

SCRIPTS = {
    "commit": COMMIT,
    "announce": ANNOUNCE,
    "move": MOVE,
    "heartbeat": HEARTBEAT,
    "reclaim": RECLAIM,
    "forget": FORGET,
}


class CommitEncoder:
    """One committer's commits (a bus instance's): numbered, and encoded as ``COMMIT``'s ARGV.

    ``stream`` names the stream of a step and version (``RedisKeys.stream``)."""

    def __init__(self, prefix: str, me: str, stream: Callable[[str, str | None], str]) -> None:
        self.prefix = prefix
        self._stream = stream
        self._uid_prefix = os.urandom(4).hex()
        self._uids = itertools.count(1)
        self._commits = itertools.count(1)
        self.committer = f"{me}:{self._uid_prefix}"  # its commits are numbered

    def encode(self, ops: list[tuple[Any, ...]]) -> tuple[list[Any], bool]:
        """The next commit's ARGV for ``ops``, and whether it delays any delivery. The commit's
        number is taken first (a commit that fails to encode uses one up all the same)."""
        commit_no = next(self._commits)
        xadds: list[Any] = []
        zadds: list[Any] = []
        requeues: list[Any] = []
        acks: list[Any] = []
        ledger: dict[str, list[Any]] = {}  # trace -> [opened run, delta, events, errors]
        key = self._stream
        for op in ops:
            kind = op[0]
            if kind == PUB:
                d = op[1]
                xadds += (key(d.step, d.version), d.to_json())
                trace = d.event.trace_id
            elif kind == ACK:
                acks += (op[1], op[2], op[3])
                continue
            elif kind == DELAYED:
                d = op[1]
                zadds += (
                    repr(op[2]),
                    f"{self._uid_prefix}{next(self._uids) & 0xFFFFFFFF:08x}{d.to_json()}",
                )
                trace = d.event.trace_id
            elif kind == REQUEUE:
                requeues += (op[1], op[2], op[3])
                continue
            else:
                trace = op[1].trace_id if kind == OPEN else op[1]
            entry = ledger.get(trace)
            if entry is None:
                entry = ledger[trace] = [None, 0, 0, 0]
            if kind in (PUB, DELAYED):
                entry[1] += 1
            elif kind == OPEN:
                entry[0] = op[1]
                entry[1] += op[2]
            elif kind == RELEASE:
                entry[1] -= 1
            else:
                entry[2] += op[2]
                entry[3] += op[3]
        argv: list[Any] = [self.prefix, self.committer, repr(_now()), RUN_TTL_S, commit_no]
        argv.append(len(xadds) // 2)
        argv += xadds
        argv.append(len(zadds) // 2)
        argv += zadds
        argv.append(len(requeues) // 3)
        argv += requeues
        argv.append(len(acks) // 3)
        argv += acks
        argv.append(len(ledger))
        for trace, (run, delta, events, errors) in ledger.items():
            if run is None:
                argv += (trace, 0, "", "", "", "", "", delta, events, errors)
            else:
                argv += (trace, 1, run.trigger, run.topic, repr(run.start), run.origin)
                argv += (run.version or "", delta, events, errors)
        return argv, bool(zadds)
