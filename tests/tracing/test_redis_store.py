"""The Redis trace store beyond the contract suite: several processes (store instances, and real
OS processes) writing parts of one trace, prefixes, Redis down or restarting, a write resent after
a connection cut at EXEC, and a project on the redis bus getting it by default.

Against the session's real redis-server (tests/conftest.py), or a private one where a test
restarts it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from projects import write_project
from redis_support import RedisServer, free_port
from trace_support import full_trace, run, trace_ids

import wistro
from wistro.app import make_store
from wistro.errors import TraceNotFound, TraceStoreError
from wistro.project.paths import load_project
from wistro.tracing.records import (
    Batch,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
    as_dict,
)
from wistro.tracing.redis import RedisTraceStore
from wistro.tracing.sqlite import SQLiteTraceStore

ROOT = Path(__file__).resolve().parents[2]
MakeStore = Callable[..., RedisTraceStore]


@pytest.fixture
def make_store_(redis_url: str, redis_prefix: str) -> Iterator[MakeStore]:
    """``make(prefix=the test's, url=the session's, **kw)``: another process's store."""
    made: list[RedisTraceStore] = []

    def make(prefix: str = redis_prefix, url: str = redis_url, **kw: Any) -> RedisTraceStore:
        store = RedisTraceStore(url, prefix, **kw)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def span(sid: str, trace: str, start: float, parent: str | None, worker: str) -> SpanRecord:
    return SpanRecord(
        sid, trace, f"step-{sid}", "orders", f"e-{sid}", 1, start, start + 0.5, "ok", None, None,
        parent, worker,
    )  # fmt: skip


def test_two_processes_write_one_trace_a_third_reads_it(make_store_: MakeStore) -> None:
    """The origin writes the run and the first spans, another machine the spans it ran (and the
    run's end); a third process reads one trace, spans from both workers in time order, the
    logs of both in commit order."""
    origin, other, reader = make_store_(), make_store_(), make_store_()
    tid = "ab" * 16
    start = RunRecord(tid, "api", "orders", "running", 10.0, worker="m1:100")
    origin.write(
        Batch(
            runs=[start],
            events=[EventRecord("e-s1", tid, "orders", "{}", "api", None, 10.0)],
            spans=[span("s1", tid, 10.1, None, "m1:100")],
            logs=[LogRecord(tid, "s1", "step-s1", "info", "one", "{}", 10.2)],
        )
    )
    other.write(
        Batch(
            spans=[span("s2", tid, 11.0, "s1", "m2:200"), span("s3", tid, 12.0, "s2", "m2:200")],
            logs=[LogRecord(tid, "s2", "step-s2", "info", "two", "{}", 11.1)],
            state_ops=[StateOpRecord(tid, "s2", "step-s2", "set", "g", "k", "1", 11.2)],
        )
    )
    ended = RunRecord(tid, "api", "orders", "ok", 10.0, 13.0, 4, 0, "m2:200")
    origin.write(
        Batch(runs=[ended], logs=[LogRecord(tid, "s1", "step-s1", "info", "three", "{}", 10.3)])
    )

    got = reader.get_run(tid[:6])
    assert got["run"] == {**as_dict(ended), "worker": "m1:100"}  # the origin is its worker
    assert [(s["id"], s["parent_span_id"], s["worker"]) for s in got["spans"]] == [
        ("s1", None, "m1:100"),
        ("s2", "s1", "m2:200"),
        ("s3", "s2", "m2:200"),
    ]
    assert [r["message"] for r in got["logs"]] == ["one", "two", "three"]
    assert [r["seq"] for r in got["logs"]] == [1, 2, 3]
    assert [op["key"] for op in got["state_ops"]] == ["k"]
    typed = reader.get_trace(tid)
    assert typed.spans[1] == span("s2", tid, 11.0, "s1", "m2:200")
    assert [r["message"] for r in reader.logs(after=1)] == ["two", "three"]


def test_the_end_written_before_the_start_stays_ended(make_store_: MakeStore) -> None:
    ender, origin = make_store_(), make_store_()
    ender.write(Batch(runs=[RunRecord("t1", "api", "orders", "ok", 5.0, 7.0, 3, 0, "w:2")]))
    origin.write(Batch(runs=[RunRecord("t1", "api", "orders", "running", 5.0, None, 0, 0, "w:1")]))
    assert make_store_().get_run("t1")["run"] == as_dict(
        RunRecord("t1", "api", "orders", "ok", 5.0, 7.0, 3, 0, "w:2")
    )


RACER = """
import os, random, sys, time
from wistro.tracing.records import Batch, RunRecord, SpanRecord
from wistro.tracing.redis import RedisTraceStore

url, prefix, role, go = sys.argv[1:5]
store = RedisTraceStore(url, prefix)
order = list(range(200))
if role == "end":
    order.reverse()
elif role == "span":
    random.Random(7).shuffle(order)
store.list_runs()  # connected
open(f"{go}-{role}", "w").close()  # ready
while not os.path.exists(go):
    time.sleep(0.001)
for i in order:
    tid = f"race{i:04d}"
    if role == "end":
        batch = Batch(runs=[RunRecord(tid, "api", "orders", "ok", float(i), i + 1.0, 3, 0, "w:end")])
    else:
        batch = Batch(
            runs=[RunRecord(tid, "api", "orders", "running", float(i), None, 0, 0, f"w:{role}")],
            spans=[SpanRecord(f"{tid}-{role}", tid, role, "orders", "e", 1, float(i))],
        )
    store.write(batch)
store.close()
"""


def test_three_processes_racing_starts_and_ends_of_200_runs(
    redis_url: str, redis_prefix: str, tmp_path: Path, make_store_: MakeStore
) -> None:
    """Two processes write each run's start (and a span), one its end, in other orders, all at
    once: every run ends ok with the end's counts, whichever write landed first."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, redis_url, redis_prefix, role, str(go)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("start", "end", "span")
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}-{role}").exists() for role in ("start", "end", "span")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()  # all three connected and waiting: go
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    store = make_store_()
    runs = store.list_runs(limit=1000)
    assert len(runs) == 200
    assert {(r["status"], r["end"] - r["start"], r["n_events"]) for r in runs} == {("ok", 1.0, 3)}
    first_writers = {r["worker"] for r in runs}  # whoever wrote a run first gave its identity
    assert first_writers <= {"w:start", "w:end", "w:span"}
    assert "w:end" in first_writers  # some ends landed before their run's start
    for i in (0, 99, 199):
        spans = store.get_run(f"race{i:04d}")["spans"]
        assert sorted(s["step"] for s in spans) == ["span", "start"]


def test_prefixes_are_isolated(make_store_: MakeStore, redis_prefix: str) -> None:
    a, b = make_store_(f"{redis_prefix}-a", retention_runs=1), make_store_(f"{redis_prefix}-b")
    a.write(full_trace("aaaa1", 1.0))
    b.write(full_trace("aaaa2", 2.0))
    b.write(full_trace("bbbb3", 3.0))
    a.write(full_trace("cccc4", 4.0))  # a's retention deletes aaaa1, not b's runs
    assert trace_ids(a) == {"cccc4"}
    assert trace_ids(b) == {"aaaa2", "bbbb3"}
    assert b.get_run("aaaa")["run"]["trace_id"] == "aaaa2"  # not ambiguous: aaaa1 is a's
    with pytest.raises(TraceNotFound):
        a.get_run("bbbb3")
    assert [d["id"] for d in a.dead_letters()] == ["cccc4-d"]
    assert [r["trace_id"] for r in b.logs()] == ["aaaa2", "bbbb3"]
    assert [r["seq"] for r in b.logs()] == [1, 2]  # each prefix numbers its own logs


def test_list_runs_reads_a_long_list_in_pieces(make_store_: MakeStore) -> None:
    """A filter over more runs than one script call reads (1,000) goes on where it stopped."""
    store = make_store_()
    statuses = ["error" if i % 7 == 0 else "ok" for i in range(2_500)]
    store.write(Batch(runs=[run(f"r{i:05d}", float(i), s) for i, s in enumerate(statuses)]))
    newest_first = [f"r{i:05d}" for i in reversed(range(2_500))]
    errors = [t for t in newest_first if statuses[int(t[1:])] == "error"]
    assert [r["trace_id"] for r in store.list_runs(limit=10_000)] == newest_first
    assert [r["trace_id"] for r in store.list_runs(limit=10_000, status="error")] == errors
    assert [r["trace_id"] for r in store.list_runs(limit=300, status="error")] == errors[:300]
    oks = [t for t in newest_first if t not in errors]
    assert [r["trace_id"] for r in store.list_runs(limit=3, status="ok")] == oks[:3]
    assert store.list_runs(limit=10, topic="nope") == []


def test_key_layout_and_retention_leave_nothing_behind(
    make_store_: MakeStore, redis_server: RedisServer, redis_prefix: str
) -> None:
    store = make_store_(retention_runs=2)
    for i in range(4):
        store.write(full_trace(f"trace{i}", float(i)))
    client = redis_server.client()
    keys = sorted(k.decode() for k in client.keys(f"{redis_prefix}:*"))
    base = f"{redis_prefix}:traces"
    per_trace = [f"{base}:{kind}:trace{i}" for i in (2, 3) for kind in ("rec", "run", "tlogs")]
    assert keys == sorted(
        [
            f"{base}:{name}"
            for name in ("chunkseq", "dead", "dead-ids", "ids", "logs", "logseq", "runs")
        ]
        + per_trace
        + [k for k in keys if k.startswith(f"{base}:w:")]  # write guards, which expire
    )
    assert all(0 < client.ttl(k) <= 60 for k in keys if k.startswith(f"{base}:w:"))
    assert client.zrange(f"{base}:runs", 0, -1) == [b"trace2", b"trace3"]
    assert client.zrange(f"{base}:ids", 0, -1) == [b"trace2", b"trace3"]
    assert client.zrange(f"{base}:logs", 0, -1) == [b"3 trace2", b"4 trace3"]
    assert sorted(client.hkeys(f"{base}:dead")) == [b"trace2-d", b"trace3-d"]
    assert client.zrange(f"{base}:dead-ids", 0, -1) == [b"trace2-d", b"trace3-d"]
    recorded = client.hgetall(f"{base}:rec:trace3")
    assert sorted(recorded) == [b"c:4", b"d:trace3-d"]  # the 4th chunk written; a dead letter
    events, spans, ops = json.loads(recorded[b"c:4"])
    assert [e[0] for e in events] == ["trace3-e"] and [s[0] for s in spans] == ["trace3-s"]
    assert ops == [["trace3", None, "step", "set", "g", "k", "1", 3.0]]
    run_hash = client.hgetall(f"{base}:run:trace3")
    assert json.loads(run_hash[b"start"]) == 3.0 and json.loads(run_hash[b"end"]) is None


def test_redis_down_is_one_error_naming_the_url_within_seconds(make_store_: MakeStore) -> None:
    port = free_port()  # nothing listens there
    store = make_store_(url=f"redis://user:s3cret@127.0.0.1:{port}/0")
    for call in (
        lambda: store.write(full_trace("t1", 1.0)),
        lambda: store.list_runs(),
        lambda: store.get_run("t1"),
        lambda: store.logs(),
        lambda: store.dead_letters(),
        lambda: store.mark_replayed("t1-d"),
    ):
        t0 = time.monotonic()
        with pytest.raises(TraceStoreError) as err:
            call()
        assert time.monotonic() - t0 < 3
        line = str(err.value)
        assert "\n" not in line and "s3cret" not in line
        assert line.startswith(
            f"redis trace store at redis://user@127.0.0.1:{port}/0 is unreachable "
            "(Connection refused)"
        ), line
        assert err.value.__cause__ is None  # no chained traceback from redis-py


def test_redis_that_never_answers_times_out(make_store_: MakeStore) -> None:
    """A socket that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        store = make_store_(url=f"redis://127.0.0.1:{sock.getsockname()[1]}/0", timeout_s=0.2)
        t0 = time.monotonic()
        with pytest.raises(TraceStoreError, match=r"did not answer within 0\.2s"):
            store.list_runs()
        assert time.monotonic() - t0 < 2


def test_an_invalid_url_is_refused_at_once() -> None:
    with pytest.raises(TraceStoreError, match=r"invalid redis URL 'http://user@127\.0\.0\.1:1/0'"):
        RedisTraceStore("http://user:pw@127.0.0.1:1/0", "p")
    with pytest.raises(TraceStoreError, match="non-empty key prefix"):
        RedisTraceStore("redis://127.0.0.1:1/0", "")


def test_the_store_carries_on_after_redis_restarts(tmp_path: Path, redis_prefix: str) -> None:
    server = RedisServer(tmp_path / "redis", aof=True).start()
    try:
        store = RedisTraceStore(server.url, redis_prefix)
        store.write(full_trace("t1", 1.0))
        server.restart()  # the pooled connection is dead: the write goes on a fresh one
        store.write(full_trace("t2", 2.0))
        assert trace_ids(store) == {"t1", "t2"}
        assert [r["seq"] for r in store.logs()] == [1, 2]
        server.stop()
        with pytest.raises(TraceStoreError, match="is unreachable"):
            store.write(full_trace("t3", 3.0))
        server.start()
        store.write(full_trace("t3", 3.0))
        assert trace_ids(store) == {"t1", "t2", "t3"}
        store.close()
    finally:
        server.stop()


class ExecCutter:
    """A TCP proxy in front of Redis (threads) that, once ``armed``, cuts the connection at the
    first ``EXEC`` it sees: after passing it on (Redis applies the transaction, the client never
    hears so), or instead (nothing applied). The client cannot tell which, and sends it again."""

    def __init__(self, port: int, forward: bool) -> None:
        self.port, self.forward = port, forward
        self.armed = self.cut = False
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.sock.accept()
                upstream = socket.create_connection(("127.0.0.1", self.port))
                cut_here = threading.Event()  # this connection's EXEC was cut
                for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                    threading.Thread(
                        target=self._pump, args=(src, dst, up, cut_here), daemon=True
                    ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool, cut: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                if up and self.armed and not self.cut and b"EXEC" in chunk:
                    self.cut = True
                    cut.set()
                    if self.forward:
                        dst.sendall(chunk)
                        time.sleep(0.1)  # Redis has applied it
                    break
                if not up and cut.is_set():
                    break  # the answer to EXEC never reaches the client
                dst.sendall(chunk)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("forward", [True, False], ids=["exec-applied", "exec-lost"])
def test_a_write_resent_after_a_cut_at_exec_stores_its_logs_once(
    redis_server: RedisServer, make_store_: MakeStore, forward: bool
) -> None:
    cutter = ExecCutter(redis_server.port, forward)
    try:
        store = make_store_(url=cutter.url)
        store.write(full_trace("t1", 1.0))
        cutter.armed = True
        store.write(full_trace("t2", 2.0))  # cut at EXEC, sent again on a new connection
        assert cutter.cut
        assert [(r["trace_id"], r["seq"]) for r in store.logs()] == [("t1", 1), ("t2", 2)]
        got = store.get_run("t2")
        assert len(got["events"]) == len(got["spans"]) == len(got["state_ops"]) == 1
    finally:
        cutter.close()


def test_a_follower_misses_no_log_another_process_commits(make_store_: MakeStore) -> None:
    """``wistro logs -f`` follows the sequence: numbers are given at commit, so a cursor never
    skips a log that another process was still committing."""
    writers = [make_store_(), make_store_()]
    follower = make_store_()
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def write(n: int) -> None:
        for i in range(300):
            writers[n].write(Batch(logs=[LogRecord(f"w{n}", None, None, "info", str(i), "{}", i)]))

    threads = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()

    def follow() -> None:
        cursor = 0
        while True:
            # Read before the query: only an empty answer to a query made after the writers
            # finished means there is nothing more (checked after it, the last logs could
            # land between the two, and the follower stopped one short).
            finished = done.is_set()
            rows = follower.logs(after=cursor, limit=50)
            if rows:
                cursor = rows[-1]["seq"]
                seen.extend(rows)
            elif finished:
                break

    follower_thread = threading.Thread(target=follow)
    follower_thread.start()
    for t in threads:
        t.join(30)
    done.set()
    follower_thread.join(30)
    assert [r["seq"] for r in seen] == list(range(1, 601))
    for n in (0, 1):
        assert [r["message"] for r in seen if r["trace_id"] == f"w{n}"] == [
            str(i) for i in range(300)
        ]


def test_text_of_any_kind_round_trips(make_store_: MakeStore) -> None:
    store = make_store_()
    odd = "é \U0001f600 \ud800 \x00 \n"
    store.write(
        Batch(
            runs=[run("t\ud800xyz")],
            events=[EventRecord("e1", "t\ud800xyz", "o", json.dumps({"x": odd}), odd, None, 1.0)],
            logs=[LogRecord("t\ud800xyz", None, None, "info", odd, "{}", 1.0)],
        )
    )
    got = store.get_run("t\ud800xyz")
    assert got["events"][0]["source"] == odd and got["logs"][0]["message"] == odd
    assert store.get_run("t\ud800xy")["run"]["trace_id"] == "t\ud800xyz"  # as a prefix too


def redis_project(url: str, prefix: str, traces: str = "") -> dict[str, str]:
    return {
        "wistro.yml": f"""
            name: shop
            bus: {{adapter: redis}}
            redis: {{url: "{url}", prefix: "{prefix}"}}
            {traces}
        """,
        "src/noop.step.py": textwrap.dedent(
            """
            config = {'name': 'Noop', 'subscribes': ['order.placed'], 'emits': []}

            async def handler(data, ctx):
                pass
            """
        ),
    }


async def test_a_project_on_the_redis_bus_traces_in_redis_by_default(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """...and so another process (here a store of its own) reads what the app recorded."""
    root = write_project(tmp_path / "p", redis_project(redis_url, redis_prefix))
    app = wistro.load(root, state="memory")
    try:
        store = app.engine.store
        assert isinstance(store, RedisTraceStore)
        assert (store.url, store.prefix) == (redis_url, redis_prefix)
        done = await app.emit("order.placed", {"id": "A1"})
        assert done.status == "ok", done.errors
    finally:
        await app.aclose()  # writes what the recorder holds
    elsewhere = RedisTraceStore(redis_url, redis_prefix)
    got = elsewhere.get_run(done.trace_id)
    assert got["run"]["status"] == "ok"
    assert [(s["step"], s["status"]) for s in got["spans"]] == [("Noop", "ok")]
    elsewhere.close()


def test_traces_adapter_and_url_in_wistro_yml(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    def store_of(traces: str, choice: Any = None) -> Any:
        root = write_project(tmp_path / str(len(os.listdir(tmp_path))), redis_project(
            "redis://elsewhere:6379/0", redis_prefix, traces
        ))  # fmt: skip
        made = make_store(load_project(root), choice)
        made.close()
        return made

    by_bus = store_of("")
    assert isinstance(by_bus, RedisTraceStore) and by_bus.url == "redis://elsewhere:6379/0"
    own = store_of(f'traces: {{url: "{redis_url}", retention_runs: 7}}')
    assert isinstance(own, RedisTraceStore)
    assert (own.url, own.prefix, own.retention_runs) == (redis_url, redis_prefix, 7)
    assert isinstance(store_of("traces: {adapter: sqlite}"), SQLiteTraceStore)
    assert type(store_of("traces: {adapter: memory}")).__name__ == "MemoryTraceStore"
    assert isinstance(store_of("", "memory"), type(store_of("traces: {adapter: memory}")))
    assert isinstance(store_of("traces: {adapter: sqlite}", "redis"), RedisTraceStore)


def test_without_the_redis_bus_traces_stay_in_sqlite(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"wistro.yml": "name: shop\n"})
    assert isinstance(make_store(load_project(root), None), SQLiteTraceStore)
    root = write_project(tmp_path / "q", {"wistro.yml": "name: shop\ntraces: {adapter: redis}\n"})
    made = make_store(load_project(root), None)
    assert isinstance(made, RedisTraceStore) and made.prefix == "wistro:shop:dev"
