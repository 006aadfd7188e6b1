"""``wistro worker``: a process that takes deliveries from the project's shared bus (local or
redis) and runs them, from the lock file, until SIGTERM/Ctrl-C; then it finishes what it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import click

from wistro.app import App
from wistro.errors import ConfigError


async def _work(app: App, started: float, grace_s: float) -> None:
    engine = app.engine
    if not engine.bus.shared:
        raise ConfigError(
            "a worker needs a shared bus: bus.adapter is 'memory'",
            field="bus.adapter",
            hint="set `bus: {adapter: local}` or `redis` in wistro.yml",
        )
    engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            click.echo("stopping now: deliveries running here are taken again later", err=True)
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    version = engine.version or "-"
    if engine.version_label:
        version += f" {engine.version_label}"
    click.echo(
        f"worker ready: {app.project.name} ({len(app.registry)} steps, env {app.project.env}, "
        f"bus {engine.bus.name}, version {version}, pid {os.getpid()}) in "
        f"{(time.perf_counter() - started) * 1000:.0f} ms"
    )
    await stop.wait()
    click.echo(f"stopping: finishing deliveries running here (up to {grace_s:g} s)…")
    left = await app.aclose(timeout=grace_s)
    click.echo(f"stopped ({len(left)} run(s) left to other workers)" if left else "stopped")


def run_worker(
    project: str | None,
    env: str,
    steps: list[str] | None = None,
    concurrency: int | None = None,
    grace_s: float = 30.0,
    use_lock: bool = True,
) -> None:
    started = time.perf_counter()
    load = App.from_lock if use_lock else App.load
    app = load(project, env=env, bus_default="local", steps=steps)
    if steps:
        for name in steps:
            app.registry.get(name)  # an unknown name fails here, with a suggestion
    if concurrency is not None:
        config = app.engine.config
        app.engine.config = config.model_copy(update={"default_concurrency": concurrency})
        for record in app.registry:
            if record.concurrency is None or record.concurrency > concurrency:
                record.concurrency = concurrency
    asyncio.run(_work(app, started, grace_s))
