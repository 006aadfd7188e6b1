"""How long starting a language worker blocks the event loop: ``loop.subprocess_exec`` with the
command as ``WorkerProcess`` spawns it (``setpriv --pdeathsig KILL -- cmd`` on Linux, no
``preexec_fn``) against the same call for the bare command, in a process with a large heap (a
notebook kernel's or a server's) and a thread running, as the engine has. Also the old form, a
Python ``preexec_fn`` that called ``prctl``, to show what it cost. Target: worker/bare <= 1.5.

    .venv/bin/python bench/bench_worker_spawn.py                 # 400 MB heap, 30 starts a run
    .venv/bin/python bench/bench_worker_spawn.py --heap-mb 100 --runs 7

The spawned program is ``true``: the time measured is the parent's, from the call to the
transport (fork or vfork, exec, pipes), not the child's start-up. Each figure is the median of
``--runs`` runs of ``--starts`` starts, the forms alternating run by run.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from wistro.runtimes.worker.process import die_with_parent  # noqa: E402

TARGET_RATIO = 1.5
_PR_SET_PDEATHSIG = 1


def _prctl_preexec() -> Callable[[], None]:
    """The ``preexec_fn`` workers were started with before (for the comparison only)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


async def starts(command: list[str], n: int, preexec: Callable[[], None] | None) -> float:
    """Median milliseconds ``loop.subprocess_exec`` took over ``n`` starts."""
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol,
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=preexec,
        )
        times.append((time.perf_counter() - t0) * 1e3)
        await transport._wait()  # type: ignore[attr-defined]
        transport.close()
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heap-mb", type=int, default=400)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--starts", type=int, default=30)
    args = ap.parse_args()
    true = shutil.which("true")
    assert true is not None
    heap = [bytearray(1 << 20) for _ in range(args.heap_mb)]  # touched: really resident
    done = threading.Event()
    threading.Thread(target=done.wait, daemon=True).start()
    worker = die_with_parent([true])
    forms: dict[str, tuple[list[str], Callable[[], None] | None]] = {
        "bare": ([true], None),
        "worker": (worker, None),
        "old preexec_fn": ([true], _prctl_preexec() if sys.platform.startswith("linux") else None),
    }
    results: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.runs):
        for name, (command, preexec) in forms.items():
            results[name].append(asyncio.run(starts(command, args.starts, preexec)))
    done.set()
    del heap
    print(f"worker start, event loop blocked per start ({args.heap_mb} MB heap, a thread)")
    print(f"  worker command: {' '.join(worker)}")
    bare = statistics.median(results["bare"])
    for name, runs in results.items():
        ms = statistics.median(runs)
        print(f"  {name:<15} {ms:7.2f} ms   {ms / bare:6.2f}x bare")
    ratio = statistics.median(results["worker"]) / bare
    print(f"worker/bare {ratio:.2f} (target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
