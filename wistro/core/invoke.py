"""Running one handler under its time limit, the same way for deliveries and direct calls."""

from __future__ import annotations

import asyncio
from typing import Any

from wistro.core.context import Context
from wistro.core.failures import check_wall_time
from wistro.core.step import StepRecord
from wistro.errors import HandlerTimeout, WistroError
from wistro.tracing.records import SpanRecord


async def invoke(
    step: StepRecord, data: Any, ctx: Context, span: SpanRecord, default_timeout_s: float | None
) -> Any:
    """``step``'s handler on ``data``: cancelled at ``timeout_s`` (``HandlerTimeout``), and failed
    as timed out when it ran past the limit without ever yielding."""
    if step.invoke is None:
        raise WistroError("the step has no handler bound", step=step.name)
    limit = step.timeout_s or default_timeout_s
    if limit is None:
        return await step.invoke(data, ctx)
    timer = asyncio.timeout(limit)
    try:
        async with timer:
            result = await step.invoke(data, ctx)
    except TimeoutError:
        if not timer.expired():
            raise
        raise HandlerTimeout(
            f"handler timed out after {limit:g}s", step=step.name, topic=span.topic
        ) from None
    check_wall_time(span, limit, step.name, span.topic)
    return result
