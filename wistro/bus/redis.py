"""The Redis bus: deliveries in Redis Streams, shared by every process (on any machine) that
uses the same Redis and key prefix (``redis.prefix``: one project and environment).

Its parts, one module each:

* ``redis`` (this one): ``RedisBus``: starting, publishing, the committer, the delayed
  deliveries' mover, the upkeep task, stopping.
* ``redis_keys``: the key layout (a stream per step, the delayed set, the run ledger ...).
* ``redis_scripts``: the Lua scripts, and the numbering and encoding of a commit.
* ``redis_base``: the state and connections the parts share, retrying while Redis is unreachable.
* ``redis_consumer``: reading, taking, acknowledging and keeping deliveries; dead workers' ones.
* ``redis_ended``: the ends of runs (recorded, announced once, heard where the run was opened)
  and the control messages (``broadcast``).

Group commit. ``publish`` never blocks: it appends to a buffer and wakes the committer task, which
writes everything buffered in one atomic script (``XADD`` of each delivery, ``ZADD`` of the
delayed ones, the ledger, and the acknowledgements ``XACK`` + ``XDEL``). The entries a handler
published are in its acknowledgement's commit or an earlier one, so a process that dies leaves no
half-done hop: a handler whose acknowledgement never committed runs again, and publishes again
(at-least-once). ``flush`` returns once the buffer as of the call is committed (durable as far as
Redis's persistence goes: ``appendfsync``). A script rather than ``MULTI``/``EXEC`` because a
commit must be idempotent: each one carries an id, and a commit sent again after a connection lost
on its way (Redis may have applied it) does nothing the second time.

Stopping. ``abandon`` stops consuming at once and cancels what runs here; the entries it read but
had not started go back to their streams at once, those it was running return after the
visibility timeout; what is in Redis stays for the others. ``aclose`` (the engine drains first)
stops the tasks, returns what was read and not started, commits the buffer and closes the
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from wistro.bus.base import (
    BusHooks,
    ConcurrencyOf,
    Deliver,
    Delivery,
    RunEnded,
    RunOpened,
    WorkerInfo,
)
from wistro.bus.lanes import Lanes
from wistro.bus.redis_base import as_text
from wistro.bus.redis_consumer import RedisConsumer
from wistro.bus.redis_ended import RedisEnded
from wistro.bus.redis_scripts import DELAYED, NOTE, OPEN, PUB, RELEASE
from wistro.errors import BusError

log = logging.getLogger("wistro.bus")
_now = time.time
LIVE_S = 6.0  # a registered worker not heard from for this long is not live

MOVER_MAX_SLEEP_S = 1.0  # the mover looks at the delayed set at least this often
MAX_COMMIT_OPS = 2048  # operations per commit script


class RedisBus(RedisConsumer, RedisEnded):
    """Deliveries in Redis Streams under ``prefix``; ``steps`` are the steps this process
    consumes (a list, or a function returning one, read at start and at each upkeep; None:
    publish only)."""

    name = "redis"
    shared = True
    durable = True

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

    # -- claims ------------------------------------------------------------------------------

    async def claim(self, key: str, ttl_s: float) -> bool:
        """``SET NX`` with the claim's lifetime: the first process to claim ``key`` gets it."""
        name = self._keys.claim(key)
        ttl = max(1, int(ttl_s))
        try:
            return bool(await self._oneshot(lambda c: c.set(name, self.me, nx=True, ex=ttl)))
        except RedisError as e:
            raise BusError(f"redis bus at {self.public_url}: cannot claim {key!r}: {e}") from e

    # -- versions ----------------------------------------------------------------------------

    async def register(self, info: WorkerInfo | None) -> None:
        old, self._worker_info = self._worker_info, info
        try:
            if info is None and old is not None:
                await self._oneshot(lambda c: c.hdel(self._keys.workers, old.worker))
            elif info is not None:
                await self._beat()
        except RedisError as e:
            raise BusError(f"redis bus at {self.public_url}: cannot register: {e}") from e

    async def _beat(self) -> None:
        info = self._worker_info
        if info is not None:
            text = json.dumps({**info.to_dict(), "seen": _now()})
            await self._oneshot(lambda c: c.hset(self._keys.workers, info.worker, text))

    async def workers(self) -> list[WorkerInfo]:
        raw = await self._oneshot(lambda c: c.hgetall(self._keys.workers))
        now, out, stale = _now(), [], []
        for field, text in raw.items():
            info = WorkerInfo.from_dict(json.loads(text))
            if info.seen >= now - LIVE_S:
                out.append(info)
            elif info.seen < now - 86_400:
                stale.append(field)
        if stale:
            await self._oneshot(lambda c: c.hdel(self._keys.workers, *stale))
        return sorted(out, key=lambda w: w.worker)

    async def set_traffic(self, split: dict[str, Any] | None) -> None:
        key = self._keys.traffic
        if split is None:
            await self._oneshot(lambda c: c.delete(key))
        else:
            await self._oneshot(lambda c: c.set(key, json.dumps(split)))

    async def traffic(self) -> dict[str, Any] | None:
        text = await self._oneshot(lambda c: c.get(self._keys.traffic))
        return json.loads(text) if text else None

    # -- publishing --------------------------------------------------------------------------

    def publish(self, delivery: Delivery, delay: float = 0.0) -> None:
        self._unsent += 1
        if delay > 0:
            self._append((DELAYED, delivery, _now() + delay))
        else:
            self._append((PUB, delivery))

    def open_run(self, run: RunOpened, holds: int = 0) -> None:
        self._waiting.add(run.trace_id)
        self._append((OPEN, run, holds))

    def release(self, trace_id: str) -> None:
        self._append((RELEASE, trace_id))

    def note(self, trace_id: str, events: int = 0, errors: int = 0) -> None:
        self._append((NOTE, trace_id, events, errors))

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
                    pipe.exists(self._keys.run(trace_id))
                return list(await pipe.execute())

        found = await self._retry("reading the run ledger", exist)
        return {t for t, n in zip(trace_ids, found, strict=True) if n}

    # -- the committer -----------------------------------------------------------------------

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
                publishes = sum(1 for op in ops if op[0] in (PUB, DELAYED))
                try:
                    argv, delayed = self._encoder.encode(ops)
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
                    as_text(t), as_text(trigger), as_text(topic), float(start), float(end),
                    int(events), int(errors), as_text(origin), as_text(version) or None,
                )
                for t, trigger, topic, start, origin, events, errors, end, version in result[1:]
            ]  # fmt: skip
            if ended:
                self._end(ended)

    def _resolve_flushes(self) -> None:
        flushes = self._flushes
        while flushes and flushes[0][0] <= self._committed:
            _, fut = flushes.pop(0)
            if not fut.done():
                fut.set_result(None)

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

    # -- upkeep: heartbeats, dead workers' entries, unannounced ends ----------------------------

    async def _upkeep_loop(self) -> None:
        vt = self.visibility_timeout_s
        beat_every, claim_every = vt / 3, vt / 2
        now = time.monotonic()
        next_beat, next_claim, next_seen = now + beat_every, now, now + LIVE_S / 3
        first = True
        while True:
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + beat_every
                if self._held:
                    await self._retry("renewing deliveries", self._heartbeat)
            if now >= next_seen:
                next_seen = now + LIVE_S / 3
                await self._retry("registering this worker", self._beat)
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
            wake = min(next_beat, next_claim, next_seen)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    # -- stopping ----------------------------------------------------------------------------

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
                        ending, self._ending = self._ending, []
                        await self._announce(ending)
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
