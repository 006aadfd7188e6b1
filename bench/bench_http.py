"""HTTP trigger throughput and latency: the shop's ``POST /orders`` api step (validates the body
with pydantic, emits ``order.placed`` into the 5-span checkout/fulfillment flow) served by
``wistro.triggers.http.serve_http``, next to a bare Starlette endpoint doing the same pydantic
validation. Both under uvicorn on 127.0.0.1, each in its own server process, driven in the same
run by the same loopback load generator; the figure that matters is the ratio (issue #13's target:
the shop flow's req/s >= 0.6x the bare endpoint's).

    .venv/bin/python bench/bench_http.py                      # 5 s per case, 32 connections
    .venv/bin/python bench/bench_http.py --duration 3 --connections 16
    .venv/bin/python bench/bench_http.py --rounds 3           # A/B three times, best of each
    .venv/bin/python bench/bench_http.py --traces memory      # default: SQLite trace store
    .venv/bin/python bench/bench_http.py --client python      # default: wrk when on PATH
    .venv/bin/python bench/bench_http.py --loop asyncio       # default: the loop of wistro dev

Load generator: ``wrk`` (one thread, N connections) when ``shutil.which("wrk")``, else a small
asyncio raw-socket HTTP/1.1 keep-alive client in this process (N connections, each sending the
next request as soon as the response is in). Latency is per request, p50/p99 over the timed
window; 1 s of warm-up per case is not counted. The wistro server's engine keeps running the
flows in the background; after the window the script asks it to drain and reports how long that
took, and "effective req/s" = requests / (window + drain), so a backlog cannot flatter it.
State is in memory; traces go to SQLite in the temp project (``--traces memory`` to compare).
Both servers run in the event loop ``wistro dev`` uses (``wistro.server.serve.run_loop``: uvloop
when installed; ``--loop asyncio`` for asyncio's), uvicorn with httptools when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TARGET_RATIO = 0.6  # issue #13: HTTP shop flow >= 0.6x bare Starlette (req/s)
PATH = "/orders"


# ---------------------------------------------------------------------------------- servers
def bare_app() -> Any:
    """Starlette + the same pydantic model as the shop's ``OrderPlaced``: validate, answer 202."""
    from pydantic import BaseModel, Field, ValidationError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    class OrderPlaced(BaseModel):
        order_id: str = Field(min_length=1)
        amount_cents: int = Field(gt=0)

    async def orders(request: Request) -> JSONResponse:
        try:
            order = OrderPlaced.model_validate_json(await request.body())
        except ValidationError as e:
            return JSONResponse({"error": e.errors(include_url=False)}, status_code=422)
        return JSONResponse({"order_id": order.order_id, "trace_id": "-"}, status_code=202)

    return Starlette(routes=[Route(PATH, orders, methods=["POST"])])


async def serve(kind: str, project: str | None, traces: str) -> None:
    """Run one server in this process; print ``PORT <n>`` once listening; stop on SIGTERM."""
    import uvicorn

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if kind == "bare":
        server = uvicorn.Server(
            uvicorn.Config(
                bare_app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await stop.wait()
        server.should_exit = True
        await task
        return

    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import wistro
    from wistro.triggers.http import HttpServer

    app = wistro.load(project, state="memory", traces="memory" if traces == "memory" else None)

    async def drain(request: Request) -> JSONResponse:
        in_flight = app.engine.in_flight
        t0 = time.perf_counter()
        await app.drain()
        runs = app.runs(limit=1_000_000)
        return JSONResponse(
            {
                "in_flight": in_flight,
                "drain_s": time.perf_counter() - t0,
                "runs": len(runs),
                "runs_not_ok": int((runs["status"] != "ok").sum()) if len(runs) else 0,
                "writer": writer_settled(app),
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


@contextlib.contextmanager
def server_process(kind: str, project: Path, traces: str, loop: str = "auto") -> Any:
    cmd = [sys.executable, __file__, "--serve", kind, "--project", str(project), "--traces", traces]
    env = {k: v for k, v in os.environ.items() if k != "WISTRO_EVENT_LOOP"}
    if loop != "auto":
        env["WISTRO_EVENT_LOOP"] = loop
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{kind} server did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------------------------- clients
@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds
    p50_ms: float | None = None
    p99_ms: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def finish(self) -> Result:
        if self.latencies:
            q = statistics.quantiles(self.latencies, n=100, method="inclusive")
            self.p50_ms, self.p99_ms = q[49] * 1000, q[98] * 1000
        return self


def _request(i: int) -> bytes:
    body = b'{"order_id":"o%d","amount_cents":1200}' % i
    return (
        b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    ) + body


async def _connection(
    port: int, until: float, counting_from: float, res: Result, seq: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        while True:
            start = clock()
            if start >= until:
                return
            seq[0] += 1
            writer.write(_request(seq[0]))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(m.group(1)) if m else 0)
            if start >= counting_from:
                res.requests += 1
                res.latencies.append(clock() - start)
                res.statuses[status] = res.statuses.get(status, 0) + 1
                if not 200 <= status < 300:
                    res.errors += 1
    finally:
        writer.close()


async def python_load(port: int, connections: int, duration: float, warmup: float) -> Result:
    res = Result()
    now = time.perf_counter()
    counting_from = now + warmup
    until = counting_from + duration
    seq = [0]
    await asyncio.gather(
        *(_connection(port, until, counting_from, res, seq) for _ in range(connections))
    )
    res.seconds = duration
    return res.finish()


_WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"order_id":"o' .. counter .. '","amount_cents":1200}')
end
"""


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk_load(port: int, connections: int, duration: float, warmup: float) -> Result:
    wrk = shutil.which("wrk")
    assert wrk is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_LUA)
    url = f"http://127.0.0.1:{port}{PATH}"
    try:
        if warmup > 0:
            subprocess.run(
                [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(warmup))}s", "-s", f.name, url],
                capture_output=True,
                check=True,
            )
        out = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{round(duration)}s",
                "--latency",
                "-s",
                f.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    res = Result(seconds=round(duration))
    m = re.search(r"(\d+) requests in", out)
    res.requests = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res.errors = int(m.group(1)) if m else 0
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"\n\s+{pct}%\s+(\S+)", out)
        if m:
            setattr(res, attr, _wrk_ms(m.group(1)))
    return res


def writer_settled(app: Any) -> bool:
    """Whether the trace batches go where they will for the rest of the run: to the writer
    process (``traces.writer: auto`` hands them over after 20,000 rows) or, for a store that
    has none, here."""
    recorder = app.engine.recorder
    return recorder.writer_pid is not None or recorder._spec is None


async def warm_until_writer(port: int, connections: int, timeout: float = 30.0) -> bool:
    """Load the server in rounds of 0.5 s until its trace writer process has taken over, then
    drain it: the timed window is the steady state of a busy server, as in bench_engine.py
    (without this, a 5 s window spent its first second or two writing traces in-process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await python_load(port, connections, 0.5, 0.0)
        if (await drain_stats(port)).get("writer", True):
            return True
    return False


async def drain_stats(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /_bench/drain HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    body = await reader.readexactly(int(m.group(1)) if m else 0)
    writer.close()
    return dict(json.loads(body))


# ---------------------------------------------------------------------------------- main
CASES = {
    "bare": "bare Starlette + pydantic",
    "api": "wistro api step, no emit",
    "async": "wistro shop flow, async receipt",
    "shop": "wistro shop flow as shipped",
}


def _edit(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    if old not in text:
        raise SystemExit(f"bench_http: the shop template changed, cannot find {old!r} in {file}")
    file.write_text(text.replace(old, new), encoding="utf-8")


def make_projects(tmp: Path, cases: list[str]) -> dict[str, Path]:
    """The shop as shipped, and the variants that isolate costs: ``api`` (the step validates and
    answers but emits nothing: the HTTP layer alone) and ``async`` (Send receipt as an async
    handler: the flow without the worker-thread hop of a plain ``def`` handler)."""
    from wistro.tooling.scaffold import create_project

    projects: dict[str, Path] = {}
    for case in cases:
        if case == "bare":
            continue
        root = tmp / case
        create_project(root)
        if case == "api":
            _edit(
                root / "src/checkout/place_order.step.py",
                "    await ctx.emit(",
                "    0 and ctx.emit(",
            )
        elif case == "async":
            receipt = root / "src/checkout/send_receipt.step.py"
            _edit(receipt, "def handler(", "async def handler(")
            _edit(receipt, "    ctx.state.update(", "    await ctx.state.update(")
        projects[case] = root
    return projects


def run_case(kind: str, project: Path, args: argparse.Namespace) -> tuple[Result, dict[str, Any]]:
    with server_process(kind, project, args.traces, args.loop) as port:
        if kind == "wistro" and not asyncio.run(warm_until_writer(port, args.connections)):
            print("  (the trace writer process did not take over in 30 s)", file=sys.stderr)
        if args.client == "wrk":
            res = wrk_load(port, args.connections, args.duration, args.warmup)
        else:
            res = asyncio.run(python_load(port, args.connections, args.duration, args.warmup))
        extra = asyncio.run(drain_stats(port)) if kind == "wistro" else {}
    return res, extra


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=5.0, help="timed seconds per case")
    ap.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before each case")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1, help="all cases N times; best of each")
    ap.add_argument("--traces", choices=["sqlite", "memory"], default="sqlite")
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}"
    )
    ap.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    ap.add_argument("--serve", choices=["bare", "wistro"], help=argparse.SUPPRESS)
    ap.add_argument("--project", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        from wistro.server.serve import run_loop

        run_loop(serve(args.serve, args.project, args.traces))
        return
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    cases = [c for c in CASES if c in args.cases.split(",")]
    if "bare" not in cases:
        cases.insert(0, "bare")

    best: dict[str, tuple[Result, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="wistro-bench-http-") as tmp:
        projects = make_projects(Path(tmp), cases)
        for _ in range(args.rounds):
            for case in cases:
                kind = "bare" if case == "bare" else "wistro"
                res, extra = run_case(kind, projects.get(case, Path(tmp)), args)
                if case not in best or res.rps > best[case][0].rps:
                    best[case] = (res, extra)

    bare = best["bare"][0]
    print(
        f"POST {PATH}, {args.connections} connections, {args.duration:g} s per case "
        f"(+{args.warmup:g} s warm-up), client: {args.client}, traces: {args.traces}, "
        f"best of {args.rounds}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'case':<34}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}"
        f"{'ratio':>7}{'drain ms':>10}{'eff. req/s':>11}{'eff. ratio':>11}"
    )
    for case in cases:
        r, stats = best[case]
        line = (
            f"{CASES[case]:<34}{r.rps:>8.0f}{fmt(r.p50_ms):>8}{fmt(r.p99_ms):>8}{r.errors:>8}"
            f"{r.rps / bare.rps if bare.rps else 0:>7.2f}"
        )
        if stats:
            effective = r.requests / (r.seconds + stats["drain_s"])
            line += (
                f"{stats['drain_s'] * 1000:>10.0f}{effective:>11.0f}"
                f"{effective / bare.rps if bare.rps else 0:>11.2f}"
            )
            if stats["runs_not_ok"]:
                line += f"  ({stats['runs_not_ok']} runs not ok)"
        print(line)
    print(
        "ratio = req/s over the bare endpoint's; eff. = requests / (window + time to drain the "
        f"flows still in flight). Target: shop flow ratio >= {TARGET_RATIO}."
    )
    if "shop" in best and bare.rps:
        r, stats = best["shop"]
        effective = r.requests / (r.seconds + stats["drain_s"]) / bare.rps
        verdict = "OK" if r.rps / bare.rps >= TARGET_RATIO else "BELOW TARGET"
        print(f"shop flow: ratio {r.rps / bare.rps:.2f}, effective {effective:.2f}: {verdict}")


if __name__ == "__main__":
    main()
