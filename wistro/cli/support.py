"""What every group of the ``wistro`` command line shares: the context object, JSON output,
one-line failures, payload parsing and running a coroutine.

``wistro.cli.main`` (the main group) and ``wistro.cli.eval`` (``wistro dataset`` / ``wistro eval``)
both import it; neither imports the other's helpers, so the main group can import the eval groups
to register them without a cycle. Cheap to import: the app and the project load when a command
asks for them.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from wistro.tooling import console

__all__ = ["Obj", "emit_json", "exit_without_teardown", "fail", "parse_payload", "run_async"]

# Set by a command whose process has nothing left to do once it has printed (``wistro check``):
# the console script then ends it without the interpreter's teardown (``wistro.cli.main.run``).
FAST_EXIT = [False]


def exit_without_teardown() -> None:
    """Ask the console script to end this process at once after the command: freeing every
    module, class and schema a large project loaded takes longer than reporting on it (0.6 s of
    a 5,000-step ``wistro check``). Only for commands that start no thread, server or child
    whose end must be waited for."""
    FAST_EXIT[0] = True


class Obj:
    def __init__(self, project: str | None, env: str) -> None:
        self.project = project
        self.env = env

    def app(self, **kwargs: Any) -> Any:
        from wistro.app import App

        app = App.load(self.project, env=self.env, **kwargs)
        for err in app.errors:
            click.echo(click.style(f"error: {err.format()}", fg="red"), err=True)
        return app

    def project_only(self) -> Any:
        from wistro.project.paths import load_project

        return load_project(self.project, self.env)


def fail(message: str, code: int = 1) -> NoReturn:
    # one line, whatever the message holds (a payload, a file name)
    click.echo(click.style("error: ", fg="red", bold=True) + console.clean(message), err=True)
    sys.exit(code)


def emit_json(data: Any) -> None:
    """Strict JSON on stdout: NaN and infinities become null (never a bare ``NaN`` token)."""
    click.echo(json.dumps(_strict(data), indent=2, default=str, allow_nan=False))


def _strict(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _strict(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_strict(v) for v in x]
    return x


def run_async(fn: Callable[[], Any]) -> Any:
    return asyncio.run(fn())


def parse_payload(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        fail(
            f"the payload is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}: "
            f"{text if len(text) <= 120 else text[:117] + '...'}"
        )
