"""``wistro worker``: a process that takes deliveries from the project's shared bus (local or
redis) and runs them, from the lock file, until SIGTERM/Ctrl-C; then it finishes what it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import click

from wistro.app import App, make_bus, make_state, make_store
from wistro.errors import ConfigError
from wistro.project.paths import load_project


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
    data_from: str | Path | None = None,
) -> None:
    started = time.perf_counter()
    load = App.from_lock if use_lock else App.load
    hosted = _Hosted(steps)
    shared = _data_of(data_from, env, hosted) if data_from is not None else {}
    app = load(project, env=env, bus_default="local", steps=steps, **shared)
    hosted.app = app
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


class _Hosted:
    """The steps a worker on another project's bus takes: ``--steps``, else every step of its
    own registry that subscribes to a topic (known once the app is loaded; asked at start)."""

    def __init__(self, steps: list[str] | None) -> None:
        self.steps = steps
        self.app: App | None = None

    def __call__(self) -> list[str] | None:
        if self.steps is not None or self.app is None:
            return self.steps
        return [r.name for r in self.app.engine.registry if r.subscribes]


def _data_of(folder: str | Path, env: str, hosted: _Hosted) -> dict[str, Any]:
    """``--data-from``: the bus, state and trace store of the project in ``folder``, as its
    wistro.yml sets them (``wistro dev --versions`` runs each revision's worker on the bus,
    state and traces of the checkout it was started in)."""
    project = load_project(folder, env)
    bus = make_bus(project, None, hosted, default="local")
    return {"bus": bus, "state": make_state(project, None), "traces": make_store(project, None)}
