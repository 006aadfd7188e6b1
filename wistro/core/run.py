"""A run: everything one trigger caused, with its records as pandas DataFrames."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from wistro.tracing.records import (
    DeadLetter,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
    Trace,
    as_dict,
)

if TYPE_CHECKING:
    import pandas as pd


def frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=columns)
    for col in ("start", "end", "ts"):
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    if "start" in df.columns and "end" in df.columns:
        df.insert(
            list(df.columns).index("end") + 1,
            "duration_ms",
            (df["end"] - df["start"]).dt.total_seconds() * 1000,
        )
    return df


def _decode(rows: list[dict[str, Any]], src: str, dst: str) -> list[dict[str, Any]]:
    for row in rows:
        text = row.pop(src, None)
        row[dst] = json.loads(text) if text else None
    return rows


EVENT_COLUMNS = ["id", "topic", "data", "source", "parent_span_id", "ts", "error"]
SPAN_COLUMNS = [
    "id",
    "step",
    "topic",
    "event_id",
    "attempt",
    "status",
    "start",
    "end",
    "error",
    "traceback",
    "parent_span_id",
    "worker",
]
LOG_COLUMNS = ["ts", "level", "step", "message", "fields", "span_id"]
STATE_COLUMNS = ["ts", "op", "group", "key", "value", "step", "span_id"]


class Run:
    """What one emit caused. ``await`` it (or ``run.wait()``) for the finished run."""

    def __init__(
        self, trace_id: str, topic: str, trigger: str, start: float, worker: str | None = None
    ) -> None:
        self.record = RunRecord(trace_id, trigger, topic, "running", start, worker=worker)
        self.trace_id = trace_id
        self.event_records: list[EventRecord] = []
        self.span_records: list[SpanRecord] = []
        self.log_records: list[LogRecord] = []
        self.state_records: list[StateOpRecord] = []
        self.dead_letters: list[DeadLetter] = []
        self.failures: list[str] = []  # failed triggers that are not replayable (an api request)
        # One future per waiter (cancelling one waiter leaves the others waiting), set at the end.
        self._waiters: list[asyncio.Future[None]] | None = None
        self._finished = False
        self.refused = False  # an emit from outside that was refused: nothing ran
        self.traceparent: str | None = None  # the caller's W3C trace context, if it sent one

    # ------------------------------------------------------------ identity and status
    @property
    def topic(self) -> str:
        return self.record.topic

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def version(self) -> str | None:
        """The project version (short lock hash) this run was routed to at its root."""
        return self.record.version

    @property
    def done(self) -> bool:
        return self._finished

    @property
    def duration_ms(self) -> float | None:
        r = self.record
        return (r.end - r.start) * 1000 if r.end is not None else None

    @property
    def errors(self) -> list[str]:
        """One line per failure: refused emits, and deliveries that failed for good."""
        out = [f"{e.source} -> {e.topic}: {e.error}" for e in self.event_records if e.error]
        out += [f"{d.step}: {d.error}" for d in self.dead_letters]
        return out + self.failures

    def _finish(self, end: float, n_events: int | None = None, n_errors: int | None = None) -> None:
        """Done: counts from this process's records, or (a run on a shared bus, whose spans ran
        in several processes) the counts the bus kept."""
        if self._finished:
            return
        self._finished = True
        r = self.record
        r.end = end
        r.n_events = len(self.event_records) if n_events is None else n_events
        r.n_errors = (
            len(self.dead_letters)
            + len(self.failures)
            + sum(1 for e in self.event_records if e.error)
            if n_errors is None
            else n_errors
        )
        r.status = "refused" if self.refused else "error" if r.n_errors else "ok"
        if self._waiters is not None:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters = None

    def merge(self, stored: Trace) -> None:
        """Add the records of this run that other processes wrote to the shared trace store
        (a run whose deliveries ran in several workers), in time order; ours are kept."""
        events = {e.id for e in self.event_records}
        self.event_records += [e for e in stored.events if e.id not in events]
        self.event_records.sort(key=lambda e: e.ts)
        spans = {sp.id for sp in self.span_records}
        self.span_records += [sp for sp in stored.spans if sp.id not in spans]
        self.span_records.sort(key=lambda sp: sp.start)
        logs = {(r.ts, r.span_id, r.message) for r in self.log_records}
        self.log_records += [r for r in stored.logs if (r.ts, r.span_id, r.message) not in logs]
        self.log_records.sort(key=lambda r: r.ts)
        ops = {(r.ts, r.span_id, r.op, r.key) for r in self.state_records}
        self.state_records += [
            r for r in stored.state_ops if (r.ts, r.span_id, r.op, r.key) not in ops
        ]
        self.state_records.sort(key=lambda r: r.ts)
        dead = {d.id for d in self.dead_letters}
        self.dead_letters += [d for d in stored.dead_letters if d.id not in dead]

    async def wait(self) -> Run:
        if not self._finished:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = [waiter]
            else:
                self._waiters.append(waiter)
            await waiter
        return self

    def __await__(self) -> Any:
        return self.wait().__await__()

    # ------------------------------------------------------------ assertions for tests
    def payloads(self, topic: str) -> list[Any]:
        """Payloads emitted on ``topic`` (delivered or not refused), in order."""
        return [
            json.loads(e.data_json) for e in self.event_records if e.topic == topic and not e.error
        ]

    def emitted(self, topic: str, **fields: Any) -> bool:
        """True when an event on ``topic`` was emitted whose payload has these field values."""
        return any(
            isinstance(p, dict) and all(p.get(k) == v for k, v in fields.items())
            for p in self.payloads(topic)
        )

    def ran(self, step: str) -> bool:
        return any(s.step == step and s.status == "ok" for s in self.span_records)

    # ------------------------------------------------------------ DataFrames
    @property
    def events(self) -> pd.DataFrame:
        rows = _decode([as_dict(e) for e in self.event_records], "data_json", "data")
        return frame(rows, EVENT_COLUMNS)

    @property
    def spans(self) -> pd.DataFrame:
        return frame([as_dict(s) for s in self.span_records], SPAN_COLUMNS)

    @property
    def logs(self) -> pd.DataFrame:
        return frame(
            _decode([as_dict(r) for r in self.log_records], "fields_json", "fields"), LOG_COLUMNS
        )

    @property
    def state_ops(self) -> pd.DataFrame:
        return frame(
            _decode([as_dict(r) for r in self.state_records], "value_json", "value"), STATE_COLUMNS
        )

    def __repr__(self) -> str:
        took = f" in {self.duration_ms:.1f} ms" if self.duration_ms is not None else ""
        errors = f", {len(self.errors)} error(s)" if self.errors else ""
        return (
            f"<Run {self.trace_id[:12]} {self.topic} {self.status}: "
            f"{len(self.event_records)} events, {len(self.span_records)} spans{errors}{took}>"
        )
