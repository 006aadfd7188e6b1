"""An in-memory trace store for tests and notebooks; also holds the rules every store shares."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from wistro.errors import TraceNotFound
from wistro.tracing.records import (
    Batch,
    EventRecord,
    LogRecord,
    SpanRecord,
    StateOpRecord,
    as_dict,
)
from wistro.tracing.store import TraceStore

MIN_PREFIX = 4
"""Shortest id prefix that is looked up as a prefix; shorter ones must match exactly."""

TRACE_HINT = "`wistro traces` lists recent runs"
DEAD_LETTER_HINT = "`wistro replay` lists dead letters"
RUN_UPDATE_FIELDS = ("status", "end", "n_events", "n_errors")
"""What a RunRecord written again for a known trace id changes."""
OPEN_STATUSES = ("running", "interrupted")
"""Statuses that never replace an end already written: running (the origin's start landing
after another process wrote the end), interrupted (recovery, which only ends open runs)."""


def prefix_matches(wanted: str, ids: Iterable[str]) -> list[str]:
    """The ids ``wanted`` may designate: those it prefixes, or only itself when it is short."""
    if len(wanted) < MIN_PREFIX:
        return [i for i in ids if i == wanted]
    return [i for i in ids if i.startswith(wanted)]


def pick_one(kind: str, wanted: str, matches: list[str], hint: str) -> str:
    """The single id ``wanted`` designates among ``matches``, or a ``TraceNotFound`` saying why."""
    if wanted in matches:
        return wanted
    if not matches:
        if 0 < len(wanted) < MIN_PREFIX:
            hint = f"give the full id or at least {MIN_PREFIX} characters; {hint}"
        raise TraceNotFound(f"no {kind} {wanted!r}", hint=hint)
    if len(matches) > 1:
        shown = ", ".join(sorted(matches)[:5]) + (", ..." if len(matches) > 5 else "")
        raise TraceNotFound(
            f"{kind} id prefix {wanted!r} is ambiguous: it matches {shown}",
            hint="give more characters of the id",
        )
    return matches[0]


@dataclass(slots=True)
class _Trace:
    """Everything recorded for one trace id. Events, spans and state operations are the
    records the engine wrote (it never changes one after writing it: a span or an event is
    written again to change it), so keeping them costs a reference, not a copy; so are logs,
    each with its sequence number. Runs and dead letters are rows, since they change in
    place."""

    run: dict[str, Any] | None = None
    events: dict[str, EventRecord] = field(default_factory=dict)
    spans: dict[str, SpanRecord] = field(default_factory=dict)
    logs: list[tuple[int, LogRecord]] = field(default_factory=list)
    state_ops: list[StateOpRecord] = field(default_factory=list)


def _copies(rows: Iterable[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Copies of ``rows`` sorted by ``keys`` (ties keep insertion order, like SQLite's rowid)."""
    return [dict(r) for r in sorted(rows, key=lambda r: tuple(r[k] for k in keys))]


def _rows(records: Iterable[Any], *keys: str) -> list[dict[str, Any]]:
    """``records`` as rows sorted by ``keys`` (ties keep insertion order)."""
    return [as_dict(r) for r in sorted(records, key=attrgetter(*keys))]


def _seq_of(kept: tuple[int, LogRecord]) -> int:
    return kept[0]


def _log_row(kept: tuple[int, LogRecord]) -> dict[str, Any]:
    row = as_dict(kept[1])
    row["seq"] = kept[0]
    return row


def _prune_slack(retention_runs: int) -> int:
    """Runs kept beyond the retention before the oldest are dropped in one go (as SQLite)."""
    return retention_runs // 10 if retention_runs >= 100 else 0


class MemoryTraceStore(TraceStore):
    """Same semantics as the SQLite store (updates, prefixes, retention), kept in dicts."""

    def __init__(self, retention_runs: int = 10_000) -> None:
        self.retention_runs = retention_runs
        self._lock = threading.Lock()
        self._traces: dict[str, _Trace] = {}
        self._n_runs = 0
        self._logs: list[tuple[int, LogRecord]] = []  # (seq, record), in seq order
        self._seq = 0
        self._dead: dict[str, dict[str, Any]] = {}

    def _trace(self, trace_id: str) -> _Trace:
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = self._traces[trace_id] = _Trace()
        return trace

    def write(self, batch: Batch) -> None:
        with self._lock:
            for run in batch.runs:
                trace = self._trace(run.trace_id)
                if trace.run is None:
                    trace.run = as_dict(run)
                    self._n_runs += 1
                elif trace.run["status"] == "running" or run.status not in OPEN_STATUSES:
                    trace.run.update({f: getattr(run, f) for f in RUN_UPDATE_FIELDS})
            for event in batch.events:
                self._trace(event.trace_id).events[event.id] = event
            for span in batch.spans:
                self._trace(span.trace_id).spans[span.id] = span
            for log in batch.logs:
                self._seq += 1
                kept = (self._seq, log)
                self._trace(log.trace_id).logs.append(kept)
                self._logs.append(kept)
            for op in batch.state_ops:
                self._trace(op.trace_id).state_ops.append(op)
            for dead in batch.dead_letters:
                self._dead[dead.id] = as_dict(dead)
            if self._n_runs > self.retention_runs + _prune_slack(self.retention_runs):
                self._prune()

    def _prune(self) -> None:
        """Drop the oldest runs beyond ``retention_runs`` and every row of their traces."""
        runs = sorted(
            (t.run for t in self._traces.values() if t.run is not None),
            key=lambda r: (r["start"], r["trace_id"]),
        )
        doomed = {r["trace_id"] for r in runs[: len(runs) - self.retention_runs]}
        for trace_id in doomed:
            del self._traces[trace_id]
        self._logs = [kept for kept in self._logs if kept[1].trace_id not in doomed]
        self._dead = {k: d for k, d in self._dead.items() if d["trace_id"] not in doomed}
        self._n_runs = len(runs) - len(doomed)

    def list_runs(
        self, limit: int = 50, status: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            runs = [
                dict(t.run)
                for t in self._traces.values()
                if t.run is not None
                and (status is None or t.run["status"] == status)
                and (topic is None or t.run["topic"] == topic)
            ]
        runs.sort(key=lambda r: (r["start"], r["trace_id"]), reverse=True)
        return runs[:limit]

    def get_run(self, trace_id: str) -> dict[str, Any]:
        with self._lock:
            ids = (t for t, trace in self._traces.items() if trace.run is not None)
            found = pick_one("trace", trace_id, prefix_matches(trace_id, ids), TRACE_HINT)
            trace = self._traces[found]
            assert trace.run is not None
            return {
                "run": dict(trace.run),
                "spans": _rows(trace.spans.values(), "start", "id"),
                "events": _rows(trace.events.values(), "ts", "id"),
                "logs": [_log_row(kept) for kept in trace.logs],
                "state_ops": _rows(trace.state_ops, "ts"),
                "dead_letters": _copies(
                    (d for d in self._dead.values() if d["trace_id"] == found), "ts", "id"
                ),
            }

    def logs(
        self, after: int = 0, limit: int = 1000, trace_id: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            kept = self._logs if trace_id is None else self._trace_logs(trace_id)
            first = bisect.bisect_right(kept, after, key=_seq_of)  # a tail reads only what is new
            return [_log_row(k) for k in kept[first : first + max(limit, 0)]]

    def _trace_logs(self, trace_id: str) -> list[tuple[int, LogRecord]]:
        trace = self._traces.get(trace_id)
        return trace.logs if trace is not None else []

    def dead_letters(self, include_replayed: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            rows = [d for d in self._dead.values() if include_replayed or not d["replayed"]]
            return _copies(rows, "ts", "id")[::-1]

    def get_dead_letter(self, id_or_prefix: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._dead[self._resolve_dead(id_or_prefix)])

    def mark_replayed(self, dead_letter_id: str) -> None:
        with self._lock:
            self._dead[self._resolve_dead(dead_letter_id)]["replayed"] = True

    def _resolve_dead(self, wanted: str) -> str:
        matches = prefix_matches(wanted, self._dead)
        return pick_one("dead letter", wanted, matches, DEAD_LETTER_HINT)
