"""The local bus's journal: a commit's cost must not grow with what is pending.

Found measuring the local bus: acknowledgements were deleted with a row-value ``IN`` list,
which SQLite runs as a scan of the whole ``deliveries`` table, so with a backlog every commit
read every pending delivery; and a take of more than one step (``WHERE (step, uid) IN (<a
compound SELECT>)``) scanned it too. Each statement a commit or a take runs is checked here
with ``EXPLAIN QUERY PLAN`` against a journal holding a backlog.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from wistro.bus.base import Delivery, RunEnded, RunOpened
from wistro.bus.journal import ACK, ANNOUNCE, INSERT, NOTE, OPEN, Journal
from wistro.tracing.records import EventRecord, new_id, new_trace_id

STEPS = [f"s{i}" for i in range(5)]


def _delivery(step: str, trace_id: str) -> Delivery:
    event = EventRecord(new_id(), trace_id, "t", '{"n": 1}', "test", None, time.time())
    return Delivery(step, event)


def _backlog(journal: Journal, runs: int = 400, per_run: int = 5) -> list[tuple[str, str, str]]:
    """Open ``runs`` runs with ``per_run`` pending deliveries each; returns (uid, step, trace)."""
    ops: list[tuple[object, ...]] = []
    rows = []
    now = time.time()
    for r in range(runs):
        trace_id = new_trace_id()
        ops.append((OPEN, RunOpened(trace_id, "test", "t", now, "me"), 0))
        for k in range(per_run):
            uid = f"{int(now * 1e6):014x}{r:06d}{k}"
            step = STEPS[k]
            ops.append((INSERT, uid, step, trace_id, _delivery(step, trace_id), 0.0, 0.0, None, 0))
            rows.append((uid, step, trace_id))
    journal.commit(ops, now)
    return rows


def _plans(conn: sqlite3.Connection, statements: list[str]) -> dict[str, list[str]]:
    plans = {}
    for sql in statements:
        head = sql.lstrip().split(None, 1)[0].upper()
        if head not in ("INSERT", "UPDATE", "DELETE", "SELECT", "WITH"):
            continue
        params = [None] * sql.count("?")
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        plans[sql] = [str(row[3]) for row in rows]
    return plans


def _traced(journal: Journal) -> list[str]:
    seen: list[str] = []
    for conn in (journal.conn, journal.fast):
        conn.set_trace_callback(seen.append)
    return seen


def test_a_commit_searches_the_backlog_by_key_and_never_scans_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "bus.db")
    backlog = _backlog(journal)
    acked = backlog[::3]
    now = time.time()
    ops: list[tuple[object, ...]] = []
    for uid, step, trace_id in acked:  # acknowledgements of rows written in earlier commits
        ops += [(ACK, uid, trace_id, step), (NOTE, trace_id, 1, 0)]
    new_trace = new_trace_id()
    ops.append((OPEN, RunOpened(new_trace, "test", "t", now, "me"), 0))
    ops.append(
        (INSERT, "f" * 20, "s0", new_trace, _delivery("s0", new_trace), 0.0, now + 30, "me", 1)
    )
    seen = _traced(journal)
    journal.commit(ops, now, fast=True)
    ended = RunEnded(new_trace, "test", "t", now, now, 1, 0, "me")
    journal.commit([(ANNOUNCE, ended, False)], now)
    # the take of a process that names its steps (an App always does): a key range per step
    journal.take({"s1": 5, "s2": 5}, 10, "me", time.time(), 30.0)
    for conn in (journal.conn, journal.fast):
        conn.set_trace_callback(None)

    plans = _plans(journal.conn, seen)
    assert any(sql.startswith("DELETE FROM deliveries") for sql in plans), plans
    scans = {
        sql: plan
        for sql, plan in plans.items()
        if any(step in ("SCAN deliveries", "SCAN runs") for step in plan)
    }
    assert not scans, scans
    # and the acknowledged rows, only they, are gone
    assert journal.count() == len(backlog) - len(acked) + 1
    left = {r[0] for r in journal.conn.execute("SELECT uid FROM deliveries")}
    assert not left & {uid for uid, _, _ in acked}
    journal.close()
