"""Every trace store (tests/contracts/conftest.py lists them) behaves the same."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from trace_support import full_trace, run, trace_ids

from wistro.errors import TraceNotFound
from wistro.tracing.records import (
    Batch,
    DeadLetter,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
    as_dict,
)
from wistro.tracing.store import TraceStore

MakeStore = Callable[..., TraceStore]
TABLES = ("runs", "chunks", "logs", "dead_letters")  # events, spans, state ops: in chunks


def test_round_trip_of_every_record_type(store: TraceStore) -> None:
    r = RunRecord("t1", "cli", "orders", "ok", 10.0, 12.5, 2, 1)
    e1 = EventRecord("e1", "t1", "orders", '{"id": 1}', "cli", None, 10.0)
    e2 = EventRecord("e2", "t1", "bad", "{}", "step_a", "s1", 11.0, error="undeclared topic")
    s1 = SpanRecord("s1", "t1", "step_a", "orders", "e1", 2, 10.1, 11.5, "error", "boom", "Tb...")
    l1 = LogRecord("t1", "s1", "step_a", "info", "hello", '{"x": 1}', 10.2)
    l2 = LogRecord("t1", None, None, "warning", "bye", "{}", 10.3)
    op = StateOpRecord("t1", "s1", "step_a", "set", "carts", "c1", '{"a": [1]}', 10.4)
    op2 = StateOpRecord("t1", "s1", "step_a", "clear", "carts", None, None, 10.5)
    dl = DeadLetter("d1", "t1", "step_a", "orders", "e1", '{"id": 1}', "boom", 3, 11.6)
    store.write(Batch([r], [e1, e2], [s1], [l1, l2], [op, op2], [dl]))

    got = store.get_run("t1")
    assert got["run"] == as_dict(r)
    assert got["events"] == [as_dict(e1), as_dict(e2)]
    assert got["spans"] == [as_dict(s1)]
    assert [{k: v for k, v in row.items() if k != "seq"} for row in got["logs"]] == [
        as_dict(l1),
        as_dict(l2),
    ]
    assert got["state_ops"] == [as_dict(op), as_dict(op2)]
    assert got["dead_letters"] == [as_dict(dl)]
    assert got["dead_letters"][0]["replayed"] is False
    assert store.list_runs() == [as_dict(r)]
    assert store.get_dead_letter("d1") == as_dict(dl)
    assert store.dead_letters() == [as_dict(dl)]

    typed = store.get_trace("t1")  # read back as the records that were written
    assert typed.run == r and typed.events == [e1, e2] and typed.spans == [s1]
    assert typed.logs == [l1, l2] and typed.state_ops == [op, op2]
    assert typed.dead_letters == [dl]


def test_a_run_that_ended_is_never_set_back_to_running(store: TraceStore) -> None:
    """Several processes write one store (a shared bus): the process that ended a run can write
    its end before the run's origin writes its start."""
    store.write(Batch(runs=[RunRecord("t1", "api", "orders", "ok", 5.0, 7.0, 3, 0, "w:2")]))
    store.write(Batch(runs=[RunRecord("t1", "api", "orders", "running", 5.0, None, 0, 0, "w:1")]))
    (row,) = store.list_runs()
    assert (row["status"], row["end"], row["n_events"]) == ("ok", 7.0, 3)
    store.write(Batch(runs=[RunRecord("t1", "api", "orders", "interrupted", 5.0, 9.0, 0, 1)]))
    (row,) = store.list_runs()
    assert row["status"] == "ok"  # recovery never overrides an end


def test_rows_are_copies(store: TraceStore) -> None:
    store.write(full_trace("t1", 1.0))
    store.get_run("t1")["run"]["status"] = "tampered"
    store.list_runs()[0]["status"] = "tampered"
    assert store.get_run("t1")["run"]["status"] == "running"


def test_run_written_again_is_updated(store: TraceStore) -> None:
    store.write(Batch(runs=[run("t1", 5.0)]))
    store.write(Batch(runs=[RunRecord("t1", "api", "other", "error", 99.0, 7.0, 4, 2)]))
    runs = store.list_runs()
    assert runs == [
        {
            "trace_id": "t1",
            "trigger": "cli",  # the identity of the run is kept
            "topic": "orders",
            "status": "error",
            "start": 5.0,
            "end": 7.0,
            "n_events": 4,
            "n_errors": 2,
            "worker": None,
            "version": None,
        }
    ]


def test_run_updated_within_one_batch(store: TraceStore) -> None:
    store.write(Batch(runs=[run("t1", 5.0), run("t1", 5.0, "ok", end=6.0, n_events=3)]))
    assert store.get_run("t1")["run"]["status"] == "ok"
    assert store.get_run("t1")["run"]["n_events"] == 3


def test_span_written_again_replaces_it(store: TraceStore) -> None:
    store.write(
        Batch(runs=[run("t1")], spans=[SpanRecord("s1", "t1", "a", "orders", "e1", 1, 2.0)])
    )
    ended = SpanRecord("s1", "t1", "a", "orders", "e1", 1, 2.0, 3.0, "ok")
    store.write(Batch(spans=[ended]))
    assert store.get_run("t1")["spans"] == [as_dict(ended)]


def test_trace_lists_are_in_time_order(store: TraceStore) -> None:
    store.write(
        Batch(
            runs=[run("t1")],
            events=[
                EventRecord(f"e{i}", "t1", "o", "{}", "cli", None, ts)
                for i, ts in enumerate([3.0, 1.0, 2.0])
            ],
            spans=[
                SpanRecord(f"s{i}", "t1", "a", "o", "e", 1, ts)
                for i, ts in enumerate([2.0, 3.0, 1.0])
            ],
        )
    )
    got = store.get_run("t1")
    assert [e["ts"] for e in got["events"]] == [1.0, 2.0, 3.0]
    assert [s["start"] for s in got["spans"]] == [1.0, 2.0, 3.0]


def test_list_runs_newest_first_with_filters(store: TraceStore) -> None:
    store.write(
        Batch(
            runs=[
                run("a", 1.0, "ok"),
                run("b", 3.0, "error"),
                run("c", 2.0, "ok", topic="payments"),
                run("d", 4.0, "ok"),
            ]
        )
    )
    assert [r["trace_id"] for r in store.list_runs()] == ["d", "b", "c", "a"]
    assert [r["trace_id"] for r in store.list_runs(limit=2)] == ["d", "b"]
    assert [r["trace_id"] for r in store.list_runs(status="ok")] == ["d", "c", "a"]
    assert [r["trace_id"] for r in store.list_runs(topic="payments")] == ["c"]
    assert [r["trace_id"] for r in store.list_runs(status="ok", topic="orders")] == ["d", "a"]
    assert store.list_runs(status="running") == []


def test_get_run_by_prefix(store: TraceStore) -> None:
    ids = ["abcd1111" + "0" * 24, "abcd2222" + "0" * 24, "ffee0000" + "0" * 24]
    store.write(Batch(runs=[run(i) for i in ids]))
    assert store.get_run(ids[0])["run"]["trace_id"] == ids[0]
    assert store.get_run("abcd1")["run"]["trace_id"] == ids[0]
    assert store.get_run("ffee")["run"]["trace_id"] == ids[2]

    with pytest.raises(TraceNotFound) as err:
        store.get_run("abcd")
    assert "ambiguous" in str(err.value)
    assert ids[0] in str(err.value) and ids[1] in str(err.value)

    with pytest.raises(TraceNotFound) as err:  # a unique prefix, but too short
        store.get_run("ffe")
    assert "no trace 'ffe'" in str(err.value)
    assert "4 characters" in str(err.value)


def test_exact_short_id_is_found(store: TraceStore) -> None:
    store.write(Batch(runs=[run("t1"), run("t12345")]))
    assert store.get_run("t1")["run"]["trace_id"] == "t1"
    assert store.get_run("t123")["run"]["trace_id"] == "t12345"


def test_missing_trace_error_names_it(store: TraceStore) -> None:
    store.write(Batch(runs=[run("abcdef")]))
    with pytest.raises(TraceNotFound) as err:
        store.get_run("123456")
    assert str(err.value).startswith("no trace '123456'")
    assert "wistro traces" in str(err.value)


def test_prefix_with_sql_wildcards_matches_literally(store: TraceStore) -> None:
    store.write(Batch(runs=[run("abcdef")]))
    for wanted in ("ab%%", "abc_", "a%"):
        with pytest.raises(TraceNotFound):
            store.get_run(wanted)


def test_dead_letters(store: TraceStore) -> None:
    store.write(full_trace("aaaa1", 1.0))
    store.write(full_trace("bbbb2", 2.0))
    assert [d["id"] for d in store.dead_letters()] == ["bbbb2-d", "aaaa1-d"]  # newest first

    store.mark_replayed("aaaa1-d")
    assert [d["id"] for d in store.dead_letters()] == ["bbbb2-d"]
    replayed = [d for d in store.dead_letters(include_replayed=True) if d["id"] == "aaaa1-d"]
    assert replayed[0]["replayed"] is True
    assert store.get_dead_letter("aaaa1")["replayed"] is True
    assert store.get_dead_letter("bbbb")["id"] == "bbbb2-d"
    assert store.get_run("aaaa1")["dead_letters"][0]["replayed"] is True

    with pytest.raises(TraceNotFound) as err:
        store.get_dead_letter("zzzz")
    assert "no dead letter 'zzzz'" in str(err.value)
    with pytest.raises(TraceNotFound):
        store.mark_replayed("zzzz")


def test_logs_cursor(store: TraceStore) -> None:
    store.write(Batch(runs=[run("t1"), run("t2")]))
    for i in range(5):
        store.write(
            Batch(
                logs=[
                    LogRecord(
                        "t1" if i % 2 == 0 else "t2", None, None, "info", f"m{i}", "{}", float(i)
                    )
                ]
            )
        )

    first = store.logs(limit=2)
    assert [r["message"] for r in first] == ["m0", "m1"]
    rest = store.logs(after=first[-1]["seq"])
    assert [r["message"] for r in rest] == ["m2", "m3", "m4"]
    seqs = [r["seq"] for r in first + rest]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert store.logs(after=seqs[-1]) == []

    assert [r["message"] for r in store.logs(trace_id="t2")] == ["m1", "m3"]
    assert [r["message"] for r in store.logs(after=seqs[1], trace_id="t1")] == ["m2", "m4"]
    assert store.logs(trace_id="nope") == []

    store.write(Batch(logs=[LogRecord("t2", None, None, "error", "m5", "{}", 5.0)]))
    assert [r["message"] for r in store.logs(after=seqs[-1])] == ["m5"]


def test_retention_deletes_oldest_runs_and_their_rows(
    store_kind: str, make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store(retention_runs=3)
    # written out of start order: retention goes by start, not by arrival
    for i, start in enumerate([5.0, 1.0, 4.0, 2.0, 6.0]):
        store.write(full_trace(f"trace{i}", start))

    kept = {"trace0", "trace2", "trace4"}  # starts 5, 4 and 6
    assert trace_ids(store) == kept
    for gone in ("trace1", "trace3"):
        with pytest.raises(TraceNotFound):
            store.get_run(gone)
    assert {r["trace_id"] for r in store.logs()} == kept
    assert {d["trace_id"] for d in store.dead_letters()} == kept
    for kept_id in kept:
        got = store.get_run(kept_id)
        assert len(got["events"]) == len(got["spans"]) == len(got["state_ops"]) == 1
    store.close()

    if store_kind == "sqlite":  # nothing of the old traces is left in any table
        with sqlite3.connect(tmp_path / "traces.db") as conn:
            for table in TABLES:
                rows = conn.execute(f"SELECT DISTINCT trace_id FROM {table}").fetchall()
                assert {r[0] for r in rows} == kept, table


def test_retention_within_one_batch(store_kind: str, make_store: MakeStore) -> None:
    store = make_store(retention_runs=2)
    store.write(Batch(runs=[run(f"t{i}", float(i)) for i in range(6)]))
    assert trace_ids(store) == {"t4", "t5"}
    store.close()


def test_updating_runs_does_not_count_towards_retention(
    store_kind: str, make_store: MakeStore
) -> None:
    store = make_store(retention_runs=2)
    store.write(Batch(runs=[run("a", 1.0), run("b", 2.0)]))
    for _ in range(3):
        store.write(Batch(runs=[run("a", 1.0, "ok"), run("b", 2.0, "ok")]))
    assert trace_ids(store) == {"a", "b"}
    store.write(Batch(runs=[run("c", 3.0)]))
    assert trace_ids(store) == {"b", "c"}
    store.close()


def test_log_seq_is_never_reused_after_retention(store_kind: str, make_store: MakeStore) -> None:
    store = make_store(retention_runs=1)
    store.write(
        Batch(runs=[run("new", 5.0)], logs=[LogRecord("new", None, None, "info", "a", "{}", 1.0)])
    )
    # an older run arrives with a log, and is pruned at once, taking the newest log row with it
    store.write(
        Batch(runs=[run("old", 1.0)], logs=[LogRecord("old", None, None, "info", "b", "{}", 2.0)])
    )
    assert [r["message"] for r in store.logs()] == ["a"]
    store.write(Batch(logs=[LogRecord("new", None, None, "info", "c", "{}", 3.0)]))
    assert [r["seq"] for r in store.logs()] == [1, 3]
    store.close()


def test_concurrent_reads_while_writing(store: TraceStore) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(200):
                store.write(full_trace(f"trace{i:04d}", float(i)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                for r in store.list_runs(limit=5):
                    assert store.get_run(r["trace_id"])["run"]["trace_id"] == r["trace_id"]
                store.logs(limit=10)
                store.dead_letters()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(store.list_runs(limit=1000)) == 200


# -- SQLite only ---------------------------------------------------------------------------
