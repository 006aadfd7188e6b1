"""Eval overhead per sample in CPU instructions (valgrind's callgrind), against ``app.emit``.

    .venv/bin/python bench/bench_eval_instructions.py            # 1,000 samples
    .venv/bin/python bench/bench_eval_instructions.py --samples 300

Wall time on a shared two-core VM varies by 2x from one round to the next (bench_eval.py shows
the range), so this counts what the CPU executes instead, which does not vary: the same process
runs three times under callgrind, doing the same setup (one app, one eval engine slot, 50
warm-up samples through each) and then nothing, ``N`` ``await app.emit`` of the 5-step chain
(memory state and traces), or ``N`` eval samples (what ``we.run`` does per sample: fresh state,
the run, recording its events, spans and state, 3 scorers, the results line). Instructions per
sample are the differences from the setup-only run; the ratio is eval / app.emit. Cache misses
are not counted: results kept in memory cost some more wall time than instructions show.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

TARGET = 1.3


async def workload(mode: str, n: int) -> None:
    import _projects as P

    import wistro
    from wistro import eval as we
    from wistro.eval import runner as R
    from wistro.eval import scorers as sc
    from wistro.eval.results import SampleResult

    scorers = [sc.error_free(), sc.emitted("t4"), sc.sequence(["t0", "t2", "t4"])]
    root = P.write_chain(P.new_root("wistro-bench-instr-"))
    app = wistro.load(root, state="memory", traces="memory")
    samples = [we.Sample(input={"topic": "t0", "data": P.chain_first_payload(i)}) for i in range(n)]
    slot = R.EngineSlot(app.registry, app.project.config.engine)
    out = R._Appender(Path(tempfile.mkdtemp()) / "results.jsonl")
    kept: list[SampleResult] = []
    config = app.project.config.engine

    async def one_sample(s: we.Sample) -> None:
        r = await R.run_sample(app.registry, config, s, 0, None, slot)
        R.score_result(s, r, scorers)
        out.write(r)
        kept.append(r)

    for s in samples[:50]:  # warm-up of both paths
        await app.emit("t0", s.data)
        await one_sample(s)
    if mode == "emit":
        for s in samples:
            await app.emit("t0", s.data)
    elif mode == "eval":
        for s in samples:
            await one_sample(s)
    out.close()
    await app.aclose()
    shutil.rmtree(root, ignore_errors=True)


def instructions(mode: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                __file__,
                "--run",
                mode,
                "--samples",
                str(n),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed ({mode}): {proc.stderr[-500:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--run", choices=["none", "emit", "eval"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        asyncio.run(workload(args.run, args.samples))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt install valgrind)")
    n = args.samples
    base = instructions("none", n)
    emit = (instructions("emit", n) - base) / n
    ev = (instructions("eval", n) - base) / n
    print(f"## eval overhead in instructions, {n:,} samples, 5-step chain, 3 scorers\n")
    print("| what | instructions / sample | ratio to app.emit | target |")
    print("|---|---:|---:|---:|")
    print(f"| baseline: `await app.emit` (memory state and traces) | {emit:,.0f} | 1.00x | |")
    mark = "✓" if ev / emit <= TARGET else "✗"
    print(
        f"| eval sample (run, record, score, store) | {ev:,.0f} | {ev / emit:.2f}x | ≤ {TARGET}x {mark} |"
    )


if __name__ == "__main__":
    main()
