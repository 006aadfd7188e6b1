"""The default trace store: one SQLite file in WAL mode, written in batches by one thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from operator import attrgetter
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
    "events": (EventRecord, "id"),
    "spans": (SpanRecord, "id"),
    "logs": (LogRecord, None),
    "state_ops": (StateOpRecord, None),
    "dead_letters": (DeadLetter, "id"),
}
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
    return out


def _insert(table: str, verb: str = "INSERT") -> str:
    names = _names(_TABLES[table][0])
    return f"{verb} INTO {table} ({_cols(names)}) VALUES ({', '.join('?' * len(names))})"


_RUN_INSERT = _insert("runs", "INSERT OR IGNORE")
_RUN_SET = ", ".join(f'"{c}" = ?' for c in RUN_UPDATE_FIELDS)
_RUN_UPDATE = f"UPDATE runs SET {_RUN_SET} WHERE trace_id = ?"
_WRITES = [  # (table and Batch attribute, statement), written after the runs
    ("events", _insert("events", "INSERT OR REPLACE")),
    ("spans", _insert("spans", "INSERT OR REPLACE")),
    ("logs", _insert("logs")),
    ("state_ops", _insert("state_ops")),
    ("dead_letters", _insert("dead_letters", "INSERT OR REPLACE")),
]
_GETTERS = {t: attrgetter(*_names(cls)) for t, (cls, _) in _TABLES.items()}
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

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = _dict_row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # -- writing ---------------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                if batch.runs:
                    added = conn.executemany(_RUN_INSERT, map(_GETTERS["runs"], batch.runs))
                    self._n_runs += added.rowcount
                    conn.executemany(_RUN_UPDATE, map(_RUN_UPDATE_GETTER, batch.runs))
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

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest runs beyond ``retention_runs`` and every row of their traces."""
        doomed = conn.execute(
            "SELECT trace_id FROM runs ORDER BY start DESC, trace_id DESC LIMIT -1 OFFSET ?",
            (self.retention_runs,),
        ).fetchall()
        ids = [(row["trace_id"],) for row in doomed]
        for table in _TABLES:
            conn.executemany(f"DELETE FROM {table} WHERE trace_id = ?", ids)
        self._n_runs = self._count_runs(conn)

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

            return {
                "run": rows("runs", "start")[0],
                "spans": rows("spans", "start, id"),
                "events": rows("events", "ts, id"),
                "logs": rows("logs", "seq"),
                "state_ops": rows("state_ops", "ts, rowid"),
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
