"""The trace-store interface. SQLite is the default; memory is for tests; others plug in here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from wistro.tracing.records import (
    Batch,
    DeadLetter,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
    Trace,
    batch_of_rows,
    batch_rows,
    record_of,
)
from wistro.tracing.writer_process import WriterSpec


class TraceStore(ABC):
    """Persists runs, spans, events, logs, state operations and dead letters.

    ``write`` is called from one writer thread with batches; the read methods may be called
    from any thread. Rows come back as plain dicts whose keys are the record field names
    (``data_json``/``fields_json``/``value_json`` stay JSON text), newest run first.
    """

    # Who writes the batches: "auto" (a writer process once the load is high, if the store has a
    # ``writer_spec``), "process" (from the start) or "thread" (always this process).
    writer: str = "auto"
    # True: ``write`` and ``prepare`` take a batch whose events and spans are already tuples of
    # their fields, in field order (``records.EVENT_ROW``, ``records.SPAN_ROW``), made when
    # they were recorded, on the loop's thread while they are still in the CPU's cache: the
    # writer thread, which holds the GIL while it prepares a batch, then has less to do.
    rows_when_recorded: bool = False

    @abstractmethod
    def write(self, batch: Batch) -> None: ...

    def prepare(self, batch: Batch) -> Any:
        """``batch`` as plain values (str, int, float, bool, None and bytes, in tuples and
        lists), for ``write_prepared``, in this process or in the writer process; a store
        makes them as close to what it writes as it can, so that its writer process only
        writes. By default, the records as tuples."""
        return batch_rows(batch)

    def write_prepared(self, prepared: Any) -> None:
        """Write what ``prepare`` made (``write(batch)`` is ``write_prepared(prepare(batch))``)."""
        self.write(batch_of_rows(prepared))

    def writer_spec(self) -> WriterSpec | None:
        """How a writer process opens this store again (plain values), or None: this store can
        only be written by this process (the memory store, most custom ones)."""
        return None

    def written_elsewhere(self) -> None:  # noqa: B027 - optional hook
        """Another process wrote batches meant for this store (the writer process, now gone):
        forget what was cached about its contents."""

    @abstractmethod
    def list_runs(
        self, limit: int = 50, status: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]: ...

    @abstractmethod
    def get_run(self, trace_id: str) -> dict[str, Any]:
        """``{"run": {...}, "spans": [...], "events": [...], "logs": [...], "state_ops": [...],
        "dead_letters": [...]}`` for a full trace id or a unique prefix of one (at least 4
        characters); raises ``TraceNotFound`` naming the id when there is none or it is
        ambiguous. Lists are in time order."""

    def get_trace(self, trace_id: str) -> Trace:
        """``get_run`` as typed records (the same dataclasses the engine wrote)."""
        raw = self.get_run(trace_id)
        return Trace(
            run=record_of(RunRecord, raw["run"]),
            spans=[record_of(SpanRecord, r) for r in raw["spans"]],
            events=[record_of(EventRecord, r) for r in raw["events"]],
            logs=[record_of(LogRecord, r) for r in raw["logs"]],
            state_ops=[record_of(StateOpRecord, r) for r in raw["state_ops"]],
            dead_letters=[record_of(DeadLetter, r) for r in raw["dead_letters"]],
        )

    @abstractmethod
    def logs(
        self, after: int = 0, limit: int = 1000, trace_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Log rows with a cursor: each row has ``seq`` (increasing); pass the last one seen as
        ``after`` to follow the log."""

    @abstractmethod
    def dead_letters(self, include_replayed: bool = False) -> list[dict[str, Any]]: ...

    @abstractmethod
    def get_dead_letter(self, id_or_prefix: str) -> dict[str, Any]: ...

    @abstractmethod
    def mark_replayed(self, dead_letter_id: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
