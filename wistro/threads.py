"""Thread pools owned by Wistro, never the event loop's default executor.

Plain ``def`` handlers run on :data:`HANDLERS`; blocking I/O of adapters (file state) runs on
pools of their own. A sync handler blocked in ``ctx.state.get(...)`` waits for work that runs on
another pool, so a full handler pool can never starve what its handlers are waiting for (the
deadlock of an ``asyncio.to_thread`` handler calling file state through the same executor).

Threads are daemons, started on demand up to ``max_threads`` and reused: a handler stuck for good
(it timed out, the engine gave up on it) cannot keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class ThreadPool:
    """Daemon worker threads fed from one queue; ``await pool.run(fn, *args)``."""

    def __init__(self, name: str, max_threads: int) -> None:
        self.name = name
        self.max_threads = max_threads
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._busy = 0

    @property
    def threads(self) -> int:
        return self._threads

    @property
    def busy(self) -> int:
        """Calls running right now (a stuck handler counts until it returns)."""
        return self._busy

    def run(self, fn: Callable[..., T], /, *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a pool thread, in a copy of the caller's context."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        ctx = contextvars.copy_context()
        self._queue.put((loop, fut, ctx.run, (fn, *args)))
        with self._lock:
            if self._idle == 0 and self._threads < self.max_threads:
                self._threads += 1
                start = True
            else:
                if self._idle:
                    self._idle -= 1
                start = False
        if start:
            name = f"{self.name}-{self._threads}"
            threading.Thread(target=self._work, name=name, daemon=True).start()
        return fut

    def _work(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                with self._lock:
                    self._threads -= 1
                return
            loop, fut, fn, args = item
            with self._lock:
                self._busy += 1
            try:
                result = fn(*args)
            except BaseException as e:  # handed to the awaiting coroutine, never lost
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(_set_exception, fut, e)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_set_result, fut, result)
            del item, fut, args
            with self._lock:
                self._busy -= 1
                self._idle += 1


HANDLERS = ThreadPool("wistro-handler", max_threads=512)
"""Plain ``def`` handlers. Concurrency is bounded by each step's ``concurrency`` in the bus;
the cap only limits how many stuck (timed-out) handlers can pile up."""
