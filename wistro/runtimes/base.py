"""The language-runtime interface: how the core reads step configs and runs handlers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wistro.core.step import StepRecord
from wistro.errors import StepLoadError


@dataclass
class StepSource:
    """A step file read by its runtime: the raw ``config`` and where it is defined."""

    file: Path
    config: Any
    line: int | None
    handle: Any = None  # runtime-private (the Python module, a worker's handle, ...)


class LanguageRuntime(ABC):
    """One per language. Python runs in-process; other languages plug in as worker processes."""

    language: str
    suffixes: tuple[str, ...]  # what follows ".step", e.g. (".py",)

    @abstractmethod
    def read(
        self, files: list[Path], root: Path, src: Path | None = None
    ) -> list[StepSource | StepLoadError]:
        """Read the config of every file; a file that fails gives a StepLoadError, the others
        still load."""

    @abstractmethod
    def bind(self, record: StepRecord, source: StepSource | None, src: Path | None = None) -> None:
        """Make ``record.invoke`` callable. With no source (started from the lock) the step's
        code must be loaded lazily, on first delivery."""

    def bound_from_lock(self) -> None:  # noqa: B027 - optional hook
        """Started from the lock: called once every locked step of this runtime is bound. Raise
        StepLoadError (one line) when a step cannot run at all, so the start fails at once and
        not at the first delivery; log what will be slow at first delivery."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
