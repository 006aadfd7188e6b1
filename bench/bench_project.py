"""Start-up costs of a large project (5,000 steps by default), each in a fresh interpreter, as
ratios against ``python -c "import wistro"`` measured in the same run.

    .venv/bin/python bench/bench_project.py               # 5,000 steps, library calls
    .venv/bin/python bench/bench_project.py --steps 1000
    .venv/bin/python bench/bench_project.py --cli         # time `wistro check` / `wistro lock`

Every operation is a command line (``OPS`` below): by default ``python -c <snippet>`` calling the
library, so the CLI, which is being written, is not needed. ``--cli`` swaps in the commands of
``CLI_OPS`` for the operations that have a one-shot CLI equivalent. Wall time is measured around
the whole subprocess (interpreter start + imports + work, what a user waits for); lib snippets
also report the time of the call itself ("in-process"). Peak RSS comes from ``os.wait4``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _projects as P  # noqa: E402

PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").is_dir() else sys.executable
WISTRO = str(Path(PYTHON).parent / "wistro")
TARGETS = {"check": 2.0, "from_lock": 1.0}  # seconds, wall (issue #13: check cold ≤ 2 s)
TIMEOUT = 100

# Snippets print one JSON line: {"inner_s": seconds of the call, ...}. ``{dir}`` is the project.
_PRE = "import json, time\nt0 = time.perf_counter()\nimport wistro\nt1 = time.perf_counter()\n"
OPS: dict[str, str] = {
    "import wistro": 'import wistro\nprint("{{}}")',
    # what `wistro check` costs: scan + import every step + registry + topic catalog
    "check (load)": _PRE
    + (
        "app = wistro.load({dir!r}, state='memory', traces='memory')\n"
        "t2 = time.perf_counter()\n"
        "assert not app.errors, app.errors[:3]\n"
        "print(json.dumps({{'inner_s': t2 - t1, 'import_s': t1 - t0, 'steps': len(app.registry)}}))\n"
    ),
    # what `wistro lock` costs: the above + build_lock + write_lock
    "lock (load+build+write)": _PRE
    + (
        "from wistro.project.lock import build_lock, write_lock\n"
        "app = wistro.load({dir!r}, state='memory', traces='memory')\n"
        "t2 = time.perf_counter()\n"
        "lock = build_lock(app.project, app.registry)\n"
        "t3 = time.perf_counter()\n"
        "write_lock(app.project.lock_path, lock)\n"
        "t4 = time.perf_counter()\n"
        "print(json.dumps({{'inner_s': t4 - t1, 'load_s': t2 - t1, 'build_s': t3 - t2,"
        " 'write_s': t4 - t3, 'lock_mb': app.project.lock_path.stat().st_size / 2**20}}))\n"
    ),
    # what `wistro start` costs before serving: read lock, verify hashes, registry, engine
    "from_lock to ready": _PRE
    + (
        "import psutil\n"
        "app = wistro.App.from_lock({dir!r}, state='memory', traces='memory')\n"
        "t2 = time.perf_counter()\n"
        "rss = psutil.Process().memory_info().rss / 2**20\n"
        "import asyncio\n"
        "async def first():\n"
        "    t = time.perf_counter()\n"
        "    run = await app.emit('c0.t0', {{'id': 1, 'name': 'x'}})\n"
        "    dt = time.perf_counter() - t\n"
        "    await app.aclose()\n"
        "    assert run.status == 'ok', run.errors\n"
        "    return dt\n"
        "first_s = asyncio.run(first())\n"
        "print(json.dumps({{'inner_s': t2 - t1, 'rss_mb': rss, 'first_run_s': first_s,"
        " 'steps': len(app.registry)}}))\n"
    ),
}

# The CLI equivalents (argv; ``{dir}`` and ``{wistro}`` filled in). Used with --cli.
CLI_OPS: dict[str, list[str]] = {
    "check (load)": ["{wistro}", "-C", "{dir}", "check"],
    "lock (load+build+write)": ["{wistro}", "-C", "{dir}", "lock"],
    # `wistro start` serves forever; "from_lock to ready" stays a library call.
}


ENV = dict(os.environ)


def run_op(name: str, proj: Path, cli: bool) -> dict:
    """Run one operation in a fresh interpreter; returns wall_s, maxrss_mb and its JSON."""
    if cli and name in CLI_OPS:
        argv = [a.format(dir=str(proj), wistro=WISTRO) for a in CLI_OPS[name]]
    else:
        argv = [PYTHON, "-c", OPS[name].format(dir=str(proj))]
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, cwd=proj, env=ENV)
        out = p.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        p.stdout.close()  # type: ignore[union-attr]
        if p.returncode:
            err.seek(0)
            raise RuntimeError(f"{name} failed ({p.returncode}):\n{err.read().decode()[-3000:]}")
    info: dict = {}
    lines = out.decode().strip().splitlines()
    if lines and not (cli and name in CLI_OPS):
        info = json.loads(lines[-1])
    info["wall_s"] = wall
    info["maxrss_mb"] = usage.ru_maxrss / 1024  # KB on Linux
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000, help="steps in the project (default 5000)")
    ap.add_argument("--cli", action="store_true", help="time the CLI commands of CLI_OPS")
    ap.add_argument("--keep", action="store_true", help="keep the generated project")
    ap.add_argument("--baseline-repeat", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="runs of from_lock (best kept)")
    ap.add_argument(
        "--no-pyc",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE as inherited (default: subprocesses may"
        " write __pycache__, so the second check is a warm start)",
    )
    a = ap.parse_args()
    if not a.no_pyc:
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)

    t_start = time.perf_counter()
    root = P.new_root()
    try:
        t = time.perf_counter()
        proj = P.write_big(root, a.steps)
        print(f"generated {a.steps:,} steps in {time.perf_counter() - t:.2f}s: {proj}")

        base = min(
            (run_op("import wistro", proj, False) for _ in range(a.baseline_repeat)),
            key=lambda r: r["wall_s"],
        )
        b = base["wall_s"]
        results: list[tuple[str, dict]] = []
        # cold = first load, no __pycache__ for the step files yet; warm = second
        results.append(("check (load), cold pyc", run_op("check (load)", proj, a.cli)))
        results.append(("check (load), warm", run_op("check (load)", proj, a.cli)))
        results.append(("lock (load+build+write)", run_op("lock (load+build+write)", proj, a.cli)))
        results.append(
            (
                f"from_lock to ready (best/{a.repeat})",
                min(
                    (run_op("from_lock to ready", proj, False) for _ in range(a.repeat)),
                    key=lambda r: r["wall_s"],
                ),
            )
        )
        base2 = run_op("import wistro", proj, False)["wall_s"]  # noise check at the end
        b = min(b, base2)

        mode = "CLI" if a.cli else "library via python -c"
        mode += ", bytecode cache " + ("ON" if "PYTHONDONTWRITEBYTECODE" not in ENV else "OFF")
        print(f"\n{a.steps:,}-step project ({mode}); wall = whole subprocess, seconds")
        hdr = (
            f"{'operation':26} {'wall':>7} {'in-proc':>8} {'ratio':>8} {'target':>7} {'ok?':4}"
            f" {'maxRSS':>7}"
        )
        print(hdr)
        print("-" * len(hdr))
        print(
            f"{'python -c import wistro':26} {b:7.2f} {'-':>8} {1:7.1f}x {'-':>7} {'':4}"
            f" {base['maxrss_mb']:6.0f}M"
        )
        for label, r in results:
            key = (
                "check"
                if label.startswith("check")
                else "from_lock"
                if "from_lock" in label
                else None
            )
            target = TARGETS.get(key) if key else None
            tgt = f"≤{target:g}s" if target else "-"
            ok = ("yes" if r["wall_s"] <= target else "NO") if target else ""
            inner = f"{r['inner_s']:8.2f}" if "inner_s" in r else f"{'-':>8}"
            print(
                f"{label:26} {r['wall_s']:7.2f} {inner} {r['wall_s'] / b:7.1f}x {tgt:>7} {ok:4}"
                f" {r['maxrss_mb']:6.0f}M"
            )
        lk = dict(results)["lock (load+build+write)"]
        fl = results[-1][1]
        if "build_s" in lk:
            print(
                f"\n  lock: load {lk['load_s']:.2f}s + build_lock {lk['build_s']:.2f}s"
                f" + write_lock {lk['write_s']:.2f}s; lock file {lk['lock_mb']:.1f} MB"
            )
        print(
            f"  from_lock: RSS after ready {fl['rss_mb']:.0f} MB"
            f" ({fl['rss_mb'] / base['maxrss_mb']:.1f}x the `import wistro` process);"
            f" first 5-hop run after start (lazy imports) {fl['first_run_s'] * 1000:.0f} ms"
        )
        print(
            f"  baseline `import wistro`: {b:.2f}s (best of {a.baseline_repeat} + 1 at the end;"
            f" end-of-run sample {base2:.2f}s)"
        )
        print(f"\n(total bench time {time.perf_counter() - t_start:.1f}s)")
    finally:
        if a.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
