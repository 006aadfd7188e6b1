"""Language runtimes, by step-file suffix."""

from __future__ import annotations

from wistro.runtimes.base import LanguageRuntime, StepSource
from wistro.runtimes.golang import GoRuntime
from wistro.runtimes.node import NodeRuntime
from wistro.runtimes.python import PythonRuntime

__all__ = [
    "GoRuntime",
    "LanguageRuntime",
    "NodeRuntime",
    "PythonRuntime",
    "StepSource",
    "default_runtimes",
]


def default_runtimes() -> list[LanguageRuntime]:
    """Python in-process; JavaScript/TypeScript and Go in long-lived worker processes."""
    return [PythonRuntime(), NodeRuntime(), GoRuntime()]
