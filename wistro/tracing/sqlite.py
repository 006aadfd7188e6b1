"""The default trace store: one SQLite file in WAL mode, written in batches by one thread.

A row per event or span costs several microseconds in SQLite, more than the engine spends on
the event itself. So a trace's events, spans and state operations are stored as *chunks*: per
flushed batch, one row per trace holding them as JSON arrays (most runs finish within one batch,
so that is one row per run). Chunks are ``marshal``-encoded lists of tuples of str, float, int
and None: ten times cheaper to write than JSON, and loading them builds data, never runs code.
Runs, logs (followed with a cursor) and dead letters keep a row each.

The file and its ``-wal``/``-shm`` are 0600 and a folder made for them 0700 (they hold payloads).
Every SQLite failure comes out as a ``TraceStoreError`` naming the file; a file that is not a
readable database (garbage, truncated) is a ``CorruptTraceStore``, which :func:`repair` moves
aside (``wistro traces --repair``).
"""

from __future__ import annotations

import contextlib
import functools
import marshal
import os
import shlex
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, fields
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from wistro.errors import CorruptTraceStore, TraceStoreError
from wistro.files import DATA_DIR_NAME, PRIVATE_FILE, make_private_dir, make_private_file
from wistro.sqlite_rows import insert_rows, update_rows, where_in
from wistro.tracing.memory import (
    DEAD_LETTER_HINT,
    MIN_PREFIX,
    OPEN_STATUSES,
    RUN_UPDATE_FIELDS,
    TRACE_HINT,
    pick_one,
)
from wistro.tracing.records import (
    EVENT_ROW,
    SPAN_ROW,
    STATE_OP_ROW,
    Batch,
    DeadLetter,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
)
from wistro.tracing.store import TraceStore
from wistro.tracing.writer_process import WriterSpec

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
PAGE_SIZE = 16_384
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


def _add_new_columns(conn: sqlite3.Connection) -> None:
    """A database written by an older version lacks the columns added since: add them (all
    new columns have defaults, so old rows stay valid)."""
    for table, (cls, _) in _TABLES.items():
        have = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()}
        for f in fields(cls):
            if f.name not in have:
                kind = _SQL_TYPES[str(f.type).split(" | ")[0]]
                default = f.default if isinstance(f.default, str | int | float) else None
                value = "" if default is None else f" DEFAULT {_sql_literal(default)}"
                conn.execute(f'ALTER TABLE {table} ADD COLUMN "{f.name}" {kind}{value}')


def _sql_literal(value: str | int | float) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value)) if isinstance(value, bool) else str(value)


def _insert(table: str, verb: str = "INSERT") -> tuple[str, int]:
    """The head of a table's insert (``insert_rows``) and the values a row has."""
    names = _names(_TABLES[table][0])
    return f"{verb} INTO {table} ({_cols(names)})", len(names)


_RUN_INSERT = _insert("runs", "INSERT OR IGNORE")
_RUN_SET = ", ".join(f'"{c}" = ?{i}' for i, c in enumerate(RUN_UPDATE_FIELDS, start=1))
# A run that ended is never set back to running: with several processes writing one store (a
# shared bus), the process that finished a run can write its end before its origin's start lands.
_RUN_UPDATE = (
    f"UPDATE runs SET {_RUN_SET} WHERE trace_id = ?{len(RUN_UPDATE_FIELDS) + 1} "
    "AND (status = 'running' OR ?1 NOT IN ('running', 'interrupted'))"
)
_RUN_UPDATE_WHERE = """runs.status = 'running' OR v."1" NOT IN ('running', 'interrupted')"""
_LOG_INSERT = _insert("logs")
_DEAD_INSERT = _insert("dead_letters", "INSERT OR REPLACE")
_CHUNK_INSERT = ("INSERT INTO chunks (trace_id, events, spans, state_ops)", 4)
_GETTERS = {t: attrgetter(*_names(cls)) for t, (cls, _) in _TABLES.items()}
_CHUNK_NAMES = {t: _names(cls) for t, cls in _CHUNKED.items()}
_CHUNK_TRACE_ID = [names.index("trace_id") for names in _CHUNK_NAMES.values()]
# A chunk written before a field was added has shorter tuples: the new fields take their defaults.
_CHUNK_DEFAULTS = {
    t: tuple(None if f.default is MISSING else f.default for f in fields(cls))
    for t, cls in _CHUNKED.items()
}
_SORT_KEYS = {"events": ("ts", "id"), "spans": ("start", "id"), "state_ops": ("ts",)}
_RUN_NAMES = _names(RunRecord)
_RUN_ID, _RUN_STATUS = _RUN_NAMES.index("trace_id"), _RUN_NAMES.index("status")
_run_update_row = itemgetter(*(_RUN_NAMES.index(f) for f in (*RUN_UPDATE_FIELDS, "trace_id")))
# What ``prepare`` makes: rows of runs, chunks, logs and dead letters (plain values only).
Prepared = tuple[
    list[tuple[Any, ...]],  # runs
    list[list[tuple[Any, ...]]],  # events, spans, state operations
    list[tuple[Any, ...]],  # logs
    list[tuple[Any, ...]],  # dead letters
]


def _rows(records: list[Any], row: Callable[[Any], tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Records as tuples of their fields; records the recorder made tuples already as they are
    (``rows_when_recorded``)."""
    if not records or type(records[0]) is tuple:
        return records
    return list(map(row, records))


def _as_is(rows: list[tuple[Any, ...]]) -> Iterable[tuple[Any, ...]]:
    return rows


def _escaped(rows: list[tuple[Any, ...]]) -> Iterable[tuple[Any, ...]]:
    """The rows with text that is not valid UTF-8 (lone surrogates) backslash-escaped."""
    for row in rows:
        yield tuple(
            v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v
            for v in row
        )


def _chunks(chunked: list[list[tuple[Any, ...]]]) -> list[tuple[str, bytes, bytes, bytes]]:
    """One row per trace of the events, spans and state operations (as tuples): its chunk."""
    groups: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
    for index, (rows, at) in enumerate(zip(chunked, _CHUNK_TRACE_ID, strict=True)):
        for row in rows:
            trace_id = row[at]
            group = groups.get(trace_id)
            if group is None:
                group = groups[trace_id] = ([], [], [])
            group[index].append(row)
    return [(tid, _encode(e), _encode(s), _encode(o)) for tid, (e, s, o) in groups.items()]


def _prune_slack(retention_runs: int) -> int:
    """Runs kept beyond the retention before the oldest are deleted, in one go: a tenth of it
    (none for a retention under 100), so a busy store prunes once in a while, not every write."""
    return retention_runs // 10 if retention_runs >= 100 else 0


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def _dead_row(row: dict[str, Any]) -> dict[str, Any]:
    row["replayed"] = bool(row["replayed"])
    return row


_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's companions of a database file
_P = ParamSpec("_P")
_R = TypeVar("_R")


def shown_path(path: Path) -> str:
    """``path`` as the user would type it: relative to the current folder when inside it."""
    with contextlib.suppress(ValueError, OSError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def is_corruption(error: BaseException) -> bool:
    """Whether SQLite says the file is not a database or a damaged one."""
    name = getattr(error, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return True
    text = str(error)
    return "file is not a database" in text or "disk image is malformed" in text


def is_store_failure(error: sqlite3.Error) -> bool:
    """A failure of the file or of SQLite (unreadable, locked, full, I/O), not a bad record
    (``IntegrityError``) or a misuse (``ProgrammingError``), which stay as they are."""
    return (
        isinstance(error, sqlite3.OperationalError)
        or type(error) is sqlite3.DatabaseError
        or is_corruption(error)
    )


def store_error(path: Path, error: BaseException, corrupt: bool = False) -> TraceStoreError:
    """The one-line error for a failure of the database at ``path``."""
    shown = shown_path(path)
    if corrupt or is_corruption(error):
        aside = shlex.quote(f"{shown}.corrupt")
        command = "wistro traces --repair"
        root = path.parent.parent
        if path.parent.name == DATA_DIR_NAME and shown_path(root) != ".":
            command = f"wistro -C {shlex.quote(shown_path(root))} traces --repair"
        return CorruptTraceStore(
            f"not a readable trace database ({error})",
            file=shown,
            hint=f"move it aside, e.g. mv {shlex.quote(shown)} {aside}, or run `{command}`",
        )
    hint = None
    if getattr(error, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        hint = "another process holds it locked; try again when it is done"
    elif getattr(error, "sqlite_errorname", "") in ("SQLITE_CANTOPEN", "SQLITE_READONLY"):
        hint = "check that its folder exists and that you may write to it"
    return TraceStoreError(f"the trace database failed ({error})", file=shown, hint=hint)


def _guarded(
    method: Callable[Concatenate[SQLiteTraceStore, _P], _R],
) -> Callable[Concatenate[SQLiteTraceStore, _P], _R]:
    """SQLite errors of a store method come out as one ``TraceStoreError`` naming the file."""

    @functools.wraps(method)
    def wrapper(self: SQLiteTraceStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            if not is_store_failure(e):
                raise
            raise store_error(self.path, e) from e

    return wrapper


class SQLiteTraceStore(TraceStore):
    """Traces in a SQLite file. One connection writes, another reads (WAL lets them overlap)."""

    rows_when_recorded = True

    def __init__(self, path: str | Path, retention_runs: int = 10_000) -> None:
        self.path = Path(path)
        self.retention_runs = retention_runs
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        try:
            if self.path.parent.name == DATA_DIR_NAME:  # a project's .wistro/: 0700 even if
                make_private_dir(self.path.parent)  # something made it earlier
            make_private_file(self.path)  # before SQLite makes it 0644; its -wal/-shm copy it
            self._writer = self._connect()
            for statement in _schema():
                self._writer.execute(statement)
            _add_new_columns(self._writer)
            self._reader = self._connect()
            self._n_runs = self._count_runs(self._writer)
            self._open: set[str] = set(  # runs stored as running: their next write is an update
                r["trace_id"]
                for r in self._writer.execute(
                    "SELECT trace_id FROM runs WHERE status = 'running'"
                ).fetchall()
            )
        except sqlite3.DatabaseError as e:
            self._close_all()
            if not is_store_failure(e):
                raise
            raise store_error(self.path, e) from e
        except OSError as e:
            self._close_all()
            raise TraceStoreError(
                f"cannot create the trace database ({e.strerror or e})",
                file=shown_path(self.path),
                hint="check that its folder exists and that you may write to it",
            ) from e
        except BaseException:
            self._close_all()
            raise
        self._private_side_files()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._connections.append(conn)
        conn.row_factory = _dict_row
        # A new database only (an existing one keeps its pages): a batch's commit writes a
        # quarter of the pages 4 KiB would take; measured 16 % less time writing a batch.
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _close_all(self) -> None:
        for conn in self._connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._connections.clear()

    def _private_side_files(self) -> None:
        """-wal and -shm get the database's mode from SQLite; tighten them in case they existed."""
        for suffix in _SIDE_FILES:
            side = self.path.with_name(self.path.name + suffix)
            with contextlib.suppress(OSError):
                if side.stat().st_mode & 0o077:
                    os.chmod(side, PRIVATE_FILE)

    def writer_spec(self) -> WriterSpec:
        return WriterSpec(
            "wistro.tracing.sqlite:SQLiteTraceStore",
            {"path": str(self.path), "retention_runs": self.retention_runs},
        )

    @_guarded
    def written_elsewhere(self) -> None:
        with self._write_lock:
            self._n_runs = self._count_runs(self._writer)
            self._open = {
                r["trace_id"]
                for r in self._writer.execute("SELECT trace_id FROM runs WHERE status = 'running'")
            }

    @_guarded
    def check(self) -> None:
        """Read every page (``PRAGMA quick_check``); raise ``CorruptTraceStore`` if one is bad."""
        with self._read_lock:
            rows = self._reader.execute("PRAGMA quick_check").fetchall()
        problems = [str(next(iter(r.values()))) for r in rows]
        if problems != ["ok"]:
            raise store_error(self.path, sqlite3.DatabaseError("; ".join(problems[:3])), True)

    # -- writing ---------------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        self.write_prepared(self.prepare(batch))

    def prepare(self, batch: Batch) -> Prepared:
        """One write as plain values: the records of each kind as tuples of their fields (of a
        run's records in the batch, the last wins, except that an open status never replaces
        an end: ``OPEN_STATUSES``). A few C calls per record, so the writer process
        takes the rest: grouping the chunks and the SQL. The recorder makes events and spans
        tuples when they are recorded (``rows_when_recorded``): those are taken as they are."""
        last: dict[str, RunRecord] = {}
        for r in batch.runs:
            prior = last.get(r.trace_id)
            if prior is None or prior.status == "running" or r.status not in OPEN_STATUSES:
                last[r.trace_id] = r
        runs = last.values()
        return (
            list(map(_GETTERS["runs"], runs)),
            [
                _rows(batch.events, EVENT_ROW),
                _rows(batch.spans, SPAN_ROW),
                _rows(batch.state_ops, STATE_OP_ROW),
            ],
            list(map(_GETTERS["logs"], batch.logs)),
            list(map(_GETTERS["dead_letters"], batch.dead_letters)),
        )

    @_guarded
    def write_prepared(self, prepared: Prepared) -> None:
        runs, chunked, logs, dead = prepared
        chunks = _chunks(chunked)
        with self._write_lock:
            try:
                self._write(runs, chunks, logs, dead, _as_is)
            except UnicodeEncodeError:  # a lone surrogate in a message or an error: SQLite text
                self._write(runs, chunks, logs, dead, _escaped)  # must be UTF-8: store it escaped
            for r in runs:  # runs written while running are updated when they end
                if r[_RUN_STATUS] == "running":
                    self._open.add(r[_RUN_ID])
                else:
                    self._open.discard(r[_RUN_ID])

    def _write(
        self,
        runs: list[tuple[Any, ...]],
        chunks: list[tuple[str, bytes, bytes, bytes]],
        logs: list[tuple[Any, ...]],
        dead: list[tuple[Any, ...]],
        rows: Callable[[list[tuple[Any, ...]]], Iterable[tuple[Any, ...]]],
    ) -> None:
        """One transaction: the runs, the chunks, the logs and the dead letters; many rows a
        statement (``wistro.sqlite_rows``: on the recorder's thread, ``executemany`` waited
        for the GIL after every row while the event loop was busy)."""
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            if runs:
                # Runs stored before (as running) are updated, not inserted: the ones this
                # store wrote as running, or, when more than those were there already (written
                # by another process), every run of the batch.
                opened = self._open
                known = [r for r in runs if r[_RUN_ID] in opened]
                added = insert_rows(conn, *_RUN_INSERT, list(rows(runs)))
                self._n_runs += added
                stored_before = len(runs) - added
                reopened = known if stored_before <= len(known) else runs
                if reopened:
                    update_rows(
                        conn,
                        "runs",
                        RUN_UPDATE_FIELDS,
                        "trace_id",
                        list(rows(list(map(_run_update_row, reopened)))),
                        row_sql=_RUN_UPDATE,
                        where=_RUN_UPDATE_WHERE,
                    )
            if chunks:
                insert_rows(conn, *_CHUNK_INSERT, chunks)
            if logs:
                insert_rows(conn, *_LOG_INSERT, list(rows(logs)))
            if dead:
                insert_rows(conn, *_DEAD_INSERT, list(rows(dead)))
            if self._n_runs > self.retention_runs + _prune_slack(self.retention_runs):
                self._prune(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._n_runs = self._count_runs(conn)
            raise

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest runs beyond ``retention_runs`` and every row of their traces."""
        excess = self._n_runs - self.retention_runs
        doomed = conn.execute(
            "SELECT trace_id FROM runs ORDER BY start, trace_id LIMIT ?", (excess,)
        ).fetchall()
        ids = [row["trace_id"] for row in doomed]
        for table in (*_TABLES, "chunks"):
            where_in(conn, f"DELETE FROM {table} WHERE trace_id IN ({{}})", ids)
        self._n_runs -= len(ids)
        self._open.difference_update(ids)

    @staticmethod
    def _count_runs(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) AS n FROM runs").fetchone()["n"])

    @_guarded
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
                if self._reader.in_transaction:
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

    @_guarded
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

    @_guarded
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
                    try:
                        defaults = _CHUNK_DEFAULTS[table]
                        chunked[table].extend(
                            dict(zip(names, values + defaults[len(values) :], strict=True))
                            for values in marshal.loads(chunk[table])
                        )
                    except (ValueError, TypeError, EOFError) as e:  # a damaged chunk
                        raise store_error(self.path, e, corrupt=True) from e
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

    @_guarded
    def logs(
        self, after: int = 0, limit: int = 1000, trace_id: str | None = None
    ) -> list[dict[str, Any]]:
        if trace_id is None:
            return self._read(
                "SELECT * FROM logs WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
        sql = "SELECT * FROM logs WHERE trace_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        return self._read(sql, (trace_id, after, limit))

    @_guarded
    def dead_letters(self, include_replayed: bool = False) -> list[dict[str, Any]]:
        where = "" if include_replayed else "WHERE replayed = 0 "
        rows = self._read(f"SELECT * FROM dead_letters {where}ORDER BY ts DESC, id DESC")
        return [_dead_row(r) for r in rows]

    @_guarded
    def get_dead_letter(self, id_or_prefix: str) -> dict[str, Any]:
        with self._snapshot() as conn:
            found = self._resolve(conn, "dead_letters", "id", id_or_prefix)
            row = conn.execute("SELECT * FROM dead_letters WHERE id = ?", (found,)).fetchone()
            return _dead_row(row)

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._close_all()


def _readable(db: Path) -> bool:
    """Whether every page of ``db`` reads (``PRAGMA quick_check``), asked through a read-only
    connection, which neither checkpoints nor deletes the -wal of a damaged file."""
    uri = f"{db.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30)
    except sqlite3.DatabaseError as e:
        if is_corruption(e):
            return False
        raise store_error(db, e) from e
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        if is_corruption(e):
            return False
        raise store_error(db, e) from e
    finally:
        conn.close()
    return [r[0] for r in rows] == ["ok"]


def repair(path: str | Path, retention_runs: int = 10_000) -> Path | None:
    """Move a trace database that is not readable aside, with its -wal/-shm, to
    ``<name>.corrupt-<timestamp>`` (SQLite can still open it there), and start a fresh one.
    Returns where it went, or None when it was readable (then nothing is touched). Other
    failures (locked, no permission) raise their ``TraceStoreError``."""
    db = Path(path)
    if db.exists() and not db.is_file():
        raise TraceStoreError("not a file, so not a trace database", file=shown_path(db))
    if not db.exists():
        SQLiteTraceStore(db, retention_runs).close()
        return None
    if _readable(db):
        SQLiteTraceStore(db, retention_runs).close()  # its schema and modes, as ever
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = db.with_name(f"{db.name}.corrupt-{stamp}")
    n = 1
    while any(aside.with_name(aside.name + s).exists() for s in ("", *_SIDE_FILES)):
        n += 1
        aside = db.with_name(f"{db.name}.corrupt-{stamp}-{n}")
    for suffix in _SIDE_FILES:  # companions first: a fresh database must not adopt an old WAL
        side = db.with_name(db.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    os.replace(db, aside)
    SQLiteTraceStore(db, retention_runs).close()
    return aside
