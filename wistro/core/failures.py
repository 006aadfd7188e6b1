"""How the engine turns failures into records: payloads as JSON whatever they hold, the user's
part of a traceback, the wall-time check of handlers that never yield, a delivery to a step that
is gone, dead letters and their history, and the warning for a step that blocked the loop."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from wistro.core.fast_json import ORJSON_OPTIONS
from wistro.core.run import Run
from wistro.core.step import StepRecord
from wistro.core.watchdog import Blocker
from wistro.errors import HandlerTimeout, PayloadError, UnknownStepError
from wistro.tracing.records import DeadLetter, LogRecord, SpanRecord, new_id, record_of

_now = time.time
_ENGINE_DIR = __file__.rsplit("/", 2)[0] + "/"  # wistro/: every frame of the engine


_encode = json.JSONEncoder(separators=(",", ":")).encode
# orjson writes what the stdlib encoder writes, ten times faster; datetimes and dataclasses it
# would encode are passed on instead, so they are refused as before. What orjson refuses (ints
# over 64 bits, keys that are not str, lone surrogates) goes to the stdlib encoder, which decides.
_fast = orjson.dumps


def dumps_payload(data: Any, topic: str) -> str:
    """The payload as compact JSON text, or a PayloadError naming the topic."""
    try:
        return _fast(data, option=ORJSON_OPTIONS).decode()
    except TypeError:
        pass
    try:
        return _encode(data)
    except (TypeError, ValueError) as e:
        raise PayloadError(f"payload is not JSON: {e}", topic=topic) from None


def loads_payload(text: str) -> Any:
    """A payload's JSON text as data (what another process published)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity, which the stdlib writes and reads
        return json.loads(text)


def dumps_safe(data: Any) -> str:
    try:
        return dumps_payload(data, "")
    except PayloadError:
        return _encode(repr(data))


def user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame outside the engine on: the user's code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_ENGINE_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def missing_step(name: str) -> StepRecord:
    """A delivery to a step that is no longer registered (removed by a reload): it fails with
    that error and is dead-lettered, never dropped."""

    async def gone(data: Any, ctx: Any) -> Any:
        raise UnknownStepError("the step is no longer registered (removed or renamed?)", step=name)

    return StepRecord(
        name=name,
        file=Path(name),
        rel_file="",
        language="python",
        type="event",
        hash="",
        retries=0,
        invoke=gone,
    )


def new_dead_letter(
    trace_id: str, step: str, topic: str, event_id: str, data_json: str, error: str, attempts: int
) -> DeadLetter:
    """The dead letter of a delivery (event, step) that failed for good."""
    dead = DeadLetter(new_id(), trace_id, step, topic, event_id, data_json, error, attempts, _now())
    dead.history_json = add_history("[]", trace_id, attempts, error)
    return dead


def failed_again(dead: DeadLetter, trace_id: str, attempts: int, error: str) -> None:
    """A replay of ``dead`` failed too: the same dead letter, updated (never a second one)."""
    dead.attempts += attempts
    dead.error = error
    dead.ts = _now()
    dead.replayed = False
    dead.history_json = add_history(dead.history_json, trace_id, attempts, error)


def dead_letter_of(row: dict[str, Any]) -> DeadLetter:
    """A stored dead letter (a row of ``TraceStore.dead_letters``) as a record."""
    record: DeadLetter = record_of(DeadLetter, row)
    return record


def dumps_refused(data: Any) -> str:
    """A refused payload as JSON text, whatever it is (lone surrogates and all)."""
    try:
        return json.dumps(data, default=repr)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(repr(data))


def add_history(history_json: str, trace_id: str, attempts: int, error: str | None) -> str:
    try:
        history = json.loads(history_json or "[]")
    except ValueError:
        history = []
    history.append(
        {"trace_id": trace_id, "attempts": attempts, "error": error, "ts": round(_now(), 3)}
    )
    return json.dumps(history[-50:])


def check_wall_time(span: SpanRecord, limit: float, step: str, topic: str) -> None:
    """A handler that never yields cannot be cancelled by ``asyncio.timeout``; when it ran past
    its limit anyway, it is failed as timed out."""
    took = _now() - span.start
    if took > limit:
        raise HandlerTimeout(
            f"handler timed out: ran {took:.2f}s without yielding (limit {limit:g}s); it "
            "blocked the event loop",
            step=step,
            topic=topic,
        )


def blocked_warning(where: Blocker, seconds: float, steps: dict[str, StepRecord]) -> LogRecord:
    """The watchdog found a step blocking the loop: the warning for its span (and the console)."""
    span: SpanRecord | None = where.span if isinstance(where.span, SpanRecord) else None
    run: Run | None = where.run if isinstance(where.run, Run) else None
    step = span.step if span is not None else None
    record = steps.get(step) if step else None
    file = record.rel_file if record is not None else where.file
    ms = seconds * 1000
    message = (
        f"the event loop was blocked for {ms:.0f} ms by {file}:{where.line}: an async handler "
        "must not call blocking code (use a plain `def` handler, or `await asyncio.to_thread`)"
    )
    fields = {"blocked_ms": round(ms, 1), "file": file, "line": where.line}
    trace_id = run.trace_id if run is not None else (span.trace_id if span else "")
    log = LogRecord(
        trace_id, span.id if span else None, step, "warning", message, json.dumps(fields), _now()
    )
    if run is not None:
        run.log_records.append(log)
    return log
