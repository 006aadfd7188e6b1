"""The engine: validates and routes events, runs handlers with timeouts and retries, tracks runs,
dead-letters what still fails, and records everything for the trace store."""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from wistro.bus import Delivery, EventBus, InMemoryBus
from wistro.bus.base import NO_PAYLOAD, BusHooks
from wistro.collector import tune_gc
from wistro.config import EngineConfig
from wistro.core import direct
from wistro.core.context import Context
from wistro.core.current import TASKS
from wistro.core.deadlines import Deadlines
from wistro.core.failures import (
    add_history,
    blocked_warning,
    dumps_payload,
    dumps_refused,
    failed_again,
    loads_payload,
    missing_step,
    new_dead_letter,
    user_traceback,
)
from wistro.core.invoke import invoke
from wistro.core.ledger import LocalLedger, RunLedger
from wistro.core.observer import Observer, notify
from wistro.core.registry import Registry
from wistro.core.run import Run
from wistro.core.shared import SharedBusRuns
from wistro.core.step import StepRecord
from wistro.core.typed import TypedTopics
from wistro.core.versioning import Versions
from wistro.core.watchdog import Blocker, LoopWatchdog, find_blocker
from wistro.errors import (
    HandlerTimeout,
    PayloadError,
    UndeclaredEmitError,
    UnknownTopicError,
    WistroError,
)
from wistro.processes import worker_name
from wistro.state.base import StateAdapter
from wistro.tracing.recorder import Recorder
from wistro.tracing.records import (
    DeadLetter,
    EventRecord,
    LogRecord,
    SpanRecord,
    new_id,
    new_trace_id,
)
from wistro.tracing.store import TraceStore
from wistro.tracing.traceparent import parse_traceparent

_now = time.time
MAX_BACKOFF_S = 30.0


logger = logging.getLogger("wistro.engine")


class Engine(Versions, SharedBusRuns):
    def __init__(
        self,
        registry: Registry,
        state: StateAdapter,
        store: TraceStore | None,
        config: EngineConfig | None = None,
        bus: EventBus | None = None,
        ledger: RunLedger | None = None,
    ) -> None:
        self.registry = registry
        self.state = state
        self.store = store
        self.config = config or EngineConfig()
        self.bus = bus or InMemoryBus()
        self.recorder = Recorder(store)
        self.observers: list[Observer] = []
        self.runs: dict[str, Run] = {}  # in flight
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self.ledger = ledger or LocalLedger()
        self._capacity: asyncio.Event | None = None
        self._full = False  # an emit waits on _capacity
        self._idle: asyncio.Event | None = None
        self._replaying: dict[str, DeadLetter] = {}  # dead letters being replayed, by id
        # task -> the span it runs and its run: the spans running now (the watchdog, stopping)
        self._running: dict[Any, tuple[SpanRecord, Run]] = {}
        self.deadlines = Deadlines()  # the time limits of the handlers running now
        self._watchdog: LoopWatchdog | None = None
        self.worker = worker_name()
        # This engine, among others of its process: who waits for the runs it opens.
        self.origin = f"{self.worker}/{os.urandom(3).hex()}"
        self._recovery: asyncio.Task[list[str]] | None = None
        self._merging: set[asyncio.Task[None]] = set()  # runs read back from the store
        # A shared bus (local, redis) keeps the run ledger: runs end when its commit says so.
        self._shared = self.bus.shared
        self._typed = TypedTopics(registry)
        self._init_versions()

    # ------------------------------------------------------------ lifecycle
    @property
    def started(self) -> bool:
        return self.loop is not None

    def start(self) -> None:
        """Bind to the running event loop. Called on first use, and by every emit: on this
        engine's loop already (a task of it runs on its thread) it returns at once, with no
        ``get_running_loop()`` (a system call on Python 3.11)."""
        if (
            self.loop_thread == threading.get_ident()
            and TASKS is not None
            and TASKS.get(self.loop) is not None
        ):
            return
        loop = asyncio.get_running_loop()
        if self.loop is loop:
            return
        if self.loop is not None:
            if not self.loop.is_closed() and self.loop.is_running():
                raise RuntimeError("this engine already runs on another event loop")
            # The previous loop is gone (a new asyncio.run, a new test): start afresh on this one.
            old = self.recorder
            self.recorder = Recorder(self.store)
            self.recorder.take_over(old)
            self.runs.clear()
            self.ledger.clear()
        if self.config.tune_gc:
            tune_gc()
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.bus.start(
            self._deliver,
            self._concurrency_of,
            BusHooks(self._ended, self._finished_elsewhere, self._poisoned, self._control),
        )
        self.recorder.start()
        self._start_versions(loop, sum(1 for r in self.registry if r.subscribes))
        self._start_watchdog(loop)
        if self._shared:  # runs a crashed process left running that nothing will finish
            from wistro.core.recovery import mark_interrupted

            self._recovery = loop.create_task(mark_interrupted(self), name="wistro-recovery")

    def _start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        threshold = self.config.block_warn_ms / 1000
        if threshold <= 0:
            return
        self._watchdog = LoopWatchdog(
            threshold,
            find_blocker(self._step_files, self._running, lambda: asyncio.current_task(loop)),
            self._blocked,
        )
        self._watchdog.start(loop)

    @property
    def in_flight(self) -> int:
        """Deliveries published and not settled yet (queued, running, waiting for a retry)."""
        return self.ledger.in_flight

    def _concurrency_of(self, step: str) -> int:
        record = self.registry.steps.get(step)
        return (record.concurrency if record else None) or self.config.default_concurrency

    def abandon(self) -> None:
        """Give up on everything in flight at once (an eval sample that timed out): queued and
        scheduled deliveries are dropped, running ones cancelled. The engine can start afresh."""
        self.bus.abandon()
        self.runs.clear()
        self._running.clear()
        self._replaying.clear()
        self.ledger.clear()
        if self._idle is not None:
            self._idle.set()
        if self._capacity is not None:
            self._capacity.set()

    def _blocked(self, where: Blocker, seconds: float) -> None:
        log = blocked_warning(where, seconds, self.registry.steps)
        self.recorder.log(log)
        if not self.observers:
            logger.warning("%s%s", f"step {log.step!r}: " if log.step else "", log.message)
        notify(self.observers, "on_log", log)

    def _step_files(self) -> set[str]:
        registry = self.registry
        if getattr(self, "_files_of", None) is not registry:
            self._files = {str(r.file) for r in registry}
            self._files_of = registry
        return self._files

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until no work is in flight (at most ``timeout`` seconds), then flush traces.
        Returns False when work was still in flight at the timeout."""
        self.start()
        assert self._idle is not None
        idle = self._idle
        try:
            async with asyncio.timeout(timeout):
                while self.in_flight:
                    await idle.wait()
        except TimeoutError:
            await self.recorder.flush()
            return False
        await self.recorder.flush()
        return True

    def in_flight_summary(self) -> list[str]:
        """One line per run still in flight: its trace id, topic and the steps running now."""
        running: dict[str, list[str]] = {}
        for span, _ in self._running.values():
            running.setdefault(span.trace_id, []).append(span.step)
        out = []
        for run in self.runs.values():
            steps = ", ".join(sorted(set(running.get(run.trace_id, [])))) or "queued"
            out.append(f"{run.trace_id} {run.topic} ({steps})")
        return out

    async def aclose(self, timeout: float | None = None) -> list[str]:
        """Finish in-flight work (at most ``timeout`` seconds), then stop the workers and flush
        traces. Returns what was abandoned: one line per run still in flight."""
        abandoned: list[str] = []
        if self.loop is None:
            return abandoned
        if asyncio.get_running_loop() is self.loop:
            if not await self.drain(timeout):
                abandoned = self.in_flight_summary()
                # On a shared bus what is pending stays in the journal for the next process.
                for run in [] if self._shared else list(self.runs.values()):
                    reason = f"abandoned after {timeout:g}s: the engine stopped before it finished"
                    run.failures.append(reason)
                    log = LogRecord(run.trace_id, None, None, "error", reason, "{}", _now())
                    run.log_records.append(log)  # the stored trace says why it failed
                    self.recorder.log(log)
                    self._finish(run)
            await self._stop_versions()
            await self.recorder.flush()  # the ends a shared bus waits for before it forgets runs
            await self.bus.aclose()
            await self.recorder.aclose()
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        self.loop = None
        self.loop_thread = None
        return abandoned

    # ------------------------------------------------------------ emitting
    def check_topic(self, topic: str) -> None:
        if topic not in self.registry.topics:
            close = difflib.get_close_matches(topic, list(self.registry.topics.topics), n=1)
            raise UnknownTopicError(
                "no step subscribes to or emits this topic",
                topic=topic,
                hint=f"did you mean {close[0]!r}?"
                if close
                else "see `wistro flows`/`wistro steps`",
            )

    async def emit(
        self,
        topic: str,
        data: Any = None,
        *,
        wait: bool = True,
        trigger: str = "emit",
        traceparent: str | None = None,
    ) -> Run:
        """Start a run with one event from outside. ``wait`` returns when all it caused is done.
        A valid W3C ``traceparent`` (``run.traceparent``) travels with every delivery of the run,
        so exported spans continue the caller's trace."""
        self.start()
        try:
            self.check_topic(topic)
            payload, typed, model = self._validate(topic, data)
            data_json = dumps_payload(payload, topic)
        except WistroError as e:
            e.trace_id = self.refused(topic, data, trigger, e).trace_id
            raise
        assert self._capacity is not None
        while self.in_flight >= self.config.max_in_flight:
            self._capacity.clear()
            self._full = True  # _settle sets it again once half the room is free
            await self._capacity.wait()
        if self._shared:
            await self.versions_known()
        run = Run(new_trace_id(), topic, trigger, _now(), self.worker)
        run.record.version = self.route(payload, run.trace_id)
        if parse_traceparent(traceparent):
            run.traceparent = traceparent
        self.runs[run.trace_id] = run
        self.recorder.run(run.record)
        if self.observers:
            notify(self.observers, "on_run_start", run)
        if self._shared and self.registry.subscribers(topic):
            self._open_shared(run, trigger, topic)
        self._publish(run, topic, payload, data_json, trigger, None, typed, model)
        if not self.ledger.pending(run.trace_id):
            self._finish(run)
        if wait:  # on a shared bus the run ends in a commit of all it did: accepted by then
            await run.wait()
        elif self._shared:
            await self.bus.flush_run(run.trace_id)  # accepted: durable on the bus
        return run

    def refused(self, topic: str, data: Any, trigger: str, err: WistroError) -> Run:
        """Record an emit from outside that was refused (unknown topic, invalid payload) as a
        finished run with status ``refused``, holding the payload and the error."""
        run = Run(new_trace_id(), topic, trigger, _now(), self.worker)
        run.refused = True
        self.recorder.run(run.record)
        notify(self.observers, "on_run_start", run)
        event = EventRecord(
            new_id(),
            run.trace_id,
            topic,
            dumps_refused(data),
            trigger,
            None,
            _now(),
            error=err.format(),
        )
        run.event_records.append(event)
        self.recorder.event(event)
        notify(self.observers, "on_event", event)
        self._finish(run)
        return run

    def emit_from_step(
        self, step: StepRecord, run: Run, span_id: str, topic: str, data: Any
    ) -> None:
        payload, data_json, typed, model = self._accept(
            step, run, span_id, topic, data, self._refused
        )
        self._publish(run, topic, payload, data_json, step.name, span_id, typed, model)

    def emit_from_thread(
        self, step: StepRecord, run: Run, span_id: str, topic: str, data: Any
    ) -> None:
        """``ctx.emit`` from a plain ``def`` handler's thread: checked and validated on that
        thread (an invalid emit raises in the handler, as from the loop), then published on the
        loop without waiting for it: no round trip. It is published before the handler's end
        reaches the loop, as both go through ``call_soon_threadsafe`` in order."""
        loop = self.loop
        assert loop is not None

        def refuse(*args: Any) -> None:
            loop.call_soon_threadsafe(self._refused, *args)

        payload, data_json, typed, model = self._accept(step, run, span_id, topic, data, refuse)
        loop.call_soon_threadsafe(
            self._publish, run, topic, payload, data_json, step.name, span_id, typed, model
        )

    def _accept(
        self,
        step: StepRecord,
        run: Run,
        span_id: str,
        topic: str,
        data: Any,
        refuse: Callable[[Run, StepRecord, str, str, Any, WistroError], None],
    ) -> tuple[Any, str, BaseModel | None, Any]:
        """An emit of ``step`` checked (declared topic) and validated: the payload, its JSON,
        and the topic's model instance when that validated it. What is refused is recorded
        through ``refuse``, then raised."""
        if topic not in step.emit_topics:
            declared = ", ".join(sorted(step.emit_topics)) or "none"
            err: WistroError = UndeclaredEmitError(
                f"emit to a topic the step does not declare (declared: {declared})",
                step=step.name,
                topic=topic,
                file=step.rel_file,
                hint=f"add {topic!r} to the step's `emits`",
            )
            refuse(run, step, span_id, topic, data, err)
            raise err
        try:
            payload, typed, model = self._validate(topic, data)
            data_json = dumps_payload(payload, topic)
        except PayloadError as e:
            e.step = step.name
            e.args = (e.format(),)
            refuse(run, step, span_id, topic, data, e)
            raise
        return payload, data_json, typed, model

    def _validate(self, topic: str, data: Any) -> tuple[Any, BaseModel | None, Any]:
        """The JSON-ready payload, and the instance of the topic's model when that validated it
        (``wistro.core.typed``), with the model; raises PayloadError."""
        typed_topics = self._typed
        if typed_topics.registry is not self.registry:
            typed_topics = self._typed = TypedTopics(self.registry)
        model = typed_topics.model(topic) if type(data) is dict else None
        if model is not None:
            try:
                return data, model.__pydantic_validator__.validate_python(data, strict=True), model
            except PydanticValidationError:
                pass  # JSON Schema decides, as without a model
        return self.registry.topics.validator(topic)(data), None, None

    def _refused(
        self, run: Run, step: StepRecord, span_id: str, topic: str, data: Any, err: WistroError
    ) -> None:
        event = EventRecord(
            new_id(),
            run.trace_id,
            topic,
            dumps_refused(data),
            step.name,
            span_id,
            _now(),
            error=err.format(),
        )
        run.event_records.append(event)
        self.recorder.event(event)
        self.recorder.added()  # a refused emit can end a span that ends nothing else
        if self._shared:
            self.bus.note(run.trace_id, events=1, errors=1)
        if self.observers:
            notify(self.observers, "on_event", event)

    def _publish(
        self,
        run: Run,
        topic: str,
        payload: Any,
        data_json: str,
        source: str,
        parent_span_id: str | None,
        typed: BaseModel | None = None,
        model: Any = None,
    ) -> None:
        event = EventRecord(
            new_id(), run.trace_id, topic, data_json, source, parent_span_id, _now()
        )
        run.event_records.append(event)
        self.recorder.event(event)
        if self.observers:
            notify(self.observers, "on_event", event)
        subscribers = self.registry.subscribers(topic)
        if self._shared:
            self.bus.note(run.trace_id, events=1)
        if not subscribers:
            return
        if not self._shared:
            self.ledger.add(run.trace_id, len(subscribers))
            assert self._idle is not None
            self._idle.clear()
        publish = self.bus.publish
        traceparent = run.traceparent
        version = run.record.version
        for step in subscribers:
            data = payload
            if typed is not None and step.input_model is model:
                data, typed = typed, None  # validated at emit: its input, once
            publish(Delivery(step.name, event, 1, 0.0, version, None, traceparent, data))

    # ------------------------------------------------------------ delivering
    async def _deliver(self, d: Delivery) -> None:
        run = self.runs.get(d.event.trace_id) or self._adopt(d)
        if self._shared:  # this process runs one delivery of the run
            self.ledger.add(run.trace_id)
            assert self._idle is not None
            self._idle.clear()
        step = self.registry.steps.get(d.step) or missing_step(d.step)
        if d.attempt > 1 and not step.active:  # deactivated while it waited for a retry
            self._settle(run)
            return
        event = d.event
        parent = event.parent_span_id
        if parent is None and d.traceparent is not None:
            caller = parse_traceparent(d.traceparent)
            parent = caller[1] if caller else None
        span = SpanRecord(
            new_id(), run.trace_id, step.name, event.topic, event.id, d.attempt, _now(),
            None, "running", None, None, parent, self.worker,
        )  # fmt: skip
        observers = self.observers
        if observers:
            notify(observers, "on_span_start", span)
        task = TASKS.get(self.loop) if TASKS is not None else asyncio.current_task()
        running = self._running
        running[task] = (span, run)
        ctx = Context(self, step, run, span.id, d.event.id)
        retry = False
        try:
            data = d.payload
            if data is NO_PAYLOAD:  # a delivery from outside this process: decode it
                data = loads_payload(d.event.data_json)
            model = step.input_model
            if model is not None and type(data) is not model:  # model_validate, one call less
                data = model.__pydantic_validator__.validate_python(data)
            handler = step.invoke
            if handler is not None and not (step.timeout_s or self.config.default_timeout_s):
                await handler(data, ctx)  # no limit: nothing to watch (the hot path)
            else:
                await invoke(step, data, ctx, span, self.config.default_timeout_s, self.deadlines)
            span.status = "ok"
        except asyncio.CancelledError:
            span.status = "error"
            span.error = "cancelled"
            raise
        except PydanticValidationError as e:
            err = e.errors()[0]
            field_path = ".".join(map(str, err["loc"])) or "(payload)"
            span.status = "invalid"
            span.error = PayloadError(
                f"invalid payload on delivery: {field_path}: {err['msg']}",
                step=step.name,
                topic=d.event.topic,
                field=field_path,
            ).format()
        except HandlerTimeout as e:
            span.status = "timeout"
            span.error = e.format()
            retry = True
        except Exception as e:
            span.status = "error"
            span.error = f"{type(e).__name__}: {e}"
            span.traceback = user_traceback(e)
            retry = True
        finally:
            span.end = end = _now()
            running.pop(task, None)
            watchdog = self._watchdog
            if watchdog is not None and end - span.start >= watchdog.threshold:
                watchdog.report_now()  # a stall it saw: its warning goes in before the run ends
            run.span_records.append(span)
            self.recorder.span(span)
            if observers:
                notify(observers, "on_span_end", span)
        if span.status != "ok":
            retries = step.retries if step.retries is not None else self.config.default_retries
            if retry and d.attempt <= retries:
                delay = min(step.retry_backoff_s * 2 ** (d.attempt - 1), MAX_BACKOFF_S)
                again = d.again(_now() + delay)
                if isinstance(again.payload, BaseModel):  # the instance the failed attempt had,
                    again = replace(again, payload=NO_PAYLOAD)  # maybe changed: from the JSON
                self.bus.publish(again, delay)
                if self._shared:
                    self._settle(run)
                return
            self._dead_letter(d, run, span)
        elif d.dead_letter_id is not None:
            self._replayed(d, run)
        self._settle(run)

    def _adopt(self, d: Delivery) -> Run:
        """The run of a delivery this engine did not publish (another process's, on a shared
        bus): tracked here until its deliveries settle."""
        run = Run(d.event.trace_id, d.event.topic, "delivery", _now(), self.worker)
        run.traceparent = d.traceparent
        run.record.version = d.version  # chosen at the root: every later event keeps it
        self.runs[run.trace_id] = run
        if not self._shared:
            self.ledger.add(run.trace_id)
            assert self._idle is not None
            self._idle.clear()
        return run

    def _dead_letter(self, d: Delivery, run: Run, span: SpanRecord) -> None:
        """One dead letter per (event, step): a replay that fails again updates the one it
        replayed (attempts, last error, history) instead of adding another."""
        error = span.error or span.status
        dead = self._replaying.pop(d.dead_letter_id, None) if d.dead_letter_id else None
        if dead is None:
            dead = new_dead_letter(
                run.trace_id, d.step, d.event.topic, d.event.id, d.event.data_json, error, d.attempt
            )
        else:
            failed_again(dead, run.trace_id, d.attempt, error)
        run.dead_letters.append(dead)
        self.recorder.dead_letter(dead)
        if self._shared:
            self.bus.note(run.trace_id, errors=1)

    def _replayed(self, d: Delivery, run: Run) -> None:
        dead = self._replaying.pop(d.dead_letter_id or "", None)
        if dead is None:
            return
        dead.replayed = True
        dead.history_json = add_history(dead.history_json, run.trace_id, d.attempt, None)
        self.recorder.dead_letter(dead)

    def _settle(self, run: Run) -> None:
        ledger = self.ledger
        if ledger.settle(run.trace_id):
            if not self._shared:
                self._finish(run)
            elif run.trace_id in self.runs:  # a run of another process: nothing more runs here
                del self.runs[run.trace_id]
                ledger.close(run.trace_id)
        in_flight = ledger.in_flight
        if self._full and in_flight <= self.config.max_in_flight // 2:
            self._full = False
            assert self._capacity is not None
            self._capacity.set()
        if in_flight == 0:
            assert self._idle is not None
            self._idle.set()

    def _finish(self, run: Run) -> None:
        run._finish(_now())
        self.runs.pop(run.trace_id, None)
        self.ledger.close(run.trace_id)
        self.recorder.run_ended(run.record)
        if self.observers:
            notify(self.observers, "on_run_end", run)

    # ------------------------------------------------------------ runs that start with a step
    async def call(
        self,
        step: StepRecord,
        data: Any,
        *,
        trigger: str,
        topic: str,
        traceparent: str | None = None,
    ) -> tuple[Any, Run]:
        """Run one step directly, as the first span of a new run (an api step for a request, a
        cron step when it fires); see ``wistro.core.direct.call``."""
        return await direct.call(
            self, step, data, trigger=trigger, topic=topic, traceparent=traceparent
        )

    async def replay(self, dead: dict[str, Any] | DeadLetter, wait: bool = True) -> Run:
        """Deliver a dead letter again to its step, in a new run; see
        ``wistro.core.direct.replay``."""
        return await direct.replay(self, dead, wait)


def add_observer(engine: Engine, observer: Observer) -> Callable[[], None]:
    engine.observers.append(observer)
    return lambda: engine.observers.remove(observer)
