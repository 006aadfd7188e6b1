"""Runs that start with a step rather than an event: ``call`` (an api request, a cron tick:
the step's span is the run's first) and ``replay`` (a dead letter delivered again to its step).
``Engine.call`` and ``Engine.replay`` are these."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from wistro.bus.base import Delivery
from wistro.core.context import Context
from wistro.core.current import current_task_of
from wistro.core.failures import dead_letter_of, dumps_safe, new_dead_letter, user_traceback
from wistro.core.invoke import invoke
from wistro.core.observer import notify
from wistro.core.run import Run
from wistro.core.step import StepRecord
from wistro.errors import HandlerError, HandlerTimeout
from wistro.tracing.records import (
    DeadLetter,
    EventRecord,
    SpanRecord,
    as_dict,
    new_id,
    new_trace_id,
)
from wistro.tracing.traceparent import parse_traceparent

if TYPE_CHECKING:
    from wistro.core.engine import Engine

_now = time.time


# ------------------------------------------------------------ triggers
async def call(
    engine: Engine,
    step: StepRecord,
    data: Any,
    *,
    trigger: str,
    topic: str,
    traceparent: str | None = None,
) -> tuple[Any, Run]:
    """Run one step directly, as the first span of a new run (an api step for a request, a
    cron step when it fires). Returns ``(result, run)`` as soon as the handler returns; what it
    emitted goes on in the background (``await run`` to wait for it). A handler that fails
    raises ``HandlerError`` (or ``HandlerTimeout``) carrying ``trace_id``; the span records it.
    A valid W3C ``traceparent`` (``run.traceparent``) travels with the run's deliveries.
    """
    engine.start()
    if engine._shared:
        await engine.versions_known()
    caller = parse_traceparent(traceparent)
    run = Run(new_trace_id(), topic, trigger, _now(), engine.worker)
    # The handler runs here (it answers the request); what it emits goes to the run's version.
    run.record.version = engine.route(data, run.trace_id)
    if caller:
        run.traceparent = traceparent
    engine.runs[run.trace_id] = run
    engine.recorder.run(run.record)
    observers = engine.observers
    if observers:
        notify(observers, "on_run_start", run)
    if engine._shared:
        engine._open_shared(run, trigger, topic, holds=1)
    else:
        engine.ledger.add(run.trace_id)
        assert engine._idle is not None
        engine._idle.clear()
    span = SpanRecord(new_id(), run.trace_id, step.name, topic, "", 1, _now())
    span.worker = engine.worker
    span.parent_span_id = caller[1] if caller else None
    if observers:
        notify(observers, "on_span_start", span)
    task = current_task_of(engine.loop)
    engine._running[task] = (span, run)
    ctx = Context(engine, step, run, span.id)
    try:
        result = await invoke(
            step, data, ctx, span, engine.config.default_timeout_s, engine.deadlines
        )
        span.status = "ok"
        return result, run
    except HandlerTimeout as e:
        span.status, span.error = "timeout", e.format()
        e.trace_id = run.trace_id
        raise
    except Exception as e:
        span.status = "error"
        span.error = f"{type(e).__name__}: {e}"
        span.traceback = user_traceback(e)
        err = HandlerError(span.error, step=step.name, topic=topic)
        err.trace_id = run.trace_id
        raise err from e
    finally:
        span.end = _now()
        engine._running.pop(task, None)
        run.span_records.append(span)
        engine.recorder.span(span)
        if observers:
            notify(observers, "on_span_end", span)
        if span.status != "ok" and trigger == "api":  # the client got the error: no replay
            run.failures.append(f"{step.name}: {span.error}")
        elif span.status != "ok":
            error = span.error or span.status
            dead = new_dead_letter(run.trace_id, step.name, topic, "", dumps_safe(data), error, 1)
            run.dead_letters.append(dead)
            engine.recorder.dead_letter(dead)
        if not engine._shared:
            engine._settle(run)
        else:
            if span.status != "ok":
                engine.bus.note(run.trace_id, errors=1)
            engine.bus.release(run.trace_id)
            await engine.bus.flush_run(run.trace_id)  # what the call emitted is accepted first


# ------------------------------------------------------------ replay
async def replay(engine: Engine, dead: dict[str, Any] | DeadLetter, wait: bool = True) -> Run:
    """Deliver a dead letter again to its step, in a new run. Success marks it replayed;
    another failure updates it (attempts, error, history): never a second dead letter."""
    engine.start()
    letter = dead if isinstance(dead, DeadLetter) else dead_letter_of(dead)
    dead = as_dict(letter)
    step = engine.registry.get(dead["step"])
    data = json.loads(dead["data_json"])
    payload = engine.registry.topics.validator(dead["topic"])(data)
    if engine._shared:
        await engine.versions_known()
    run = Run(new_trace_id(), dead["topic"], "replay", _now(), engine.worker)
    run.record.version = engine.route(payload, run.trace_id)
    engine.runs[run.trace_id] = run
    engine.recorder.run(run.record)
    event = EventRecord(
        letter.event_id or new_id(),  # the original event's id: the same ctx.delivery_id
        run.trace_id,
        dead["topic"],
        dead["data_json"],
        f"replay:{dead['id']}",
        None,
        _now(),
    )
    run.event_records.append(event)
    engine.recorder.event(event)
    if engine._shared:
        engine._open_shared(run, "replay", dead["topic"])
        engine.bus.note(run.trace_id, events=1)
    else:
        engine.ledger.add(run.trace_id)
        assert engine._idle is not None
        engine._idle.clear()
    engine._replaying[letter.id] = letter
    engine.bus.publish(
        Delivery(step.name, event, version=run.version, payload=payload, dead_letter_id=letter.id)
    )
    if engine._shared:
        await engine.bus.flush_run(run.trace_id)
    if wait:
        await run.wait()
    return run
