"""Clocks: where the scheduler reads the time and waits. ``SystemClock`` is the real one;
``ManualClock`` moves only when a test tells it to, so a month of schedule runs instantly."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Clock(Protocol):
    """Where the scheduler reads the time and waits. ``now()`` is timezone-aware."""

    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


class SystemClock:
    """The real clock. Sleeps in slices of at most a minute so that a wall-clock change
    (NTP step, suspend and resume) is noticed."""

    max_slice_s = 60.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        while True:
            left = (when - self.now()).total_seconds()
            if left <= 0:
                return
            await asyncio.sleep(min(left, self.max_slice_s))


@dataclass(order=True)
class _Sleeper:
    when: datetime
    seq: int
    future: asyncio.Future[None] = field(compare=False)
    task: asyncio.Task[Any] | None = field(compare=False)


class ManualClock:
    """A clock for tests: time moves only when told, and nothing really sleeps.

    ``set(dt)`` / ``advance(seconds)`` jump (sleepers whose time has come wake once, like after a
    suspend); ``await run_until(dt)`` / ``await run_for(seconds)`` stop at every sleeper's
    deadline in turn and let the woken tasks run before going on, so every scheduled firing in
    between happens: a month of schedule runs instantly and in a deterministic order
    (``between=scheduler.wait_idle`` also finishes each run before the clock moves on).
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start
        self._sleepers: list[_Sleeper] = []
        self._awake: set[asyncio.Task[Any]] = set()
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._awake.discard(task)
        if when <= self._now:
            if task is not None:
                self._awake.add(task)  # still running: settle() waits for its next sleep
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, _Sleeper(when, next(self._seq), future, task))
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    def set(self, dt: datetime) -> None:
        """Jump to ``dt`` and wake every sleeper whose time has come."""
        if dt.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        if dt < self._now:
            raise ValueError("a ManualClock only moves forward")
        self._now = dt
        while self._sleepers and self._sleepers[0].when <= dt:
            s = heapq.heappop(self._sleepers)
            if not s.future.done():
                s.future.set_result(None)
                if s.task is not None:
                    self._awake.add(s.task)

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))

    def next_deadline(self) -> datetime | None:
        """When the earliest live sleeper wakes."""
        while self._sleepers and self._sleepers[0].future.done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0].when if self._sleepers else None

    async def settle(self, max_yields: int = 10_000) -> None:
        """Yield to the event loop until every woken sleeper sleeps again or has finished."""
        for _ in range(max_yields):
            self._awake = {t for t in self._awake if not t.done()}
            if not self._awake:
                return
            await asyncio.sleep(0)
        raise RuntimeError("woken tasks did not go back to sleep")

    async def run_until(
        self, dt: datetime, between: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        """Move to ``dt`` deadline by deadline, letting woken tasks run at each. ``between`` is
        awaited after each deadline: pass ``scheduler.wait_idle`` to finish every run before the
        clock moves on (in simulated time runs take no time; without it a run still in progress
        at the next fire time makes that firing an overlap)."""
        await self.settle()
        while (deadline := self.next_deadline()) is not None and deadline <= dt:
            self.set(deadline)
            await self.settle()
            if between is not None:
                await between()
                await self.settle()
        if dt > self._now:
            self.set(dt)
        await self.settle()

    async def run_for(
        self, seconds: float, between: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        await self.run_until(self._now + timedelta(seconds=seconds), between)
