"""Per-hop cost of Go steps (the long-lived Go worker) next to the same chain in Python, in the
same run and the same project.

    .venv/bin/python bench/bench_polyglot_go.py                  # 5,000 events per case
    .venv/bin/python bench/bench_polyglot_go.py --events 1000    # quicker
    .venv/bin/python bench/bench_polyglot_go.py --traces sqlite  # with the default trace store

The project has two 5-hop chains with identical configs: ``p0 -> ... -> p5`` in Python and
``g0 -> ... -> g5`` in Go. Every step validates its input (JSON Schema, at emit), decodes it, and
emits a new payload to the next topic (the last one emits nothing). Cases:

* **amortised**: emit N events with ``wait=False``, then ``drain()``; wall time / (N x 5 hops).
* **1 in flight**: ``await app.emit(...)`` for each event (latency-bound), wall time / (N x 5).

The Go column is the engine's cost plus one protocol round trip per hop (``invoke`` -> ``call
emit`` -> answer -> ``result``); "worker CPU" is the Go worker's own CPU time per hop (psutil).
Target: <= 30 us per Go hop amortised. The Go worker is built (or taken from the cache) before
timing; the build time is printed separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import wistro  # noqa: E402
import wistro.app  # noqa: E402
from wistro.runtimes import PythonRuntime  # noqa: E402
from wistro.runtimes.golang import GoRuntime  # noqa: E402

HOPS = 5
WARMUP = 200
TARGET_US_PER_HOP = 30.0
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "hop": {"type": "integer"},
    },
    "required": ["id", "name"],
}

GO_STEP = """
package steps

import "wistro.dev/sdk/wistro"

type payload struct {{
	ID   int    `json:"id"`
	Name string `json:"name"`
	Hop  int    `json:"hop"`
}}

var _ = wistro.Register(wistro.StepConfig{{
	Name:       "go_{i}",
	Subscribes: []string{{"g{i}"}},
	Emits:      []any{{{emits}}},
	Input:      map[string]any{{"type": "object", "required": []string{{"id", "name"}}}},
}}, wistro.Handle(func(ctx *wistro.Context, p payload) (any, error) {{
	{body}
}}))
"""

PY_STEP = """
config = {{
    "name": "py_{i}",
    "subscribes": ["p{i}"],
    "emits": [{emits}],
    "input": {{"type": "object", "required": ["id", "name"]}},
}}


async def handler(data, ctx):
    {body}
"""


def write_project(root: Path) -> Path:
    src = root / "src"
    (src / "go").mkdir(parents=True)
    (src / "py").mkdir(parents=True)
    (root / "wistro.yml").write_text("name: bench-polyglot-go\n", encoding="utf-8")
    schema = json.dumps(SCHEMA)
    for i in range(HOPS):
        last = i == HOPS - 1
        go_emits = "" if last else f'wistro.Emit{{Topic: "g{i + 1}", Schema: schemaOf{i}()}}'
        go_body = (
            "return nil, nil"
            if last
            else f'return nil, ctx.Emit("g{i + 1}", payload{{ID: p.ID, Name: p.Name, Hop: {i + 1}}})'
        )
        go_src = GO_STEP.format(i=i, emits=go_emits, body=go_body)
        if not last:
            go_src += (
                f"\nfunc schemaOf{i}() map[string]any {{\n"
                "\tvar m map[string]any\n"
                f"\t_ = json.Unmarshal([]byte(`{schema}`), &m)\n"
                "\treturn m\n}\n"
            )
            go_src = go_src.replace(
                'import "wistro.dev/sdk/wistro"',
                'import (\n\t"encoding/json"\n\n\t"wistro.dev/sdk/wistro"\n)',
            )
        (src / "go" / f"hop{i}.step.go").write_text(textwrap.dedent(go_src).lstrip(), "utf-8")
        py_emits = "" if last else f'{{"topic": "p{i + 1}", "schema": {schema}}}'
        py_body = (
            "pass"
            if last
            else f'await ctx.emit("p{i + 1}", {{"id": data["id"], "name": data["name"], "hop": {i + 1}}})'
        )
        (src / "py" / f"hop{i}.step.py").write_text(
            textwrap.dedent(PY_STEP.format(i=i, emits=py_emits, body=py_body)).lstrip(), "utf-8"
        )
    # the first topics need a schema too: declare them through a noop step
    (src / "py" / "entry.step.py").write_text(
        "config = {\n"
        '    "type": "noop",\n'
        '    "name": "entry",\n'
        f'    "virtual_emits": [{{"topic": "p0", "schema": {schema}}}, '
        f'{{"topic": "g0", "schema": {schema}}}],\n'
        "}\n",
        "utf-8",
    )
    return root


def _worker_cpu(go: GoRuntime) -> float:
    try:
        import psutil
    except ImportError:
        return float("nan")
    worker = go.worker
    if worker is None or worker.pid is None:
        return float("nan")
    try:
        t = psutil.Process(worker.pid).cpu_times()
    except psutil.Error:
        return float("nan")
    return float(t.user + t.system)


async def run_case(app: wistro.App, first: str, n: int, one_in_flight: bool) -> float:
    """Seconds for n events through the chain starting at ``first``."""
    payloads = [{"id": i, "name": "x"} for i in range(n)]
    t0 = time.perf_counter()
    if one_in_flight:
        for p in payloads:
            run = await app.emit(first, p)
            if run.status != "ok":
                raise RuntimeError(f"run failed: {run.failures}")
    else:
        for p in payloads:
            await app.emit(first, p, wait=False)
        await app.drain()
    return time.perf_counter() - t0


async def bench(root: Path, n: int, repeat: int, traces: str) -> list[dict[str, Any]]:
    app = wistro.load(root, state="memory", traces="memory" if traces == "memory" else None)
    if app.errors:
        raise SystemExit(f"the bench project does not load: {app.errors}")
    go = next(rt for rt in app.runtimes if isinstance(rt, GoRuntime))
    rows: list[dict[str, Any]] = []
    async with app:
        for first in ("p0", "g0"):  # warm up both, starting the Go worker
            await run_case(app, first, WARMUP, False)
            await run_case(app, first, 20, True)
        for label, one in (("amortised", False), ("1 in flight", True)):
            m = n if not one else max(n // 5, 200)
            best: dict[str, float] = {}
            cpu: float = float("nan")
            for _ in range(repeat):
                for lang, first in (("python", "p0"), ("go", "g0")):
                    before = _worker_cpu(go)
                    secs = await run_case(app, first, m, one)
                    if lang == "go":
                        c = (_worker_cpu(go) - before) / (m * HOPS) * 1e6
                        cpu = c if math.isnan(cpu) or c < cpu else cpu
                    best[lang] = min(best.get(lang, float("inf")), secs / (m * HOPS) * 1e6)
            rows.append(
                {
                    "case": f"5-hop chain, {label}",
                    "events": m,
                    "python": best["python"],
                    "go": best["go"],
                    "ratio": best["go"] / best["python"],
                    "worker_cpu": cpu,
                    "target": label == "amortised",
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="events per amortised case")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--traces", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--keep", action="store_true", help="keep the generated project")
    args = parser.parse_args()
    if shutil.which("go") is None:
        raise SystemExit("needs the Go toolchain (`go`) on PATH")
    wistro.app.default_runtimes = lambda: [PythonRuntime(), GoRuntime()]  # type: ignore[attr-defined]
    root = write_project(Path(tempfile.mkdtemp(prefix="wistro-bench-go-")))
    try:
        t0 = time.perf_counter()
        probe = GoRuntime()
        probe.read(sorted((root / "src" / "go").glob("*.step.go")), root, root / "src")
        build_s = time.perf_counter() - t0
        print(
            f"Go worker: {len(list((root / 'src/go').glob('*.step.go')))} step files, "
            f"build + load {build_s:.2f}s ({probe.builds} build(s); "
            "`go build` reuses the Go build cache)"
        )
        rows = asyncio.run(bench(root.resolve(), args.events, args.repeat, args.traces))
    finally:
        if args.keep:
            print(f"project kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ntraces={args.traces}, state=memory, best of {args.repeat}")
    print(
        f"{'case':<26} {'events':>7} {'python µs/hop':>14} {'go µs/hop':>10} "
        f"{'go/python':>10} {'worker CPU µs/hop':>18}  target"
    )
    for r in rows:
        verdict = ""
        if r["target"]:
            ok = r["go"] <= TARGET_US_PER_HOP
            verdict = f"≤ {TARGET_US_PER_HOP:g} µs: {'OK' if ok else 'MISSED'}"
        print(
            f"{r['case']:<26} {r['events']:>7} {r['python']:>14.1f} {r['go']:>10.1f} "
            f"{r['ratio']:>9.2f}x {r['worker_cpu']:>18.1f}  {verdict}"
        )


if __name__ == "__main__":
    main()
