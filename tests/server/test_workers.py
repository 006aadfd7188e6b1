"""One project, many processes: ``wistro start --no-workers`` answers HTTP, three ``wistro worker``
processes share the deliveries through the bus, and one of them is killed with ``kill -9``
mid-run. Every event is still handled, every run ends ``ok``, and a run's trace names the worker
of each span."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import textwrap
from pathlib import Path

import httpx
import pytest
from processes import WISTRO, Server, run

from wistro.app import make_store
from wistro.project.paths import load_project

YML = """\
    name: workers
    src: src
    bus: {adapter: BUS, visibility_timeout_s: 3}
    api:
      - {path: /jobs, method: POST, emits: job.requested}
"""
STEPS = {
    "split.step.py": """\
        config = {"name": "Split", "subscribes": ["job.requested"], "emits": ["job.part"]}

        async def handler(data, ctx):
            await ctx.emit("job.part", {"n": data["n"]})
        """,
    "record.step.py": """\
        import asyncio

        config = {"name": "Record", "subscribes": ["job.part"], "emits": [], "concurrency": 8}

        async def handler(data, ctx):
            await asyncio.sleep(0.02)
            await ctx.state.set("done", str(data["n"]), data["n"])
        """,
}
EVENTS = 600


@pytest.fixture(params=["local", "redis"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The project on the local bus, or on the redis bus (the session's redis-server, a prefix
    of its own; traces then go to Redis too)."""
    root = tmp_path / "workers"
    (root / "src").mkdir(parents=True)
    yml = textwrap.dedent(YML).replace("BUS", request.param)
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        yml += f"redis: {{url: '{url}', prefix: '{prefix}'}}\n"
    (root / "wistro.yml").write_text(yml, encoding="utf-8")
    for name, code in STEPS.items():
        (root / "src" / name).write_text(textwrap.dedent(code), encoding="utf-8")
    run("lock", cwd=root)
    return root


def _done(root: Path) -> set[int]:
    folder = root / ".wistro" / "state" / "done"
    return {int(p.stem) for p in folder.glob("*.json")} if folder.is_dir() else set()


async def test_three_workers_one_killed_every_event_handled(
    project: Path, servers: list[Server]
) -> None:
    front = Server("start", "--no-workers", "--host", "127.0.0.1", "--port", "0", cwd=project)
    servers.append(front)
    port = front.port()
    bus = "redis" if "adapter: redis" in (project / "wistro.yml").read_text() else "local"
    assert front.stdout[-1].endswith(f"bus: {bus}, no workers"), front.output
    workers = [Server("worker", cwd=project) for _ in range(3)]
    servers.extend(workers)
    for w in workers:
        await w.await_line(r"^worker ready: workers \(2 steps", timeout=30)

    accepted: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        sem = asyncio.Semaphore(50)

        async def post(i: int) -> None:
            async with sem:
                r = await client.post("/jobs", json={"n": i})
                assert r.status_code == 202, r.text
                accepted.append(r.json()["trace_id"])

        posting = asyncio.gather(*(post(i) for i in range(EVENTS)))
        async with asyncio.timeout(60):
            while len(_done(project)) < EVENTS // 4:
                await asyncio.sleep(0.02)
        workers[0].proc.send_signal(signal.SIGKILL)  # mid-run: it holds deliveries
        await posting
    async with asyncio.timeout(90):
        while len(_done(project)) < EVENTS:
            await asyncio.sleep(0.1)
    assert _done(project) == set(range(EVENTS))

    async with asyncio.timeout(60):
        while True:
            out = await asyncio.to_thread(run, "traces", "--json", "--limit", "5000", cwd=project)
            runs = {r["trace_id"]: r for r in json.loads(out)}
            if all(runs.get(t, {}).get("status") == "ok" for t in accepted):
                break
            await asyncio.sleep(0.2)
    assert not [r for r in runs.values() if r["status"] == "running"]

    # `wistro emit` (sent to the running front) waits for a run that the workers handle.
    out = await asyncio.to_thread(run, "emit", "job.requested", '{"n": 600}', cwd=project)
    assert re.search(r"▶ Record .*ok", out), out
    assert 600 in _done(project)

    # The spans of the runs ran in the workers, and each names its worker.
    store = make_store(load_project(project), None)  # the project's store: SQLite, or Redis
    names: set[str] = set()
    several = None
    for trace_id in accepted:
        spans = store.get_run(trace_id)["spans"]
        # at least once: a delivery the killed worker had finished but not acknowledged ran again
        # a span the killed worker ran after its acknowledgement committed but before its
        # recorder wrote may be lost with it (the work itself is never lost)
        assert "Record" in {s["step"] for s in spans} and all(s["worker"] for s in spans)
        workers_of_run = {s["worker"] for s in spans}
        names |= workers_of_run
        several = several or (trace_id if len(workers_of_run) > 1 else None)
    store.close()
    pids = {w.proc.pid for w in workers}
    assert {int(n.rpartition(":")[2]) for n in names} <= pids
    assert len(names) >= 2
    if several:  # a run whose two spans ran in two workers: `wistro trace` says where each ran
        tree = await asyncio.to_thread(run, "trace", several, cwd=project)
        assert len(re.findall(r"▶ (Split|Record) ok .* on \S+:\d+", tree)) >= 2, tree

    for w in workers[1:]:  # SIGTERM: they drain and stop
        w.proc.send_signal(signal.SIGTERM)
    for w in workers[1:]:
        code, _ = await w.exited(timeout=30)
        assert code == 0, w.output


def _big_project(root: Path, chains: int) -> Path:
    """``chains`` chains of 5 steps (``c{i}.s{j}``), each step with its own topic."""
    (root / "src").mkdir(parents=True)
    (root / "wistro.yml").write_text("name: big\nbus: {adapter: local}\n", encoding="utf-8")
    for c in range(chains):
        folder = root / "src" / f"chain{c}"
        folder.mkdir()
        for j in range(5):
            emits = f'["c{c}.t{j + 1}"]' if j < 4 else "[]"
            body = (
                f'await ctx.emit("c{c}.t{j + 1}", data)'
                if j < 4
                else ('await ctx.state.set("reached", ctx.step, data)')
            )
            (folder / f"s{j}.step.py").write_text(
                f'config = {{"name": "c{c}.s{j}", "subscribes": ["c{c}.t{j}"], "emits": {emits}}}\n'
                f"async def handler(data, ctx):\n    {body}\n",
                encoding="utf-8",
            )
    run("lock", cwd=root, timeout=120)
    return root


async def test_a_1000_step_project_runs_an_event_through_a_worker(
    tmp_path: Path, servers: list[Server]
) -> None:
    root = _big_project(tmp_path / "big", 200)
    worker = Server("worker", cwd=root)
    servers.append(worker)
    ready = await worker.await_line(r"^worker ready: big \((\d+) steps.* in (\d+) ms", timeout=60)
    assert ready.group(1) == "1000"
    out = await asyncio.to_thread(run, "emit", "c137.t0", '{"n": 1}', "--json", cwd=root)
    trace = json.loads(out)
    assert trace["run"]["status"] == "ok"
    spans = trace["spans"]
    assert [s["step"] for s in spans] == [f"c137.s{j}" for j in range(5)]
    # every span ran in the worker: the CLI only published and waited
    assert {s["worker"].rpartition(":")[2] for s in spans} == {str(worker.proc.pid)}
    reached = root / ".wistro" / "state" / "reached"
    assert [p.name for p in reached.glob("*.json")] == ["c137.s4.json"]
    worker.proc.send_signal(signal.SIGTERM)
    code, _ = await worker.exited(timeout=30)
    assert code == 0, worker.output


def test_a_worker_on_the_memory_bus_says_it_needs_a_shared_one(tmp_path: Path) -> None:
    root = tmp_path / "mem"
    (root / "src").mkdir(parents=True)
    (root / "wistro.yml").write_text("name: mem\nbus: {adapter: memory}\n", encoding="utf-8")
    (root / "src" / "split.step.py").write_text(textwrap.dedent(STEPS["split.step.py"]))
    res = subprocess.run(
        [*WISTRO, "worker", "--no-lock"], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 1, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "a worker needs a shared bus" in lines[0], res.stderr
    assert "bus.adapter" in lines[0]


async def test_a_worker_is_woken_by_a_publish_not_found_by_its_fallback_look(
    project: Path, servers: list[Server]
) -> None:
    """Runs handed to a worker process one after the other each take a round trip, not the
    bus's once-a-second fallback look at the journal (the local bus sends a wake-up after a
    commit with deliveries anyone may take)."""
    import statistics
    import time

    import wistro
    from wistro.bus.local import FALLBACK_S

    worker = Server("worker", cwd=project)
    servers.append(worker)
    await worker.await_line(r"^worker ready: workers", timeout=30)
    app = wistro.load(project, consume=False, bus_default="local")
    took = []
    async with asyncio.timeout(60):
        for i in range(10):
            t0 = time.perf_counter()
            run_ = await app.emit("job.requested", {"n": 1000 + i})
            took.append(time.perf_counter() - t0)
            assert run_.status == "ok"
    await app.aclose()
    assert statistics.median(took) < FALLBACK_S / 2, took
