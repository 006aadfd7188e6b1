"""Language runtimes, by step-file suffix."""

from __future__ import annotations

from wistro.runtimes.base import LanguageRuntime, StepSource
from wistro.runtimes.golang import GoRuntime
from wistro.runtimes.node import NodeRuntime
from wistro.runtimes.python import PythonRuntime
from wistro.runtimes.python_process import PythonProcessRuntime

__all__ = [
    "GoRuntime",
    "LanguageRuntime",
    "NodeRuntime",
    "PythonProcessRuntime",
    "PythonRuntime",
    "StepSource",
    "default_runtimes",
]


def default_runtimes() -> list[LanguageRuntime]:
    """Python in-process (its ``runtime: process`` steps in worker processes of its own, see
    ``PythonRuntime.process``); JavaScript/TypeScript and Go in long-lived worker processes."""
    return [PythonRuntime(), NodeRuntime(), GoRuntime()]
