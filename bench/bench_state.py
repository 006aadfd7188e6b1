"""``state.update`` (atomic read-modify-write) against ``state.set`` (a plain write), in memory
and file state: per-op cost, and the ratio update/set measured the same way in the same run.

    .venv/bin/python bench/bench_state.py                  # all modes, 5 runs each
    .venv/bin/python bench/bench_state.py --runs 3 --file-ops 200
    .venv/bin/python bench/bench_state.py --only sequential,handler

Modes (each for ``memory`` and ``file`` state; ``set`` and ``update`` alternate, runs
interleaved, median of ``--runs``):

* ``sequential``: ``await app.state.set(g, k, v)`` / ``await app.state.update(g, k, fn)`` one
  after the other on one key, from the event loop (the public API a notebook uses).
* ``32 tasks, own keys``: 32 concurrent tasks, each on its own key (the file adapter's I/O
  threads work in parallel; there is nothing to serialise).
* ``32 tasks, one key``: 32 concurrent tasks on the same key (writes to one key are serialised:
  the per-key lock and, in file state, the ``flock``).
* ``32 tasks, new keys``: 32 concurrent tasks, every op on a key never written before (as a
  flow keyed by order id writes): in file state each makes a new value file.
* ``plain-def handler``: a step with a plain ``def`` handler doing one ``ctx.state.set`` /
  ``ctx.state.update`` per event, N events emitted with ``wait=False`` then ``drain()``: per
  event, engine included (a thread hop and a round trip to the loop per op). ``noop`` is the
  same step doing nothing, for scale.

``fn`` increments a counter (``{"n": n + 1}``); ``set`` writes ``{"n": i}``: the same JSON size.
The concurrent ``update`` cases check that no increment was lost. File state writes each value
to a temp file, fsyncs it and renames it over the old one, so its figures are mostly the disk's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TASKS = 32
GROUP = "bench"


def _inc(value: Any) -> dict[str, int]:
    return {"n": (value or {"n": 0})["n"] + 1}


STEP = """\
    config = {{
        "name": "State op",
        "subscribes": ["tick"],
        "input": {{"type": "object", "properties": {{"n": {{"type": "integer"}}}},
                   "required": ["n"]}},
        "emits": [],
    }}


    def _inc(value):
        return {{"n": (value or {{"n": 0}})["n"] + 1}}


    def handler(tick, ctx):
        {body}
"""
BODIES = {
    "noop": "return None",
    "set": 'ctx.state.set("bench", "k", {"n": tick["n"]})',
    "update": 'ctx.state.update("bench", "k", _inc)',
}


def write_project(root: Path, op: str) -> Path:
    proj = root / f"state-{op}"
    (proj / "src").mkdir(parents=True)
    (proj / "wistro.yml").write_text(f"name: state-{op}\n", encoding="utf-8")
    (proj / "src" / "op.step.py").write_text(
        textwrap.dedent(STEP.format(body=BODIES[op])), encoding="utf-8"
    )
    return proj


def _app(root: Path, adapter: str, op: str = "noop") -> Any:
    import wistro

    project = write_project(Path(tempfile.mkdtemp(dir=root)), op)
    app = wistro.load(project, state=adapter, traces="memory")
    assert not app.errors, app.errors
    return app


# ---------------------------------------------------------------------------------- cases
async def sequential(app: Any, op: str, n: int) -> float:
    state = app.state
    t0 = time.perf_counter()
    if op == "set":
        for i in range(n):
            await state.set(GROUP, "k", {"n": i})
    else:
        for _ in range(n):
            await state.update(GROUP, "k", _inc)
    return time.perf_counter() - t0


async def concurrent(app: Any, op: str, n: int, one_key: bool, new_keys: bool = False) -> float:
    state = app.state
    per_task = n // TASKS
    keys = ["k"] * TASKS if one_key else [f"k{t}" for t in range(TASKS)]
    if op == "update" and not new_keys:
        for key in set(keys):
            await state.set(GROUP, key, {"n": 0})

    def key_of(key: str, i: int) -> str:
        return f"{key}-{i}" if new_keys else key

    async def worker(key: str) -> None:
        if op == "set":
            for i in range(per_task):
                await state.set(GROUP, key_of(key, i), {"n": i})
        else:
            for i in range(per_task):
                await state.update(GROUP, key_of(key, i), _inc)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in keys))
    dt = time.perf_counter() - t0
    if op == "update":  # atomic: no increment lost
        written = {key_of(k, i) for k in keys for i in range(per_task)} if new_keys else set(keys)
        total = sum([(await state.get(GROUP, k))["n"] for k in written])
        assert total == per_task * TASKS, (total, per_task * TASKS)
    return dt * n / (per_task * TASKS)


async def handler(root: Path, adapter: str, op: str, n: int) -> float:
    app = _app(root, adapter, op)
    for i in range(50):  # warm-up: import the step, start the threads
        await app.emit("tick", {"n": i}, wait=False)
    await app.drain()
    t0 = time.perf_counter()
    runs = [await app.emit("tick", {"n": i}, wait=False) for i in range(n)]
    await app.drain()
    dt = time.perf_counter() - t0
    assert all(r.status == "ok" for r in runs), {r.status for r in runs}
    if op == "update":
        assert (await app.state.get(GROUP, "k"))["n"] == n + 50
    await app.aclose()
    return dt


MODES: dict[str, str] = {
    "sequential": "sequential, one key",
    "own_keys": f"{TASKS} tasks, own keys",
    "one_key": f"{TASKS} tasks, one key",
    "new_keys": f"{TASKS} tasks, new keys",
    "handler": "plain-def handler, per event",
}


def measure(mode: str, adapter: str, op: str, n: int, root: Path) -> float:
    """Seconds per op of one run (a fresh app and state folder)."""
    gc.collect()
    if mode == "handler":
        return asyncio.run(handler(root, adapter, op, n)) / n

    async def go() -> float:
        app = _app(root, adapter)
        fn: Callable[[], Any]
        if mode == "sequential":
            await sequential(app, op, min(n, 50))  # warm-up
            fn = lambda: sequential(app, op, n)  # noqa: E731
        else:
            fn = lambda: concurrent(  # noqa: E731
                app, op, n, one_key=mode == "one_key", new_keys=mode == "new_keys"
            )
        dt = await fn()
        await app.aclose()
        return dt

    return asyncio.run(go()) / n


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5, help="runs per figure; median")
    ap.add_argument("--memory-ops", type=int, default=20_000, help="ops per run, memory state")
    ap.add_argument("--file-ops", type=int, default=640, help="ops per run, file state")
    ap.add_argument("--only", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    args = ap.parse_args()
    modes = [m for m in MODES if m in args.only.split(",")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="wistro-bench-state-") as tmp:
        root = Path(tmp)
        for mode in modes:
            for adapter in ("memory", "file"):
                n = args.memory_ops if adapter == "memory" else args.file_ops
                if mode == "handler":
                    n = n // 4 if adapter == "memory" else n
                ops = ["noop", "set", "update"] if mode == "handler" else ["set", "update"]
                times: dict[str, list[float]] = {op: [] for op in ops}
                ratios = []
                for r in range(args.runs):
                    order = ops if r % 2 == 0 else ops[::-1]  # alternate which goes first
                    got = {op: measure(mode, adapter, op, n, root) for op in order}
                    for op, secs in got.items():
                        times[op].append(secs)
                    ratios.append(got["update"] / got["set"])
                med = {op: statistics.median(v) * 1e6 for op, v in times.items()}
                rows.append((MODES[mode], adapter, n, med, statistics.median(ratios)))
                print(
                    f"  done: {MODES[mode]} [{adapter}] set {med['set']:.1f} µs, "
                    f"update {med['update']:.1f} µs",
                    flush=True,
                )

    print(
        f"\nstate.update vs state.set, µs per op (per event for the handler), median of "
        f"{args.runs} runs, {os.cpu_count()} CPUs"
    )
    print(
        f"{'mode':<31}{'state':<8}{'ops':>7}{'noop':>9}{'set':>10}{'update':>10}{'update/set':>12}"
    )
    for label, adapter, n, med, ratio in rows:
        noop = f"{med['noop']:.1f}" if "noop" in med else "-"
        print(
            f"{label:<31}{adapter:<8}{n:>7}{noop:>9}{med['set']:>10.1f}{med['update']:>10.1f}"
            f"{ratio:>12.2f}"
        )
    print(
        "update/set = median of the per-run ratios (set and update measured back to back). "
        "noop: the handler doing no state op."
    )


if __name__ == "__main__":
    main()
