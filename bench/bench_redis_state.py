"""Redis state: ``state.update`` (WATCH / HGET / MULTI-HSET-EXEC) against ``state.set`` (one
MULTI-HSET-SADD-EXEC), and redis ``set`` against memory ``set``, through ``app.state``; ops/s and
the ratios, each measured back to back in the same run.

    .venv/bin/python bench/bench_redis_state.py                 # its own redis-server, 5 runs
    .venv/bin/python bench/bench_redis_state.py --runs 3 --ops 1000
    .venv/bin/python bench/bench_redis_state.py --url redis://127.0.0.1:6379/0   # a Redis you run

Without ``--url`` the script starts ``redis-server`` itself (on a free loopback port, no
persistence, in a temp folder) and stops it at the end; each run uses a fresh key prefix.

Modes (``set`` and ``update`` alternate which goes first; memory ``set`` is measured in the same
run as the baseline; median of ``--runs``):

* ``sequential``: ``await app.state.set(g, k, v)`` / ``await app.state.update(g, k, fn)`` one
  after the other on one key (latency: a round trip or three).
* ``32 tasks, own groups``: 32 concurrent tasks, each on a key of its own group (updates of
  different groups run side by side on their own connections).
* ``32 tasks, own keys``: 32 concurrent tasks, each on its own key of one group: ``WATCH``
  covers the whole group, so this process's updates of it take turns (an ``asyncio.Lock`` per
  group), while ``set`` does not wait.
* ``32 tasks, one key``: 32 concurrent tasks on the same key.

``fn`` increments a counter (``{"n": n + 1}``); ``set`` writes ``{"n": i}``. The concurrent
``update`` cases check that no increment was lost. ``update/set`` is the ratio of the times per
op (how much dearer an update is); ``redis/memory`` the ratio of redis ``set`` to memory ``set``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _redis import redis_server  # noqa: E402

TASKS = 32
GROUP = "bench"
_prefixes = itertools.count()


def _inc(value: Any) -> dict[str, int]:
    return {"n": (value or {"n": 0})["n"] + 1}


# ---------------------------------------------------------------------------------- the app
STEP = """\
config = {"name": "Nothing", "subscribes": ["tick"], "emits": []}


async def handler(tick, ctx):
    return None
"""


def _app(root: Path, adapter: str, url: str) -> Any:
    import wistro

    project = Path(tempfile.mkdtemp(dir=root))
    (project / "src").mkdir()
    (project / "src" / "nothing.step.py").write_text(STEP, encoding="utf-8")
    config = "name: bench-redis-state\n"
    if adapter == "redis":  # a fresh prefix: every run starts from an empty Redis
        prefix = f"bench-{os.getpid()}-{next(_prefixes)}"
        config += f'state: {{adapter: redis}}\nredis: {{url: "{url}", prefix: "{prefix}"}}\n'
    (project / "wistro.yml").write_text(config, encoding="utf-8")
    app = wistro.load(project, state=None if adapter == "redis" else adapter, traces="memory")
    assert not app.errors, app.errors
    assert app.engine.state.name == adapter
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


async def concurrent(app: Any, op: str, n: int, mode: str, group: str = GROUP) -> float:
    state = app.state
    per_task = n // TASKS
    if mode == "own_groups":
        places = [(f"{group}{t}", "k") for t in range(TASKS)]
    elif mode == "own_keys":
        places = [(group, f"k{t}") for t in range(TASKS)]
    else:
        places = [(group, "k")] * TASKS

    async def worker(group: str, key: str) -> None:
        if op == "set":
            for i in range(per_task):
                await state.set(group, key, {"n": i})
        else:
            for _ in range(per_task):
                await state.update(group, key, _inc)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(g, k) for g, k in places))
    dt = time.perf_counter() - t0
    if op == "update":  # atomic: no increment lost
        total = sum([(await state.get(g, k))["n"] for g, k in set(places)])
        assert total == per_task * TASKS, (total, per_task * TASKS)
    return dt * n / (per_task * TASKS)


MODES: dict[str, str] = {
    "sequential": "sequential, one key",
    "own_groups": f"{TASKS} tasks, own groups",
    "own_keys": f"{TASKS} tasks, own keys",
    "one_key": f"{TASKS} tasks, one key",
}


def measure(mode: str, adapter: str, op: str, n: int, root: Path, url: str) -> float:
    """Seconds per op of one run (a fresh app, and a fresh prefix for redis)."""
    gc.collect()

    async def go() -> float:
        app = _app(root, adapter, url)
        try:
            if mode == "sequential":
                await sequential(app, op, min(n, 50))  # warm-up: connections, imports
                return await sequential(app, op, n) / n
            await concurrent(app, op, TASKS * 2, mode, "warm-up")  # a connection per task
            return await concurrent(app, op, n, mode) / n
        finally:
            await app.aclose()

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5, help="runs per figure; median")
    ap.add_argument("--ops", type=int, default=2_000, help="ops per run, redis")
    ap.add_argument("--memory-ops", type=int, default=20_000, help="ops per run, memory")
    ap.add_argument("--url", help="a Redis to use instead of starting redis-server")
    ap.add_argument("--only", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    args = ap.parse_args()
    modes = [m for m in MODES if m in args.only.split(",")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="wistro-bench-redis-state-") as tmp:
        root = Path(tmp)
        with redis_server(root) if args.url is None else nullcontext(args.url) as url:
            for mode in modes:
                cases = [("redis", "set"), ("redis", "update"), ("memory", "set")]
                times: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
                upd_ratio, mem_ratio = [], []
                for r in range(args.runs):
                    order = cases if r % 2 == 0 else cases[::-1]  # alternate which goes first
                    got = {
                        (adapter, op): measure(
                            mode,
                            adapter,
                            op,
                            args.ops if adapter == "redis" else args.memory_ops,
                            root,
                            url,
                        )
                        for adapter, op in order
                    }
                    for case, secs in got.items():
                        times[case].append(secs)
                    upd_ratio.append(got["redis", "update"] / got["redis", "set"])
                    mem_ratio.append(got["redis", "set"] / got["memory", "set"])
                rate = {c: 1 / statistics.median(v) for c, v in times.items()}
                rows.append(
                    (MODES[mode], rate, statistics.median(upd_ratio), statistics.median(mem_ratio))
                )
                print(
                    f"  done: {MODES[mode]}: redis set {rate['redis', 'set']:,.0f}/s, "
                    f"update {rate['redis', 'update']:,.0f}/s",
                    flush=True,
                )

    print(
        f"\nredis state through app.state, ops/s, median of {args.runs} runs "
        f"({args.ops} redis ops, {args.memory_ops} memory ops per run), {os.cpu_count()} CPUs"
    )
    print(
        f"{'mode':<24}{'memory set':>12}{'redis set':>11}{'redis update':>14}"
        f"{'update/set':>12}{'redis/memory':>14}"
    )
    for label, rate, upd, mem in rows:
        print(
            f"{label:<24}{rate['memory', 'set']:>12,.0f}{rate['redis', 'set']:>11,.0f}"
            f"{rate['redis', 'update']:>14,.0f}{upd:>12.2f}{mem:>14.1f}"
        )
    print(
        "update/set: time per redis update / time per redis set; redis/memory: time per redis "
        "set / time per memory set (medians of the per-run ratios, measured back to back)."
    )


if __name__ == "__main__":
    main()
