"""The default trace store: one SQLite file in WAL mode, written in batches by one thread.

A row per event or span costs several microseconds in SQLite, more than the engine spends on
the event itself. So a trace's events, spans and state operations are stored as *chunks*: per
flushed batch, one row per trace holding them as JSON arrays (most runs finish within one batch,
so that is one row per run). Chunks are ``marshal``-encoded lists of tuples of str, float, int
and None: ten times cheaper to write than JSON, and loading them builds data, never runs code.
Runs, logs (followed with a cursor) and dead letters keep a row each.
"""

from __future__ import annotations

import marshal
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from wistro.tracing.memory import (
    DEAD_LETTER_HINT,
    MIN_PREFIX,
    RUN_UPDATE_FIELDS,
    TRACE_HINT,
    pick_one,
)
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

# table -> (record class, primary-key column or None); the columns are the record's fields.
_TABLES: dict[str, tuple[type, str | None]] = {
    "runs": (RunRecord, "trace_id"),
    "logs": (LogRecord, None),
    "dead_letters": (DeadLetter, "id"),
}
_CHUNKED: dict[str, type] = {"events": EventRecord, "spans": SpanRecord, "state_ops": StateOpRecord}
_CHUNKS_DDL = [
    "CREATE TABLE IF NOT EXISTS chunks (seq INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, "
    "events BLOB NOT NULL, spans BLOB NOT NULL, state_ops BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS chunks_trace ON chunks (trace_id)",
]
_encode = marshal.dumps
_SQL_TYPES = {"str": "TEXT", "float": "REAL", "int": "INTEGER", "bool": "INTEGER"}
_TOP = "\U0010ffff"  # sorts after any character: [prefix, prefix + _TOP) is a prefix range


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _cols(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _schema() -> list[str]:
    """CREATE statements derived from the record dataclasses, so they never drift apart."""
    out = []
    for table, (cls, key) in _TABLES.items():
        cols = ['"seq" INTEGER PRIMARY KEY AUTOINCREMENT'] if table == "logs" else []
        for f in fields(cls):
            kind = str(f.type)
            sql_type = _SQL_TYPES[kind.split(" | ")[0]]
            constraint = " PRIMARY KEY" if f.name == key else "" if "None" in kind else " NOT NULL"
            cols.append(f'"{f.name}" {sql_type}{constraint}')
        out.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")
        if table == "runs":
            out.append("CREATE INDEX IF NOT EXISTS runs_start ON runs (start)")
        else:
            extra = ", seq" if table == "logs" else ""
            out.append(f"CREATE INDEX IF NOT EXISTS {table}_trace ON {table} (trace_id{extra})")
    return out + _CHUNKS_DDL


def _insert(table: str, verb: str = "INSERT") -> str:
    names = _names(_TABLES[table][0])
    return f"{verb} INTO {table} ({_cols(names)}) VALUES ({', '.join('?' * len(names))})"


_RUN_INSERT = _insert("runs", "INSERT OR IGNORE")
_RUN_SET = ", ".join(f'"{c}" = ?' for c in RUN_UPDATE_FIELDS)
_RUN_UPDATE = f"UPDATE runs SET {_RUN_SET} WHERE trace_id = ?"
_WRITES = [  # (table and Batch attribute, statement), written after the runs
    ("logs", _insert("logs")),
    ("dead_letters", _insert("dead_letters", "INSERT OR REPLACE")),
]
_CHUNK_INSERT = "INSERT INTO chunks (trace_id, events, spans, state_ops) VALUES (?, ?, ?, ?)"
_GETTERS = {t: attrgetter(*_names(cls)) for t, (cls, _) in _TABLES.items()}
_CHUNK_GETTERS = {t: attrgetter(*_names(cls)) for t, cls in _CHUNKED.items()}
_CHUNK_NAMES = {t: _names(cls) for t, cls in _CHUNKED.items()}
_SORT_KEYS = {"events": ("ts", "id"), "spans": ("start", "id"), "state_ops": ("ts",)}
_RUN_UPDATE_GETTER = attrgetter(*RUN_UPDATE_FIELDS, "trace_id")


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def _dead_row(row: dict[str, Any]) -> dict[str, Any]:
    row["replayed"] = bool(row["replayed"])
    return row


class SQLiteTraceStore(TraceStore):
    """Traces in a SQLite file. One connection writes, another reads (WAL lets them overlap)."""

    def __init__(self, path: str | Path, retention_runs: int = 10_000) -> None:
        self.path = Path(path)
        self.retention_runs = retention_runs
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer = self._connect()
        for statement in _schema():
            self._writer.execute(statement)
        self._reader = self._connect()
        self._n_runs = self._count_runs(self._writer)
        self._open: set[str] = set(  # runs stored as running: their next write is an update
            r["trace_id"]
            for r in self._writer.execute(
                "SELECT trace_id FROM runs WHERE status = 'running'"
            ).fetchall()
        )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = _dict_row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # -- writing ---------------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        runs = list({r.trace_id: r for r in batch.runs}.values())  # the last write of a run wins
        chunks = self._chunks(batch)
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                if runs:
                    added = conn.executemany(_RUN_INSERT, map(_GETTERS["runs"], runs))
                    self._n_runs += added.rowcount
                    reopened = [
                        r for r in runs if r.trace_id in self._open or added.rowcount < len(runs)
                    ]
                    if reopened:
                        conn.executemany(_RUN_UPDATE, map(_RUN_UPDATE_GETTER, reopened))
                if chunks:
                    conn.executemany(_CHUNK_INSERT, chunks)
                for table, statement in _WRITES:
                    records = getattr(batch, table)
                    if records:
                        conn.executemany(statement, map(_GETTERS[table], records))
                if self._n_runs > self.retention_runs:
                    self._prune(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._n_runs = self._count_runs(conn)
                raise
            for r in runs:  # runs written while running are updated when they end
                if r.status == "running":
                    self._open.add(r.trace_id)
                else:
                    self._open.discard(r.trace_id)

    @staticmethod
    def _chunks(batch: Batch) -> list[tuple[str, bytes, bytes, bytes]]:
        """One row per trace: its events, spans and state operations."""
        groups: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
        for index, table in enumerate(_CHUNKED):
            getter = _CHUNK_GETTERS[table]
            for record in getattr(batch, table):
                group = groups.get(record.trace_id)
                if group is None:
                    group = groups[record.trace_id] = ([], [], [])
                group[index].append(getter(record))
        return [(tid, _encode(e), _encode(s), _encode(o)) for tid, (e, s, o) in groups.items()]

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest runs beyond ``retention_runs`` and every row of their traces."""
        excess = self._n_runs - self.retention_runs
        doomed = conn.execute(
            "SELECT trace_id FROM runs ORDER BY start, trace_id LIMIT ?", (excess,)
        ).fetchall()
        ids = [(row["trace_id"],) for row in doomed]
        for table in (*_TABLES, "chunks"):
            conn.executemany(f"DELETE FROM {table} WHERE trace_id = ?", ids)
        self._n_runs -= len(ids)
        self._open.difference_update(i for (i,) in ids)

    @staticmethod
    def _count_runs(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) AS n FROM runs").fetchone()["n"])

    def mark_replayed(self, dead_letter_id: str) -> None:
        with self._write_lock:
            found = self._resolve(self._writer, "dead_letters", "id", dead_letter_id)
            self._writer.execute("UPDATE dead_letters SET replayed = 1 WHERE id = ?", (found,))

    # -- reading ---------------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """The read connection inside one transaction, so several selects agree."""
        with self._read_lock:
            self._reader.execute("BEGIN")
            try:
                yield self._reader
            finally:
                self._reader.execute("COMMIT")

    def _resolve(self, conn: sqlite3.Connection, table: str, col: str, wanted: str) -> str:
        """The one id of ``table`` that ``wanted`` is, or a unique prefix of."""
        sql = f"SELECT {col} FROM {table} WHERE {col} = ?"
        params: tuple[str, ...] = (wanted,)
        if len(wanted) >= MIN_PREFIX:  # an index range scan, and no LIKE wildcards to escape
            sql = f"SELECT {col} FROM {table} WHERE {col} >= ? AND {col} < ? ORDER BY {col} LIMIT 6"
            params = (wanted, wanted + _TOP)
        matches = [row[col] for row in conn.execute(sql, params).fetchall()]
        if table == "runs":
            return pick_one("trace", wanted, matches, TRACE_HINT)
        return pick_one("dead letter", wanted, matches, DEAD_LETTER_HINT)

    def list_runs(
        self, limit: int = 50, status: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]:
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if topic is not None:
            where.append("topic = ?")
            params.append(topic)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = f"SELECT * FROM runs {clause}ORDER BY start DESC, trace_id DESC LIMIT ?"
        return self._read(sql, (*params, limit))

    def get_run(self, trace_id: str) -> dict[str, Any]:
        with self._snapshot() as conn:
            found = self._resolve(conn, "runs", "trace_id", trace_id)

            def rows(table: str, order: str) -> list[dict[str, Any]]:
                sql = f"SELECT * FROM {table} WHERE trace_id = ? ORDER BY {order}"
                return conn.execute(sql, (found,)).fetchall()

            chunked: dict[str, list[dict[str, Any]]] = {t: [] for t in _CHUNKED}
            sql = "SELECT events, spans, state_ops FROM chunks WHERE trace_id = ? ORDER BY seq"
            for chunk in conn.execute(sql, (found,)).fetchall():
                for table, names in _CHUNK_NAMES.items():
                    chunked[table].extend(
                        dict(zip(names, values, strict=True))
                        for values in marshal.loads(chunk[table])
                    )
            for table in ("events", "spans"):  # a record written again replaces the earlier one
                chunked[table] = list({row["id"]: row for row in chunked[table]}.values())
            for table, keys in _SORT_KEYS.items():
                chunked[table].sort(key=itemgetter(*keys))
            return {
                "run": rows("runs", "start")[0],
                "spans": chunked["spans"],
                "events": chunked["events"],
                "logs": rows("logs", "seq"),
                "state_ops": chunked["state_ops"],
                "dead_letters": [_dead_row(r) for r in rows("dead_letters", "ts, id")],
            }

    def logs(
        self, after: int = 0, limit: int = 1000, trace_id: str | None = None
    ) -> list[dict[str, Any]]:
        if trace_id is None:
            return self._read(
                "SELECT * FROM logs WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
        sql = "SELECT * FROM logs WHERE trace_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        return self._read(sql, (trace_id, after, limit))

    def dead_letters(self, include_replayed: bool = False) -> list[dict[str, Any]]:
        where = "" if include_replayed else "WHERE replayed = 0 "
        rows = self._read(f"SELECT * FROM dead_letters {where}ORDER BY ts DESC, id DESC")
        return [_dead_row(r) for r in rows]

    def get_dead_letter(self, id_or_prefix: str) -> dict[str, Any]:
        with self._snapshot() as conn:
            found = self._resolve(conn, "dead_letters", "id", id_or_prefix)
            row = conn.execute("SELECT * FROM dead_letters WHERE id = ?", (found,)).fetchone()
            return _dead_row(row)

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()
