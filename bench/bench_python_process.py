"""Per-hop cost of the 5-hop Python chain (``_projects.write_chain``: pydantic inputs) with its
steps in Python worker processes (``runtimes: {python: {mode: process}}``, docs/steps.md) next to
the same chain in-process, like with like (the harness of ``_polyglot.py``): defaults on
(validation, SQLite traces), a fresh app per run, runs alternating, medians of the pairs and the
median of the per-pair ratios.

A process hop is one engine delivery to the worker: ``invoke`` out, ``result`` in (the emit
travels in it when the worker's check, the engine's own validator, passed it: one round trip a
hop; docs/worker-protocol.md); the worker validates the input again with the step's pydantic
model.

    .venv/bin/python bench/bench_python_process.py [--events 4000] [--one 400] [--runs 5]

The target column is the JS and Go workers' (issue #13: <= 1.5x amortised, <= 2.5x one event
in flight), printed for comparison: a process hop is dearer than an in-process one, as a JS or
Go hop is (bench_polyglot_js.py on the same machine gives about the same ratios). What a process
step buys is not speed per hop but cores: CPU-bound handlers on several cores at once, the
engine's loop never blocked (tests/polyglot/test_python_process.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _polyglot

P = _polyglot.P


def write_process_chain(root: Path) -> Path:
    proj = P.write_chain(root)
    (proj / "wistro.yml").write_text("name: chain\nruntimes:\n  python:\n    mode: process\n")
    return proj


def _worker_pid(app: Any) -> int | None:
    """The pid of the process chain's worker (on the Python runtime's process runtime)."""
    for rt in app.runtimes:
        process = getattr(rt, "_process", None)
        worker = getattr(process, "worker", None) or getattr(rt, "worker", None)
        if worker is not None:
            return worker.pid
    return None


if __name__ == "__main__":
    _polyglot._worker_pid = _worker_pid
    _polyglot.run("process", write_process_chain, __doc__ or "")
