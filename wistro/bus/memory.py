"""The in-memory bus: a queue per step in this process, served by worker tasks created on demand
up to the step's concurrency. Fast, and gone with the process (notebooks, tests, eval)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from wistro.bus.base import BusHooks, ConcurrencyOf, Deliver, Delivery, EventBus

# Deliveries per event-loop iteration, across all workers, before they yield: about 10 ms of work,
# so timers, I/O and a notebook get in, while the yields stay rare enough to cost nothing.
FAIR_SHARE = 1024


class _Lane:
    __slots__ = ("idle", "limit", "queue", "workers")

    def __init__(self, limit: int) -> None:
        self.queue: deque[Delivery] = deque()
        self.idle: list[asyncio.Future[None]] = []
        self.workers = 0
        self.limit = limit


class InMemoryBus(EventBus):
    """A queue per step, served by worker tasks created on demand up to the step's concurrency."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._concurrency_of: ConcurrencyOf = lambda step: 16
        self._tasks: set[asyncio.Task[None]] = set()
        self._deliver: Deliver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spent = 0  # deliveries started in this loop iteration, by every worker
        self._reset_pending = False
        self._hooks: BusHooks | None = None

    def start(
        self, deliver: Deliver, concurrency_of: ConcurrencyOf, hooks: BusHooks | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:  # a new event loop: start afresh
            self._lanes.clear()
            self._tasks.clear()
            self._timers.clear()
            self._spent, self._reset_pending = 0, False
        self._deliver = deliver
        self._concurrency_of = concurrency_of
        self._hooks = hooks
        self._loop = loop

    def publish(self, delivery: Delivery, delay: float = 0.0) -> None:
        if delay > 0:
            assert self._loop is not None

            def due() -> None:
                self._timers.discard(handle)
                self._enqueue(delivery)

            handle = self._loop.call_later(delay, due)
            self._timers.add(handle)
            return
        lane = self._lanes.get(delivery.step)  # _enqueue, inlined: this is every hop
        if lane is None:
            self._enqueue(delivery)
            return
        lane.queue.append(delivery)
        if lane.idle:
            fut = lane.idle.pop()
            if not fut.done():
                fut.set_result(None)
        elif lane.workers < lane.limit:
            self._spawn(lane)

    def pending(self) -> int:
        return len(self._timers) + sum(len(lane.queue) for lane in self._lanes.values())

    def _enqueue(self, delivery: Delivery) -> None:
        lane = self._lanes.get(delivery.step)
        if lane is None:
            lane = self._lanes[delivery.step] = _Lane(self._concurrency_of(delivery.step))
        lane.queue.append(delivery)
        if lane.idle:
            fut = lane.idle.pop()
            if not fut.done():
                fut.set_result(None)
        elif lane.workers < lane.limit:
            self._spawn(lane)

    def _spawn(self, lane: _Lane) -> None:
        assert self._loop is not None
        lane.workers += 1
        task = self._loop.create_task(self._work(lane))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, lane: _Lane) -> None:
        deliver = self._deliver
        assert deliver is not None and self._loop is not None
        queue = lane.queue
        try:
            woken = False
            while True:
                while queue:
                    if self._spent >= FAIR_SHARE and not woken:
                        # The budget of this loop iteration is spent (by this worker or others):
                        # let timers, I/O and the kernel in before delivering more. Once woken,
                        # a worker delivers one before it checks again, so no worker spins.
                        await asyncio.sleep(0)
                        woken = True
                        continue
                    woken = False
                    if not self._reset_pending:
                        self._reset_pending = True
                        self._loop.call_soon(self._reset)
                    self._spent += 1
                    await deliver(queue.popleft())
                fut = self._loop.create_future()
                lane.idle.append(fut)
                await fut
        finally:
            lane.workers -= 1

    def _reset(self) -> None:
        """Runs once per loop iteration in which deliveries started: a fresh budget."""
        self._spent = 0
        self._reset_pending = False

    def abandon(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for lane in self._lanes.values():
            lane.queue.clear()
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.clear()
