"""Per-hop cost of a 5-hop chain of JavaScript steps (one long-lived Node.js worker) next to the
same chain in Python (``_projects.write_chain``: pydantic inputs), like with like: defaults on
(validation, SQLite traces), fresh app per run, runs alternating, medians (``_polyglot.py``).

A JS hop is one engine delivery to the worker: ``invoke`` out, ``result`` in (the handler's emits
travel in it when the worker's own check of them passed; docs/worker-protocol.md).

    .venv/bin/python bench/bench_polyglot_js.py [--events 4000] [--one 400] [--runs 5] [--profile]

Targets (issue #13): JS/Python <= 1.5x amortised, <= 2.5x one event in flight.
"""

from __future__ import annotations

import shutil
import sys

import _polyglot

if __name__ == "__main__":
    if shutil.which("node") is None:
        sys.exit("needs node on PATH")
    _polyglot.run("js", _polyglot.write_js_chain, __doc__ or "")
