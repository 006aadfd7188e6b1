"""Running one handler under its time limit, the same way for deliveries and direct calls."""

from __future__ import annotations

import asyncio
from typing import Any

from wistro.core.context import Context
from wistro.core.deadlines import Deadlines
from wistro.core.failures import check_wall_time
from wistro.core.step import StepRecord
from wistro.errors import HandlerTimeout, WistroError
from wistro.tracing.records import SpanRecord


async def invoke(
    step: StepRecord,
    data: Any,
    ctx: Context,
    span: SpanRecord,
    default_timeout_s: float | None,
    deadlines: Deadlines,
) -> Any:
    """``step``'s handler on ``data``: cancelled at ``timeout_s`` (``HandlerTimeout``), and failed
    as timed out when it ran past the limit without ever yielding."""
    if step.invoke is None:
        raise WistroError("the step has no handler bound", step=step.name)
    limit = step.timeout_s or default_timeout_s
    if limit is None:
        return await step.invoke(data, ctx)
    task = deadlines.current_task()
    if task is None:
        raise RuntimeError("a handler with a time limit must run in a task")
    # Deadlines.within inlined: the hot path of every handler with a limit (an api step has one
    # by default). The helper's own coroutine cost 0.8 µs a call here, a context manager 0.37.
    deadline = deadlines.start(task, limit)
    try:
        result = await step.invoke(data, ctx)
    except asyncio.CancelledError:
        if deadlines.end(deadline):
            raise _timed_out(step, span, limit) from None
        raise
    except BaseException:
        deadlines.end(deadline)
        raise
    if deadlines.end(deadline):  # cancelled at its limit, it caught that and went on
        raise _timed_out(step, span, limit)
    check_wall_time(span, limit, step.name, span.topic)
    return result


def _timed_out(step: StepRecord, span: SpanRecord, limit: float) -> HandlerTimeout:
    return HandlerTimeout(f"handler timed out after {limit:g}s", step=step.name, topic=span.topic)
