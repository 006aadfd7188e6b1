"""Load tests of the real ``wistro dev`` server: many concurrent HTTP requests into a flow with a
plain ``def`` step and file state, and SIGTERM while work is in flight.

Each test starts the console script (``python -m wistro dev --no-reload --port 0``) in a
subprocess on 127.0.0.1, reads its stdout and stderr on threads (so a wait never blocks for
good), drives it with an ``httpx.AsyncClient`` and polls for every condition with a deadline.

Before the engine got its own handler threads, 40 concurrent ``POST /orders`` on the example
shop deadlocked it: plain ``def`` handlers waiting for file-state I/O queued behind themselves on
the loop's default executor; no receipt was ever sent and SIGTERM did not stop the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import signal
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from processes import Server, run

ORDERS = 1_000
CLIENTS = 100
FLOW_DEADLINE = 120.0  # seconds from the first request until every receipt is sent
DECLINE_LIMIT = 50_000  # cents; src/checkout/charge_card.step.py of the shop template


def _start(servers: list[Server], project: Path, *args: str) -> tuple[Server, int]:
    s = Server("dev", "--no-reload", "--host", "127.0.0.1", "--port", "0", *args, cwd=project)
    servers.append(s)
    return s, s.port()


# ------------------------------------------------------------------------ the shop under load
def _order(i: int) -> dict[str, object]:
    return {"order_id": f"L{i:04d}", "amount_cents": 100 + (i * 7919) % (DECLINE_LIMIT - 200)}


def _receipts_sent(folder: Path) -> set[str]:
    sent = set()
    for path in folder.glob("*.json"):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # replaced atomically, but be safe: read it next round
            continue
        if value.get("receipt") == "sent":
            sent.add(path.name.removesuffix(".json"))
    return sent


async def test_the_shop_takes_1000_orders_from_100_clients(
    tmp_path: Path, servers: list[Server]
) -> None:
    run("init", "shop", cwd=tmp_path)
    shop = tmp_path / "shop"
    s, port = _start(servers, shop, "--grace-s", "20")

    statuses: dict[int, int] = {}
    trace_ids: set[str] = set()
    health: list[tuple[int, float]] = []
    failed: list[str] = []
    orders = iter(range(ORDERS))
    loaded = asyncio.Event()
    # keepalive_expiry under uvicorn's 5 s keep-alive: with httpx's default (also 5 s) a POST can
    # go out on a pooled connection the server is closing at that moment (httpx.ReadError).
    limits = httpx.Limits(
        max_connections=CLIENTS + 1, max_keepalive_connections=CLIENTS + 1, keepalive_expiry=1
    )
    t0 = time.monotonic()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
    ) as client:

        async def customer() -> None:
            for i in orders:  # one shared iterator: 100 clients, 1,000 orders in all
                try:
                    r = await client.post("/orders", json=_order(i))
                except httpx.TransportError as e:
                    failed.append(f"L{i:04d} at {time.monotonic() - t0:.2f} s: {e!r}")
                    continue
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 202:
                    body = r.json()
                    assert body["order_id"] == f"L{i:04d}", body
                    trace_ids.add(body["trace_id"])

        async def health_probe() -> None:
            while not loaded.is_set():
                t = time.monotonic()
                r = await client.get("/_wistro/health", timeout=15)
                health.append((r.status_code, time.monotonic() - t))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(loaded.wait(), 0.2)

        probe = asyncio.create_task(health_probe())
        try:
            await asyncio.gather(*(customer() for _ in range(CLIENTS)))
        finally:
            loaded.set()
            await probe
    posted_in = time.monotonic() - t0

    assert not failed, "\n".join(failed[:10]) + "\n" + s.output
    assert statuses == {202: ORDERS}, statuses
    assert len(trace_ids) == ORDERS
    assert health, "no health check answered during the load"
    assert {code for code, _ in health} == {200}, health
    assert len(health) >= 2 or posted_in < 1, (len(health), posted_in)

    # Every run finishes and every receipt is sent: the state files, then the trace store.
    folder = shop / ".wistro" / "state" / "orders"
    expected = {f"L{i:04d}" for i in range(ORDERS)}
    sent: set[str] = set()
    while True:
        sent = _receipts_sent(folder)
        if sent == expected:
            break
        assert s.proc.poll() is None, s.output
        assert time.monotonic() - t0 < FLOW_DEADLINE, (
            f"{len(expected - sent)} of {ORDERS} receipts not sent after {FLOW_DEADLINE} s\n"
            + s.output
        )
        await asyncio.sleep(0.2)

    runs: list[dict[str, object]] = []
    while True:
        out = await asyncio.to_thread(run, "traces", "--json", "--limit", "5000", cwd=shop)
        runs = [r for r in json.loads(out) if r["topic"] == "POST /orders"]
        done = [r for r in runs if r["status"] != "running"]
        if len(done) == ORDERS:
            break
        assert time.monotonic() - t0 < FLOW_DEADLINE, (
            f"{len(done)} of {ORDERS} runs finished in the trace store after {FLOW_DEADLINE} s"
        )
        await asyncio.sleep(0.5)
    assert {r["trace_id"] for r in runs} == trace_ids
    not_ok = [r for r in runs if r["status"] != "ok" or r["n_errors"]]
    assert not not_ok, not_ok[:5]
    assert all(r["n_events"] == 4 for r in runs), {r["n_events"] for r in runs}

    s.proc.send_signal(signal.SIGTERM)
    code, took = await s.exited(timeout=20 + 10)
    assert code == 0, s.output
    assert took < 20, f"SIGTERM with nothing in flight took {took:.1f} s\n{s.output}"
    assert s.stdout[-1] == "stopped", s.output
    assert not any("abandoned" in line for line in s.stderr), s.output
    assert "Traceback" not in "\n".join(s.stdout + s.stderr), s.output


# ------------------------------------------------------------------------ SIGTERM under load
SLOW_YML = """\
    name: slow
    src: src
    bus: {adapter: memory}  # what is abandoned is lost: it must end in error (see test_recovery)
    api:
      - {path: /jobs, method: POST, emits: job.requested}
"""

SLOW_STEP = """\
    import time

    config = {
        "name": "Slow job",
        "subscribes": ["job.requested"],
        "input": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
        "emits": [],
    }


    def handler(job, ctx):
        ctx.logger.info("slow job started", n=job["n"])
        time.sleep(60)  # far longer than the grace period
"""
SLEEP_S = 60
JOBS = 300


@pytest.fixture
def slow_project(tmp_path: Path) -> Path:
    project = tmp_path / "slow"
    (project / "src").mkdir(parents=True)
    (project / "wistro.yml").write_text(textwrap.dedent(SLOW_YML), encoding="utf-8")
    (project / "src" / "slow_job.step.py").write_text(textwrap.dedent(SLOW_STEP), encoding="utf-8")
    return project


async def _post_jobs(port: int, n: int, concurrency: int = 50) -> set[str]:
    """``n`` jobs through the wistro.yml ``api:`` entry; every one must be accepted (202)."""
    counter = itertools.count()
    trace_ids: set[str] = set()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        limits=httpx.Limits(max_connections=concurrency, keepalive_expiry=1),
        timeout=30,
    ) as client:

        async def poster() -> None:
            for i in counter:
                if i >= n:
                    return
                r = await client.post("/jobs", json={"n": i})
                assert r.status_code == 202, (r.status_code, r.text)
                trace_ids.add(r.json()["trace_id"])

        await asyncio.gather(*(poster() for _ in range(concurrency)))
    assert len(trace_ids) == n
    return trace_ids


async def test_sigterm_during_load_exits_within_the_grace_period(
    slow_project: Path, servers: list[Server]
) -> None:
    grace = 2
    s, port = _start(servers, slow_project, "--grace-s", str(grace))
    trace_ids = await _post_jobs(port, JOBS)
    await s.await_line(r"slow job started", timeout=30)  # a handler is in its sleep

    s.proc.send_signal(signal.SIGTERM)
    code, took = await s.exited(timeout=SLEEP_S)
    assert took < grace + 10, f"took {took:.1f} s with --grace-s {grace}\n{s.output}"
    assert took >= grace - 0.5, f"gave up after {took:.1f} s, before the grace period\n{s.output}"
    assert code == 0, s.output
    err = "\n".join(s.stderr)
    assert "Traceback" not in err and "Traceback" not in "\n".join(s.stdout), s.output
    assert any(line.startswith("stopping:") for line in s.stdout), s.output

    head = re.search(rf"stopped after {grace} s with (\d+) run\(s\) unfinished", err)
    assert head, s.output
    assert int(head.group(1)) == JOBS, s.output
    abandoned = re.findall(r"^  abandoned ([0-9a-f]{32}) job\.requested \((.+)\)$", err, re.M)
    assert abandoned, s.output
    assert {tid for tid, _ in abandoned} <= trace_ids, s.output
    steps = {where for _, where in abandoned}
    assert "Slow job" in steps, s.output  # a run whose handler was in its sleep
    assert steps <= {"Slow job", "queued"}, steps
    if len(abandoned) < JOBS:
        assert f"… and {JOBS - len(abandoned)} more" in err, s.output

    # What was abandoned is in the trace store, finished (in error), none left "running".
    out = await asyncio.to_thread(run, "traces", "--json", "--limit", "1000", cwd=slow_project)
    runs = json.loads(out)
    assert {r["trace_id"] for r in runs} == trace_ids
    assert {r["status"] for r in runs} == {"error"}, {r["status"] for r in runs}


async def test_a_second_sigterm_exits_at_once(slow_project: Path, servers: list[Server]) -> None:
    grace = 30
    s, port = _start(servers, slow_project, "--grace-s", str(grace))
    await _post_jobs(port, 50)
    await s.await_line(r"slow job started", timeout=30)

    s.proc.send_signal(signal.SIGTERM)
    await s.await_line(r"^stopping: finishing in-flight work \(up to 30 s\)", timeout=10)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    code, took = await s.exited(timeout=grace)
    took = time.monotonic() - t0
    assert took < 5, f"the second SIGTERM took {took:.1f} s\n{s.output}"
    assert code == 130, s.output
    assert "stopping now: in-flight work is abandoned" in s.stderr, s.output
