"""The engine's side of a shared bus (local, redis): a run is opened on the bus, which keeps
its ledger; the bus calls back when a run ends in this process (record its end), when a run
started here ended anywhere (wake its waiters, with its records read back from the shared trace
store), for poison deliveries and for control messages (activate/deactivate from another
process). ``Engine`` mixes this in; it only touches the engine's own attributes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from wistro.bus.base import Delivery, EventBus, RunEnded, RunOpened
from wistro.config import EngineConfig
from wistro.core.failures import new_dead_letter
from wistro.core.ledger import RunLedger
from wistro.core.observer import Observer, notify
from wistro.core.registry import Registry
from wistro.core.run import Run
from wistro.tracing.recorder import Recorder
from wistro.tracing.records import RunRecord
from wistro.tracing.store import TraceStore

logger = logging.getLogger("wistro.engine")


class SharedBusRuns:
    """Mixed into ``Engine``: what the engine does with a shared bus's run ledger and hooks."""

    # the Engine's attributes this part uses
    bus: EventBus
    ledger: RunLedger
    recorder: Recorder
    store: TraceStore | None
    registry: Registry
    observers: list[Observer]
    config: EngineConfig
    runs: dict[str, Run]
    worker: str
    origin: str

    def _traffic_changed(self) -> None: ...

    loop: asyncio.AbstractEventLoop | None
    _idle: asyncio.Event | None
    _capacity: asyncio.Event | None
    _merging: set[asyncio.Task[None]]

    def _open_shared(self, run: Run, trigger: str, topic: str, holds: int = 0) -> None:
        """A run on a shared bus: the bus counts what it owes; this process holds one unit of
        its own ledger for it until the bus says it ended (wherever its last delivery ran)."""
        self.ledger.add(run.trace_id)
        assert self._idle is not None
        self._idle.clear()
        self.bus.open_run(
            RunOpened(
                run.trace_id, trigger, topic, run.record.start, self.origin, run.record.version
            ),
            holds,
        )

    def _ended(self, ended: list[RunEnded]) -> Awaitable[None]:
        """This process settled the last delivery of these runs: their ends are recorded now;
        what it returns resolves once they are in the store, and only then does the bus forget
        the runs (a ``kill -9`` in between leaves them ended in the bus, and the next process
        records their ends again). A waiter elsewhere reads the store: written at once."""
        for e in ended:
            status = "error" if e.n_errors else "ok"
            self.recorder.run_ended(
                RunRecord(e.trace_id, e.trigger, e.topic, status, e.start, e.end, e.n_events,
                          e.n_errors, e.origin.partition("/")[0], e.version)
            )  # fmt: skip
        if any(e.origin != self.origin for e in ended):
            return asyncio.ensure_future(self.recorder.flush())
        return self.recorder.written()

    def _finished_elsewhere(self, e: RunEnded) -> None:
        """A run started here ended (here or in another process): wake what waits for it. When
        other processes recorded part of it (the bus counted events this process never saw),
        its records are read back from the shared trace store first: ``await app.emit(...)``
        returns the whole run."""
        run = self.runs.get(e.trace_id)
        if run is None or run.done:
            return
        if self.store is not None and e.n_events > len(run.event_records):
            assert self.loop is not None
            task = self.loop.create_task(self._finish_with_stored(run, e))
            self._merging.add(task)
            task.add_done_callback(self._merging.discard)
            return
        self._end_here(run, e)

    async def _finish_with_stored(self, run: Run, e: RunEnded) -> None:
        try:
            assert self.store is not None
            stored = await asyncio.to_thread(self.store.get_trace, run.trace_id)
        except Exception as err:  # the trace is still there for `wistro trace`: just say so
            logger.warning("run %s ended; its records could not be read: %s", run.trace_id, err)
        else:
            run.merge(stored)
        self._end_here(run, e)

    def _end_here(self, run: Run, e: RunEnded) -> None:
        if run.done:
            return
        run._finish(e.end, n_events=e.n_events, n_errors=e.n_errors)
        self.runs.pop(run.trace_id, None)
        self.ledger.settle(run.trace_id)  # the origin's unit (_open_shared)
        self.ledger.close(run.trace_id)
        if self.observers:
            notify(self.observers, "on_run_end", run)
        self._settled()

    async def _poisoned(self, d: Delivery, tries: int) -> None:
        """A delivery every worker died on: dead-lettered (replayable), so its run ends."""
        error = f"delivered {tries} times and never finished: the worker running it died each time"
        dead = new_dead_letter(
            d.event.trace_id, d.step, d.event.topic, d.event.id, d.event.data_json, error, tries
        )
        self.recorder.dead_letter(dead)
        self.bus.note(d.event.trace_id, errors=1)
        run = self.runs.get(d.event.trace_id)
        if run is not None:
            run.dead_letters.append(dead)

    def _control(self, message: dict[str, Any]) -> None:
        """A message another process broadcast on the bus (``wistro activate`` ...)."""
        op, name = message.get("op"), message.get("step")
        if op == "traffic":  # the split or the live versions changed: read them again now
            self._traffic_changed()
            return
        if op not in ("activate", "deactivate") or name not in self.registry.steps:
            return
        active = op == "activate"
        if self.registry.steps[name].active != active:
            self.registry.set_active(name, active)
            logger.info("%sd step %r (told by %s)", op, name, message.get("from", "?"))

    def _settled(self) -> None:
        in_flight = self.ledger.in_flight
        if in_flight <= self.config.max_in_flight // 2 and self._capacity is not None:
            self._capacity.set()
        if in_flight == 0 and self._idle is not None:
            self._idle.set()
