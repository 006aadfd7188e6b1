"""Long-running modes: ``wistro dev`` (scan, hot reload, live log) and ``wistro start`` (lock)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from wistro.app import App
from wistro.core.run import Run
from wistro.errors import WistroError
from wistro.tooling import console
from wistro.tracing.records import EventRecord, LogRecord, SpanRecord, as_dict

EVENT_LOOP_ENV = "WISTRO_EVENT_LOOP"  # "asyncio": the standard loop even with uvloop installed


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``wistro dev`` and ``wistro start`` run in: uvloop's when it is installed
    (a dependency of Wistro where it builds: not on Windows) and ``WISTRO_EVENT_LOOP`` is not
    ``asyncio``; None (asyncio's own loop) otherwise."""
    choice = os.environ.get(EVENT_LOOP_ENV, "").strip().lower()
    if choice not in ("", "auto", "uvloop", "asyncio"):
        raise WistroError(
            f"{EVENT_LOOP_ENV}={choice!r} is not an event loop", hint="use uvloop or asyncio"
        )
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise WistroError(
                f"{EVENT_LOOP_ENV}=uvloop but uvloop is not installed",
                hint="pip install uvloop, or unset it",
            ) from None
        return None
    return uvloop.new_event_loop


def run_loop(main: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(main)`` in the loop of :func:`loop_factory`."""
    try:
        factory = loop_factory()
    except WistroError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


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
            text = f"✗ {span.step} <- {span.topic}: {span.error}"
            click.echo(click.style(console.clean(text), fg="red"))

    def on_log(self, log: LogRecord) -> None:
        click.echo(console.log_line(as_dict(log)))

    def on_run_end(self, run: Run) -> None:
        took = f"{run.duration_ms:.1f} ms" if run.duration_ms is not None else ""
        click.echo(
            f"{console.status(run.status)} run {run.trace_id[:12]} {console.clean(run.topic)} "
            f"({len(run.event_records)} events) {took}"
        )


def load_error_lines(app: App) -> list[str]:
    """One red line per step file that does not load, saying what still runs meanwhile."""
    out = []
    for err in app.errors:
        kept = getattr(err, "kept", None)
        standins = [r.name for r in app.registry if r.load_error and r.rel_file == err.file]
        if kept:
            note = f" (still running the last good version of {', '.join(map(repr, kept))})"
        elif standins:
            note = f" (deliveries to {', '.join(map(repr, standins))} fail until it is fixed)"
        else:
            note = ""
        out.append(click.style(console.clean(f"error: {err.format()}{note}"), fg="red"))
    return out


async def _serve(
    app: App,
    started: float,
    watch: list[Path] | None,
    host: str,
    port: int,
    grace_s: float = 30.0,
    on_abort: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM/Ctrl-C, then stop gracefully; a second signal exits at once, after
    ``on_abort`` (``wistro dev --versions``: kill the workers, remove the worktrees)."""
    from wistro.server.control import (
        control_routes,
        new_token,
        remove_server_file,
        write_server_file,
    )
    from wistro.triggers.cron import CronScheduler
    from wistro.triggers.http import HttpServer

    engine = app.engine
    engine.start()
    engine.observers.append(ConsoleObserver())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # a second Ctrl-C / SIGTERM: stop waiting for in-flight work
            click.echo("stopping now: in-flight work is abandoned", err=True)
            if on_abort is not None:
                on_abort()
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    token = new_token()
    http = HttpServer(app, host, port, extra_routes=control_routes(app, token))
    bound: asyncio.Future[HttpServer] = loop.create_future()
    uvicorn_log = logging.getLogger("uvicorn.error")
    level = uvicorn_log.level
    uvicorn_log.setLevel(logging.CRITICAL)  # a bind error is reported below, in one line
    tasks = [asyncio.create_task(http.serve(bound))]
    try:
        await bound
    except OSError:
        await asyncio.gather(*tasks, return_exceptions=True)
        await app.aclose()
        raise WistroError(
            f"could not listen on {host}:{port}: the address is in use",
            hint="another server runs there? use --port",
        ) from None
    finally:
        uvicorn_log.setLevel(level)
    scheduler = CronScheduler(app)
    await scheduler.start()
    if watch:
        watching = asyncio.Event()
        tasks.append(asyncio.create_task(_watch(app, watch, stop, watching, scheduler)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await watching.wait()
    mode = "lock" if app.locked else "dev"
    write_server_file(app.project, http.url, token, mode)
    n_cron = len(scheduler.jobs)
    click.echo(
        f"ready: {app.project.name} ({len(app.registry)} steps, {mode} mode, "
        f"env {app.project.env}) in {(time.perf_counter() - started) * 1000:.0f} ms"
    )
    click.echo(
        f"http: {http.url}  (docs: {http.url}/docs)  cron: {n_cron} job(s)  bus: {bus_summary(app)}"
    )
    try:
        await stop.wait()
    finally:
        deadline = time.monotonic() + grace_s
        click.echo(f"stopping: finishing in-flight work (up to {grace_s:g} s)…")
        remove_server_file(app.project, token)
        http.server.config.timeout_graceful_shutdown = max(1, min(10, round(grace_s)))
        await scheduler.stop(timeout=grace_s)
        for task in tasks[1:]:
            task.cancel()
        tasks[0].cancel()  # the HTTP server lets requests in flight finish
        await asyncio.gather(*tasks, return_exceptions=True)
        abandoned = await app.aclose(timeout=max(0.0, deadline - time.monotonic()))
        if abandoned and app.engine.bus.durable:
            click.echo(
                f"stopped after {grace_s:g} s with {len(abandoned)} run(s) unfinished: they stay "
                f"on the {bus_summary(app)} bus and go on in the next process that takes them",
                err=True,
            )
            for line in abandoned[:20]:
                click.echo(f"  pending {console.clean(line)}", err=True)
            if len(abandoned) > 20:
                click.echo(f"  … and {len(abandoned) - 20} more", err=True)
        elif abandoned:
            click.echo(
                click.style(
                    f"stopped after {grace_s:g} s with {len(abandoned)} run(s) unfinished:",
                    fg="red",
                ),
                err=True,
            )
            for line in abandoned[:20]:
                click.echo(f"  abandoned {console.clean(line)}", err=True)
            if len(abandoned) > 20:
                click.echo(f"  … and {len(abandoned) - 20} more", err=True)
        else:
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
        click.echo(click.style(console.clean(f"reload failed: {e}"), fg="red"))
        return
    click.echo(
        click.style(f"reloaded ({', '.join(changed)}): {len(app.registry)} steps", fg="cyan")
    )
    for line in load_error_lines(app):
        click.echo(line)


async def _watch(
    app: App, paths: list[Path], stop: asyncio.Event, watching: asyncio.Event, scheduler: Any
) -> None:
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
                await scheduler.refresh()
            if not changes:
                continue
        if changes:
            _reload(app, sorted({Path(p).name for _, p in changes}))
            await scheduler.refresh()


def bus_summary(app: App) -> str:
    """``local``, ``local, no workers``, ``redis``, ``memory``: what the ready line says."""
    bus = app.engine.bus
    return bus.name if bus.consume else f"{bus.name}, no workers"


def watched(app: App) -> list[Path]:
    """What hot reload watches: the step folder and wistro.yml."""
    return [app.project.src] + ([app.project.config_file] if app.project.config_file else [])


def run_dev(
    project: str | None,
    env: str,
    reload: bool = True,
    host: str = "127.0.0.1",
    port: int = 3111,
    grace_s: float = 30.0,
) -> None:
    started = time.perf_counter()
    app = App.load(project, env=env, bus_default="local")
    for line in load_error_lines(app):
        click.echo(line)
    run_loop(_serve(app, started, watched(app) if reload else None, host, port, grace_s))


def run_start(
    project: str | None,
    env: str,
    host: str = "127.0.0.1",
    port: int = 3111,
    grace_s: float = 30.0,
    workers: bool = True,
) -> None:
    started = time.perf_counter()
    app = App.from_lock(project, env=env, bus_default="local", consume=workers)
    run_loop(_serve(app, started, None, host, port, grace_s))
