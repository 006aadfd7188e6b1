"""In-process dispatch for buses whose deliveries come from storage (local, redis): a queue per
step, served by worker tasks created on demand up to the step's concurrency. Each delivery runs
through ``deliver``; then ``done(delivery, token)`` acknowledges it (the token is the bus's own
handle: a row id, a stream entry id). A delivery that raised is acknowledged too: the engine
records every failure itself, so an exception here is a bug that must not loop forever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from wistro.bus.base import ConcurrencyOf, Deliver, Delivery

log = logging.getLogger("wistro.bus")
Done = Callable[[Delivery, Any], None]


class _Lane:
    __slots__ = ("idle", "limit", "queue", "running", "workers")

    def __init__(self, limit: int) -> None:
        self.queue: deque[tuple[Delivery, Any]] = deque()
        self.idle: list[asyncio.Future[None]] = []
        self.workers = 0
        self.running = 0
        self.limit = limit


class Lanes:
    def __init__(self, deliver: Deliver, concurrency_of: ConcurrencyOf, done: Done) -> None:
        self._deliver = deliver
        self._concurrency_of = concurrency_of
        self._done = done
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()  # a delivery finished: there may be room for more

    def _lane(self, step: str) -> _Lane:
        lane = self._lanes.get(step)
        if lane is None:
            lane = self._lanes[step] = _Lane(self._concurrency_of(step))
        return lane

    def room(self, step: str) -> int:
        """How many more deliveries of ``step`` could start now."""
        lane = self._lane(step)
        return max(0, lane.limit - lane.running - len(lane.queue))

    def busy(self) -> int:
        """Deliveries queued or running here."""
        return sum(lane.running + len(lane.queue) for lane in self._lanes.values())

    def queued(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    def put(self, delivery: Delivery, token: Any) -> None:
        lane = self._lane(delivery.step)
        lane.queue.append((delivery, token))
        if lane.idle:
            fut = lane.idle.pop()
            if not fut.done():
                fut.set_result(None)
        elif lane.workers < lane.limit:
            lane.workers += 1
            task = asyncio.get_running_loop().create_task(self._work(lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        queue = lane.queue
        try:
            while True:
                while queue:
                    delivery, token = queue.popleft()
                    lane.running += 1
                    try:
                        await self._deliver(delivery)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # the engine records failures; this is a bug
                        log.exception(
                            "delivery of %s to %r failed", delivery.event.id, delivery.step
                        )
                    finally:
                        lane.running -= 1
                    self._done(delivery, token)
                    self.changed.set()
                fut = loop.create_future()
                lane.idle.append(fut)
                await fut
        finally:
            lane.workers -= 1

    def clear(self) -> list[tuple[Delivery, Any]]:
        """Take back what is queued (not running): the bus leaves it to be delivered again."""
        out: list[tuple[Delivery, Any]] = []
        for lane in self._lanes.values():
            out.extend(lane.queue)
            lane.queue.clear()
        return out

    def cancel_now(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.clear()

    async def wait_idle(self, timeout: float | None) -> bool:
        """Wait until nothing runs here (at most ``timeout`` s); True when idle."""
        try:
            async with asyncio.timeout(timeout):
                while any(lane.running for lane in self._lanes.values()):
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True
