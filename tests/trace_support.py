"""Trace records for the trace-store tests: a run, a whole trace, the ids a store holds."""

from __future__ import annotations

from wistro.tracing.recorder import Recorder
from wistro.tracing.records import (
    Batch,
    DeadLetter,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
)
from wistro.tracing.store import TraceStore


def run(
    trace_id: str,
    start: float = 1.0,
    status: str = "running",
    topic: str = "orders",
    end: float | None = None,
    n_events: int = 0,
) -> RunRecord:
    return RunRecord(trace_id, "cli", topic, status, start, end, n_events)


def full_trace(trace_id: str, start: float) -> Batch:
    """One of every record type for ``trace_id``."""
    return Batch(
        runs=[run(trace_id, start)],
        events=[EventRecord(f"{trace_id}-e", trace_id, "orders", '{"n": 1}', "cli", None, start)],
        spans=[SpanRecord(f"{trace_id}-s", trace_id, "step", "orders", f"{trace_id}-e", 1, start)],
        logs=[LogRecord(trace_id, f"{trace_id}-s", "step", "info", "hi", "{}", start)],
        state_ops=[StateOpRecord(trace_id, None, "step", "set", "g", "k", "1", start)],
        dead_letters=[
            DeadLetter(
                f"{trace_id}-d", trace_id, "step", "orders", f"{trace_id}-e", "{}", "boom", 3, start
            )
        ],
    )


def record_trace(recorder: Recorder, batch: Batch) -> None:
    """Hand ``batch``'s runs, events, spans and state operations to ``recorder`` as the engine
    does, one record at a time."""
    for record in batch.runs:
        recorder.run(record)
    for event in batch.events:
        recorder.event(event)
    for span in batch.spans:
        recorder.span(span)
    for op in batch.state_ops:
        recorder.state_op(op)


def trace_ids(store: TraceStore) -> set[str]:
    return {r["trace_id"] for r in store.list_runs(limit=1000)}
