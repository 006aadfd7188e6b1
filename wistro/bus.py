"""The event-bus interface and its in-memory implementation.

The engine hands the bus one ``Delivery`` per (event, subscribing step); the bus runs
``deliver`` for it, at most ``concurrency`` at a time per step. A Redis bus (distributed mode)
implements the same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wistro.step import StepRecord
from wistro.tracing.records import DeadLetter, EventRecord

if TYPE_CHECKING:
    from wistro.run import Run


FAIR_SHARE = 64  # deliveries per event-loop iteration, across all workers, before they yield


@dataclass(slots=True)
class Delivery:
    step: StepRecord
    event: EventRecord
    data: Any
    run: Run
    attempt: int = 1
    dead: DeadLetter | None = None  # the dead letter this delivery replays


Deliver = Callable[[Delivery], Awaitable[None]]


class EventBus(ABC):
    @abstractmethod
    def start(self, deliver: Deliver) -> None: ...

    @abstractmethod
    def publish(self, delivery: Delivery) -> None:
        """Queue a delivery. Never blocks: back-pressure is applied where work enters."""

    @abstractmethod
    async def aclose(self) -> None: ...


class _Lane:
    __slots__ = ("idle", "limit", "queue", "workers")

    def __init__(self, limit: int) -> None:
        self.queue: deque[Delivery] = deque()
        self.idle: list[asyncio.Future[None]] = []
        self.workers = 0
        self.limit = limit


class InMemoryBus(EventBus):
    """A queue per step, served by worker tasks created on demand up to the step's concurrency."""

    def __init__(self, default_concurrency: int = 16) -> None:
        self.default_concurrency = default_concurrency
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._deliver: Deliver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spent = 0  # deliveries started in this loop iteration, by every worker
        self._reset_pending = False

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._loop = asyncio.get_running_loop()

    def publish(self, delivery: Delivery) -> None:
        lane = self._lanes.get(delivery.step.name)
        if lane is None:
            limit = delivery.step.concurrency or self.default_concurrency
            lane = self._lanes[delivery.step.name] = _Lane(limit)
        lane.queue.append(delivery)
        if lane.idle:
            fut = lane.idle.pop()
            if not fut.done():
                fut.set_result(None)
        elif lane.workers < lane.limit:
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
            while True:
                while queue:
                    if self._spent >= FAIR_SHARE:
                        # The budget of this loop iteration is spent (by this worker or others):
                        # let timers, I/O and the kernel in before delivering more.
                        await asyncio.sleep(0)
                        continue
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

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.clear()
