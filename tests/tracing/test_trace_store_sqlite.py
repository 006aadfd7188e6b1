"""What only the SQLite trace store does: WAL, one transaction per batch, files shared."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from trace_support import full_trace, run, trace_ids

from wistro.tracing.records import (
    Batch,
    EventRecord,
    LogRecord,
    RunRecord,
)
from wistro.tracing.sqlite import SQLiteTraceStore

TABLES = ("runs", "chunks", "logs", "dead_letters")  # events, spans, state ops: in chunks


def test_sqlite_uses_wal_and_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "traces.db"
    store = SQLiteTraceStore(path)
    store.write(full_trace("t1", 1.0))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._writer.execute("PRAGMA synchronous").fetchone() == {"synchronous": 1}  # NORMAL
    store.close()


def test_sqlite_second_store_on_same_file(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    first = SQLiteTraceStore(path)
    first.write(full_trace("aaaa1", 1.0))
    second = SQLiteTraceStore(path)
    assert second.get_run("aaaa1")["events"][0]["id"] == "aaaa1-e"

    first.write(full_trace("bbbb2", 2.0))  # written after the second store opened
    assert trace_ids(second) == {"aaaa1", "bbbb2"}
    assert len(second.logs()) == 2
    first.close()
    second.close()

    reopened = SQLiteTraceStore(path)
    assert trace_ids(reopened) == {"aaaa1", "bbbb2"}
    reopened.close()


def test_sqlite_retention_counts_runs_already_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    store = SQLiteTraceStore(path)
    store.write(Batch(runs=[run(f"t{i}", float(i)) for i in range(4)]))
    store.close()
    store = SQLiteTraceStore(path, retention_runs=3)
    store.write(Batch(runs=[run("t9", 9.0)]))
    assert trace_ids(store) == {"t2", "t3", "t9"}
    store.close()


def test_sqlite_batch_is_one_transaction(tmp_path: Path) -> None:
    store = SQLiteTraceStore(tmp_path / "traces.db")
    bad = LogRecord("t1", None, None, None, "m", "{}", 1.0)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.write(
            Batch(
                runs=[run("t1")],
                events=[EventRecord("e1", "t1", "orders", "{}", "cli", None, 1.0)],
                logs=[bad],
            )
        )
    assert store.list_runs() == []
    assert store.logs() == []
    store.write(full_trace("t2", 2.0))  # the store is still usable
    assert trace_ids(store) == {"t2"}
    store.close()


def _ran(trace_id: str, status: str, end: float | None = None) -> RunRecord:
    return RunRecord(trace_id, "emit", "t", status, 1.0, end, 2 if end else 0, 0)


def _statuses(store: SQLiteTraceStore) -> dict[str, tuple[str, float | None]]:
    return {r["trace_id"]: (r["status"], r["end"]) for r in store.list_runs(limit=1000)}


def test_runs_that_end_in_a_later_batch_are_updated_beside_new_ones(tmp_path: Path) -> None:
    """A batch holds the ends of runs an earlier batch stored as running, and new runs: only
    the first are updated (every run of the batch was, which doubled a busy store's writes),
    and every run ends as written, however many batches a retention keeps."""
    store = SQLiteTraceStore(tmp_path / "traces.db", retention_runs=1000)
    store.write(Batch(runs=[_ran("a", "running"), _ran("b", "running")]))
    store.write(Batch(runs=[_ran("a", "ok", 2.0), _ran("n1", "ok", 3.0), _ran("n2", "running")]))
    assert _statuses(store) == {
        "a": ("ok", 2.0), "b": ("running", None), "n1": ("ok", 3.0), "n2": ("running", None),
    }  # fmt: skip
    assert store._n_runs == 4
    store.close()


def test_runs_another_process_stored_as_running_are_ended_too(tmp_path: Path) -> None:
    """Runs this store did not write (another process's, or the ones written before this
    writer process took over) are ended by a batch that also starts new runs."""
    path = tmp_path / "traces.db"
    other = SQLiteTraceStore(path)
    other.write(Batch(runs=[_ran("x", "running"), _ran("y", "running")]))
    mine = SQLiteTraceStore(path)
    mine.write(Batch(runs=[_ran("m", "running")]))  # known to this store, as running
    other.write(Batch(runs=[_ran("z", "running")]))  # written after it opened: unknown to it
    mine.write(Batch(runs=[_ran("m", "ok", 2.0), _ran("z", "error", 3.0), _ran("new", "ok", 4.0)]))
    assert _statuses(mine) == {
        "x": ("running", None), "y": ("running", None), "m": ("ok", 2.0),
        "z": ("error", 3.0), "new": ("ok", 4.0),
    }  # fmt: skip
    other.close()
    mine.close()


def test_hundreds_of_runs_ended_batches_later_by_two_writers_all_end_as_written(
    tmp_path: Path,
) -> None:
    """300 runs over 30 batches of two stores on one file (two processes): each run is stored
    as running by one and ended one to three batches later by either, beside runs it starts.
    Every run ends stored as written, and the run count matches the file."""
    path = tmp_path / "traces.db"
    stores = [SQLiteTraceStore(path), SQLiteTraceStore(path)]
    pending: list[tuple[int, str]] = []  # (batch that ends it, trace id)
    for b in range(30):
        runs = [_ran(f"r{b:02d}-{i}", "running") for i in range(10)]
        pending += [(b + 1 + i % 3, f"r{b:02d}-{i}") for i in range(10)]
        due = [t for at, t in pending if at == b]
        runs += [_ran(t, "ok", float(b)) for t in due]
        stores[b % 2].write(Batch(runs=runs))
    last = [_ran(t, "ok", 99.0) for at, t in pending if at >= 30]
    stores[0].write(Batch(runs=last))
    got = _statuses(stores[1])
    assert len(got) == 300 and {status for status, _ in got.values()} == {"ok"}
    for at, trace_id in pending:
        assert got[trace_id] == ("ok", float(at) if at < 30 else 99.0), trace_id
    reopened = SQLiteTraceStore(path)
    assert reopened._n_runs == 300
    for store in (*stores, reopened):
        store.close()
