"""The local bus's journal: one SQLite database in WAL mode (``.wistro/bus.db``) that every
process of a project on this machine shares. Synchronous, used from one thread per process.

Tables:
- ``deliveries``: one row per pending delivery (its JSON), ``due`` (not before), ``lease`` (taken
  until; 0 = free), ``owner`` (the worker holding it), ``tries`` (times taken).
- ``runs``: the run ledger: deliveries (and holds) each run still owes, its events and errors.
  A commit that takes ``pending`` to 0 marks the run ``ended``; once its end is in the trace
  store it moves to ``ended``, the table that the processes waiting for runs read.

A commit applies a batch of operations in one transaction (group commit). Within a batch, a
delivery inserted and acknowledged cancel out, and ledger changes are summed per run, so a busy
chain costs few writes per hop.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wistro.bus.base import RunEnded, RunOpened
from wistro.errors import BusError
from wistro.files import make_private_file
from wistro.processes import gone_here
from wistro.sqlite_rows import insert_rows, rows_per_statement, update_rows, values, where_in

# Version 2: ``deliveries`` and ``runs`` are WITHOUT ROWID tables (one b-tree each, not a table
# and an index on its text key: about half the pages a commit writes). Deliveries are keyed by
# (step, uid), and uids begin with the time they were made: the key order is each step's order
# of arrival, new rows go to the right edge of the tree, and taking a step's oldest is a range.
SCHEMA_VERSION = 3  # 3: runs keep the version they were routed to
_DELIVERIES = (
    "CREATE TABLE IF NOT EXISTS deliveries (uid TEXT NOT NULL, step TEXT NOT NULL, "
    "trace_id TEXT NOT NULL, body TEXT NOT NULL, due REAL NOT NULL DEFAULT 0, "
    "lease REAL NOT NULL DEFAULT 0, owner TEXT, tries INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (step, uid)) WITHOUT ROWID"
)
_RUNS = (
    "CREATE TABLE IF NOT EXISTS runs (trace_id TEXT PRIMARY KEY, trigger TEXT NOT NULL, "
    "topic TEXT NOT NULL, start REAL NOT NULL, origin TEXT NOT NULL, "
    "pending INTEGER NOT NULL DEFAULT 0, holds INTEGER NOT NULL DEFAULT 0, "
    "events INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, ended REAL, "
    "version TEXT) WITHOUT ROWID"
)
_OWNER_INDEX = (
    "CREATE INDEX IF NOT EXISTS deliveries_owner ON deliveries (owner) WHERE owner IS NOT NULL"
)
_SCHEMA = [
    _DELIVERIES,
    _OWNER_INDEX,
    _RUNS,
    "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, "
    "expires REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS control (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "message TEXT NOT NULL, ts REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS workers (worker TEXT PRIMARY KEY, info TEXT NOT NULL, "
    "seen REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ended (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "trace_id TEXT NOT NULL, trigger TEXT NOT NULL, topic TEXT NOT NULL, start REAL NOT NULL, "
    "end_ REAL NOT NULL, events INTEGER NOT NULL, errors INTEGER NOT NULL, "
    "origin TEXT NOT NULL)",
]
ENDED_KEEP_S = 600.0  # announced ends are kept this long for waiters that look late

# Operations of a batch (tuples, built on the hot path):
INSERT = 0  # (INSERT, uid, step, trace_id, delivery (or its JSON), due, lease, owner, tries)
ACK = 1  # (ACK, uid, trace_id, step)
OPEN = 2  # (OPEN, RunOpened, holds)
RELEASE = 3  # (RELEASE, trace_id)
NOTE = 4  # (NOTE, trace_id, events, errors)
UNLEASE = 5  # (UNLEASE, uid, step): give back a delivery taken and never started (not a try)
ANNOUNCE = 6  # (ANNOUNCE, RunEnded, waited_here): its end is recorded; tell who waits


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            make_private_file(path)
            # ``conn`` is used from the bus's thread and waits for a busy journal; ``fast`` is
            # used on the event loop and never waits: busy, the caller falls back to ``conn``.
            self.conn = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            _create(self.conn)
            self.fast = sqlite3.connect(
                path, timeout=0, isolation_level=None, check_same_thread=False
            )
            self.fast.execute("PRAGMA synchronous=NORMAL")
            # Commits on the event loop never checkpoint (copying the WAL into the database and
            # syncing it takes milliseconds): ``checkpoint`` does, on the bus's thread.
            self.fast.execute("PRAGMA wal_autocheckpoint=0")
        except (sqlite3.Error, OSError) as e:
            raise BusError(f"cannot open the local bus journal: {e}", file=str(path)) from e

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database as far as no reader needs it (PASSIVE:
        never waits for, nor blocks, another connection), so the WAL is reused, not grown."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        for conn in (self.conn, self.fast):
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- group commit --------------------------------------------------------------------

    def commit(
        self, ops: Sequence[tuple[Any, ...]], now: float, fast: bool = False
    ) -> list[RunEnded]:
        """Apply a batch in one transaction; returns the runs it ended. ``fast``: on the
        connection that never waits (raises ``Busy`` when another writer holds the journal)."""
        inserts: dict[str, tuple[Any, ...]] = {}
        acks: list[tuple[str, str]] = []  # (step, uid)
        unleases: list[tuple[str, str]] = []
        opens: dict[str, RunOpened] = {}
        ledger: dict[str, list[int]] = {}  # trace -> [pending delta, events, errors]
        holds: dict[str, int] = {}  # trace -> change of the units held outside deliveries
        settled: set[str] = set()  # runs something settled for in this batch: they may end
        announced: list[tuple[Any, ...]] = []
        for op in ops:
            kind = op[0]
            if kind == INSERT:
                inserts[op[1]] = op[1:]
                entry = ledger.get(op[3])
                if entry is None:
                    ledger[op[3]] = [1, 0, 0]
                else:
                    entry[0] += 1
            elif kind == ACK:
                settled.add(op[2])
                if inserts.pop(op[1], None) is None:
                    acks.append((op[3], op[1]))
                entry = ledger.get(op[2])
                if entry is None:
                    ledger[op[2]] = [-1, 0, 0]
                else:
                    entry[0] -= 1
            elif kind == NOTE:
                entry = ledger.setdefault(op[1], [0, 0, 0])
                entry[1] += op[2]
                entry[2] += op[3]
            elif kind == OPEN:
                run: RunOpened = op[1]
                opens[run.trace_id] = run
                ledger.setdefault(run.trace_id, [0, 0, 0])[0] += op[2]
                if op[2]:
                    holds[run.trace_id] = holds.get(run.trace_id, 0) + op[2]
            elif kind == RELEASE:
                settled.add(op[1])
                ledger.setdefault(op[1], [0, 0, 0])[0] -= 1
                holds[op[1]] = holds.get(op[1], 0) - 1
            elif kind == ANNOUNCE:
                announced.append(op)
            elif kind == UNLEASE:
                if op[1] in inserts:
                    row = inserts[op[1]]
                    inserts[op[1]] = (*row[:5], 0.0, None, 0)
                else:
                    unleases.append((op[2], op[1]))
        ended: list[RunEnded] = []
        conn = _begin(self.fast if fast else self.conn)
        try:
            if opens:  # a run opened in this batch is written with its counts so far
                rows = []
                for trace_id, run in opens.items():
                    delta, events, errors = ledger.pop(trace_id, (0, 0, 0))
                    ends = trace_id in settled and delta <= 0
                    if ends:
                        ended.append(
                            RunEnded(trace_id, run.trigger, run.topic, run.start, now, events,
                                     errors, run.origin, run.version)
                        )  # fmt: skip
                    rows.append(
                        (trace_id, run.trigger, run.topic, run.start, run.origin, delta,
                         holds.pop(trace_id, 0),
                         events, errors, now if ends else None, run.version)
                    )  # fmt: skip
                insert_rows(
                    conn,
                    "INSERT OR IGNORE INTO runs (trace_id, trigger, topic, start, origin, "
                    "pending, holds, events, errors, ended, version)",
                    11,
                    rows,
                )
            if holds:  # runs opened before this batch
                update_rows(
                    conn,
                    "runs",
                    ("holds",),
                    "trace_id",
                    [(n, trace_id) for trace_id, n in holds.items()],
                    row_sql="UPDATE runs SET holds = holds + ? WHERE trace_id = ?",
                    add=True,
                )
            if inserts:
                insert_rows(
                    conn,
                    "INSERT OR REPLACE INTO deliveries "
                    "(uid, step, trace_id, body, due, lease, owner, tries)",
                    8,
                    [
                        row if type(row[3]) is str else (*row[:3], row[3].to_json(), *row[4:])
                        for row in inserts.values()
                    ],
                )
            # By step: one primary-key search a uid (a row-value IN list scans the table).
            for step, uids in _by_step(acks).items():
                where_in(
                    conn, "DELETE FROM deliveries WHERE step = ? AND uid IN ({})", uids, (step,)
                )
            for step, uids in _by_step(unleases).items():
                where_in(
                    conn,
                    "UPDATE deliveries SET lease = 0, owner = NULL, tries = MAX(tries - 1, 0) "
                    "WHERE step = ? AND uid IN ({})",
                    uids,
                    (step,),
                )
            changes = [
                (trace_id, delta, events, errors, trace_id in settled)
                for trace_id, (delta, events, errors) in ledger.items()
                if delta or events or errors or trace_id in settled
            ]
            per = rows_per_statement(5)
            for i in range(0, len(changes), per):
                ended += _settle(conn, changes[i : i + per], now)
            if announced:
                self._announce(conn, announced, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return ended

    @staticmethod
    def _announce(conn: sqlite3.Connection, ops: Sequence[tuple[Any, ...]], now: float) -> None:
        """Ended runs whose end is recorded leave ``runs``; those a process elsewhere waits for
        go to ``ended``, where it looks."""
        elsewhere = [
            (e.trace_id, e.trigger, e.topic, e.start, e.end, e.n_events, e.n_errors, e.origin)
            for _, e, waited_here in ops
            if not waited_here
        ]
        if elsewhere:
            insert_rows(
                conn,
                "INSERT INTO ended (trace_id, trigger, topic, start, end_, events, errors, origin)",
                8,
                elsewhere,
            )
            conn.execute("DELETE FROM ended WHERE end_ < ?", (now - ENDED_KEEP_S,))
        where_in(conn, "DELETE FROM runs WHERE trace_id IN ({})", [op[1].trace_id for op in ops])

    def unannounced(self) -> list[RunEnded]:
        """Runs marked ended whose end was never announced (a process died in between)."""
        rows = self.conn.execute(
            "SELECT trace_id, trigger, topic, start, ended, events, errors, origin, version "
            "FROM runs WHERE ended IS NOT NULL"
        ).fetchall()
        return [RunEnded(*row) for row in rows]

    def ended_since(self, seq: int) -> tuple[int, list[RunEnded]]:
        rows = self.conn.execute(
            "SELECT seq, trace_id, trigger, topic, start, end_, events, errors, origin "
            "FROM ended WHERE seq > ? ORDER BY seq",
            (seq,),
        ).fetchall()
        last = rows[-1][0] if rows else seq
        return last, [RunEnded(*row[1:]) for row in rows]

    def last_ended(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ended").fetchone()
        return int(row[0])

    # -- taking deliveries ----------------------------------------------------------------

    def take(
        self,
        room: dict[str, int] | None,
        limit: int,
        owner: str,
        now: float,
        lease_s: float,
        fast: bool = False,
    ) -> list[tuple[str, str, str, int]]:
        """Lease due, free deliveries, oldest first: at most ``room[step]`` of each step (or, with
        ``room`` None, ``limit`` of any step). Returns (uid, step, body, tries)."""
        lease = [now + lease_s, owner]
        if room is not None:  # per step, a range of the key (step, uid): never the whole table
            items = list(room.items())
            statements = []
            for i in range(0, len(items), _STEPS_PER_TAKE):
                chunk = items[i : i + _STEPS_PER_TAKE]
                ready = " UNION ALL ".join(
                    "SELECT * FROM (SELECT step, uid FROM deliveries WHERE step = ? "
                    "AND lease < ? AND due <= ? ORDER BY uid LIMIT ?)"
                    for _ in chunk
                )
                params: list[Any] = []
                for step, n in chunk:
                    params += [step, now, now, n]
                statements.append((_TAKE.format(ready=ready), [*params, *lease]))
        else:
            ready = (
                "SELECT step, uid FROM deliveries WHERE lease < ? AND due <= ? ORDER BY uid LIMIT ?"
            )
            statements = [(_TAKE.format(ready=ready), [now, now, limit, *lease])]
        conn = _begin(self.fast if fast else self.conn)
        try:
            rows = [row for sql, params in statements for row in conn.execute(sql, params)]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def next_due(self, steps: list[str] | None, now: float) -> float | None:
        """When the next delivery (not due yet, or leased) may be taken; None if none."""
        where, params = "", []
        if steps is not None:
            where = f"WHERE step IN ({', '.join('?' * len(steps))})"
            params = list(steps)
        row = self.conn.execute(
            f"SELECT MIN(MAX(due, lease)) FROM deliveries {where}", params
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def renew(self, owner: str, now: float, lease_s: float) -> None:
        """Keep the deliveries this worker holds (running or queued here) from being taken."""
        self.conn.execute(
            "UPDATE deliveries SET lease = ? WHERE owner = ? AND lease > 0", (now + lease_s, owner)
        )

    def free_dead_owners(self, me: str) -> int:
        """Give back the deliveries held by processes of this machine that are gone (``kill -9``):
        they may be taken at once instead of after their lease."""
        freed = 0
        owners = self.conn.execute(
            "SELECT DISTINCT owner FROM deliveries WHERE owner IS NOT NULL"
        ).fetchall()
        for (owner,) in owners:
            if owner == me:
                continue
            if not gone_here(str(owner)):
                continue
            freed += self.conn.execute(
                "UPDATE deliveries SET lease = 0, owner = NULL WHERE owner = ?", (owner,)
            ).rowcount
        return freed

    def end_orphans(self, now: float) -> list[RunEnded]:
        """Runs held by a process of this machine that is gone (an api call it was answering
        when it died): the holds are dropped as errors, and runs left owing nothing end."""
        ended: list[RunEnded] = []
        rows = self.conn.execute(
            "SELECT trace_id, origin FROM runs WHERE holds > 0 AND ended IS NULL"
        ).fetchall()
        for trace_id, origin in rows:
            if not gone_here(str(origin)):
                continue
            row = self.conn.execute(
                "UPDATE runs SET pending = pending - holds, errors = errors + holds, holds = 0 "
                "WHERE trace_id = ? RETURNING pending, trigger, topic, start, events, errors, "
                "origin, version",
                (trace_id,),
            ).fetchone()
            if row is not None and row[0] <= 0:
                self.conn.execute("UPDATE runs SET ended = ? WHERE trace_id = ?", (now, trace_id))
                ended.append(RunEnded(trace_id, row[1], row[2], row[3], now, *row[4:]))
        return ended

    def owed(self, trace_ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(trace_ids), 500):
            chunk = trace_ids[i : i + 500]
            rows = self.conn.execute(
                f"SELECT trace_id FROM runs WHERE trace_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.update(str(r[0]) for r in rows)
        return out

    def claim(self, key: str, owner: str, now: float, ttl_s: float) -> bool:
        """True when this call took ``key`` (free, or its last claim expired)."""
        conn = _begin(self.conn)
        try:
            taken = conn.execute(
                "INSERT INTO claims (key, owner, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, "
                "expires = excluded.expires WHERE claims.expires < ?",
                (key, owner, now + ttl_s, now),
            ).rowcount
            conn.execute("DELETE FROM claims WHERE expires < ?", (now - 86_400,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return taken == 1

    def post_control(self, message: str, now: float) -> None:
        conn = _begin(self.conn)
        try:
            conn.execute("INSERT INTO control (message, ts) VALUES (?, ?)", (message, now))
            conn.execute("DELETE FROM control WHERE ts < ?", (now - ENDED_KEEP_S,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def control_since(self, seq: int) -> tuple[int, list[str]]:
        rows = self.conn.execute(
            "SELECT seq, message FROM control WHERE seq > ? ORDER BY seq", (seq,)
        ).fetchall()
        return (rows[-1][0] if rows else seq), [str(r[1]) for r in rows]

    def last_control(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM control").fetchone()
        return int(row[0])

    # -- workers and settings (versions, traffic) ------------------------------------------

    def register(self, worker: str, info: str, now: float) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO workers (worker, info, seen) VALUES (?, ?, ?)",
            (worker, info, now),
        )
        self.conn.execute("DELETE FROM workers WHERE seen < ?", (now - 86_400,))

    def unregister(self, worker: str) -> None:
        self.conn.execute("DELETE FROM workers WHERE worker = ?", (worker,))

    def heartbeat(self, worker: str, now: float) -> None:
        self.conn.execute("UPDATE workers SET seen = ? WHERE worker = ?", (now, worker))

    def workers(self, since: float) -> list[tuple[str, float]]:
        rows = self.conn.execute(
            "SELECT info, seen FROM workers WHERE seen >= ? ORDER BY worker", (since,)
        ).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self.conn.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            self.conn.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value)
            )

    def setting(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])


# A join on the key: ``WHERE (step, uid) IN (<a compound SELECT>)`` made SQLite scan the whole
# table for every take of more than one step.
_TAKE = (
    "WITH ready(step, uid) AS ({ready}) "
    "UPDATE deliveries SET lease = ?, owner = ?, tries = tries + 1 FROM ready "
    "WHERE deliveries.step = ready.step AND deliveries.uid = ready.uid "
    "RETURNING deliveries.uid, deliveries.step, deliveries.body, deliveries.tries"
)
_STEPS_PER_TAKE = 100  # subqueries per statement (SQLite allows 500 in a compound SELECT)


def _by_step(keys: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(step, uid) pairs as the uids of each step."""
    out: dict[str, list[str]] = {}
    for step, uid in keys:
        out.setdefault(step, []).append(uid)
    return out


def _settle(
    conn: sqlite3.Connection, changes: list[tuple[str, int, int, int, bool]], now: float
) -> list[RunEnded]:
    """Apply ledger changes (trace, pending delta, events, errors, settled) in one statement
    (one step of SQLite, not one per run); returns the runs they end. What ends a run is that
    something settled for it and it owes nothing now."""
    rows = conn.execute(
        f"WITH d(trace_id, delta, events, errors, settled) AS (VALUES {values(len(changes), 5)}) "
        "UPDATE runs SET pending = runs.pending + d.delta, events = runs.events + d.events, "
        "errors = runs.errors + d.errors, "
        "ended = CASE WHEN d.settled AND runs.pending + d.delta <= 0 THEN ? ELSE NULL END "
        "FROM d WHERE runs.trace_id = d.trace_id AND runs.ended IS NULL "
        "RETURNING trace_id, trigger, topic, start, events, errors, origin, ended, version",
        [x for change in changes for x in change] + [now],
    ).fetchall()
    return [
        RunEnded(r[0], r[1], r[2], r[3], now, r[4], r[5], r[6], r[8])
        for r in rows
        if r[7] is not None
    ]


_V1_RUN_COLUMNS = "trace_id, trigger, topic, start, origin, pending, holds, events, errors, ended"


def _create(conn: sqlite3.Connection) -> None:
    """Create the tables, or bring a journal of an older version up to this one (its pending
    deliveries and runs are kept)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version >= SCHEMA_VERSION:
        for statement in _SCHEMA:  # tables added within a version
            conn.execute(statement)
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version < 2:  # version 1: rowid tables
            for name, create, columns in (
                ("deliveries", _DELIVERIES, "*"),
                ("runs", _RUNS, _V1_RUN_COLUMNS),
            ):
                if name in tables:
                    conn.execute("DROP INDEX IF EXISTS deliveries_owner")
                    conn.execute(f"ALTER TABLE {name} RENAME TO {name}_v1")
                    conn.execute(create)
                    into = "" if columns == "*" else f"({columns})"
                    conn.execute(f"INSERT INTO {name} {into} SELECT {columns} FROM {name}_v1")
                    conn.execute(f"DROP TABLE {name}_v1")
        elif "runs" in tables:  # version 2: runs without their version
            conn.execute("ALTER TABLE runs ADD COLUMN version TEXT")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Busy(Exception):
    """The journal is being written by another connection (``fast`` calls do not wait)."""


def _begin(conn: sqlite3.Connection) -> sqlite3.Connection:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise Busy(str(e)) from e
        raise
    return conn


def now() -> float:
    return time.time()
