"""``runtime: process`` Python steps: run by a pool of long-lived Python workers per project
(``python -m wistro.sdk.python.worker``) over the worker protocol (docs/worker-protocol.md), so
CPU-bound handlers use more than one core and never block the engine's event loop.

Their configs are still read in-process (``PythonRuntime.read``: the step file is imported by the
engine too); only the handler runs in the worker, which imports the file again, the same way.
``PythonRuntime.bind`` hands these steps to this runtime: a step's ``runtime: process``, or the
project's ``runtimes: {python: {mode: process}}``. The pool: ``runtimes.python.workers`` (one by
default), with the isolation rules of every worker language (kill and replace, redelivery).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import ClassVar

from wistro.core.step import StepRecord
from wistro.errors import StepLoadError
from wistro.runtimes.base import StepSource
from wistro.runtimes.worker import WorkerRuntime

__all__ = ["PythonProcessRuntime", "process_mode"]

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # where `import wistro` is found


def process_mode(record: StepRecord, default: str | None) -> bool:
    """Whether ``record`` runs in a worker process: its own ``runtime``, else the project's."""
    mode = record.runtime or default or "inline"
    return mode == "process"


class PythonProcessRuntime(WorkerRuntime):
    """Python steps in worker processes (the in-process ``PythonRuntime`` delegates to it)."""

    language = "python"
    languages: ClassVar[tuple[str, ...]] = ("python",)
    suffixes = ()  # never discovers files itself: the in-process runtime reads them
    config_key: ClassVar[str] = "python"
    toolchain: ClassVar[str] = "the Python interpreter"

    def __init__(self) -> None:
        super().__init__()
        self.src: Path | None = None

    def command(self, root: Path) -> list[str] | None:
        return [sys.executable, "-m", "wistro.sdk.python.worker"]

    def env(self, root: Path) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        env = {
            "PYTHONPATH": _PACKAGE_PARENT + (os.pathsep + path if path else ""),
            "PYTHONUNBUFFERED": "1",
        }
        if self.src is not None:
            env["WISTRO_PY_SRC"] = str(self.src)
        return env

    def default_mode(self, root: Path) -> str:
        """``runtimes.python.mode`` of the project (``inline`` unless it says ``process``)."""
        return str(getattr(self.settings(root), "mode", "inline"))

    def read(
        self, files: list[Path], root: Path, src: Path | None = None
    ) -> list[StepSource | StepLoadError]:
        raise NotImplementedError("Python step configs are read in-process (PythonRuntime.read)")

    def bind(self, record: StepRecord, source: StepSource | None, src: Path | None = None) -> None:
        if src is not None:
            self.src = src
        super().bind(record, source, src)
