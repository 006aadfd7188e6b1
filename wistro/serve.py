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
        click.echo(
            f"{console.status(run.status)} run {run.trace_id[:12]} {run.topic} "
            f"({len(run.event_records)} events) {took}"
        )


async def _serve(app: App, started: float, watch: list[Path] | None) -> None:
    engine = app.engine
    engine.start()
    engine.observers.append(ConsoleObserver())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks = []
    if watch:
        watching = asyncio.Event()
        tasks.append(asyncio.create_task(_watch(app, watch, stop, watching)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await watching.wait()
    mode = "lock" if app.locked else "dev"
    click.echo(
        f"ready: {app.project.name} ({len(app.registry)} steps, {mode} mode, "
        f"env {app.project.env}) in {(time.perf_counter() - started) * 1000:.0f} ms"
    )
    await stop.wait()
    click.echo("stopping: finishing in-flight work…")
    for task in tasks:
        task.cancel()
    await app.aclose()
    click.echo("stopped")


def _fingerprint(app: App) -> set[tuple[str, int, int]]:
    files = app.project.step_files()
    if app.project.config_file is not None:
        files.append(app.project.config_file)
    out = set()
    for f in files:
        with contextlib.suppress(OSError):
            st = f.stat()
            out.add((str(f), st.st_mtime_ns, st.st_size))
    return out


def _reload(app: App, changed: list[str]) -> None:
    try:
        app.reload()
    except Exception as e:  # a broken wistro.yml must not stop the dev server
        click.echo(click.style(f"reload failed: {e}", fg="red"))
        return
    click.echo(
        click.style(f"reloaded ({', '.join(changed)}): {len(app.registry)} steps", fg="cyan")
    )
    for err in app.errors:
        click.echo(click.style(f"warning: {err.format()}", fg="yellow"))


async def _watch(app: App, paths: list[Path], stop: asyncio.Event, watching: asyncio.Event) -> None:
    """Reload on every change. The first (empty) yield tells the watcher runs; what changed
    between loading and that moment is caught by comparing file fingerprints."""
    from watchfiles import awatch

    loaded = _fingerprint(app)
    async for changes in awatch(
        *paths, stop_event=stop, debounce=200, rust_timeout=200, yield_on_timeout=True
    ):
        if not watching.is_set():
            watching.set()
            now = _fingerprint(app)
            if now != loaded:
                _reload(app, sorted({Path(p).name for p, *_ in now ^ loaded}))
            if not changes:
                continue
        if changes:
            _reload(app, sorted({Path(p).name for _, p in changes}))


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
