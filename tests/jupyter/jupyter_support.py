"""Helpers shared by the notebook tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def cell(ip: Any, source: str) -> Any:
    """Run one cell; no exception may escape it. Returns the cell's value."""
    result = ip.run_cell(source)
    assert result.error_before_exec is None, result.error_before_exec
    assert result.error_in_exec is None, result.error_in_exec
    return result.result


def start_worker(root: Path) -> subprocess.Popen[str]:
    """A `wistro worker` of the project at ``root`` (its step files, no lock), once it is ready."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "wistro", "worker", "--no-lock"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert worker.stdout is not None
    deadline = time.monotonic() + 30
    while "worker ready" not in (line := worker.stdout.readline()):
        assert line and time.monotonic() < deadline, "the worker did not start"
    return worker
