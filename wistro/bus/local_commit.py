"""The local bus's committer: one task that writes what ``publish``, acknowledgements and the
run ledger buffered, in one transaction per batch (group commit).

- An emit waits (``flush_run``) for a commit of its own run's operations only; the rest keeps
  coalescing for up to ``COALESCE_S`` while handlers still add operations (a chain runs a hop per
  loop iteration), so a delivery published and acknowledged within one batch costs no row.
- Committing all of a run's operations, and none of another's, keeps every acknowledgement after
  what its handler published: both belong to one run.
- Announcements of runs waited for in this process need no hurry: they ride the next commit, or
  one ``IDLE_S`` later.
- Small batches commit on the event loop through the journal's connection that never waits
  (and never checkpoints: the bus's thread does, every ``CHECKPOINT_EVERY`` commits); a larger
  one, or one that finds the journal busy, on the bus's thread.

``LocalBus`` mixes this in; it only touches the bus's own attributes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from wistro.bus.base import BusHooks, Delivery, RunEnded, recorded
from wistro.bus.journal import ACK, ANNOUNCE, INSERT, NOTE, OPEN, RELEASE, Busy, Journal
from wistro.bus.lanes import Lanes
from wistro.bus.wake import Waker

log = logging.getLogger("wistro.bus")
_now = time.time
# A batch this small is committed on the event loop (a few µs per operation, no thread hop of
# ~100 µs); larger ones, and any batch that finds the journal busy, on the bus's thread.
INLINE_MAX = 2_000
COALESCE_S = 0.002  # a commit waits at most this long for a burst of operations to end
IDLE_S = 0.05  # announcements of runs waited for here wait this long for a commit to join
CHECKPOINT_EVERY = 200  # commits on the loop between two checkpoints on the bus's thread


class Committer:
    """Mixed into ``LocalBus``: the committer task and what it needs."""

    # the LocalBus attributes this part uses
    path: Any
    consume: bool
    version: str | None
    _ops: list[tuple[Any, ...]]
    _published: int
    _committed: int
    _flushes: list[asyncio.Future[None]]
    _run_flushes: list[tuple[str, asyncio.Future[None]]]
    _lazy_since: float
    _idle_only: bool
    _idle_timer: asyncio.TimerHandle | None
    _inline_commits: int
    _checkpointing: asyncio.Future[None] | None
    _announced_elsewhere: int  # announcements not committed yet of runs not waited for here
    _to_announce: list[tuple[Awaitable[None] | None, list[tuple[Any, ...]]]]
    _announcer: asyncio.Task[None] | None
    _waiting: set[str]
    _loop: asyncio.AbstractEventLoop | None
    _journal: Journal | None
    _executor: Any
    _lanes: Lanes | None
    _hooks: BusHooks | None
    _waker: Waker | None
    _kick_commit: asyncio.Event
    _kick_take: asyncio.Event

    _hosts: Callable[[str], bool]
    _run: Callable[..., Awaitable[Any]]
    _append: Callable[[tuple[Any, ...]], None]

    # -- the committer -----------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        assert self._journal is not None
        backoff = 0.05
        while True:
            await self._kick_commit.wait()
            self._kick_commit.clear()
            while self._ops:
                if self._idle_only and not self._flushes and not self._run_flushes:
                    break  # only announcements of runs waited for here: the next commit, or
                    # ``IDLE_S`` from now, carries them
                await self._coalesce()
                full = bool(self._flushes) or not self._run_flushes or self._lazy_due()
                if full:  # everything, so also what every flush waits for
                    ops, self._ops = self._ops, []
                    self._idle_only = True
                    flushes, self._flushes = self._flushes, []
                    runs, self._run_flushes = self._run_flushes, []
                else:  # only emits wait: commit their runs' operations, the rest coalesces
                    runs, self._run_flushes = self._run_flushes, []
                    ops, self._ops = _split({trace_id for trace_id, _ in runs}, self._ops)
                    self._idle_only = all(op[0] == ANNOUNCE and op[2] for op in self._ops)
                    flushes = []
                try:
                    ended = await self._commit(ops) if ops else []
                except asyncio.CancelledError:
                    self._requeue(ops, flushes, runs)
                    raise
                except Exception as e:  # a full disk, a journal locked too long: retry
                    self._requeue(ops, flushes, runs)
                    log.warning("local bus %s: commit failed (%r); retrying", self.path, e)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                self._committed += len(ops)
                for fut in flushes:
                    if not fut.done():
                        fut.set_result(None)
                for _trace_id, fut in runs:
                    if not fut.done():
                        fut.set_result(None)
                free = [op for op in ops if op[0] == INSERT and op[7] is None]
                if free:  # rows anyone may take: other processes, and this one if it has room
                    if self._waker:
                        self._waker.wake_others()
                    if self._may_take(free):
                        self._kick_take.set()
                if self._announced_elsewhere:  # ends other processes wait for
                    n = sum(1 for op in ops if op[0] == ANNOUNCE and not op[2])
                    self._announced_elsewhere -= n
                    if n and not free and self._waker:
                        self._waker.wake_others()
                if ended:
                    self._end(ended)
            for _trace_id, fut in self._run_flushes:  # their operations went in earlier commits
                if not fut.done():
                    fut.set_result(None)
            self._run_flushes = []

    def _idle_due(self) -> None:
        self._idle_timer = None
        if self._ops:
            self._idle_only = False
            self._kick_commit.set()

    def _may_take(self, free: list[tuple[Any, ...]]) -> bool:
        """Whether this process could take one of these rows now (a row left free because its
        step's lane was full is taken when the lane has room: the take loop waits for that)."""
        lanes = self._lanes
        if not self.consume or lanes is None:
            return False
        for op in free:
            if op[5] > 0:  # due later: the take loop times its next look by the earliest
                return True
            d: Delivery = op[4]
            if d.version in (None, self.version) and self._hosts(d.step) and lanes.room(d.step) > 0:
                return True
        return False

    def _lazy_due(self) -> bool:
        return time.monotonic() - self._lazy_since >= COALESCE_S

    def _requeue(
        self,
        ops: list[tuple[Any, ...]],
        flushes: list[asyncio.Future[None]],
        runs: list[tuple[str, asyncio.Future[None]]],
    ) -> None:
        self._ops[:0] = ops
        self._flushes[:0] = flushes
        self._run_flushes[:0] = runs

    async def _coalesce(self) -> None:
        """While nobody waits for durability and handlers are still adding operations, let
        them: one commit then carries the whole burst, and a delivery published and
        acknowledged within it costs no row at all. With no delivery running or ready here,
        nothing can add one before the next loop turn: commit now."""
        deadline = self._lazy_since + COALESCE_S
        lanes = self._lanes
        while (
            not self._flushes
            and not self._run_flushes
            and (lanes is None or lanes.busy())
            and time.monotonic() < deadline
        ):
            before = self._published
            await asyncio.sleep(0)
            if self._published == before:
                return

    async def _commit(self, ops: list[tuple[Any, ...]]) -> list[RunEnded]:
        assert self._journal is not None
        if len(ops) <= INLINE_MAX:
            try:
                ended = self._journal.commit(ops, _now(), fast=True)
            except Busy:
                pass
            else:
                self._inline_commits += 1
                if self._inline_commits % CHECKPOINT_EVERY == 0:
                    self._checkpoint()
                return ended
        return await self._run(self._journal.commit, ops, _now())

    def _checkpoint(self) -> None:
        """Checkpoint on the bus's thread, once at a time (commits on the loop never do)."""
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        assert self._loop is not None and self._journal is not None
        fut = self._loop.run_in_executor(self._executor, self._journal.checkpoint)
        fut.add_done_callback(_log_failure)
        self._checkpointing = fut

    def _end(self, ended: list[RunEnded]) -> None:
        """Runs this process ended: recorded now (the engine), and what waits for one here is
        told at once; announced (which makes the journal forget them) once the trace store has
        their ends, so that a crash in between leaves them to be ended again."""
        durable = self._hooks.ended(ended) if self._hooks is not None else None
        announce = []
        for e in ended:
            waited = e.trace_id in self._waiting
            announce.append((ANNOUNCE, e, waited))
            if waited:
                self._waiting.discard(e.trace_id)
                if self._hooks is not None:
                    self._hooks.finished(e)
        self._to_announce.append((durable, announce))
        if self._announcer is None or self._announcer.done():
            assert self._loop is not None
            self._announcer = self._loop.create_task(self._announce_loop())

    async def _announce_loop(self) -> None:
        """One task for all the ends waiting for the trace store (one wake-up per write of the
        recorder, not a task per commit)."""
        while self._to_announce:
            batch, self._to_announce = self._to_announce, []
            for durable, announce in batch:
                await recorded(durable, f"local bus {self.path}", len(announce))
                for op in announce:
                    self._append(op)
                    if not op[2]:  # not waited for here: another process may be
                        self._announced_elsewhere += 1


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("local bus: checkpoint failed (%s)", fut.exception())


def _trace_of(op: tuple[Any, ...]) -> str | None:
    kind = op[0]
    if kind == INSERT:
        return op[3]  # type: ignore[no-any-return]
    if kind == ACK:
        return op[2]  # type: ignore[no-any-return]
    if kind in (RELEASE, NOTE):
        return op[1]  # type: ignore[no-any-return]
    if kind in (OPEN, ANNOUNCE):
        return op[1].trace_id  # type: ignore[no-any-return]
    return None  # UNLEASE: no run's


def _split(
    traces: set[str], ops: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the operations of ``traces``, the others), each in order. Committing all of a run's
    operations, and none of another's, keeps every acknowledgement after what its handler
    published (both belong to one run)."""
    mine: list[tuple[Any, ...]] = []
    rest: list[tuple[Any, ...]] = []
    for op in ops:
        (mine if _trace_of(op) in traces else rest).append(op)
    return mine, rest
