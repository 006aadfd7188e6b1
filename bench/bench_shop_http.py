"""The example shop over HTTP **as shipped** — file state, SQLite traces, its plain ``def``
"Send receipt" step — under 100 concurrent clients, next to a bare Starlette endpoint doing the
same pydantic validation and answering 202, measured the same way in the same run.

    .venv/bin/python bench/bench_shop_http.py              # 3 rounds, 2 s per case
    .venv/bin/python bench/bench_shop_http.py --rounds 5 --duration 3
    .venv/bin/python bench/bench_shop_http.py --connections 32 --cases bare,shop
    .venv/bin/python bench/bench_shop_http.py --cases bare,shop,cli,memory
    .venv/bin/python bench/bench_shop_http.py --loop asyncio   # every server on asyncio's loop

Cases (each round runs them in turn, each in a fresh ``create_project`` copy of the template and
its own server process, so rounds are paired):

* ``bare``: Starlette + the shop's ``OrderPlaced`` model, 202 (``bench_http.bare_app``).
* ``shop``: the shop loaded as configured (``wistro.load(project)``: ``state: {adapter: file}``
  from its wistro.yml, traces in ``.wistro/traces.db``) served by ``HttpServer`` in a bench
  process, as ``bench_http.py`` does, plus a ``/_bench/drain`` route.
* ``cli``: the real ``wistro dev --no-reload --port 0`` (ConsoleObserver printing every log and
  run, stdout to /dev/null); the port from ``.wistro/server.json``; "drain" = until the trace
  store (read-only SQLite) shows every request's run finished.
* ``memory`` (only when asked for): the ``shop`` case with ``state="memory"``, to tell the file
  adapter's cost from the rest.

Every server runs in the event loop ``wistro dev`` uses (``wistro.server.serve.run_loop``: uvloop
when installed, as uvicorn would pick for the bare app; ``--loop asyncio`` sets
``WISTRO_EVENT_LOOP=asyncio`` for all of them). uvicorn parses HTTP with httptools when installed.

Load generator: ``bench_http``'s asyncio raw-socket HTTP/1.1 keep-alive client, N connections,
each sending the next ``POST /orders`` (valid, 1,200 cents) as soon as the response is in; 0.5 s
of warm-up per case is not counted. After the window the server drains its backlog; "effective
req/s" = timed requests / (window + drain); "flows/s" = every request, warm-up included, over
the time from the first request until the last run is traced. Figures are medians over the rounds; the ratios are
medians of the per-round ratios to that round's bare endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_http as H  # noqa: E402

PATH = H.PATH
DRAIN_TIMEOUT_S = 120.0
CASES = {
    "bare": "bare Starlette + pydantic",
    "shop": "shop as shipped, HttpServer",
    "cli": "shop as shipped, wistro dev",
    "memory": "shop, memory state, HttpServer",
}
DEFAULT_CASES = "bare,shop,cli"


# ---------------------------------------------------------------------------------- servers
async def serve_shop(project: str, state: str | None = None) -> None:
    """The shop as its wistro.yml says (file state, SQLite traces), or with ``state`` instead;
    ``PORT <n>`` once listening."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import wistro
    from wistro.triggers.http import HttpServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    app = wistro.load(project, state=state)  # type: ignore[arg-type]
    assert not app.errors, app.errors
    assert app.engine.state.name == (state or "file"), app.engine.state.name

    async def drain(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        await app.drain()
        took = time.perf_counter() - t0
        runs = app.runs(limit=1_000_000)
        not_ok = int((runs["status"] != "ok").sum()) if len(runs) else 0
        return JSONResponse(
            {
                "drain_s": took,
                "runs": len(runs),
                "runs_not_ok": not_ok,
                "writer": H.writer_settled(app),
            }
        )

    http = HttpServer(app, "127.0.0.1", 0)
    http.asgi.router.routes.append(Route("/_bench/drain", drain, methods=["GET"]))
    bound: asyncio.Future[HttpServer] = loop.create_future()
    task = asyncio.create_task(http.serve(bound))
    await bound
    print(f"PORT {http.port}", flush=True)
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await app.aclose()


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print(f"  warning: server {proc.args!r} did not stop on SIGTERM; killed", flush=True)


def _loop_env(env: dict[str, str], loop: str) -> dict[str, str]:
    """``env`` with ``WISTRO_EVENT_LOOP`` set for ``--loop`` (removed for ``auto``)."""
    env = {k: v for k, v in env.items() if k != "WISTRO_EVENT_LOOP"}
    if loop != "auto":
        env["WISTRO_EVENT_LOOP"] = loop
    return env


@contextlib.contextmanager
def bench_server(kind: str, project: Path, loop: str = "auto") -> Iterator[int]:
    """``bare`` / ``shop``: this script with ``--serve``; the port from its first line."""
    cmd = [sys.executable, __file__, "--serve", kind, "--project", str(project)]
    env = _loop_env(dict(os.environ), loop)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{kind} server did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        _stop(proc)


@contextlib.contextmanager
def cli_server(project: Path, loop: str = "auto") -> Iterator[int]:
    """``wistro dev --no-reload --port 0`` in ``project``; the port from .wistro/server.json."""
    info = project / ".wistro" / "server.json"
    cmd = [sys.executable, "-m", "wistro", "dev", "--no-reload", "--port", "0"]
    env = _loop_env({k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}, loop)
    errors = project / "dev-stderr.txt"
    with errors.open("w", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=env
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError):
                url = json.loads(info.read_text(encoding="utf-8"))["url"]
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"wistro dev did not start: {errors.read_text()[-2000:]}")
            time.sleep(0.05)
        yield int(url.rsplit(":", 1)[1])
    finally:
        _stop(proc)
        if errors.stat().st_size:
            print(f"  wistro dev stderr: {errors.read_text(encoding='utf-8')[-500:]!r}")


# ---------------------------------------------------------------------------------- load
async def load(port: int, connections: int, duration: float, warmup: float) -> tuple[H.Result, int]:
    """``bench_http``'s keep-alive client; returns the timed result and every request sent
    (warm-up included: each one that got a 202 started a run)."""
    res = H.Result()
    counting_from = time.perf_counter() + warmup
    until = counting_from + duration
    seq = [0]
    await asyncio.gather(
        *(H._connection(port, until, counting_from, res, seq) for _ in range(connections))
    )
    res.seconds = duration
    return res.finish(), seq[0]


def finished_runs(db: Path) -> tuple[int, int]:
    """(runs of POST /orders finished, of those not ok), read-only from the trace store."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT status, count(*) FROM runs WHERE topic = ? GROUP BY status", (f"POST {PATH}",)
        ).fetchall()
    finally:
        conn.close()
    done = sum(n for status, n in rows if status != "running")
    return done, sum(n for status, n in rows if status not in ("running", "ok"))


def wait_for_cli_drain(project: Path, expected: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    db = project / ".wistro" / "traces.db"
    done = not_ok = 0
    while time.perf_counter() - t0 < DRAIN_TIMEOUT_S:
        with contextlib.suppress(sqlite3.Error):
            done, not_ok = finished_runs(db)
            if done >= expected:
                break
        time.sleep(0.02)
    else:
        print(f"  warning: only {done} of {expected} runs finished in {DRAIN_TIMEOUT_S} s")
    return {"drain_s": time.perf_counter() - t0, "runs": done, "runs_not_ok": not_ok}


@dataclass
class Sample:
    res: H.Result
    drain_s: float | None = None
    runs_not_ok: int = 0
    sent: int = 0  # every request, warm-up included
    total_s: float = 0.0  # from the first request until drained

    @property
    def flows(self) -> float:
        """Runs finished per second, from the first request until the last run is traced."""
        return self.sent / self.total_s if self.total_s else 0.0

    @property
    def effective(self) -> float:
        if self.drain_s is None:
            return self.res.rps
        return self.res.requests / (self.res.seconds + self.drain_s)


def run_case(case: str, project: Path, args: argparse.Namespace) -> Sample:
    server = (
        cli_server(project, args.loop) if case == "cli" else bench_server(case, project, args.loop)
    )
    with server as port:
        if case in ("shop", "memory") and not asyncio.run(
            H.warm_until_writer(port, args.connections)
        ):
            print("  (the trace writer process did not take over in 30 s)", file=sys.stderr)
        t0 = time.perf_counter()
        res, sent = asyncio.run(load(port, args.connections, args.duration, args.warmup))
        if case == "cli":
            stats = wait_for_cli_drain(project, sent)
        else:
            stats = asyncio.run(H.drain_stats(port)) if case != "bare" else {}
        total = time.perf_counter() - t0
    if not stats:
        return Sample(res, sent=sent, total_s=total)
    return Sample(res, stats["drain_s"], stats["runs_not_ok"], sent, total)


# ---------------------------------------------------------------------------------- main
def _loop_name(loop: str) -> str:
    if loop != "auto":
        return loop
    from wistro.server.serve import loop_factory

    return "asyncio" if loop_factory() is None else "uvloop"


def _parser_name() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=2.0, help="timed seconds per case")
    ap.add_argument("--warmup", type=float, default=0.5, help="untimed seconds before each case")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3, help="every case N times; medians")
    ap.add_argument("--cases", default=DEFAULT_CASES, help=f"of {', '.join(CASES)}")
    ap.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="the servers' event loop (WISTRO_EVENT_LOOP); auto: as wistro dev",
    )
    ap.add_argument("--serve", choices=["bare", "shop", "memory"], help=argparse.SUPPRESS)
    ap.add_argument("--project", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from wistro.server.serve import run_loop

    if args.serve == "bare":
        run_loop(H.serve("bare", None, "memory"))
        return
    if args.serve in ("shop", "memory"):
        run_loop(serve_shop(args.project, "memory" if args.serve == "memory" else None))
        return

    from wistro.tooling.scaffold import create_project

    cases = [c for c in CASES if c in args.cases.split(",")]
    if "bare" not in cases:
        cases.insert(0, "bare")
    samples: dict[str, list[Sample]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="wistro-bench-shop-http-") as tmp:
        for rnd in range(args.rounds):
            for case in cases:
                project = Path(tmp) / f"{case}-{rnd}"
                if case != "bare":
                    create_project(project)
                s = run_case(case, project, args)
                samples[case].append(s)
                took = f", drain {s.drain_s * 1000:.0f} ms" if s.drain_s is not None else ""
                print(
                    f"  round {rnd + 1} {case}: {s.res.rps:.0f} req/s, "
                    f"p99 {H.fmt(s.res.p99_ms)} ms{took}",
                    flush=True,
                )

    bare = samples["bare"]
    print(
        f"\nPOST {PATH}, {args.connections} connections, {args.duration:g} s per case "
        f"(+{args.warmup:g} s warm-up), median of {args.rounds} rounds, {os.cpu_count()} CPUs, "
        f"servers' loop: {_loop_name(args.loop)}, HTTP parser: {_parser_name()}"
    )
    print(
        f"{'case':<30}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}{'ratio':>7}"
        f"{'drain ms':>10}{'eff. req/s':>11}{'eff. ratio':>11}{'flows/s':>9}"
    )
    for case in cases:
        ss = samples[case]
        rps = _median([s.res.rps for s in ss])
        p50 = _median([s.res.p50_ms for s in ss])
        p99 = _median([s.res.p99_ms for s in ss])
        errors = sum(s.res.errors for s in ss)
        ratio = _median([s.res.rps / b.res.rps for s, b in zip(ss, bare, strict=True)])
        line = (
            f"{CASES[case]:<30}{rps or 0:>8.0f}{H.fmt(p50):>8}{H.fmt(p99):>8}{errors:>8}"
            f"{ratio or 0:>7.2f}"
        )
        if case != "bare":
            drain = _median([s.drain_s for s in ss])
            eff = _median([s.effective for s in ss])
            eff_ratio = _median([s.effective / b.res.rps for s, b in zip(ss, bare, strict=True)])
            flows = _median([s.flows for s in ss])
            line += (
                f"{(drain or 0) * 1000:>10.0f}{eff or 0:>11.0f}{eff_ratio or 0:>11.2f}"
                f"{flows or 0:>9.0f}"
            )
            not_ok = sum(s.runs_not_ok for s in ss)
            if not_ok:
                line += f"  ({not_ok} runs not ok)"
        print(line)
    print(
        "ratio = req/s over the bare endpoint's in the same round (median of rounds); eff. = "
        "timed requests / (window + time until every run caused is finished and traced); "
        "flows/s = every request (warm-up included) / (first request .. last run traced)."
    )
    for case in ("shop", "cli"):
        if case in samples:
            ratio = _median(
                [s.res.rps / b.res.rps for s, b in zip(samples[case], bare, strict=True)]
            )
            verdict = "OK" if (ratio or 0) >= H.TARGET_RATIO else "BELOW TARGET"
            print(
                f"{CASES[case]}: req/s ratio {ratio or 0:.2f} (target >= {H.TARGET_RATIO}): {verdict}"
            )


if __name__ == "__main__":
    main()
