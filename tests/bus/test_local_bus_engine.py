"""The engine on the local bus: runs end, across processes too; accepted work survives a crash."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import wistro

CHAIN = {
    "src/a.step.py": """
config = {"name": "A", "subscribes": ["go"], "emits": ["b"]}
async def handler(data, ctx):
    await ctx.emit("b", {"n": data["n"]})
""",
    "src/b.step.py": """
config = {"name": "B", "subscribes": ["b"], "emits": ["c"]}
async def handler(data, ctx):
    await ctx.emit("c", {"n": data["n"]})
""",
    "src/c.step.py": """
config = {"name": "C", "subscribes": ["c"], "emits": []}
async def handler(data, ctx):
    await ctx.state.set("seen", str(data["n"]), data["n"])
""",
}


async def test_a_chain_on_the_local_bus_ends_every_run(
    make_app: Callable[..., wistro.App], tmp_path: Path
) -> None:
    app = make_app(CHAIN, bus="local")
    async with asyncio.timeout(60):
        runs = await asyncio.gather(*(app.emit("go", {"n": i}) for i in range(300)))
    assert {r.status for r in runs} == {"ok"}
    assert len(await app.engine.state.get_group("seen")) == 300
    assert runs[0].record.n_events == 3


async def test_a_run_opened_run_and_settled_in_one_commit_ends(
    make_app: Callable[..., wistro.App],
) -> None:
    """A call (cron, api) whose whole run fits in one group commit — open, publish, take, ack,
    release — changes the run's ledger by 0 in that commit; it must still end."""
    files = {
        **CHAIN,
        "src/tick.step.py": """
config = {"name": "Tick", "type": "cron", "cron": "* * * * *", "emits": ["c"]}
async def handler(ctx):
    await ctx.emit("c", {"n": 1})
""",
    }
    app = make_app(files, bus="local")
    step = app.registry.get("Tick")
    async with asyncio.timeout(60):
        runs = []
        for _ in range(50):
            _, run = await app.engine.call(step, None, trigger="cron", topic="cron Tick")
            runs.append(run)
        await asyncio.gather(*(r.wait() for r in runs))
    assert {r.status for r in runs} == {"ok"}


async def test_runs_a_dead_process_left_running_unaccepted_are_marked_interrupted(
    make_app: Callable[..., wistro.App],
) -> None:
    """200 runs a process recorded as started and then died before the bus accepted them (the
    caller got no 202): nothing of them is pending, so the next process on the bus marks them
    `interrupted`, with the command that sends their event again; a run of a live process is
    left alone."""
    import socket

    from wistro.processes import worker_name
    from wistro.tracing.records import Batch, EventRecord, RunRecord
    from wistro.tracing.sqlite import SQLiteTraceStore

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_worker = f"{socket.gethostname()}:{dead.stdout.strip()}"
    root = make_app(CHAIN, folder="crashed").project.root
    store = SQLiteTraceStore(root / ".wistro" / "traces.db")
    batch = Batch()
    for i in range(200):
        trace = f"{i:032x}"
        batch.runs.append(RunRecord(trace, "api", "go", "running", 1.0 + i, worker=dead_worker))
        batch.events.append(EventRecord(f"e{i}", trace, "go", f'{{"n": {i}}}', "api", None, 1.0))
    alive = "f" * 32
    batch.runs.append(RunRecord(alive, "api", "go", "running", 500.0, worker=worker_name()))
    store.write(batch)
    store.close()

    app = wistro.load(root, bus="local", state="memory", traces=None)
    app.engine.start()
    try:
        assert app.engine._recovery is not None
        async with asyncio.timeout(30):
            marked = await app.engine._recovery
        assert len(marked) == 200
        await app.engine.recorder.flush()
        runs = {r["trace_id"]: r for r in app.engine.store.list_runs(limit=1000)}  # type: ignore[union-attr]
        assert {runs[f"{i:032x}"]["status"] for i in range(200)} == {"interrupted"}
        assert runs[alive]["status"] == "running"  # its process lives: not ours to judge
        (log,) = app.engine.store.get_run(f"{7:032x}")["logs"]  # type: ignore[union-attr]
        assert "stopped before the bus accepted the run" in log["message"]
        assert "wistro emit go '{\"n\": 7}'" in log["message"]
    finally:
        await app.aclose()


_V1_SCHEMA = [  # the journal as the first local bus wrote it (rowid tables, no user_version)
    "CREATE TABLE deliveries (uid TEXT PRIMARY KEY, step TEXT NOT NULL, trace_id TEXT NOT NULL, "
    "body TEXT NOT NULL, due REAL NOT NULL DEFAULT 0, lease REAL NOT NULL DEFAULT 0, owner TEXT, "
    "tries INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX deliveries_owner ON deliveries (owner) WHERE owner IS NOT NULL",
    "CREATE TABLE runs (trace_id TEXT PRIMARY KEY, trigger TEXT NOT NULL, topic TEXT NOT NULL, "
    "start REAL NOT NULL, origin TEXT NOT NULL, pending INTEGER NOT NULL DEFAULT 0, "
    "holds INTEGER NOT NULL DEFAULT 0, events INTEGER NOT NULL DEFAULT 0, "
    "errors INTEGER NOT NULL DEFAULT 0, ended REAL)",
]


_V2_SCHEMA = [  # keyed by (step, uid); runs without the version they were routed to
    "CREATE TABLE deliveries (uid TEXT NOT NULL, step TEXT NOT NULL, trace_id TEXT NOT NULL, "
    "body TEXT NOT NULL, due REAL NOT NULL DEFAULT 0, lease REAL NOT NULL DEFAULT 0, owner TEXT, "
    "tries INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (step, uid)) WITHOUT ROWID",
    "CREATE TABLE runs (trace_id TEXT PRIMARY KEY, trigger TEXT NOT NULL, topic TEXT NOT NULL, "
    "start REAL NOT NULL, origin TEXT NOT NULL, pending INTEGER NOT NULL DEFAULT 0, "
    "holds INTEGER NOT NULL DEFAULT 0, events INTEGER NOT NULL DEFAULT 0, "
    "errors INTEGER NOT NULL DEFAULT 0, ended REAL) WITHOUT ROWID",
    "PRAGMA user_version = 2",
]


@pytest.mark.parametrize("schema", [_V1_SCHEMA, _V2_SCHEMA], ids=["v1", "v2"])
async def test_a_journal_of_an_older_version_is_upgraded_and_its_pending_work_runs(
    make_app: Callable[..., wistro.App], tmp_path: Path, schema: list[str]
) -> None:
    """Deliveries left pending in a journal written by an older local bus (v1: before its
    tables were keyed by step; v2: before runs kept their version) are kept by the upgrade, and
    run."""
    import json
    import sqlite3
    import time

    from wistro.bus.base import Delivery
    from wistro.bus.journal import SCHEMA_VERSION
    from wistro.tracing.records import EventRecord

    app = make_app(CHAIN, bus="memory")  # writes the project; the journal is made by hand
    path = app.project.root / ".wistro" / "bus.db"
    path.parent.mkdir(exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in schema:
        conn.execute(statement)
    for i in range(40):
        trace = f"{i:032x}"
        event = EventRecord(f"e{i}", trace, "go", json.dumps({"n": i}), "emit", None, time.time())
        body = Delivery("A", event, payload={"n": i}).to_json()
        conn.execute(
            "INSERT INTO deliveries (uid, step, trace_id, body) VALUES (?, 'A', ?, ?)",
            (f"old{i}", trace, body),
        )
        conn.execute(
            "INSERT INTO runs (trace_id, trigger, topic, start, origin, pending, events) "
            "VALUES (?, 'emit', 'go', ?, 'gone:1', 1, 1)",
            (trace, time.time()),
        )
    conn.close()
    upgraded = wistro.load(app.project.root, bus="local", state="memory")
    upgraded.engine.start()
    async with asyncio.timeout(60):
        while len(await upgraded.engine.state.get_group("seen")) < 40:
            await asyncio.sleep(0.05)
        await upgraded.drain()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert check.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0
    assert check.execute("SELECT COUNT(*) FROM runs WHERE ended IS NULL").fetchone()[0] == 0
    check.close()
    await upgraded.aclose()


_WAITING_EMITTER = """
import asyncio, sys
import wistro

async def main():
    app = wistro.load(sys.argv[1], state="memory", bus="local")
    for n in range(100_000):
        run = await app.emit("go", {"n": n})  # waits for the run: no commit of its own first
        print("returned", n, run.status, flush=True)

asyncio.run(main())
"""
_LOGGING_CHAIN = {
    "src/a.step.py": """
import os
config = {"name": "A", "subscribes": ["go"], "emits": ["b"]}
async def handler(data, ctx):
    with open(os.environ["RAN_LOG"], "a") as f:
        f.write(f"A {data['n']}\\n")
    await ctx.emit("b", {"n": data["n"]})
""",
    "src/b.step.py": """
import os
config = {"name": "B", "subscribes": ["b"], "emits": []}
async def handler(data, ctx):
    with open(os.environ["RAN_LOG"], "a") as f:
        f.write(f"B {data['n']}\\n")
""",
}


def _emitter(
    tmp_path: Path, yml: str, script: str, *args: str
) -> tuple[Path, Path, subprocess.Popen[str]]:
    """The logging chain in ``tmp_path/p`` with this ``wistro.yml``, and a child process running
    ``script`` on it (its stdout piped); returns the project, the handlers' log and the child."""
    root = tmp_path / "p"
    for rel, text in _LOGGING_CHAIN.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "wistro.yml").write_text(yml)
    ran = tmp_path / "ran.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(root), *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAN_LOG": str(ran)},
    )
    assert proc.stdout is not None
    return root, ran, proc


async def test_a_run_an_emit_waited_for_is_durable_when_the_emit_returns(
    tmp_path: Path,
) -> None:
    """``await app.emit(...)`` that waits for its run makes no commit of its own acceptance:
    the commit that ends the run carries everything it did (one commit a run, not two). So
    what it returned must survive ``kill -9``: a process killed after hundreds of such emits
    returned leaves none of their deliveries to run again, and the next process finds only the
    run in flight at the kill."""
    from wistro.bus.journal import Journal

    root, ran, proc = _emitter(tmp_path, "name: waited\n", _WAITING_EMITTER)
    returned: list[int] = []
    for line in proc.stdout:
        word, n, status = line.split()
        assert (word, status) == ("returned", "ok"), line
        returned.append(int(n))
        if len(returned) == 300:
            os.kill(proc.pid, 9)
            break
    proc.wait(timeout=30)
    before = ran.read_text().splitlines()

    os.environ["RAN_LOG"] = str(ran)
    try:
        app = wistro.load(root, state="memory", bus="local")
        app.engine.start()
        journal = Journal(root / ".wistro" / "bus.db")
        async with asyncio.timeout(60):  # the dead process's leases are freed, its rows run
            while journal.count():
                await asyncio.sleep(0.05)
            await app.drain()
        journal.close()
        await app.aclose()
    finally:
        del os.environ["RAN_LOG"]
    again = ran.read_text().splitlines()[len(before) :]
    rerun = {int(line.split()[1]) for line in again}
    assert not rerun & set(returned), sorted(rerun & set(returned))
    for n in returned:  # each returned run ran each step exactly once
        assert before.count(f"A {n}") == 1 and before.count(f"B {n}") == 1, n


_ENDED_NOT_WRITTEN = """
import asyncio, sys
import wistro

async def main():
    app = wistro.load(sys.argv[1], state="memory", bus=sys.argv[2])
    app.engine.recorder.interval = 3600  # the trace writer has not written when the kill comes
    for n in range(50):
        run = await app.emit("go", {"n": n})
        print("returned", run.trace_id, run.status, flush=True)
    print("done", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize("bus", ["local", "redis"])
async def test_a_run_that_ended_just_before_kill_9_is_stored_ok_by_the_next_process(
    tmp_path: Path, bus: str, request: pytest.FixtureRequest
) -> None:
    """The bus forgets a run that ended only once the trace store has its end. A process killed
    after its runs ended but before its trace writer wrote them (here: a writer that waits an
    hour) leaves them ended in the journal, and the next process stores each one ``ok``;
    before, the journal forgot them at once, the store still said ``running``, and the next
    process marked them ``interrupted`` (a CI run saw 6 of 2,000). The same on Redis, whose
    ``ending`` set keeps them."""
    yml = "name: ended\n"
    if bus == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        yml += f"redis: {{url: '{url}', prefix: '{prefix}'}}\n"
    root, ran, proc = _emitter(tmp_path, yml, _ENDED_NOT_WRITTEN, bus)
    ended: list[str] = []
    for line in proc.stdout:
        if line.strip() == "done":
            break
        word, trace_id, status = line.split()
        assert (word, status) == ("returned", "ok"), line
        ended.append(trace_id)
    assert len(ended) == 50
    await asyncio.sleep(0.5)  # long enough for any commit the bus would make after the ends
    os.kill(proc.pid, 9)
    proc.wait(timeout=30)

    os.environ["RAN_LOG"] = str(ran)
    try:
        app = wistro.load(root, state="memory", bus=bus)
        app.engine.start()
        statuses: dict[str, str | None] = {}
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:  # its upkeep ends them at start
            await app.engine.recorder.flush()
            assert app.engine.store is not None
            rows = app.engine.store.list_runs(1_000, None)
            statuses = {r["trace_id"]: r["status"] for r in rows}
            if all(statuses.get(t) == "ok" for t in ended):
                break
            await asyncio.sleep(0.05)
        await app.aclose()
    finally:
        del os.environ["RAN_LOG"]
    assert {t: statuses.get(t) for t in ended} == dict.fromkeys(ended, "ok")
