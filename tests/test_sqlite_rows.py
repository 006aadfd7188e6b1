"""wistro.sqlite_rows: many rows a statement give the same tables as ``executemany``, and a
thread writing them while the event loop's thread is busy is not held up after every row."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.trace_support import full_trace
from wistro import sqlite_rows
from wistro.sqlite_rows import (
    insert_rows,
    rows_per_statement,
    update_rows,
    where_in,
)
from wistro.tracing.records import Batch
from wistro.tracing.sqlite import SQLiteTraceStore

# More rows than one statement takes, and a remainder.
N = rows_per_statement(3) * 2 + 7


def tables(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, s TEXT)")
    return conn


def contents(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT k, n, s FROM t ORDER BY k").fetchall()


def test_insert_rows_stores_what_executemany_stores_and_counts_what_it_added(
    tmp_path: Path,
) -> None:
    rows = [(f"k{i:05d}", i, "x" * (i % 5)) for i in range(N)]
    many, grouped = tables(tmp_path / "a.db"), tables(tmp_path / "b.db")
    for conn in (many, grouped):
        conn.execute("INSERT INTO t VALUES ('k00003', -1, 'kept')")  # OR IGNORE skips it
    many.executemany("INSERT OR IGNORE INTO t (k, n, s) VALUES (?, ?, ?)", rows)
    added = insert_rows(grouped, "INSERT OR IGNORE INTO t (k, n, s)", 3, rows)
    assert added == N - 1
    assert contents(grouped) == contents(many)
    assert contents(grouped)[3] == ("k00003", -1, "kept")
    assert insert_rows(grouped, "INSERT INTO t (k, n, s)", 3, []) == 0


# SQLite before 3.33 has no UPDATE ... FROM: the same update a row at a time.
@pytest.mark.parametrize("update_from", [True, False], ids=["update-from", "before-3.33"])
def test_update_rows_sets_the_rows_of_their_keys_where_the_condition_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update_from: bool
) -> None:
    monkeypatch.setattr(sqlite_rows, "UPDATE_FROM", update_from)
    conn = tables(tmp_path / "a.db")
    insert_rows(conn, "INSERT INTO t (k, n, s)", 3, [(f"k{i:05d}", i, "old") for i in range(N)])
    # every key but the last, and one that is not there; never where n is odd
    changes = [(i * 10, "new", f"k{i:05d}") for i in range(N - 1)] + [(0, "new", "absent")]
    update_rows(
        conn,
        "t",
        ("n", "s"),
        "k",
        changes,
        row_sql="UPDATE t SET n = ?1, s = ?2 WHERE k = ?3 AND n % 2 = 0",
        where="t.n % 2 = 0 AND v.\"2\" = 'new'",
    )
    got = contents(conn)
    assert len(got) == N
    for i, (k, n, s) in enumerate(got):
        changed = i < N - 1 and i % 2 == 0
        assert (k, n, s) == (f"k{i:05d}", i * 10 if changed else i, "new" if changed else "old")


def test_update_rows_adds_to_columns_when_asked(tmp_path: Path) -> None:
    conn = tables(tmp_path / "a.db")
    insert_rows(conn, "INSERT INTO t (k, n, s)", 3, [(f"k{i:05d}", i, "") for i in range(N)])
    update_rows(
        conn,
        "t",
        ("n",),
        "k",
        [(1000, f"k{i:05d}") for i in range(N)],
        row_sql="UPDATE t SET n = n + ? WHERE k = ?",
        add=True,
    )
    assert [n for _, n, _ in contents(conn)] == [1000 + i for i in range(N)]


def test_where_in_deletes_those_keys_only_with_the_same_parameters_for_every_group(
    tmp_path: Path,
) -> None:
    conn = tables(tmp_path / "a.db")
    insert_rows(conn, "INSERT INTO t (k, n, s)", 3, [(f"k{i:05d}", i, "") for i in range(N)])
    doomed = [f"k{i:05d}" for i in range(0, N, 2)]
    where_in(conn, "DELETE FROM t WHERE k IN ({})", [*doomed, "absent"])
    assert [k for k, _, _ in contents(conn)] == [f"k{i:05d}" for i in range(1, N, 2)]
    where_in(conn, "UPDATE t SET s = ? WHERE n > ? AND k IN ({})", [*doomed, "k00001"], ("s", 0))
    assert [s for _, _, s in contents(conn)] == ["s"] + [""] * (len(contents(conn)) - 1)


def busy_ratio(write: Callable[[], None], reset: Callable[[], None]) -> float:
    """How much longer ``write`` takes in a thread while this thread runs Python all along
    than while it waits (median of 3 each)."""

    def timed(busy: bool) -> float:
        reset()
        took: list[float] = []

        def run() -> None:
            t = time.perf_counter()
            write()
            took.append(time.perf_counter() - t)

        thread = threading.Thread(target=run)
        thread.start()
        if busy:
            n = 0
            while thread.is_alive():  # an event loop with work queued: no I/O, no sleep
                for _ in range(1_000):
                    n += 1
        thread.join()
        return took[0]

    idle = sorted(timed(False) for _ in range(3))[1]
    busy = sorted(timed(True) for _ in range(3))[1]
    return busy / idle


def test_a_trace_batch_written_by_a_thread_is_not_held_up_by_a_busy_loop(tmp_path: Path) -> None:
    # 2,000 traces: with a statement a row, the thread waited ~5 ms for the GIL after each of
    # its ~8,000 rows (measured: 13 s where the loop idle took 10 ms, a ratio over 1,000).
    batch = Batch()
    for i in range(2_000):
        one = full_trace(f"trace{i:05d}", float(i))
        for name in ("runs", "events", "spans", "logs", "state_ops", "dead_letters"):
            getattr(batch, name).extend(getattr(one, name))
    stores: list[SQLiteTraceStore] = []

    def reset() -> None:
        stores.append(SQLiteTraceStore(tmp_path / f"{len(stores)}.db"))

    ratio = busy_ratio(lambda: stores[-1].write(batch), reset)
    for store in stores:
        assert len(store.list_runs(limit=5_000)) == 2_000
        store.close()
    assert ratio < 100, f"the write took {ratio:.0f}x longer with the loop's thread busy"


def test_grouped_rows_from_a_thread_are_not_held_up_by_a_busy_loop(tmp_path: Path) -> None:
    rows = 2_000
    data = [(f"k{i:05d}", i, "x" * 50) for i in range(rows)]
    conns: list[sqlite3.Connection] = []

    def reset() -> None:
        conns.append(tables(tmp_path / f"{len(conns)}.db"))

    def write() -> None:
        conn = conns[-1]
        conn.execute("BEGIN IMMEDIATE")
        insert_rows(conn, "INSERT INTO t (k, n, s)", 3, data)
        conn.execute("COMMIT")

    ratio = busy_ratio(write, reset)
    assert all(len(contents(c)) == rows for c in conns)
    assert ratio < 100, f"the write took {ratio:.0f}x longer with the loop's thread busy"
