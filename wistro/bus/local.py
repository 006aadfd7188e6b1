"""The local bus: durable deliveries in a SQLite journal under ``.wistro/`` (``journal``), shared
by every process of the project on this machine (``wistro start``, ``wistro worker`` ...).

- ``publish`` never blocks: it appends to a buffer that one committer task writes in a single
  transaction per batch (group commit); ``flush`` returns once what was published is committed.
  A delivery whose step runs here and has room is leased to this process as it is written, and
  starts at once, without a round trip through the journal.
- A delivery is acknowledged (its row deleted) when its handler has returned, in a batch after
  what the handler published: a process killed mid-delivery leaves the row leased, and the next
  process takes it again (at-least-once). Leases of live workers are renewed; those of processes
  of this machine that are gone are freed at once; any lease also ends after ``lease_s``.
- The run ledger lives in the journal too (``runs``), changed in the same transactions, so
  whichever process settles a run's last delivery ends it; it is forgotten there only once the
  trace store has its end (a process killed in between leaves it for the next to end again).
  Processes waiting for a run learn of its end from the ``ended`` table when a wake-up
  (``wake``) or their fallback timer tells them.
- A delivery taken more than ``max_deliveries`` times (every worker running it died) is handed to
  the engine as poison (dead-lettered) and acknowledged, so it never blocks the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from wistro.bus.base import (
    BusHooks,
    ConcurrencyOf,
    Deliver,
    Delivery,
    EventBus,
    RunOpened,
    WorkerInfo,
)
from wistro.bus.journal import ACK, ANNOUNCE, INSERT, NOTE, OPEN, RELEASE, UNLEASE, Busy, Journal
from wistro.bus.lanes import Lanes
from wistro.bus.local_commit import IDLE_S, Committer
from wistro.bus.wake import Waker
from wistro.processes import gone_here, worker_name

log = logging.getLogger("wistro.bus")
T = TypeVar("T")
_now = time.time
FALLBACK_S = 1.0  # look at the journal at least this often while there is anything to look for
KEEP_S = 2.0  # renew leases and look for dead processes' deliveries at least this often
LIVE_S = 3 * KEEP_S  # a registered worker not heard from for this long is not live


class LocalBus(Committer, EventBus):
    name = "local"
    shared = True
    durable = True

    def __init__(
        self,
        path: str | Path,
        steps: Callable[[], list[str] | None] | None = None,
        consume: bool = True,
        lease_s: float = 30.0,
        max_deliveries: int = 10,
        prefetch: int = 512,
    ) -> None:
        self.path = Path(path)
        self._steps = steps or (lambda: None)  # the steps this process takes (None: any)
        self.consume = consume
        self.lease_s = lease_s
        self.max_deliveries = max_deliveries
        self.prefetch = prefetch
        self.worker = worker_name()  # what spans and runs name
        self.me = f"{self.worker}/{os.urandom(3).hex()}"  # this bus's leases (one per instance)
        self._uids = itertools.count(1)
        self._uid_prefix = os.urandom(6).hex()
        self._ops: list[tuple[Any, ...]] = []
        self._published = 0  # operations appended, ever
        self._committed = 0  # operations committed, ever
        self._flushes: list[asyncio.Future[None]] = []  # full flushes: wait for a full batch
        self._run_flushes: list[tuple[str, asyncio.Future[None]]] = []  # flush_run
        self._lazy_since = 0.0  # when the oldest operation no commit has taken was appended
        self._waiting: set[str] = set()  # runs started here whose end we wait for
        self._ended_seq = 0
        self._control_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._journal: Journal | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lanes: Lanes | None = None
        self._hooks: BusHooks | None = None
        self._waker: Waker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._kick_commit = asyncio.Event()
        self._kick_take = asyncio.Event()
        self._hosted_cache: tuple[Any, set[str] | None] = (object(), None)
        self._announced_elsewhere = 0
        # ends waiting for the trace store before they are announced, and the task that waits
        self._to_announce: list[tuple[Awaitable[None] | None, list[tuple[Any, ...]]]] = []
        self._announcer: asyncio.Task[None] | None = None
        self._inline_commits = 0
        self._idle_only = True  # every buffered operation announces a run waited for here
        self._idle_timer: asyncio.TimerHandle | None = None
        self._plain = True  # also take unversioned deliveries (until none is left)
        self._checkpointing: asyncio.Future[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(
        self, deliver: Deliver, concurrency_of: ConcurrencyOf, hooks: BusHooks | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        for task in self._tasks:  # left by abandon(), or on a loop that is gone
            task.cancel()
        self._announcer, self._to_announce = None, []  # the journal keeps those runs ended
        self._loop = loop
        self._hooks = hooks
        self._open()
        self._lanes = Lanes(deliver, concurrency_of, self._done)
        self._kick_commit = asyncio.Event()
        self._kick_take = asyncio.Event()
        if self._ops:  # published before start
            self._kick_commit.set()
        self._waker = Waker(self.path)
        self._waker.open()
        self._tasks = [
            loop.create_task(self._commit_loop(), name="wistro-bus-commit"),
            loop.create_task(self._watch_loop(), name="wistro-bus-watch"),
            loop.create_task(self._keep_loop(), name="wistro-bus-keep"),
        ]
        if self.consume:
            self._tasks.append(loop.create_task(self._take_loop(), name="wistro-bus-take"))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- publishing --------------------------------------------------------------------------

    def _append(self, op: tuple[Any, ...]) -> None:
        if not self._ops:
            self._lazy_since = time.monotonic()
        self._ops.append(op)
        self._published += 1
        if op[0] == ANNOUNCE and op[2]:  # a run waited for here: nobody waits for this
            if self._idle_timer is None and self._loop is not None:
                self._idle_timer = self._loop.call_later(IDLE_S, self._idle_due)
            return
        self._idle_only = False
        self._kick_commit.set()

    def _hosts(self, step: str) -> bool:
        steps = self._steps()
        if steps is None:
            return True
        cached_for, hosted = self._hosted_cache
        if cached_for is not steps:
            hosted = set(steps)
            self._hosted_cache = (steps, hosted)
        return hosted is not None and step in hosted

    def publish(self, delivery: Delivery, delay: float = 0.0) -> None:
        now = _now()  # uids sort in the order of arrival (the journal takes the oldest first)
        uid = f"{int(now * 1e6):014x}{self._uid_prefix}{next(self._uids):x}"
        body = delivery  # encoded at commit, and only if not acknowledged within its batch
        lanes = self._lanes
        step, trace_id, version = delivery.step, delivery.event.trace_id, delivery.version
        queue = _queue(delivery)
        if (
            delay <= 0
            and self.consume
            and lanes is not None
            and (version is None or version == self.version)
            and lanes.room(step) > 0
            and self._hosts(step)
        ):  # runs here, now: leased to this process as it is written
            self._append((INSERT, uid, queue, trace_id, body, 0.0, now + self.lease_s, self.me, 1))
            lanes.put(delivery, uid)
            return
        due = now + delay if delay > 0 else 0.0
        self._append((INSERT, uid, queue, trace_id, body, due, 0.0, None, 0))

    def _done(self, delivery: Delivery, uid: Any) -> None:
        self._append((ACK, uid, delivery.event.trace_id, _queue(delivery)))

    def open_run(self, run: RunOpened, holds: int = 0) -> None:
        self._waiting.add(run.trace_id)  # opened by this process's engine: it waits for it
        self._append((OPEN, run, holds))

    def release(self, trace_id: str) -> None:
        self._append((RELEASE, trace_id))

    def note(self, trace_id: str, events: int = 0, errors: int = 0) -> None:
        self._append((NOTE, trace_id, events, errors))

    async def flush(self) -> None:
        if self._committed >= self._published:
            return
        assert self._loop is not None
        fut = self._loop.create_future()
        self._flushes.append(fut)
        self._kick_commit.set()
        await fut

    async def flush_run(self, trace_id: str) -> None:
        """Commit this run's operations now, the others' in the next full batch: an emit is
        accepted after a commit of its own few rows, while the hops of the runs in flight keep
        coalescing (a delivery published and acknowledged within one batch costs no row)."""
        if self._committed >= self._published:
            return
        assert self._loop is not None
        fut = self._loop.create_future()
        self._run_flushes.append((trace_id, fut))
        self._kick_commit.set()
        await fut

    async def owed(self, trace_ids: list[str]) -> set[str]:
        if self._journal is None:
            return set()
        return await self._run(self._journal.owed, trace_ids)

    def pending(self) -> int:
        queued = self._lanes.queued() if self._lanes else 0
        return queued + sum(1 for op in self._ops if op[0] == INSERT and op[7] is None)

    # -- runs that end elsewhere -------------------------------------------------------------

    async def _watch_loop(self) -> None:
        assert self._journal is not None and self._waker is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FALLBACK_S):
                    await self._waker.event.wait()
            self._waker.event.clear()
            self._kick_take.set()
            await self._read_control()
            if not self._waiting:
                continue
            try:
                seq, ended = await self._run(self._journal.ended_since, self._ended_seq)
            except Exception as err:
                log.warning("local bus %s: cannot read ended runs (%s)", self.path, err)
                continue
            self._ended_seq = seq
            for run in ended:
                if run.trace_id in self._waiting:
                    self._waiting.discard(run.trace_id)
                    if self._hooks is not None:
                        self._hooks.finished(run)

    # -- claims and control ----------------------------------------------------------------

    def _open(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.path)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="wistro-bus")
            self._ended_seq = self._journal.last_ended()
            self._control_seq = self._journal.last_control()
        return self._journal

    async def claim(self, key: str, ttl_s: float) -> bool:
        return await self._run(self._open().claim, key, self.me, _now(), ttl_s)

    async def broadcast(self, message: dict[str, Any]) -> None:
        await self._run(self._open().post_control, json.dumps(message), _now())
        if self._waker is not None:
            self._waker.wake_others()
            self._waker.event.set()  # this process reads it too (in order, with the others)
        else:  # a process that only broadcasts (the CLI): wake the ones that listen
            waker = Waker(self.path)
            waker.open()
            waker.wake_others()
            waker.close()

    async def _read_control(self) -> None:
        assert self._journal is not None
        try:
            seq, messages = await self._run(self._journal.control_since, self._control_seq)
        except Exception as e:
            log.warning("local bus %s: cannot read control messages (%s)", self.path, e)
            return
        self._control_seq = seq
        hooks = self._hooks
        for text in messages:
            if hooks is not None and hooks.control is not None:
                try:
                    hooks.control(json.loads(text))
                except Exception:
                    log.exception("local bus %s: control message %s failed", self.path, text)

    # -- versions ----------------------------------------------------------------------------

    async def register(self, info: WorkerInfo | None) -> None:
        journal = self._open()
        if info is None and self._worker_info is not None:
            await self._run(journal.unregister, self._worker_info.worker)
        elif info is not None:
            await self._run(journal.register, info.worker, json.dumps(info.to_dict()), _now())
        self._worker_info = info

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._run(self._open().workers, _now() - LIVE_S)
        out = []
        for text, seen in rows:
            info = WorkerInfo.from_dict({**json.loads(text), "seen": seen})
            if not gone_here(info.worker):
                out.append(info)
        return out

    async def set_traffic(self, split: dict[str, Any] | None) -> None:
        value = json.dumps(split) if split is not None else None
        await self._run(self._open().set_setting, "traffic", value)

    async def traffic(self) -> dict[str, Any] | None:
        text = await self._run(self._open().setting, "traffic")
        return json.loads(text) if text else None

    # -- taking deliveries -------------------------------------------------------------------

    async def _take_loop(self) -> None:
        assert self._journal is not None and self._lanes is not None
        journal, lanes = self._journal, self._lanes
        while True:
            steps = self._steps()
            room: dict[str, int] | None = None
            queues: list[str] | None = None
            if steps is not None:  # what each hosted step has room for: never more
                room, queues = self._room(steps)
                limit = sum(room.values())
            else:
                limit = max(0, self.prefetch - lanes.busy())
            rows: list[tuple[str, str, str, int]] = []
            if limit > 0:
                try:
                    try:
                        rows = journal.take(room, limit, self.me, _now(), self.lease_s, True)
                    except Busy:
                        rows = await self._run(
                            journal.take, room, limit, self.me, _now(), self.lease_s
                        )
                except Exception as e:
                    log.warning("local bus %s: cannot take deliveries (%s)", self.path, e)
                if self._plain and steps and not any(r[1] in steps for r in rows):
                    self._plain = False  # no unversioned deliveries left (an older journal's)
                for uid, queue, body, tries in rows:
                    await self._dispatch(uid, queue, body, tries)
            # Took all it had room for: there may be more, to take as soon as room frees up.
            backlog = bool(rows) and len(rows) >= limit
            if steps is not None and not backlog and room:
                backlog = any(lanes.room(step) == 0 for step in steps)
            timeout = FALLBACK_S
            if not backlog:
                with contextlib.suppress(Exception):
                    due = await self._run(journal.next_due, queues, _now())
                    if due is not None:
                        timeout = min(max(due - _now(), 0.002), FALLBACK_S)
            self._kick_take.clear()
            waits = [asyncio.ensure_future(self._kick_take.wait())]
            if backlog or limit <= 0:
                lanes.changed.clear()
                waits.append(asyncio.ensure_future(lanes.changed.wait()))
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    def _room(self, steps: list[str]) -> tuple[dict[str, int], list[str]]:
        """What each hosted step has room for, by queue (this version's; unversioned ones too
        while an older journal may hold some); and every queue this process takes from."""
        room: dict[str, int] = {}
        queues: list[str] = []
        version, lanes = self.version, self._lanes
        assert lanes is not None
        for step in steps:
            names = [step] if version is None else [f"{step}@{version}"]
            if version is not None and self._plain:
                names.append(step)
            queues += names
            n = lanes.room(step)
            if n > 0:
                for name in names:
                    room[name] = n
        return room, queues

    async def _dispatch(self, uid: str, queue: str, body: str, tries: int) -> None:
        assert self._lanes is not None
        try:
            delivery = Delivery.from_json(body)
        except (ValueError, KeyError, TypeError) as e:
            log.error("local bus %s: dropped an unreadable delivery %s (%s)", self.path, uid, e)
            self._append((ACK, uid, "", queue))
            return
        if tries > self.max_deliveries:
            if self._hooks is not None:
                await self._hooks.poisoned(delivery, tries - 1)
            self._done(delivery, uid)
            return
        self._lanes.put(delivery, uid)

    async def _keep_loop(self) -> None:
        """Renew this process's leases; free those of dead processes; end their orphan runs."""
        assert self._journal is not None
        journal = self._journal
        first = True
        while True:
            try:
                if await self._run(journal.free_dead_owners, self.me):
                    self._kick_take.set()
                orphans = await self._run(journal.end_orphans, _now())
                if first:
                    orphans += await self._run(journal.unannounced)
                    first = False
                if orphans:
                    self._end(orphans)
                await self._run(journal.renew, self.me, _now(), self.lease_s)
                if self._worker_info is not None:
                    await self._run(journal.heartbeat, self._worker_info.worker, _now())
                await self._run(journal.checkpoint)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("local bus %s: lease upkeep failed (%s)", self.path, e)
            await asyncio.sleep(min(self.lease_s / 3, KEEP_S))

    # -- stopping ----------------------------------------------------------------------------

    def abandon(self) -> None:
        """Stop taking and running here at once; what is pending stays for the next process."""
        if self._lanes is not None:
            for delivery, uid in self._lanes.clear():
                self._append((UNLEASE, uid, _queue(delivery)))
            self._lanes.cancel_now()  # what ran here is taken again once its lease ends
        if self._announcer is not None:  # the journal keeps them ended: ended again later
            self._announcer.cancel()
            self._announcer = None
        self._to_announce = []
        for task in self._tasks:
            if task.get_name() != "wistro-bus-commit":
                task.cancel()
        self._tasks = [t for t in self._tasks if t.get_name() == "wistro-bus-commit"]
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        self._loop = None  # start() begins afresh; the committer writes the UNLEASEs meanwhile

    async def aclose(self) -> None:
        if self._loop is None:  # never started (a process that only broadcast)
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            return
        if self._lanes is not None:
            for delivery, uid in self._lanes.clear():  # taken, not started: free them now
                self._append((UNLEASE, uid, _queue(delivery)))
            await self._lanes.cancel()
        commit = [t for t in self._tasks if t.get_name() == "wistro-bus-commit"]
        for task in self._tasks:
            if task not in commit:
                task.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                if self._announcer is not None:  # ends waiting for the trace store
                    await self._announcer
                await self.flush()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._waker is not None:
            self._waker.close()
        if self._journal is not None:
            journal, self._journal = self._journal, None
            await self._run(journal.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._loop = None


def _queue(delivery: Delivery) -> str:
    """Where a delivery waits: its step's queue for its version (each version's workers take
    their own), or the step's unversioned one."""
    version = delivery.version
    return delivery.step if version is None else f"{delivery.step}@{version}"
