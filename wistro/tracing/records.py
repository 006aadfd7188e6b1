"""What a trace is made of. Plain slotted dataclasses: they are created on the hot path."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

_LOW = [f"{i:02x}" for i in range(256)]


def _ids(prefix: str) -> Iterator[str]:
    """``prefix`` + a counter in 8 hex digits, from 1: the counter's text is made once per 256
    ids, and each id is one concatenation (a third of formatting each: two ids a hop)."""
    for high in itertools.count(0):
        head = f"{prefix}{high:06x}"
        for low in _LOW if high else _LOW[1:]:
            yield head + low


_PREFIX = os.urandom(4).hex()
_next_id = _ids(_PREFIX).__next__


def new_id() -> str:
    """A process-unique, sortable-within-process id (16 hex digits, also a valid W3C span id);
    cheap enough for every event and span."""
    return _next_id()


def _trace_ids() -> Iterator[str]:
    """Random 128-bit ids, read from the OS 256 at a time (a syscall each was 1 µs a run)."""
    while True:
        block = os.urandom(16 * 256).hex()
        for i in range(0, len(block), 32):
            yield block[i : i + 32]


_next_trace_id = _trace_ids().__next__


def _after_fork() -> None:  # a forked child must not hand out its parent's next ids
    global _next_trace_id, _next_id, _PREFIX
    _next_trace_id = _trace_ids().__next__
    _PREFIX = os.urandom(4).hex()
    _next_id = _ids(_PREFIX).__next__


os.register_at_fork(after_in_child=_after_fork)


def new_trace_id() -> str:
    """A W3C trace id: 32 lowercase hex digits, random."""
    return _next_trace_id()


@dataclass(slots=True)
class RunRecord:
    trace_id: str
    trigger: str  # "emit", "cli", "api", "cron", "replay", "test"
    topic: str
    status: str  # running | ok | error | refused | interrupted
    start: float
    end: float | None = None
    n_events: int = 0
    n_errors: int = 0
    worker: str | None = None  # "host:pid" of the process that started it
    version: str | None = None  # the project version (short lock hash) the run ran on


@dataclass(slots=True)
class EventRecord:
    id: str
    trace_id: str
    topic: str
    data_json: str
    source: str  # step name, or the trigger for the first event
    parent_span_id: str | None
    ts: float
    error: str | None = None  # set when the emit was refused (invalid payload, undeclared topic)


@dataclass(slots=True)
class SpanRecord:
    id: str
    trace_id: str
    step: str
    topic: str
    event_id: str
    attempt: int
    start: float
    end: float | None = None
    status: str = "running"  # running | ok | error | timeout | invalid
    error: str | None = None
    traceback: str | None = None
    parent_span_id: str | None = None  # the span that emitted its event; at the root, a caller's
    worker: str | None = None  # "host:pid" of the process that ran it


@dataclass(slots=True)
class LogRecord:
    trace_id: str
    span_id: str | None
    step: str | None
    level: str
    message: str
    fields_json: str
    ts: float


@dataclass(slots=True)
class StateOpRecord:
    trace_id: str
    span_id: str | None
    step: str | None
    op: str  # get | set | update | delete | get_group | clear
    group: str
    key: str | None
    value_json: str | None
    ts: float


@dataclass(slots=True)
class DeadLetter:
    id: str
    trace_id: str
    step: str
    topic: str
    event_id: str
    data_json: str
    error: str
    attempts: int
    ts: float
    replayed: bool = False
    history_json: str = "[]"  # [{trace_id, attempts, error (None: it succeeded), ts}, ...]


@dataclass(slots=True)
class Batch:
    """Everything recorded since the last flush, written to a store in one transaction."""

    runs: list[RunRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    state_ops: list[StateOpRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.runs)
            + len(self.events)
            + len(self.spans)
            + len(self.logs)
            + len(self.state_ops)
            + len(self.dead_letters)
        )


# A record as the tuple of its fields (``TraceStore.rows_when_recorded``; a store's chunks).
EVENT_ROW = attrgetter(*(f.name for f in fields(EventRecord)))
SPAN_ROW = attrgetter(*(f.name for f in fields(SpanRecord)))
STATE_OP_ROW = attrgetter(*(f.name for f in fields(StateOpRecord)))

_BATCH_TABLES: tuple[tuple[str, type], ...] = (
    ("runs", RunRecord),
    ("events", EventRecord),
    ("spans", SpanRecord),
    ("logs", LogRecord),
    ("state_ops", StateOpRecord),
    ("dead_letters", DeadLetter),
)
_BATCH_GETTERS = [(name, attrgetter(*(f.name for f in fields(cls)))) for name, cls in _BATCH_TABLES]


def batch_rows(batch: Batch) -> tuple[list[tuple[Any, ...]], ...]:
    """A batch as plain values: per record type, its records as tuples of their fields."""
    return tuple(list(map(get, getattr(batch, name))) for name, get in _BATCH_GETTERS)


def batch_of_rows(rows: tuple[list[tuple[Any, ...]], ...]) -> Batch:
    """The batch ``batch_rows`` made."""
    return Batch(
        *[[cls(*row) for row in table] for (_, cls), table in zip(_BATCH_TABLES, rows, strict=True)]
    )


@dataclass(slots=True)
class Trace:
    """One stored trace as typed records (``TraceStore.get_trace``), lists in time order."""

    run: RunRecord
    spans: list[SpanRecord]
    events: list[EventRecord]
    logs: list[LogRecord]
    state_ops: list[StateOpRecord]
    dead_letters: list[DeadLetter]


def record_of(cls: type[Any], row: dict[str, Any]) -> Any:
    """A stored row (a dict, maybe with store-only keys such as ``seq``) as a ``cls`` record."""
    return cls(**{name: row[name] for name in cls.__slots__ if name in row})


class StoredTrace(dict[str, Any]):
    """One stored trace (``TraceStore.get_run``), typed so that a notebook can display it."""


def as_dict(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}
