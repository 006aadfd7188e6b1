"""Language runtimes, by step-file suffix."""

from __future__ import annotations

from wistro.runtimes.base import LanguageRuntime, StepSource
from wistro.runtimes.python import PythonRuntime

__all__ = ["LanguageRuntime", "PythonRuntime", "StepSource", "default_runtimes"]


def default_runtimes() -> list[LanguageRuntime]:
    return [PythonRuntime()]
