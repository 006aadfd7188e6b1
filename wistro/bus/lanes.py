"""In-process dispatch, for every bus: a queue per step (its *lane*), run by one pool of worker
tasks started on demand. Each delivery runs through ``deliver``; then ``done(delivery, token)``
acknowledges it (the token is the bus's own handle: a row id, a stream entry id; None in
memory). A delivery that raised is acknowledged too: the engine records every failure itself, so
an exception here is a bug that must not loop forever.

- A lane runs at most its step's concurrency at once. Lanes with deliveries queued and room to
  start one wait in one ready queue, and any worker takes the next.
- A worker that finishes a delivery goes straight on to the next one ready, so a chain of
  handlers that never wait runs hop after hop in one task, with no task switch per hop (a switch
  costs about as much as the rest of an asyncio hop).
- A handler that waits (I/O, a sleep, another delivery) leaves the rest to the pool: whenever the
  event loop gets control back with deliveries still ready, an idle worker is woken or a new one
  started, so a waiting handler never holds up another delivery.
- All workers together start at most ``FAIR_SHARE`` deliveries per event-loop iteration, then
  yield, so timers, I/O and a notebook get in during a burst.
"""

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

# Deliveries per event-loop iteration, across all workers, before they yield: about 10 ms of work,
# so timers, I/O and a notebook get in, while the yields stay rare enough to cost nothing.
FAIR_SHARE = 1024


class _Lane:
    __slots__ = ("limit", "queue", "ready", "running")

    def __init__(self, limit: int) -> None:
        self.queue: deque[tuple[Delivery, Any]] = deque()
        self.limit = limit
        self.running = 0
        self.ready = False  # in the ready queue


class Lanes:
    def __init__(self, deliver: Deliver, concurrency_of: ConcurrencyOf, done: Done) -> None:
        self._deliver = deliver
        self._concurrency_of = concurrency_of
        self._done = done
        self._lanes: dict[str, _Lane] = {}
        self._ready: deque[_Lane] = deque()  # lanes with deliveries queued and room for one
        self._idle: list[asyncio.Future[None]] = []  # workers waiting for work
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued = 0  # deliveries queued, not started
        self._active = 0  # workers inside a delivery (running it, or waiting in its handler)
        self._yielding = 0  # workers that gave the loop a turn (the budget): they come back
        self._spent = 0  # deliveries started in this loop iteration, by every worker
        self._reset_pending = False
        self._check_pending = False
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
        return self._queued + self._active

    def queued(self) -> int:
        return self._queued

    def put(self, delivery: Delivery, token: Any) -> None:
        lane = self._lanes.get(delivery.step) or self._lane(delivery.step)
        lane.queue.append((delivery, token))
        self._queued += 1
        if lane.ready or lane.running >= lane.limit:
            return  # a worker takes it when the lane has room
        lane.ready = True
        self._ready.append(lane)
        if self._active:  # put from a handler: its worker takes it next, or the check does
            self._arm_check()
        else:  # from outside the pool (an emit, a timer, a read from storage): a worker now
            self._add_worker()

    # -- the pool ----------------------------------------------------------------------------

    def _arm_check(self) -> None:
        if not self._check_pending:
            self._check_pending = True
            asyncio.get_running_loop().call_soon(self._check)

    def _check(self) -> None:
        """The loop has control with deliveries still ready: every worker that took one is
        waiting in its handler. Start another for each ready lane."""
        self._check_pending = False
        if self._yielding:  # they deliver again once the loop has had its turn
            return
        for _ in range(len(self._ready)):
            self._add_worker()

    def _add_worker(self) -> None:
        idle = self._idle
        while idle:
            fut = idle.pop()
            if not fut.done():
                fut.set_result(None)
                return
        task = asyncio.get_running_loop().create_task(self._work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reset(self) -> None:
        """Runs once per loop iteration in which deliveries started: a fresh budget."""
        self._spent = 0
        self._reset_pending = False

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        deliver, done, ready = self._deliver, self._done, self._ready
        woken = False
        while True:
            while ready:
                if self._spent >= FAIR_SHARE and not woken:
                    # The budget of this loop iteration is spent (by this worker or others):
                    # let timers, I/O and the kernel in before delivering more. Once back, a
                    # worker delivers one before it looks again, so no worker spins.
                    self._yielding += 1
                    try:
                        await asyncio.sleep(0)
                    finally:
                        self._yielding -= 1
                    woken = True
                    continue
                woken = False
                lane = ready.popleft()
                delivery, token = lane.queue.popleft()
                self._queued -= 1
                lane.running += 1
                if lane.queue and lane.running < lane.limit:
                    ready.append(lane)  # more of it may start: behind the other lanes
                else:
                    lane.ready = False
                if ready:  # if this handler waits, the next loop turn starts another worker
                    self._arm_check()
                if not self._reset_pending:
                    self._reset_pending = True
                    loop.call_soon(self._reset)
                self._spent += 1
                self._active += 1
                try:
                    await deliver(delivery)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the engine records failures; this is a bug
                    log.exception("delivery of %s to %r failed", delivery.event.id, delivery.step)
                finally:
                    self._active -= 1
                    lane.running -= 1
                    if lane.queue and not lane.ready:  # room again
                        lane.ready = True
                        ready.append(lane)
                done(delivery, token)
                self.changed.set()
            fut = loop.create_future()
            self._idle.append(fut)
            await fut

    # -- stopping ----------------------------------------------------------------------------

    def clear(self) -> list[tuple[Delivery, Any]]:
        """Take back what is queued (not running): the bus leaves it to be delivered again."""
        out: list[tuple[Delivery, Any]] = []
        for lane in self._lanes.values():
            out.extend(lane.queue)
            lane.queue.clear()
            lane.ready = False
        self._ready.clear()
        self._queued = 0
        return out

    def cancel_now(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._idle.clear()

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._idle.clear()
        self._lanes.clear()
        self._ready.clear()
        self._queued = 0

    async def wait_idle(self, timeout: float | None) -> bool:
        """Wait until nothing runs here (at most ``timeout`` s); True when idle."""
        try:
            async with asyncio.timeout(timeout):
                while self._active:  # workers inside a delivery
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True
