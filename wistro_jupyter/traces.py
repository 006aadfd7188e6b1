"""One trace as plain JSON-able data: the ``trace`` trait of ``TraceView`` and the input of the
HTML renderers.

``{"run": {...}, "spans": [...], "events": [...], "logs": [...], "state_ops": [...]}``: field
names as in ``wistro.tracing.records``, except that the JSON text fields are decoded (events'
``data_json`` -> ``data``, logs' ``fields_json`` -> ``fields``, state ops' ``value_json`` ->
``value``); times are epoch seconds (floats); runs and spans also carry ``duration_ms`` (``None``
while running). Built from a live ``Run`` (incrementally: records are append-only, so each one is
converted once) or from a stored trace (``app.trace(id)``).
"""

from __future__ import annotations

import json
from typing import Any

from wistro.core.run import Run
from wistro.tracing.records import EventRecord, LogRecord, SpanRecord, StateOpRecord, as_dict

TraceData = dict[str, Any]


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _duration_ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 3)


def event_dict(e: EventRecord | dict[str, Any]) -> dict[str, Any]:
    row = as_dict(e) if isinstance(e, EventRecord) else dict(e)
    row["data"] = _loads(row.pop("data_json", None))
    return row


def span_dict(s: SpanRecord | dict[str, Any]) -> dict[str, Any]:
    row = as_dict(s) if isinstance(s, SpanRecord) else dict(s)
    row["duration_ms"] = _duration_ms(row.get("start"), row.get("end"))
    return row


def log_dict(r: LogRecord | dict[str, Any]) -> dict[str, Any]:
    row = as_dict(r) if isinstance(r, LogRecord) else dict(r)
    row["fields"] = _loads(row.pop("fields_json", None)) or {}
    row.pop("seq", None)
    return row


def state_op_dict(r: StateOpRecord | dict[str, Any]) -> dict[str, Any]:
    row = as_dict(r) if isinstance(r, StateOpRecord) else dict(r)
    row["value"] = _loads(row.pop("value_json", None))
    return row


def run_dict(run: Run) -> dict[str, Any]:
    row = as_dict(run.record)
    if not run.done:  # the record's counts are filled in when the run ends
        row["n_events"] = len(run.event_records)
        row["n_errors"] = len(run.errors)
    row["duration_ms"] = _duration_ms(row["start"], row["end"])
    return row


def from_stored(stored: dict[str, Any]) -> TraceData:
    """A trace from the store (``app.trace(id)`` / ``TraceStore.get_run``)."""
    run = dict(stored["run"])
    run["duration_ms"] = _duration_ms(run.get("start"), run.get("end"))
    return {
        "run": run,
        "spans": [span_dict(s) for s in stored.get("spans", [])],
        "events": [event_dict(e) for e in stored.get("events", [])],
        "logs": [log_dict(r) for r in stored.get("logs", [])],
        "state_ops": [state_op_dict(r) for r in stored.get("state_ops", [])],
    }


class RunSnapshot:
    """Builds the trace data of a live run again and again, converting every record once."""

    __slots__ = ("_events", "_logs", "_ops", "_spans", "run", "running")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.running: dict[str, SpanRecord] = {}  # span id -> span started, not yet ended
        self._events: list[dict[str, Any]] = []
        self._spans: list[dict[str, Any]] = []
        self._logs: list[dict[str, Any]] = []
        self._ops: list[dict[str, Any]] = []

    @staticmethod
    def _extend(out: list[dict[str, Any]], records: list[Any], convert: Any) -> None:
        n = len(records)
        if len(out) < n:
            out.extend(convert(r) for r in records[len(out) : n])

    def data(self) -> TraceData:
        run = self.run
        self._extend(self._events, run.event_records, event_dict)
        self._extend(self._spans, run.span_records, span_dict)
        self._extend(self._logs, run.log_records, log_dict)
        self._extend(self._ops, run.state_records, state_op_dict)
        spans = list(self._spans)
        for span in list(self.running.values()):
            if span.end is None:
                spans.append(span_dict(span))
        spans.sort(key=lambda s: (s["start"], s["id"]))
        return {
            "run": run_dict(run),
            "spans": spans,
            "events": list(self._events),
            "logs": list(self._logs),
            "state_ops": list(self._ops),
        }


def from_run(run: Run) -> TraceData:
    return RunSnapshot(run).data()


def empty(topic: str, data: Any = None) -> TraceData:
    """What a view shows before its run has started."""
    return {
        "run": {
            "trace_id": "",
            "trigger": "notebook",
            "topic": topic,
            "status": "pending",
            "start": None,
            "end": None,
            "n_events": 0,
            "n_errors": 0,
            "duration_ms": None,
        },
        "spans": [],
        "events": [],
        "logs": [],
        "state_ops": [],
    }


def _log_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r.get("ts"), r.get("span_id"), r.get("message"))


def _op_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r.get("ts"), r.get("span_id"), r.get("op"), r.get("key"))


def _union(
    local: list[dict[str, Any]], stored: list[dict[str, Any]], key: Any, order: Any
) -> list[dict[str, Any]]:
    seen = {key(r) for r in local}
    out = local + [r for r in stored if key(r) not in seen]
    out.sort(key=order)
    return out


def _span_order(s: dict[str, Any]) -> tuple[float, str]:
    return (s.get("start") or 0.0, str(s.get("id") or ""))


def _ts(r: dict[str, Any]) -> float:
    return float(r.get("ts") or 0.0)


def with_stored(local: TraceData, stored: TraceData, *, dead_letters: int = 0) -> TraceData:
    """A live run's data (``RunSnapshot``) with what other processes wrote of it to the shared
    trace store (``from_stored``): each record once, in time order. The run record is the local
    one; while it runs, its counts are those of the merged records (``dead_letters``: how many
    the store holds). A span both have is the one that ended, else the local one."""
    spans = {s["id"]: s for s in stored.get("spans", [])}
    for s in local.get("spans", []):
        other = spans.get(s["id"])
        if other is None or s.get("end") is not None or other.get("end") is None:
            spans[s["id"]] = s
    events = {e["id"]: e for e in stored.get("events", [])}
    events.update((e["id"], e) for e in local.get("events", []))
    run = dict(local["run"])
    if run.get("end") is None:
        run["n_events"] = len(events)
        refused = sum(1 for e in events.values() if e.get("error"))
        run["n_errors"] = max(int(run.get("n_errors") or 0), refused + dead_letters)
    return {
        "run": run,
        "spans": sorted(spans.values(), key=_span_order),
        "events": sorted(events.values(), key=_ts),
        "logs": _union(local.get("logs", []), stored.get("logs", []), _log_key, _ts),
        "state_ops": _union(local.get("state_ops", []), stored.get("state_ops", []), _op_key, _ts),
    }
