"""Traces: records, the store interface and its implementations, the recorder."""

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

__all__ = [
    "Batch",
    "DeadLetter",
    "EventRecord",
    "LogRecord",
    "RunRecord",
    "SpanRecord",
    "StateOpRecord",
    "TraceStore",
]
