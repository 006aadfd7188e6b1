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
