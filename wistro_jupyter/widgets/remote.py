"""``RemotePoll``: a live ``TraceView`` of a run that other processes run (a notebook attached to
a shared bus with ``%wistro load --attach`` only publishes, so no span of the run starts here).
Its engine sees the run start and end, nothing in between: the poll reads the run from the
shared trace store (SQLite or Redis, which every process of the project writes) every
``POLL_INTERVAL_S`` and hands it to the view, until the run ends, the view is closed or detached,
or the loop stops. At most ``MAX_REMOTE_VIEWS`` views of an engine are polled at once (the oldest
stops polling and shows its run when it ends)."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from wistro.errors import TraceNotFound
from wistro.tracing.memory import MemoryTraceStore

if TYPE_CHECKING:
    from wistro.core.engine import Engine
    from wistro_jupyter.widgets.trace_view import TraceView

POLL_INTERVAL_S = 0.4
MAX_REMOTE_VIEWS = 8  # per engine

_polls: weakref.WeakKeyDictionary[Engine, deque[RemotePoll]] = weakref.WeakKeyDictionary()


def polls_remote(engine: Engine) -> bool:
    """Whether the steps of this engine's runs run in other processes only, with a trace store
    those processes write: a shared bus this process only publishes on."""
    bus = engine.bus
    store = engine.store
    if not getattr(bus, "shared", False) or getattr(bus, "consume", True):
        return False
    return store is not None and not isinstance(store, MemoryTraceStore)


def remote_polls(engine: Engine) -> int:
    """How many views of ``engine`` poll the trace store now (tests, diagnostics)."""
    return sum(1 for p in _polls.get(engine, ()) if p.running)


class RemotePoll:
    """Polls the trace store for the run of one ``TraceView``; a task on the engine's loop."""

    __slots__ = ("engine", "interval", "task", "view", "warned")

    def __init__(self, view: TraceView, engine: Engine, interval: float = POLL_INTERVAL_S) -> None:
        self.view = view
        self.engine = engine
        self.interval = interval
        self.task: asyncio.Task[None] | None = None
        self.warned = False

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> bool:
        """Start polling; False when the engine's loop is not the one running here."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if loop is not self.engine.loop:
            return False
        self.task = loop.create_task(self._poll(), name=f"wistro-trace-poll-{self.view._trace_id}")
        polls = _polls.setdefault(self.engine, deque())
        polls.append(self)
        while len(polls) > MAX_REMOTE_VIEWS:
            polls.popleft().stop()
        return True

    def stop(self) -> None:
        task, self.task = self.task, None
        polls = _polls.get(self.engine)
        if polls is not None and self in polls:
            polls.remove(self)
        if task is not None and not task.done() and task is not _current():
            task.cancel()

    def _live(self) -> bool:
        run = self.view.run
        return self.view._remote is self and run is not None and not run.done

    async def _poll(self) -> None:
        store = self.engine.store
        assert store is not None
        trace_id = self.view._trace_id
        try:
            while True:
                await asyncio.sleep(self.interval)
                if not self._live():
                    return
                try:
                    stored = await asyncio.to_thread(store.get_run, trace_id)
                except TraceNotFound:  # the run's first records are not written yet
                    continue
                except RuntimeError as e:  # the loop is shutting down its executor
                    if "shutdown" in str(e):
                        return
                    self._warn(e)
                    continue
                except Exception as e:  # a store error: one warning, and keep trying
                    self._warn(e)
                    continue
                if self._live():
                    self.view._remote_update(stored)
        except asyncio.CancelledError:
            pass
        finally:
            self.stop()

    def _warn(self, e: BaseException) -> None:
        if not self.warned:
            self.warned = True
            text = (str(e).strip().splitlines() or [""])[0]
            self.view._remote_warning(
                f"wistro: live updates of this run from the trace store failed "
                f"({type(e).__name__}: {text}); its spans show when it ends"
            )


def _current() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
