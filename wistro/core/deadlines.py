"""The time limits of the handlers running now, kept for the whole engine at once: one loop timer
at the earliest deadline, where ``asyncio.timeout`` arms and cancels a timer per call (5 to 6 µs a
call measured here; a limit kept here is a set entry, about 0.5 µs).

An expired limit cancels its task, as ``asyncio.timeout`` does. When the ``CancelledError``
comes out of the handler, ``Deadlines.end`` says whether it was the limit's cancel alone (the
cancel request is withdrawn, so the task goes on) or another one too, which must go on up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from wistro.core.current import current_task_of

_T = TypeVar("_T")


class Deadline:
    """One handler's limit: the loop time it ends at, its task, and whether it expired."""

    __slots__ = ("cancelling", "expired", "task", "when")

    def __init__(self, when: float, task: asyncio.Task[Any], cancelling: int) -> None:
        self.when = when
        self.task = task
        self.cancelling = cancelling  # the task's cancel requests before this limit's
        self.expired = False


class Deadlines:
    """The limits of the running handlers, and one timer armed at the earliest of them."""

    def __init__(self) -> None:
        self._running: set[Deadline] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def __len__(self) -> int:
        return len(self._running)

    def current_task(self) -> asyncio.Task[Any] | None:
        """The task running now (on the loop of these limits: no system call)."""
        return current_task_of(self._loop)

    def start(self, task: asyncio.Task[Any], limit: float) -> Deadline:
        """``task`` runs a handler that must end within ``limit`` seconds."""
        loop = self._loop
        if loop is not task.get_loop():  # first use, or a new event loop: its own timer
            loop = self._loop = task.get_loop()
            self._running.clear()
            self._timer, self._timer_at = None, float("inf")
        deadline = Deadline(loop.time() + limit, task, task.cancelling())
        self._running.add(deadline)
        if deadline.when < self._timer_at:
            self._arm(deadline.when)
        return deadline

    def end(self, deadline: Deadline) -> bool:
        """The handler is done. True when its limit expired and cancelled it, and nothing else
        asked to cancel the task meanwhile: the ``CancelledError`` it raised is a time-out."""
        self._running.discard(deadline)
        if not deadline.expired:
            return False
        deadline.expired = False  # withdraw the limit's cancel request once
        return deadline.task.uncancel() <= deadline.cancelling

    async def within(
        self, awaitable: Awaitable[_T], limit: float, on_timeout: Callable[[], BaseException]
    ) -> tuple[_T, bool]:
        """Await ``awaitable`` in the current task under a limit of ``limit`` seconds. When the
        limit cancels it, ``on_timeout()`` is raised in place of the ``CancelledError`` (any other
        cancel goes on up). Returns the result, and whether the limit expired as it came in (the
        awaitable caught the cancel and went on, or finished as the limit fell due): each caller
        decides what a late result means. The engine's ``invoke`` inlines the same steps, as it
        runs once a hop (this coroutine of its own costs about 0.8 µs a call)."""
        task = self.current_task()
        if task is None:
            getattr(awaitable, "close", lambda: None)()  # never awaited: no warning for it
            raise RuntimeError("a time limit needs the awaitable to run in a task")
        deadline = self.start(task, limit)
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if self.end(deadline):
                raise on_timeout() from None
            raise
        except BaseException:
            self.end(deadline)
            raise
        return result, self.end(deadline)

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        """The earliest limit is due (as the loop counts due: within its clock's resolution):
        cancel every task whose limit is, and arm the timer for the next."""
        due = self._timer_at
        self._timer, self._timer_at = None, float("inf")
        assert self._loop is not None
        now = max(self._loop.time(), due)
        running = self._running
        following = float("inf")
        for deadline in [d for d in running if d.when <= now]:
            running.discard(deadline)
            deadline.expired = True
            deadline.task.cancel()
        for deadline in running:
            if deadline.when < following:
                following = deadline.when
        if following != float("inf"):
            self._arm(following)
