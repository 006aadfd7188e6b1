"""Typed errors: every error Wistro raises on purpose, in one tree rooted at ``WistroError``.

``str(err)`` is one line that names the culprit first (file and line, step, topic, field), then
what went wrong; the same facts are attributes, and ``err.to_dict()`` holds them, with the
``trace_id`` of the run that recorded the error when there is one. Besides its place in the tree,
a class derives from the built-in exception it resembles (in brackets), so that
``except LookupError`` or ``except TimeoutError`` catch Wistro's errors as they catch Python's::

    WistroError
      ProjectNotFound [FileNotFoundError]
      ConfigError [ValueError]
      StepLoadError [ImportError]
        DuplicateStepError
        GoBuildError
      StepLoadErrors [ImportError]
      SchemaConflictError
      UnknownTopicError [LookupError]
      UndeclaredEmitError
      PayloadError [ValueError]
      UnknownStepError [LookupError]
      HandlerError
        StepError
      HandlerTimeout [TimeoutError]
      EngineCallTimeout [TimeoutError]
      StateError [ValueError]
      LockError
        StaleLockError
      TraceNotFound [LookupError]
      TraceStoreError
        CorruptTraceStore
      BusError
      WorkerError
      WorkerCrashed [RuntimeError]
        WorkerStartError
      HttpError
      Disconnected [ConnectionError]
      AuthFailure
      DuplicateRequest
      DatasetNotFound [LookupError]
      DatasetError [ValueError]
        DuplicateSampleError
      VersionError
      EvalNotFound [LookupError]
      UsageError

Without brackets no built-in fits, and only ``except WistroError`` (or ``Exception``) catches the
error: a ``HandlerError`` wraps whatever the handler raised (its ``__cause__``), a ``WorkerError``
whatever a worker raised (its ``type``); an ``OSError`` base for ``TraceStoreError`` (SQLite's
errors) or ``AuthFailure`` would be caught by code that handles failing files and sockets. A
built-in base never changes ``str()``: it is the line ``format()`` made. ``tests/test_errors.py``
checks this drawing against the classes below.

The classes are defined here and nowhere else; the modules that raise them import them (and keep
the old import paths working): ``wistro.runtimes.worker`` (``WorkerError``, ``WorkerCrashed``,
``WorkerStartError``, ``StepError``), ``wistro.runtimes.golang`` (``GoBuildError``),
``wistro.triggers.http_body`` (``HttpError``, ``Disconnected``), ``wistro.triggers.auth``
(``AuthFailure``, ``DuplicateRequest``), ``wistro.eval.errors`` (the eval errors),
and ``wistro_jupyter.magics`` (``UsageError``). This module imports nothing of Wistro.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AuthFailure",
    "BusError",
    "ConfigError",
    "CorruptTraceStore",
    "DatasetError",
    "DatasetNotFound",
    "Disconnected",
    "DuplicateRequest",
    "DuplicateSampleError",
    "DuplicateStepError",
    "EngineCallTimeout",
    "EvalNotFound",
    "GoBuildError",
    "HandlerError",
    "HandlerTimeout",
    "HttpError",
    "LockError",
    "PayloadError",
    "ProjectNotFound",
    "SchemaConflictError",
    "StaleLockError",
    "StateError",
    "StepError",
    "StepLoadError",
    "StepLoadErrors",
    "TraceNotFound",
    "TraceStoreError",
    "UndeclaredEmitError",
    "UnknownStepError",
    "UnknownTopicError",
    "UsageError",
    "VersionError",
    "WistroError",
    "WorkerCrashed",
    "WorkerError",
    "WorkerStartError",
]


class WistroError(Exception):
    """Base class of every error Wistro raises on purpose.

    ``str(err)`` is one clear line: where, then what. Extra context is in the attributes;
    ``trace_id`` is the run that recorded the error (set by the engine on a refused emit and on
    a failed ``Engine.call``), None when no run did.
    """

    trace_id: str | None = None

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
        trace_id: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.step = step
        self.topic = topic
        self.field = field
        self.hint = hint
        self.trace_id = trace_id
        super().__init__(self.format())

    def __str__(self) -> str:
        # The line format() made (or that a caller put back in ``args`` after changing the
        # location), whatever built-in a subclass adds: OSError and ImportError would otherwise
        # format their own way (ImportError keeps the message it was created with).
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()

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
            "trace_id": self.trace_id,
        }


# ---------------------------------------------------------------- project, config, step files


class ProjectNotFound(WistroError, FileNotFoundError):
    """No wistro.yml, wistro.json or wistro.yml.lock in this folder or its parents (nor a src/
    with step files in this folder itself)."""


class ConfigError(WistroError, ValueError):
    """wistro.yml / wistro.json could not be read or is invalid."""


class StepLoadError(WistroError, ImportError):
    """A step file could not be loaded: syntax error, no config, invalid config, import error."""


class DuplicateStepError(StepLoadError):
    """Two step files declare the same step name."""


class GoBuildError(StepLoadError):
    """``go build`` failed; ``by_file`` maps each step file to its (line, message) errors (the
    line is None for an error in a companion file, named in the message)."""

    def __init__(
        self, message: str, by_file: dict[Path, list[tuple[int | None, str]]], output: str
    ) -> None:
        super().__init__(message)
        self.by_file = by_file
        self.output = output


class StepLoadErrors(WistroError, ImportError):
    """Several step files failed to load; ``errors`` lists each one."""

    def __init__(self, errors: list[WistroError]) -> None:
        self.errors = errors
        first = errors[0].format() if errors else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)

    def format(self) -> str:
        return self.message


class SchemaConflictError(WistroError):
    """Two declarations of one topic disagree on its payload type."""


# ---------------------------------------------------------------- topics, payloads, steps


class UnknownTopicError(WistroError, LookupError):
    """An emit to a topic that nothing in the project declares."""


class UndeclaredEmitError(WistroError):
    """A step emitted a topic it did not list in ``emits``."""


class PayloadError(WistroError, ValueError):
    """A payload did not match its topic's schema."""


class UnknownStepError(WistroError, LookupError):
    """A step name that is not in the registry."""


# ---------------------------------------------------------------- handlers


class HandlerError(WistroError):
    """A step handler raised; the original exception is ``__cause__``."""


class StepError(HandlerError):
    """A step handler in a worker language failed. ``str()`` is one line naming file:line;
    ``.stack`` is the worker's stack trace (also attached as a note for tracebacks)."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "Error",
        stack: str | None = None,
        file: str | Path | None = None,
        line: int | None = None,
        step: str | None = None,
    ) -> None:
        self.error_type = error_type
        self.stack = stack
        super().__init__(f"{error_type}: {message}", file=file, line=line, step=step)
        if stack:
            self.add_note(stack)


class HandlerTimeout(WistroError, TimeoutError):
    """A step handler ran longer than its ``timeout_s``."""


class EngineCallTimeout(WistroError, TimeoutError):
    """A call from a plain ``def`` handler into the engine (emit, state) did not complete in time."""


class StateError(WistroError, ValueError):
    """A state operation failed: bad key, value that is not JSON."""


# ---------------------------------------------------------------- the lock file, the trace store


class LockError(WistroError):
    """wistro.yml.lock is missing, unreadable or stale."""


class StaleLockError(LockError):
    """A step file changed since the lock was written."""


class TraceNotFound(WistroError, LookupError):
    """No run with that trace id in the trace store."""


class TraceStoreError(WistroError):
    """The trace store could not be opened, read or written (its file is named)."""


class CorruptTraceStore(TraceStoreError):
    """The trace store's file is not a readable database (garbage, truncated, damaged pages)."""


class BusError(WistroError):
    """The event bus could not be opened or written (its journal file or Redis URL is named)."""


# ---------------------------------------------------------------- language workers


class WorkerError(WistroError):
    """The worker answered a request with ``error``: ``type`` is the worker's exception class
    (the JavaScript error name, ``panic``), ``stack`` its stack trace. ``str()`` is
    ``<file>:<line>: <type>: <message>`` (without the location when the worker sent none)."""

    def __init__(
        self,
        type: str,
        message: str,
        stack: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.type = type
        self.stack = stack
        super().__init__(message, file=file, line=line)

    def format(self) -> str:
        where = self.location()
        text = f"{self.type}: {self.message}"
        return f"{where}: {text}" if where else text

    @classmethod
    def from_payload(cls, err: Any) -> WorkerError:
        if not isinstance(err, dict):
            return cls("Error", str(err))
        line = err.get("line")
        return cls(
            str(err.get("type") or "Error"),
            str(err.get("message") or ""),
            err.get("stack"),
            err.get("file"),
            line if isinstance(line, int) else None,
        )


class WorkerCrashed(WistroError, RuntimeError):
    """The worker exited or broke the protocol while a request was in flight (a RuntimeError,
    as ``concurrent.futures``' broken process pool is)."""


class WorkerStartError(WorkerCrashed):
    """The worker could not be started (no toolchain, no ``hello`` in time, exited at once)."""


# ---------------------------------------------------------------- the HTTP trigger


class HttpError(WistroError):
    """An error response: ``{"error": {"type", "message", "fields"?}}`` with ``status``.

    ``kind`` is the response's ``type``; ``trace_id`` is the run recording the refusal (a
    refused emit), sent as ``trace_id`` and the ``x-wistro-trace-id`` header."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        trace_id: str | None = None,
    ) -> None:
        self.status = status
        self.kind = kind
        self.fields = fields
        self.headers = headers or {}
        super().__init__(message, trace_id=trace_id)


class Disconnected(WistroError, ConnectionError):
    """The client went away while sending its body."""

    def __init__(self, message: str = "the client went away while sending its body") -> None:
        super().__init__(message)


class AuthFailure(WistroError):
    """A request was refused. ``status``: 401 missing/invalid credentials, 403 not allowed.

    ``reason`` says why, for logs only: never send it to the client. ``str(exc)`` (like
    ``message`` and ``to_dict()``) is the generic status phrase.
    """

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__("Forbidden" if status == 403 else "Unauthorized")

    def __repr__(self) -> str:
        return f"AuthFailure(status={self.status}, reason={self.reason!r})"


class DuplicateRequest(WistroError):
    """A validly signed request that was already accepted (a replay or a redelivery): the
    HTTP trigger answers ``200 {"duplicate": true}`` and starts nothing."""

    duplicate = True

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__("Duplicate")


# ---------------------------------------------------------------- evals (wistro.eval)


class DatasetNotFound(WistroError, LookupError):
    """No ``datasets/NAME.jsonl`` in the project."""


class DatasetError(WistroError, ValueError):
    """A dataset file or a sample could not be read or built."""


class DuplicateSampleError(DatasetError):
    """Two samples with the same id in one dataset: ``add(..., upsert=True)`` (``wistro dataset
    add --upsert``) replaces instead; in a file, one line has to go or get another id."""


class VersionError(WistroError):
    """A project version (git revision or folder) that cannot be loaded."""


class EvalNotFound(WistroError, LookupError):
    """No stored eval with that id under ``.wistro/evals/``."""


# ---------------------------------------------------------------- notebooks (wistro_jupyter)


class UsageError(WistroError):
    """A %wistro line that cannot be understood."""
