"""Typed errors. Each one names its culprit (file and line, step, topic, field) in its first line."""

from __future__ import annotations

from pathlib import Path


class WistroError(Exception):
    """Base class of every error Wistro raises on purpose.

    ``str(err)`` is one clear line: where, then what. Extra context is in the attributes.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        step: str | None = None,
        topic: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.step = step
        self.topic = topic
        self.field = field
        self.hint = hint
        super().__init__(self.format())

    def location(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.step:
            parts.append(f"step {self.step!r}")
        if self.topic:
            parts.append(f"topic {self.topic!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts)

    def format(self) -> str:
        where = self.location()
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "step": self.step,
            "topic": self.topic,
            "field": self.field,
        }


class ProjectNotFound(WistroError):
    """No wistro.yml, wistro.json or wistro.yml.lock in this folder or its parents (nor a src/
    with step files in this folder itself)."""


class ConfigError(WistroError):
    """wistro.yml / wistro.json could not be read or is invalid."""


class StepLoadError(WistroError):
    """A step file could not be loaded: syntax error, no config, invalid config, import error."""


class DuplicateStepError(StepLoadError):
    """Two step files declare the same step name."""


class SchemaConflictError(WistroError):
    """Two declarations of one topic disagree on its payload type."""


class UnknownTopicError(WistroError):
    """An emit to a topic that nothing in the project declares."""


class UndeclaredEmitError(WistroError):
    """A step emitted a topic it did not list in ``emits``."""


class PayloadError(WistroError):
    """A payload did not match its topic's schema."""


class UnknownStepError(WistroError):
    """A step name that is not in the registry."""


class HandlerError(WistroError):
    """A step handler raised; the original exception is ``__cause__``."""


class HandlerTimeout(WistroError):
    """A step handler ran longer than its ``timeout_s``."""


class EngineCallTimeout(WistroError):
    """A call from a plain ``def`` handler into the engine (emit, state) did not complete in time."""


class StateError(WistroError):
    """A state operation failed: bad key, value that is not JSON."""


class LockError(WistroError):
    """wistro.yml.lock is missing, unreadable or stale."""


class StaleLockError(LockError):
    """A step file changed since the lock was written."""


class TraceNotFound(WistroError):
    """No run with that trace id in the trace store."""


class StepLoadErrors(WistroError):
    """Several step files failed to load; ``errors`` lists each one."""

    def __init__(self, errors: list[WistroError]) -> None:
        self.errors = errors
        first = errors[0].format() if errors else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)

    def format(self) -> str:
        return self.message


class TraceStoreError(WistroError):
    """The trace store could not be opened, read or written (its file is named)."""


class CorruptTraceStore(TraceStoreError):
    """The trace store's file is not a readable database (garbage, truncated, damaged pages)."""
