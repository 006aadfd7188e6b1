"""The Redis bus: deliveries in Redis Streams, shared by every process (on any machine) that
uses the same Redis and key prefix (``redis.prefix``: one project and environment).

Layout, every key under ``prefix``, so that two projects or environments on one Redis never meet:

* ``{prefix}:q:{step}``: a stream per subscribing step, one entry per delivery (field ``d``: the
  delivery's JSON), with one consumer group ``workers``; each process reads as its own consumer
  (``host:pid``). A stream per *step*, not per topic: a worker hosting N steps waits on all of
  them with one blocking ``XREADGROUP GROUP workers <me> COUNT n BLOCK ms STREAMS q:A q:B ...
  > > ...``, where a stream per topic with a group per step would need N blocking calls (a group
  belongs to one stream). Steps fan out because ``publish`` writes one entry per subscribing step;
  replicas of a step compete in its group.
* ``{prefix}:delayed``: a sorted set of the deliveries waiting for their time (retries with
  backoff), score = when they are due, member = a unique id and the delivery's JSON. A mover task
  in every process moves the due ones into their streams (a script: ``ZRANGEBYSCORE`` with a
  limit, ``XADD``, ``ZREM``), then sleeps until the next is due, at most a second: an idle
  cluster does not poll faster than that.
* ``{prefix}:run:{trace_id}``: the run ledger, a hash per run in flight (trigger, topic, start,
  origin, pending, events, errors). ``open_run`` sets it and adds its holds to ``pending``; each
  delivery published adds one, each one acknowledged takes one away, ``release`` takes a hold
  away, ``note`` counts events and errors.
* ``{prefix}:ending`` (a sorted set of runs whose pending reached 0 and that are not announced
  yet) and ``{prefix}:ended`` (a stream of ended runs, ``MAXLEN ~ 100000``; ``broadcast``
  messages, activate/deactivate, travel on it too, in order with the rest).
* ``{prefix}:claim:{key}`` (``claim``: ``SET NX`` with a lifetime, a cron tick fires once) and
  ``{prefix}:commit:{committer}`` (the number of a process's last commit applied, for ten minutes).

Group commit. ``publish`` never blocks: it appends to a buffer and wakes the committer task, which
writes everything buffered in one atomic script (``XADD`` of each delivery, ``ZADD`` of the
delayed ones, the ledger, and the acknowledgements ``XACK`` + ``XDEL``). The entries a handler
published are in its acknowledgement's commit or an earlier one, so a process that dies leaves no
half-done hop: a handler whose acknowledgement never committed runs again, and publishes again
(at-least-once). ``flush`` returns once the buffer as of the call is committed (durable as far as
Redis's persistence goes: ``appendfsync``). A script rather than ``MULTI``/``EXEC`` because a
commit must be idempotent: each one carries an id, and a commit sent again after a connection lost
on its way (Redis may have applied it) does nothing the second time.

The ledger is exact even when processes die: its changes ride in the same commits as the
entries and acknowledgements, and an acknowledgement counts only when its ``XACK`` removed the
entry (a delivery that ran twice is settled once). The commit in which a run's pending goes from
above 0 to 0 ends it, exactly once: that commit also puts it in ``ending``. This process then
calls ``hooks.ended`` (the engine records the end) and announces it: one script removes it from
``ending``, adds it to ``ended`` and deletes its hash, only if the removal did something (so a run
is announced once). A process that died between the two leaves the run in ``ending``; the others
announce what is older than the visibility timeout there (and a starting process, all of it).
Every process with hooks reads ``ended`` with a blocking ``XREAD`` (no group, from where the
stream was when the bus started) and calls ``hooks.finished`` for the runs it opened.

Consuming. A reader task asks ``XREADGROUP`` for as many entries as the lanes (``Lanes``: the
per-step concurrency) have room for, over the streams whose lanes have room, blocking up to a
second. When a lane that was full while the reader blocked gets room again, ``CLIENT UNBLOCK``
ends the read early, so a busy step does not keep the others waiting. A delivery is acknowledged
when its handler returns. Every ``visibility_timeout_s / 3`` a heartbeat resets the idle time of
this process's entries (``XCLAIM`` to itself, ``JUSTID``), so a long handler is never taken from
a live worker; every ``visibility_timeout_s / 2`` each hosted stream's entries idle longer than
the timeout (a dead worker's) are claimed here; one delivered more than ``max_deliveries`` times
is handed to ``hooks.poisoned`` and acknowledged, so a poison message never blocks its stream.

Stopping. ``abandon`` stops consuming at once and cancels what runs here; the entries it read but
had not started go back to their streams at once, those it was running return after the
visibility timeout; what is in Redis stays for the others. ``aclose`` (the engine drains first)
stops the tasks, returns what was read and not started, commits the buffer and closes the
connections.

Redis unreachable (restarted, a network cut): every task retries with a backoff from 0.1 s to
2 s, one warning line names the URL (without its password), and each resumes when Redis is back;
nothing buffered is lost (a commit that failed is sent again), and ``flush`` keeps waiting
meanwhile, without spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from wistro.bus.base import (
    BusHooks,
    ConcurrencyOf,
    Deliver,
    Delivery,
    EventBus,
    RunEnded,
    RunOpened,
)
from wistro.bus.lanes import Lanes
from wistro.errors import BusError
from wistro.processes import worker_name
from wistro.urls import public_url

log = logging.getLogger("wistro.bus")
T = TypeVar("T")
_now = time.time

GROUP = "workers"
BLOCK_MS = 1000  # the reader's longest wait in Redis
UNBLOCK_AFTER_S = 0.002  # a read still out after this waits in Redis (it found nothing)
ENDED_BLOCK_MS = 5000  # the ended-runs reader's
MOVER_MAX_SLEEP_S = 1.0  # the mover looks at the delayed set at least this often
MAX_COMMIT_OPS = 2048  # operations per commit script
ENDED_MAXLEN = 100_000
RUN_TTL_S = 7 * 24 * 3600  # a run hash nobody touched for this long is dropped
BACKOFF_S = (0.1, 2.0)

_PUB, _DELAYED, _ACK, _REQUEUE, _OPEN, _RELEASE, _NOTE = range(7)

# ARGV: prefix, committer id, now, run ttl, commit number (each committer's grow; one it sent
# before is not applied again: a commit is resent when its reply was lost), then sections, each a
# count and its items:
#   XADD (stream, body); ZADD delayed (score, member); requeue (stream, id, body);
#   ack (stream, id, trace); ledger (trace, opened, trigger, topic, start, origin, delta,
#   events, errors).
# Returns {applied (1, or 0 when this commit was applied before), ended...}, each ended run
# {trace, trigger, topic, start, origin, events, errors, end}.
_COMMIT = """
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
    local h = redis.call('HMGET', key, 'trigger', 'topic', 'start', 'origin', 'events', 'errors')
    out[#out + 1] = {t, h[1] or '', h[2] or '', h[3] or '0', h[4] or '', h[5] or '0',
                     h[6] or '0', now}
  end
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local t = ARGV[i]
  local key = p .. ':run:' .. t
  local opened = ARGV[i + 1] == '1'
  if opened then
    redis.call('HSET', key, 'trigger', ARGV[i + 2], 'topic', ARGV[i + 3], 'start', ARGV[i + 4],
               'origin', ARGV[i + 5], 'events', 0, 'errors', 0)
  end
  local d = tonumber(ARGV[i + 6]) + (acked[t] or 0)
  acked[t] = nil
  if opened or redis.call('EXISTS', key) == 1 then
    local events, errors = tonumber(ARGV[i + 7]), tonumber(ARGV[i + 8])
    if events ~= 0 then redis.call('HINCRBY', key, 'events', events) end
    if errors ~= 0 then redis.call('HINCRBY', key, 'errors', errors) end
    settle(t, key, d, opened)
  end
  i = i + 9
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
_ANNOUNCE = """
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
_MOVE = """
local p = ARGV[1]
local z = p .. ':delayed'
local due = redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do
  local body = string.sub(m, 17)
  local ok, d = pcall(cjson.decode, body)
  if ok and type(d) == 'table' and type(d['step']) == 'string' then
    redis.call('XADD', p .. ':q:' .. d['step'], '*', 'd', body)
  end
  redis.call('ZREM', z, m)
end
local nxt = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false}
"""

# ARGV: consumer, then per stream: key, count, ids. Resets the idle time of this consumer's
# entries (only those it still owns: one another worker claimed stays that worker's).
_HEARTBEAT = """
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
_RECLAIM = """
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
_FORGET = """
for i = 2, #ARGV do
  local mine = redis.pcall('XPENDING', ARGV[i], 'workers', '-', '+', 1, ARGV[1])
  if type(mine) == 'table' and not mine.err and not mine[1] then
    redis.pcall('XGROUP', 'DELCONSUMER', ARGV[i], 'workers', ARGV[1])
  end
end
return 0
"""


def _cancelled_meanwhile() -> None:
    """Raise CancelledError if this task was cancelled during a Redis call that returned anyway
    (redis-py can swallow a cancellation that lands while it reads a reply)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


_instances = itertools.count()


class RedisBus(EventBus):
    """Deliveries in Redis Streams under ``prefix``; ``steps`` are the steps this process
    consumes (a list, or a function returning one, read at start and at each upkeep; None:
    publish only)."""

    name = "redis"
    shared = True
    durable = True

    def __init__(
        self,
        url: str,
        prefix: str,
        steps: Callable[[], list[str] | None] | list[str] | None = None,
        visibility_timeout_s: float = 30.0,
        max_deliveries: int = 10,
        batch: int = 256,
    ) -> None:
        if not prefix:
            raise ValueError("the redis bus needs a non-empty key prefix")
        self.url = url
        self.public_url = public_url(url)
        self.prefix = prefix
        self._steps_source = steps
        self.consume = steps is not None  # False: publish only (this process takes nothing)
        self.visibility_timeout_s = visibility_timeout_s
        self.max_deliveries = max_deliveries
        self.batch = batch
        n = next(_instances)
        # One consumer per process; a second bus in the same process is another consumer.
        self.me = worker_name() + (f"/{n}" if n else "")
        self._uid_prefix = os.urandom(4).hex()
        self._uids = itertools.count(1)
        self._commits = itertools.count(1)
        self._committer = f"{self.me}:{self._uid_prefix}"  # its commits are numbered
        self._ops: list[tuple[Any, ...]] = []
        self._appended = 0  # operations buffered, ever
        self._committed = 0  # operations committed, ever
        self._unsent = 0  # publishes buffered and not committed yet
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        # The commit sent and not known to be applied: (operations, publishes, argv, delayed).
        self._inflight: tuple[int, int, list[Any], bool] | None = None
        self._waiting: set[str] = set()  # runs opened here: their end wakes someone here
        self._ending: list[RunEnded] = []  # runs this process ended, to record and announce
        self._keys: dict[str, str] = {}  # step -> its stream
        self._hosted: list[tuple[str, str]] = []  # (step, stream) consumed here
        self._held: dict[tuple[bytes, bytes], bytes] = {}  # read here, not acknowledged: body
        self._limits: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._redis: aioredis.Redis | None = None
        self._redis_loop: asyncio.AbstractEventLoop | None = None
        self._concurrency_of: ConcurrencyOf = lambda step: 16
        self._unblockers: set[asyncio.Task[None]] = set()
        self._stopping: set[asyncio.Task[None]] = set()  # cancelled by abandon(), not done yet
        self._reader: aioredis.Redis | None = None
        self._ended_reader: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._lanes: Lanes | None = None
        self._hooks: BusHooks | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._kick_commit = asyncio.Event()
        self._kick_mover = asyncio.Event()
        self._kick_announce = asyncio.Event()
        self._ended_ready = asyncio.Event()
        self._down = False  # Redis unreachable: said once
        self._reader_id: int | None = None
        self._blocked_on: set[str] | None = None  # full steps while the reader blocks
        self._unblocking = False
        self._read_no = 0  # reads sent, ever
        self._started_ms = 0
        self._read_at = 0.0  # when the last one was sent (loop time)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(
        self, deliver: Deliver, concurrency_of: ConcurrencyOf, hooks: BusHooks | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._redis is None or self._redis_loop is not loop:  # a first start, or a new loop
            for task in self._tasks.values():
                task.cancel()
            self._tasks.clear()
            self._connect(loop)
            self._flushes = []  # futures of a loop that is gone
            self._stopping.clear()
            self._held.clear()
            self._kick_commit = asyncio.Event()
            self._kick_mover = asyncio.Event()
            self._kick_announce = asyncio.Event()
            self._ended_ready = asyncio.Event()
        else:  # again after abandon(): the committer kept writing the buffer
            for name, task in list(self._tasks.items()):
                if name != "commit":
                    task.cancel()
                    del self._tasks[name]
        self._loop = loop
        self._started_ms = int(_now() * 1000)  # what is announced from now on is read
        self._hooks = hooks
        self._lanes = Lanes(deliver, concurrency_of, self._done)
        self._concurrency_of = concurrency_of
        self._limits.clear()
        self._read_steps()
        if hooks is None:
            self._ended_ready.set()
        else:
            self._spawn("ended", self._ended_loop)
        self._spawn("announce", self._announce_loop)
        if "commit" not in self._tasks:
            self._spawn("commit", self._commit_loop)
        self._kick_commit.set()
        self._spawn("mover", self._mover_loop)
        self._spawn("upkeep", self._upkeep_loop)
        if self._hosted:
            self._spawn("read", self._read_loop)

    def _spawn(self, name: str, loop_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._loop is not None
        self._tasks[name] = self._loop.create_task(
            self._keep(name, loop_fn), name=f"wistro-redis-bus-{name}"
        )

    async def _keep(self, name: str, loop_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run one of the bus's loops; one that fails on something other than Redis (a bug, a
        hook that raised) says so and starts again, so the bus never stops silently."""
        while True:
            try:
                await loop_fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                _cancelled_meanwhile()  # it failed while being cancelled: it stops
                if self._redis is None:
                    return  # closed meanwhile
                log.exception(
                    "redis bus at %s: its %s task failed; restarting it", self.public_url, name
                )
                await asyncio.sleep(BACKOFF_S[1])
                if self._redis is None:
                    return

    def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        """Clients of this event loop (connections belong to the loop that opened them)."""

        def client(single: bool, read_timeout: float) -> aioredis.Redis:
            return aioredis.Redis.from_url(
                self.url,
                single_connection_client=single,
                socket_connect_timeout=5.0,
                socket_timeout=read_timeout,
                socket_keepalive=True,
                # One more try on a fresh connection (a pooled one Redis closed); beyond that the
                # bus's own backoff takes over, and says so.
                retry=Retry(NoBackoff(), 1),
            )

        self._redis = client(False, 10.0)
        self._reader = client(True, BLOCK_MS / 1000 + 10.0)
        self._ended_reader = client(True, ENDED_BLOCK_MS / 1000 + 10.0)
        self._redis_loop = loop
        self._scripts = {
            name: self._redis.register_script(text)
            for name, text in [
                ("commit", _COMMIT),
                ("announce", _ANNOUNCE),
                ("move", _MOVE),
                ("heartbeat", _HEARTBEAT),
                ("reclaim", _RECLAIM),
                ("forget", _FORGET),
            ]
        }

    # -- claims and control messages ---------------------------------------------------------

    async def _oneshot(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run ``fn`` with this loop's client, or (a bus never started, as in the CLI) with a
        client of its own, closed after."""
        if self._redis is not None and self._redis_loop is asyncio.get_running_loop():
            return await fn(self._redis)
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=5.0, socket_timeout=10.0)
        try:
            return await fn(client)
        finally:
            await client.aclose()

    async def claim(self, key: str, ttl_s: float) -> bool:
        """``SET NX`` with the claim's lifetime: the first process to claim ``key`` gets it."""
        name = f"{self.prefix}:claim:{key}"
        ttl = max(1, int(ttl_s))
        try:
            return bool(await self._oneshot(lambda c: c.set(name, self.me, nx=True, ex=ttl)))
        except RedisError as e:
            raise BusError(f"redis bus at {self.public_url}: cannot claim {key!r}: {e}") from e

    async def broadcast(self, message: dict[str, Any]) -> None:
        """On the ``ended`` stream every process reads (so it arrives in order with the rest)."""
        text = json.dumps(message)
        key = f"{self.prefix}:ended"
        try:
            await self._oneshot(
                lambda c: c.xadd(key, {"control": text}, maxlen=ENDED_MAXLEN, approximate=True)
            )
        except RedisError as e:
            raise BusError(f"redis bus at {self.public_url}: cannot broadcast: {e}") from e

    def _control(self, raw: Any) -> None:
        hooks = self._hooks
        if hooks is None or hooks.control is None:
            return
        try:
            hooks.control(json.loads(raw))
        except Exception:
            log.exception("redis bus: a control message failed: %r", raw)

    def _key(self, step: str) -> str:
        key = self._keys.get(step)
        if key is None:
            key = self._keys[step] = f"{self.prefix}:q:{step}"
        return key

    def _read_steps(self) -> bool:
        """The steps consumed here, again; True when they changed."""
        source = self._steps_source
        steps = (source() if callable(source) else source) or []
        hosted = [(step, self._key(step)) for step in dict.fromkeys(steps)]
        changed = hosted != self._hosted
        self._hosted = hosted
        return changed

    # -- Redis unreachable -------------------------------------------------------------------

    def _trouble(self, what: str, e: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "redis bus at %s: %s failed (%s: %s); retrying",
                self.public_url,
                what,
                type(e).__name__,
                str(e).strip() or "no reason given",
            )

    def _fine(self) -> None:
        if self._down:
            self._down = False
            log.info("redis bus at %s: Redis answers again", self.public_url)

    async def _retry(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` until it works, with a growing pause while Redis fails."""
        pause = BACKOFF_S[0]
        while True:
            try:
                result = await fn()
            except RedisError as e:
                _cancelled_meanwhile()
                self._trouble(what, e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            _cancelled_meanwhile()
            self._fine()
            return result

    # -- publishing --------------------------------------------------------------------------

    def _append(self, op: tuple[Any, ...]) -> None:
        self._ops.append(op)
        self._appended += 1
        self._kick_commit.set()

    def publish(self, delivery: Delivery, delay: float = 0.0) -> None:
        self._unsent += 1
        if delay > 0:
            self._append((_DELAYED, delivery, _now() + delay))
        else:
            self._append((_PUB, delivery))

    def open_run(self, run: RunOpened, holds: int = 0) -> None:
        self._waiting.add(run.trace_id)
        self._append((_OPEN, run, holds))

    def release(self, trace_id: str) -> None:
        self._append((_RELEASE, trace_id))

    def note(self, trace_id: str, events: int = 0, errors: int = 0) -> None:
        self._append((_NOTE, trace_id, events, errors))

    def _done(self, delivery: Delivery, token: Any) -> None:
        """A delivery's handler returned: acknowledge it in the next commit."""
        self._held.pop(token, None)
        self._append((_ACK, token[0], token[1], delivery.event.trace_id))
        blocked = self._blocked_on
        if blocked and delivery.step in blocked and not self._unblocking:
            lanes = self._lanes
            assert lanes is not None
            if lanes.room(delivery.step) >= max(1, self._limit(delivery.step) // 2):
                self._unblocking = True  # the read waits without this step: end it early
                task = asyncio.get_running_loop().create_task(self._unblock())
                self._unblockers.add(task)
                task.add_done_callback(self._unblockers.discard)

    def _limit(self, step: str) -> int:
        limit = self._limits.get(step)
        if limit is None:
            limit = self._limits[step] = max(1, self._concurrency_of(step))
        return limit

    async def flush(self) -> None:
        if self._committed >= self._appended:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._flushes.append((self._appended, fut))
        self._kick_commit.set()
        await fut

    def pending(self) -> int:
        queued = self._lanes.queued() if self._lanes is not None else 0
        return queued + self._unsent

    async def owed(self, trace_ids: list[str]) -> set[str]:
        """The runs among these whose ledger is still in Redis (pending, or ended and not yet
        announced: their end is recorded before the hash goes)."""
        client = self._redis
        if client is None or not trace_ids:
            return set()

        async def exist() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for trace_id in trace_ids:
                    pipe.exists(f"{self.prefix}:run:{trace_id}")
                return list(await pipe.execute())

        found = await self._retry("reading the run ledger", exist)
        return {t for t, n in zip(trace_ids, found, strict=True) if n}

    # -- the committer -----------------------------------------------------------------------

    def _encode(self, ops: list[tuple[Any, ...]], commit_no: int) -> tuple[list[Any], bool]:
        xadds: list[Any] = []
        zadds: list[Any] = []
        requeues: list[Any] = []
        acks: list[Any] = []
        ledger: dict[str, list[Any]] = {}  # trace -> [opened run, delta, events, errors]
        key = self._key
        for op in ops:
            kind = op[0]
            if kind == _PUB:
                d = op[1]
                xadds += (key(d.step), d.to_json())
                trace = d.event.trace_id
            elif kind == _ACK:
                acks += (op[1], op[2], op[3])
                continue
            elif kind == _DELAYED:
                d = op[1]
                zadds += (
                    repr(op[2]),
                    f"{self._uid_prefix}{next(self._uids) & 0xFFFFFFFF:08x}{d.to_json()}",
                )
                trace = d.event.trace_id
            elif kind == _REQUEUE:
                requeues += (op[1], op[2], op[3])
                continue
            else:
                trace = op[1].trace_id if kind == _OPEN else op[1]
            entry = ledger.get(trace)
            if entry is None:
                entry = ledger[trace] = [None, 0, 0, 0]
            if kind in (_PUB, _DELAYED):
                entry[1] += 1
            elif kind == _OPEN:
                entry[0] = op[1]
                entry[1] += op[2]
            elif kind == _RELEASE:
                entry[1] -= 1
            else:
                entry[2] += op[2]
                entry[3] += op[3]
        argv: list[Any] = [self.prefix, self._committer, repr(_now()), RUN_TTL_S, commit_no]
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
                argv += (trace, 0, "", "", "", "", delta, events, errors)
            else:
                argv += (trace, 1, run.trigger, run.topic, repr(run.start), run.origin, delta)
                argv += (events, errors)
        return argv, bool(zadds)

    async def _commit_loop(self) -> None:
        await self._ended_ready.wait()  # ended runs are read from before anything commits
        script = self._scripts["commit"]
        while True:
            if self._inflight is None:  # else: one sent before, its reply never came: again
                while not self._ops:
                    self._kick_commit.clear()
                    await self._kick_commit.wait()
                ops = self._ops[:MAX_COMMIT_OPS]
                del self._ops[:MAX_COMMIT_OPS]
                publishes = sum(1 for op in ops if op[0] in (_PUB, _DELAYED))
                try:
                    argv, delayed = self._encode(ops, next(self._commits))
                except Exception:  # a bug: say so, and do not hold flush() forever
                    log.exception("redis bus: dropped %d operations it could not encode", len(ops))
                    argv, delayed = [], False
                self._inflight = (len(ops), publishes, argv, delayed)
            n_ops, publishes, argv, delayed = self._inflight
            # Sent again as it was (same commit number) if the reply is lost or this task is
            # cancelled meanwhile: Redis applies a commit once.
            result: Any = (
                await self._retry("commit", lambda: script(args=argv))  # noqa: B023
                if argv
                else [0]
            )
            self._inflight = None
            self._committed += n_ops
            self._unsent -= publishes
            self._resolve_flushes()
            if delayed:
                self._kick_mover.set()
            ended = [
                RunEnded(
                    _text(t), _text(trigger), _text(topic), float(start), float(end),
                    int(events), int(errors), _text(origin),
                )
                for t, trigger, topic, start, origin, events, errors, end in result[1:]
            ]  # fmt: skip
            if ended:
                self._ending += ended
                self._kick_announce.set()

    def _resolve_flushes(self) -> None:
        flushes = self._flushes
        while flushes and flushes[0][0] <= self._committed:
            _, fut = flushes.pop(0)
            if not fut.done():
                fut.set_result(None)

    # -- ended runs ----------------------------------------------------------------------------

    async def _announce_loop(self) -> None:
        while True:
            while not self._ending:
                self._kick_announce.clear()
                await self._kick_announce.wait()
            ended, self._ending = self._ending, []
            try:
                await self._end(ended)
            except BaseException:
                self._ending[:0] = ended  # cancelled: aclose() announces them
                raise

    async def _end(self, ended: list[RunEnded]) -> None:
        """Runs whose pending reached 0 here: recorded (the engine), then announced."""
        hooks = self._hooks
        if hooks is not None:
            try:
                await hooks.ended(ended)
            except Exception:
                log.exception("redis bus: recording the end of %d runs failed", len(ended))
        script = self._scripts["announce"]
        args: list[Any] = [self.prefix, ENDED_MAXLEN, *(e.trace_id for e in ended)]
        await self._retry("announcing ended runs", lambda: script(args=args))
        for e in ended:
            self._finished(e)

    def _finished(self, e: RunEnded) -> None:
        if e.trace_id in self._waiting:
            self._waiting.discard(e.trace_id)
            if self._hooks is not None:
                self._hooks.finished(e)

    async def _ended_loop(self) -> None:
        assert self._ended_reader is not None
        client = self._ended_reader
        key = f"{self.prefix}:ended"

        started = self._started_ms

        async def last_id() -> Any:
            """Where to read from: the stream's end, or, if it has grown since start() was
            called (a broadcast right after it), from then (a second early, for the clocks)."""
            last: Any = await client.xrevrange(key, "+", "-", count=1)
            end = _text(last[0][0]) if last else "0-0"
            ms, _, seq = end.partition("-")
            if (int(ms), int(seq or 0)) <= (started - 1000, 0):
                return end
            return f"{max(0, started - 1000)}-0"

        since: Any = await self._retry("reading ended runs", last_id)
        self._ended_ready.set()
        pause = BACKOFF_S[0]
        while True:
            try:
                got: Any = await client.xread({key: since}, count=1000, block=ENDED_BLOCK_MS)
            except RedisError as e:
                _cancelled_meanwhile()
                self._trouble("reading ended runs", e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            _cancelled_meanwhile()
            pause = BACKOFF_S[0]
            self._fine()
            for _stream, entries in got or []:
                for entry_id, fields in entries:
                    since = entry_id
                    if b"control" in fields:  # broadcast(): activate/deactivate ...
                        self._control(fields[b"control"])
                        continue
                    ended = self._run_ended(fields)
                    if ended is not None:
                        self._finished(ended)

    def _run_ended(self, fields: dict[Any, Any]) -> RunEnded | None:
        try:
            f = {_text(k): _text(v) for k, v in fields.items()}
            return RunEnded(
                f["trace_id"], f.get("trigger", ""), f.get("topic", ""),
                float(f.get("start", 0)), float(f.get("end", 0)), int(f.get("events", 0)),
                int(f.get("errors", 0)), f.get("origin", ""),
            )  # fmt: skip
        except (KeyError, ValueError) as e:
            log.error("redis bus: an unreadable ended-run entry (%s)", e)
            return None

    async def _recover_endings(self, older_than: float) -> None:
        """Runs that ended in a process that died before announcing them: announce them here."""
        assert self._redis is not None
        client, key = self._redis, f"{self.prefix}:ending"
        traces = await client.zrangebyscore(key, "-inf", repr(_now() - older_than), 0, 100)
        if not traces:
            return
        async with client.pipeline(transaction=False) as pipe:
            for t in traces:
                pipe.hgetall(f"{self.prefix}:run:{_text(t)}")
            hashes: Any = await pipe.execute()
        ended = []
        for t, h in zip(traces, hashes, strict=True):
            ended_run = self._run_ended({b"trace_id": t, **h})
            if ended_run is not None:
                ended.append(ended_run)
        if ended:
            await self._end(ended)

    # -- delayed deliveries ------------------------------------------------------------------

    async def _mover_loop(self) -> None:
        script = self._scripts["move"]
        limit = self.batch
        while True:
            moved, due = await self._retry(
                "moving delayed deliveries",
                lambda: script(args=[self.prefix, repr(_now()), limit]),
            )
            if moved >= limit:
                continue
            wait = MOVER_MAX_SLEEP_S
            if due is not None:
                wait = min(max(float(due) - _now(), 0.0), MOVER_MAX_SLEEP_S)
            self._kick_mover.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._kick_mover.wait()

    # -- consuming ---------------------------------------------------------------------------

    async def _create_groups(self) -> None:
        assert self._redis is not None
        async with self._redis.pipeline(transaction=False) as pipe:
            for _step, key in self._hosted:
                pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for r in results:
            if isinstance(r, ResponseError) and "BUSYGROUP" in str(r):
                continue
            if isinstance(r, Exception):
                raise r

    async def _read_loop(self) -> None:
        assert self._reader is not None and self._lanes is not None
        client, lanes = self._reader, self._lanes
        await self._retry("creating consumer groups", self._create_groups)
        pause = BACKOFF_S[0]
        while True:
            streams: dict[Any, Any] = {}
            full: set[str] = set()
            most = 0
            for step, key in self._hosted:
                room = lanes.room(step)
                if room > 0:
                    streams[key] = ">"
                    most = max(most, room)
                else:
                    full.add(step)
            if not streams:  # every lane is full: wait for room, not for Redis
                lanes.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BLOCK_MS / 1000):
                        await lanes.changed.wait()
                continue
            try:
                if self._reader_id is None:
                    self._reader_id = await client.client_id()
                self._read_no += 1
                self._read_at = asyncio.get_running_loop().time()
                self._blocked_on = full or None
                self._unblocking = False
                got: Any = await client.xreadgroup(
                    GROUP, self.me, streams, count=min(most, self.batch), block=BLOCK_MS
                )
            except ResponseError as e:
                _cancelled_meanwhile()
                self._blocked_on = None
                if "NOGROUP" in str(e):  # Redis lost the groups (restarted without its data)
                    await self._retry("creating consumer groups", self._create_groups)
                    continue
                self._trouble("reading deliveries", e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            except RedisError as e:
                _cancelled_meanwhile()
                self._blocked_on = None
                self._reader_id = None
                self._trouble("reading deliveries", e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            self._blocked_on = None
            _cancelled_meanwhile()  # what it read returns to others after the timeout
            pause = BACKOFF_S[0]
            self._fine()
            for stream, entries in got or []:
                for entry_id, fields in entries:
                    await self._take(stream, entry_id, fields.get(b"d"), 1)

    async def _take(self, stream: bytes, entry_id: bytes, body: bytes | None, tries: int) -> None:
        """An entry read or claimed here: to its lane, or, delivered too often, to poison."""
        lanes = self._lanes
        assert lanes is not None
        token = (stream, entry_id)
        if token in self._held:
            return  # claimed again while it waits or runs here (a heartbeat came too late)
        try:
            if body is None:
                raise ValueError("no field 'd'")
            delivery = Delivery.from_json(body)
        except (ValueError, KeyError, TypeError) as e:
            log.error(
                "redis bus: dropped an unreadable entry %s of %s (%s)",
                _text(entry_id),
                _text(stream),
                e,
            )
            self._append((_ACK, stream, entry_id, ""))
            return
        if tries > self.max_deliveries:
            if self._hooks is not None:
                try:
                    await self._hooks.poisoned(delivery, tries - 1)
                except Exception:  # acknowledged all the same: poison must not block the stream
                    log.exception(
                        "redis bus: recording poison delivery %s failed", delivery.event.id
                    )
            self._append((_ACK, stream, entry_id, delivery.event.trace_id))
            return
        self._held[token] = body
        lanes.put(delivery, token)

    async def _unblock(self) -> None:
        """End the reader's wait in Redis (it waits without a step that has room again). A read
        that finds entries is back within a millisecond or two: only one still out after that
        is unblocked, so a busy reader is not sent an UNBLOCK per read."""
        assert self._redis is not None
        loop = asyncio.get_running_loop()
        read = self._read_no
        try:
            for attempt in range(1, 6):
                delay = self._read_at + UNBLOCK_AFTER_S * attempt - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                reader_id = self._reader_id
                if self._read_no != read or self._blocked_on is None or reader_id is None:
                    return  # that read is over
                if await self._redis.client_unblock(reader_id):
                    return
        except RedisError:
            pass  # the read ends on its own within a second

    # -- upkeep: heartbeats, dead workers' entries, unannounced ends ----------------------------

    async def _upkeep_loop(self) -> None:
        vt = self.visibility_timeout_s
        beat_every, claim_every = vt / 3, vt / 2
        now = time.monotonic()
        next_beat, next_claim = now + beat_every, now
        first = True
        while True:
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + beat_every
                if self._held:
                    await self._retry("renewing deliveries", self._heartbeat)
            if now >= next_claim:
                next_claim = now + claim_every
                if self._read_steps() and "read" in self._tasks:
                    await self._retry("creating consumer groups", self._create_groups)
                elif self._hosted and "read" not in self._tasks:
                    self._spawn("read", self._read_loop)
                if self._hosted:
                    await self._retry("claiming deliveries of dead workers", self._reclaim)
                if self._hooks is not None:
                    older = 0.0 if first else vt
                    await self._retry(
                        "announcing ended runs",
                        lambda: self._recover_endings(older),  # noqa: B023
                    )
                first = False
            await asyncio.sleep(max(0.0, min(next_beat, next_claim) - time.monotonic()))

    async def _heartbeat(self) -> None:
        by_stream: dict[bytes, list[bytes]] = {}
        for stream, entry_id in self._held:
            by_stream.setdefault(stream, []).append(entry_id)
        args: list[Any] = [self.me]
        for stream, ids in by_stream.items():
            args += (stream, len(ids), *ids)
        await self._scripts["heartbeat"](args=args)

    async def _reclaim(self) -> None:
        idle_ms = int(self.visibility_timeout_s * 1000)
        keys = [key for _step, key in self._hosted]
        script = self._scripts["reclaim"]
        for i in range(0, len(keys), 500):
            got = await script(args=[self.me, idle_ms, self.batch, *keys[i : i + 500]])
            for stream, entry_id, body, tries in got:
                await self._take(stream, entry_id, body or None, int(tries))

    # -- stopping ----------------------------------------------------------------------------

    def _give_back(self) -> None:
        """What was read here and not started goes back to its stream for anyone."""
        if self._lanes is None:
            return
        for _delivery, token in self._lanes.clear():
            body = self._held.pop(token, None)
            if body is not None:
                self._append((_REQUEUE, token[0], token[1], body))

    def abandon(self) -> None:
        """Stop at once: cancel what runs here (it returns after the visibility timeout), give
        back what was read and not started; what is in Redis stays for the next process."""
        self._give_back()
        if self._lanes is not None:
            self._lanes.cancel_now()
        self._held.clear()
        self._waiting.clear()  # the engine forgets its runs too
        for name, task in list(self._tasks.items()):
            if name != "commit":
                task.cancel()
                self._stopping.add(task)  # aclose() waits for them
                task.add_done_callback(self._stopping.discard)
                del self._tasks[name]
        for task in self._unblockers:
            task.cancel()
        self._blocked_on = None
        self._loop = None  # start() begins afresh; the committer writes the buffer meanwhile

    async def aclose(self) -> None:
        # Stop taking work, then give back what was read and not started (the engine drained
        # what runs), commit the buffer, announce what ended here, and close the connections.
        stopping = [self._tasks.pop(name) for name in ("read", "upkeep") if name in self._tasks]
        for task in stopping:
            task.cancel()
        await self._end_blocked_reads()
        await _cancelled(stopping)
        self._give_back()
        if self._lanes is not None:
            await self._lanes.cancel()
        commit = self._tasks.pop("commit", None)
        others = [*self._tasks.values(), *self._unblockers, *self._stopping]
        for task in others:
            task.cancel()
        await self._end_blocked_reads()
        await _cancelled(others)
        self._tasks.clear()
        if commit is not None and self._redis is not None:
            try:
                async with asyncio.timeout(10):
                    await self.flush()
                    if self._ending:  # ended here and not announced yet
                        ended, self._ending = self._ending, []
                        await self._end(ended)
                    if self._hosted:
                        keys = [key for _step, key in self._hosted]
                        await self._scripts["forget"](args=[self.me, *keys])
            except (TimeoutError, RedisError):
                left = len(self._ops) + (self._inflight[0] if self._inflight else 0)
                if left:
                    log.warning(
                        "redis bus at %s: closed with %d operations not committed (Redis is "
                        "unreachable)",
                        self.public_url,
                        left,
                    )
        if commit is not None:
            await _cancelled([commit])
        for client in (self._redis, self._reader, self._ended_reader):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._redis = self._reader = self._ended_reader = None
        self._redis_loop = None
        self._held.clear()
        self._lanes = None
        self._loop = None

    async def _end_blocked_reads(self) -> None:
        """Close the readers' connections: a blocking read ends at once (redis-py may let one
        that is cancelled wait out its BLOCK time)."""
        for client in (self._reader, self._ended_reader):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.connection_pool.disconnect()


async def _cancelled(tasks: list[asyncio.Task[None]], timeout: float = 5.0) -> None:
    """Cancel ``tasks`` and wait for them to end (a few seconds at most)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=timeout)
    for task in stuck:
        log.warning("redis bus: task %s did not stop when cancelled", task.get_name())
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("redis bus: task %s failed", task.get_name(), exc_info=task.exception())
