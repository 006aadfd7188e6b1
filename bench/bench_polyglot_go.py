"""Per-hop cost of a 5-hop chain of Go steps (the long-lived Go worker) next to the same chain in
Python (``_projects.write_chain``: pydantic inputs), like with like: defaults on (validation,
SQLite traces), fresh app per run, runs alternating, medians (``_polyglot.py``).

A Go hop is one engine delivery to the worker: ``invoke`` out, ``result`` in (the handler's
emits travel in it when the worker's own check of them passed; docs/worker-protocol.md). The Go
worker is built (or taken from the build cache) before timing; that time is printed apart.

    .venv/bin/python bench/bench_polyglot_go.py [--events 4000] [--one 400] [--runs 5] [--profile]

Targets (issue #13): Go/Python <= 1.5x amortised, <= 2.5x one event in flight.
"""

from __future__ import annotations

import shutil
import sys

import _polyglot

if __name__ == "__main__":
    if shutil.which("go") is None:
        sys.exit("needs the Go toolchain (`go`) on PATH")
    _polyglot.run("go", _polyglot.write_go_chain, __doc__ or "")
