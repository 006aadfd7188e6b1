"""Long-running modes: ``wistro dev`` (scan, hot reload, live log) and ``wistro start`` (lock)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import click

from wistro import console
from wistro.app import App
from wistro.run import Run
from wistro.tracing.records import EventRecord, LogRecord, SpanRecord, as_dict


class ConsoleObserver:
    """Prints what the engine does, one colored line per log, failure and finished run."""

    def on_run_start(self, run: Run) -> None:
        pass

    def on_event(self, event: EventRecord) -> None:
        pass

    def on_span_start(self, span: SpanRecord) -> None:
        pass

    def on_span_end(self, span: SpanRecord) -> None:
        if span.status != "ok":
            click.echo(click.style(f"✗ {span.step} <- {span.topic}: {span.error}", fg="red"))

    def on_log(self, log: LogRecord) -> None:
        click.echo(console.log_line(as_dict(log)))

    def on_run_end(self, run: Run) -> None:
        took = f"{run.duration_ms:.1f} ms" if run.duration_ms is not None else ""
        click.echo(f"{console.status(run.status)} run {run.trace_id[:12]} {run.topic} "
                   f"({len(run.event_records)} events) {took}")


async def _serve(app: App, started: float, watch: list[Path] | None) -> None:
    engine = app.engine
    engine.start()
    engine.observers.append(ConsoleObserver())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    mode = "lock" if app.from_lock else "dev"
    click.echo(f"ready: {app.project.name} ({len(app.registry)} steps, {mode} mode, "
               f"env {app.project.env}) in {(time.perf_counter() - started) * 1000:.0f} ms",
               )
    tasks = []
    if watch:
        tasks.append(asyncio.create_task(_watch(app, watch, stop)))
    await stop.wait()
    click.echo("stopping: finishing in-flight work…")
    for task in tasks:
        task.cancel()
    await app.aclose()
    click.echo("stopped")


async def _watch(app: App, paths: list[Path], stop: asyncio.Event) -> None:
    from watchfiles import awatch

    async for changes in awatch(*paths, stop_event=stop, debounce=200):
        changed = sorted({Path(p).name for _, p in changes})
        try:
            app.reload()
        except Exception as e:  # a broken wistro.yml must not stop the dev server
            click.echo(click.style(f"reload failed: {e}", fg="red"))
            continue
        click.echo(click.style(f"reloaded ({', '.join(changed)}): {len(app.registry)} steps",
                               fg="cyan"))
        for err in app.errors:
            click.echo(click.style(f"warning: {err.format()}", fg="yellow"))


def run_dev(project: str | None, env: str, reload: bool = True) -> None:
    started = time.perf_counter()
    app = App.load(project, env=env)
    for err in app.errors:
        click.echo(click.style(f"warning: {err.format()}", fg="yellow"))
    watch = [app.project.src] + ([app.project.config_file] if app.project.config_file else [])
    asyncio.run(_serve(app, started, watch if reload else None))


def run_start(project: str | None, env: str, **kwargs: Any) -> None:
    started = time.perf_counter()
    app = App.from_lock(project, env=env)
    asyncio.run(_serve(app, started, None))
