"""The shared harness of ``bench_polyglot_js.py`` and ``bench_polyglot_go.py``: the 5-hop chain of
``_projects.write_chain`` (pydantic inputs) next to the same chain written in JavaScript or Go.

Like with like:

* the same topics ``t0``..``t4``, the same payloads (``_projects._FIELDS``), and each JS/Go step's
  ``input`` is the JSON Schema of the Python step's pydantic model, so the engine validates every
  emit against the same schema in both chains (fastjsonschema, at emit); the Python chain also
  runs pydantic ``model_validate`` at delivery, as in ``bench_engine.py``;
* defaults on: validation and durable SQLite traces (a fresh ``traces.db`` per run), state in
  memory; drain (which flushes the traces) is inside the timing;
* each run is a fresh app (warm-up first; the worker is started in it); the runs of the two
  chains alternate (P X, X P, P X, ...) and each figure is the median of ``--runs``; a ratio is
  the median of the per-pair ratios (X/P of the same pair).

Cases: **amortised** (N events with ``wait=False``, then ``drain()``; wall time / (N x 5 hops))
and **1 in flight** (``await app.emit(...)`` M times; wall time / (M x 5)).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402
from _cpu import process_cpu  # noqa: E402

HOPS = P.CHAIN_HOPS
WARMUP = 300
TARGET_AMORTISED = 1.5
TARGET_ONE = 2.5
_GO_TYPES = {"int": "int", "str": "string", "float": "float64", "bool": "bool"}


def chain_schemas() -> list[dict[str, Any]]:
    """The JSON Schema of each Python step's pydantic input (what the engine validates)."""
    from pydantic import create_model

    out = []
    for i in range(HOPS):
        fields = P._FIELDS[i % len(P._FIELDS)]
        types = {"int": int, "str": str, "float": float, "bool": bool}
        model = create_model(f"In{i}", **{n: (types[t], ...) for n, t in fields})  # type: ignore[call-overload]
        out.append(model.model_json_schema())
    return out


def _fields(i: int) -> list[tuple[str, str]]:
    return P._FIELDS[i % len(P._FIELDS)]


def write_js_chain(root: Path) -> Path:
    proj = root / "chain_js"
    src = proj / "src" / "chain"
    src.mkdir(parents=True)
    (proj / "wistro.yml").write_text("name: chain-js\n")
    values = {"int": "input.id", "str": '"x"', "float": "1.5", "bool": "true"}
    for i, schema in enumerate(chain_schemas()):
        last = i == HOPS - 1
        cfg = {
            "name": f"s{i}",
            "subscribes": [f"t{i}"],
            "emits": [] if last else [f"t{i + 1}"],
            "input": schema,
            "flows": ["chain"],
        }
        if last:
            body = "  return null;\n"
        else:
            data = ", ".join(f"{n}: {values[t]}" for n, t in _fields(i + 1))
            body = f'  await ctx.emit("t{i + 1}", {{ {data} }});\n'
        (src / f"s{i}.step.js").write_text(
            f"export const config = {json.dumps(cfg)};\n\n"
            f"export async function handler(input, ctx) {{\n{body}}}\n"
        )
    return proj


def write_go_chain(root: Path) -> Path:
    proj = root / "chain_go"
    src = proj / "src" / "chain"
    src.mkdir(parents=True)
    (proj / "wistro.yml").write_text("name: chain-go\n")
    values = {"int": "p.ID", "str": '"x"', "float": "1.5", "bool": "true"}
    for i, schema in enumerate(chain_schemas()):
        last = i == HOPS - 1

        def struct(name: str, fields: list[tuple[str, str]]) -> str:
            body = "".join(
                f'\t{n.capitalize() if n != "id" else "ID"} {_GO_TYPES[t]} `json:"{n}"`\n'
                for n, t in fields
            )
            return f"type {name} struct {{\n{body}}}\n"

        types = struct("in", _fields(i))
        if last:
            emits, body = "", "return nil, nil"
        else:
            nxt = _fields(i + 1)
            types += struct("out", nxt)
            data = ", ".join(
                f"{n.capitalize() if n != 'id' else 'ID'}: {values[t]}" for n, t in nxt
            )
            emits, body = f'"t{i + 1}"', f'return nil, ctx.Emit("t{i + 1}", out{{{data}}})'
        (src / f"s{i}.step.go").write_text(
            "package steps\n\n"
            'import (\n\t"encoding/json"\n\n\t"wistro.dev/sdk/wistro"\n)\n\n'
            + types
            + f"\nvar schema = json.RawMessage(`{json.dumps(schema)}`)\n\n"
            "var _ = wistro.Register(wistro.StepConfig{\n"
            f'\tName:       "s{i}",\n'
            f'\tSubscribes: []string{{"t{i}"}},\n'
            f"\tEmits:      []any{{{emits}}},\n"
            "\tInput:      schema,\n"
            '\tFlows:      []string{"chain"},\n'
            "}, wistro.Handle(func(ctx *wistro.Context, p in) (any, error) {\n"
            f"\t{body}\n"
            "}))\n"
        )
    return proj


# ---------------------------------------------------------------------------------- timing
def _worker_pid(app: Any) -> int | None:
    for rt in app.runtimes:
        worker = getattr(rt, "worker", None)
        if worker is not None:
            return worker.pid
    return None


async def one_run(
    proj: Path, traces: Path, n: int, m: int, profile: bool = False
) -> dict[str, float]:
    """A fresh app: warm-up, then the amortised case (n events) and the 1-in-flight case (m)."""
    import wistro

    app = wistro.load(proj, traces=str(traces), state="memory")
    assert not app.errors, app.errors
    try:
        for i in range(WARMUP):
            await app.emit("t0", P.chain_first_payload(i), wait=False)
        await app.drain()
        gc.collect()
        payloads = [P.chain_first_payload(i) for i in range(n)]
        pid = _worker_pid(app)
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        w0, c0, t0 = process_cpu(pid), time.process_time(), time.perf_counter()
        for p in payloads:
            await app.emit("t0", p, wait=False)
        await app.drain()
        amort = time.perf_counter() - t0
        engine_cpu, worker_cpu = time.process_time() - c0, process_cpu(pid) - w0
        if prof is not None:
            prof.disable()
            import pstats

            print("\n--- cProfile, amortised (main thread), top by tottime ---")
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        t0 = time.perf_counter()
        for p in payloads[:m]:
            run = await app.emit("t0", p)
            if run.status != "ok":
                raise RuntimeError(f"a run failed: {run.errors}")
        one = time.perf_counter() - t0
        await app.drain()
        failed = app.engine.store.list_runs(limit=10, status="error")
        if failed:
            raise RuntimeError(f"{len(failed)}+ runs failed: {failed[0]}")
    finally:
        await app.aclose()
    return {
        "amortised": amort / (n * HOPS) * 1e6,
        "one": one / (m * HOPS) * 1e6,
        "engine_cpu": engine_cpu / (n * HOPS) * 1e6,
        "worker_cpu": worker_cpu / (n * HOPS) * 1e6,
    }


# ---------------------------------------------------------------------------------- pipe floor
_FRAME = b'{"t":"invoke","id":1,"step":"s0","data":{"id":1,"name":"x"}}'
_ECHO_GO = """package main

import "os"

func main() {
\tbuf := make([]byte, 65536)
\tfor {
\t\tn, err := os.Stdin.Read(buf)
\t\tif err != nil {
\t\t\treturn
\t\t}
\t\tos.Stdout.Write(buf[:n])
\t}
}
"""


def echo_command(label: str, root: Path) -> list[str]:
    """A child in the worker's language that writes back every read at once: ``node`` for js,
    a 12-line Go program (built here) for go."""
    if label == "js":
        return ["node", "-e", "process.stdin.on('data', (b) => process.stdout.write(b))"]
    src = root / "echo"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.go").write_text(_ECHO_GO)
    (src / "go.mod").write_text("module echo\n\ngo 1.21\n")
    import subprocess

    subprocess.run(["go", "build", "-o", str(src / "echo"), "."], cwd=src, check=True)
    return [str(src / "echo")]


async def pipe_round_trip(command: list[str], n: int = 2000) -> float:
    """µs per round trip of one framed message (a 4-byte length and an invoke-sized body, as
    the worker protocol frames it) from this event loop to ``command`` and back over its
    stdin/stdout, one in flight: the least a hop across a process boundary costs here, both
    sides waiting for each other, as in the 1-in-flight case."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    frame = len(_FRAME).to_bytes(4, "big") + _FRAME
    try:
        for _ in range(200):  # warm-up: the child's start, the pipes' first pages
            proc.stdin.write(frame)
            await proc.stdout.readexactly(len(frame))
        t0 = time.perf_counter()
        for _ in range(n):
            proc.stdin.write(frame)
            await proc.stdout.readexactly(len(frame))
        return (time.perf_counter() - t0) / n * 1e6
    finally:
        proc.stdin.close()
        await proc.wait()


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]  # drop nan
    return statistics.median(xs) if xs else float("nan")


async def compare(
    label: str, write: Callable[[Path], Path], args: argparse.Namespace
) -> list[dict[str, float]]:
    root = Path(tempfile.mkdtemp(prefix=f"wistro-bench-{label}-"))
    try:
        py = P.write_chain(root / "py")
        other = write(root / label)
        echo = echo_command(label, root)
        t0 = time.perf_counter()
        await one_run(other, root / "warm.db", 50, 10)  # builds/starts the worker once
        print(f"{label} chain: first load, build and start {time.perf_counter() - t0:.2f}s")
        pairs: list[tuple[dict[str, float], dict[str, float]]] = []
        for r in range(args.runs):
            order = [("python", py), (label, other)]
            if r % 2:
                order.reverse()
            got: dict[str, dict[str, float]] = {}
            for lang, proj in order:
                db = root / f"traces-{lang}-{r}.db"
                profile = args.profile and lang != "python" and r == 0
                got[lang] = await one_run(proj, db, args.events, args.one, profile)
            got[label]["pipe_cat"] = await pipe_round_trip(["cat"])
            got[label]["pipe_lang"] = await pipe_round_trip(echo)
            pairs.append((got["python"], got[label]))
            p, x = got["python"], got[label]
            print(
                f"  run {r + 1}/{args.runs}: python {p['amortised']:.1f} / {p['one']:.1f}, "
                f"{label} {x['amortised']:.1f} / {x['one']:.1f} µs/hop (amortised / 1 in flight)",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(label, pairs, args)
    return [x for _, x in pairs]


def report(
    label: str, pairs: list[tuple[dict[str, float], dict[str, float]]], args: argparse.Namespace
) -> None:
    print(
        f"\n5-hop chain, {args.events} events amortised / {args.one} one in flight, SQLite traces, "
        f"validation on; median of {len(pairs)} alternating pairs"
    )
    hdr = (
        f"{'case':<14}{'python µs/hop':>15}{label + ' µs/hop':>13}{'ratio':>8}{'target':>9}"
        f"{'ok?':>5}"
    )
    print(hdr)
    print("-" * len(hdr))
    for key, name, target in (
        ("amortised", "amortised", TARGET_AMORTISED),
        ("one", "1 in flight", TARGET_ONE),
    ):
        p = _median([a[key] for a, _ in pairs])
        x = _median([b[key] for _, b in pairs])
        ratio = _median([b[key] / a[key] for a, b in pairs])
        ok = "yes" if ratio <= target else "NO"
        print(
            f"{name:<14}{p:>15.1f}{x:>13.1f}{ratio:>7.2f}x{'≤' + format(target, 'g') + 'x':>9}{ok:>5}"
        )
    pc = _median([a["engine_cpu"] for a, _ in pairs])
    xc = _median([b["engine_cpu"] for _, b in pairs])
    wc = _median([b["worker_cpu"] for _, b in pairs])
    cpu_ratio = _median([b["engine_cpu"] / a["engine_cpu"] for a, b in pairs])
    print(
        f"amortised CPU per hop: engine process {pc:.1f} (python chain) / {xc:.1f} ({label} "
        f"chain) µs, ratio {cpu_ratio:.2f}x (incl. the trace writer when it runs in-process); "
        f"the {label} worker {wc:.1f} µs on its own core"
    )
    cat = _median([b["pipe_cat"] for _, b in pairs])
    lang = _median([b["pipe_lang"] for _, b in pairs])
    one = _median([b["one"] for _, b in pairs])
    py_one = _median([a["one"] for a, _ in pairs])
    print(
        f"pipe round trip, one in flight, same rounds: `cat` {cat:.1f} µs, a {label} echo "
        f"{lang:.1f} µs; a {label} hop one in flight = {one / lang:.2f}x the {label} echo's "
        f"round trip, and the target (≤{TARGET_ONE:g}x the Python hop) is "
        f"{TARGET_ONE * py_one:.1f} µs: {'within' if TARGET_ONE * py_one >= lang else 'below'} "
        f"what one round trip to a {label} process costs here"
    )
    print(
        "(wall-clock figures need an otherwise idle machine: with other load on the cores, the "
        "worker's wake-ups dominate them; the CPU figures are steadier)"
    )


def parse_args(doc: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=4000, help="events, amortised case (4000)")
    ap.add_argument("--one", type=int, default=400, help="events, 1 in flight case (400)")
    ap.add_argument("--runs", type=int, default=5, help="alternating pairs, median kept (5)")
    ap.add_argument(
        "--profile", action="store_true", help="cProfile the first non-Python amortised run"
    )
    ap.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the event loop (asyncio, as bench_engine.py; uvloop: what wistro dev/start run)",
    )
    return ap.parse_args()


def run(label: str, write: Callable[[Path], Path], doc: str) -> None:
    args = parse_args(doc)
    if args.runs < 1:
        sys.exit("--runs must be >= 1")
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    print(f"event loop: {args.loop}")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(compare(label, write, args))
