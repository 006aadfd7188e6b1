"""The commands that run a project or read its traces: ``wistro emit``, ``traces``, ``trace``,
``logs`` and ``replay``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import click

from wistro.cli.group import main, pass_obj
from wistro.cli.support import Obj, emit_json, parse_payload, run_async
from wistro.tooling import console

# ---------------------------------------------------------------- running


@main.command()
@click.argument("topic")
@click.argument("payload", required=False, default="{}")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until everything the event caused is handled.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@click.option("--lock", "use_lock", is_flag=True, help="Run from the lock file, like `start`.")
@click.option(
    "--local",
    is_flag=True,
    help="Run in this process (on the memory bus) even when a `wistro dev`/`start` of the "
    "project runs or wistro.yml sets a shared bus.",
)
@pass_obj
def emit(
    obj: Obj, topic: str, payload: str, wait: bool, as_json: bool, use_lock: bool, local: bool
) -> None:
    """Emit an event and print the trace of everything it caused.

    When a `wistro dev` or `wistro start` of the same project is running, the event is sent to
    it (and that is said on stderr); otherwise it runs in this process."""
    from wistro.app import App
    from wistro.server.control import emit_remote, running_server

    data = parse_payload(payload)
    server = None if local else running_server(obj.project_only())
    if server is not None:
        answer = emit_remote(server, topic, data, wait)
        click.echo(
            f"sent to the running wistro {server['mode']} (pid {server['pid']}, {server['url']})",
            err=True,
        )
        if not wait:
            click.echo(f"accepted: trace {answer['trace_id']}")
            return
        trace = answer["trace"]
        if as_json:
            emit_json(trace)
        else:
            click.echo(console.trace_tree(trace))
        if answer["status"] == "error":
            sys.exit(1)
        return
    # wistro.yml's shared bus (local, redis): publish there and wait for the run to end,
    # whichever process runs it; --local runs everything here, on the memory bus.
    project = obj.project_only()
    shared = not local and project.config.bus.adapter in ("local", "redis")
    options: dict[str, Any] = {"consume": False} if shared else {"bus": "memory"}
    app = App.from_lock(obj.project, env=obj.env, **options) if use_lock else obj.app(**options)

    async def go() -> Any:
        try:
            run = await app.emit(topic, data, wait=False, trigger="cli")
            if shared:
                click.echo(
                    f"published on the {project.config.bus.adapter} bus: trace {run.trace_id}",
                    err=True,
                )
            if shared and not wait:
                return run  # accepted: durable on the bus
            try:
                await asyncio.wait_for(asyncio.shield(run.wait()), 5)
            except TimeoutError:
                if shared:
                    click.echo(
                        "waiting for the run to end: is a `wistro worker` (or `wistro start`) "
                        "running for this project?",
                        err=True,
                    )
                await run.wait()
            await app.drain()
            return run
        finally:
            await app.aclose(timeout=0 if shared and not wait else None)

    run = run_async(go)
    if shared and not wait:
        click.echo(f"accepted: trace {run.trace_id}")
        return
    trace = app.trace(run.trace_id)
    if as_json:
        emit_json(trace)
    else:
        click.echo(console.trace_tree(trace))
    if run.status == "error":
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=20, show_default=True)
@click.option("--status", type=click.Choice(["ok", "error", "running", "refused", "interrupted"]))
@click.option(
    "--repair",
    is_flag=True,
    help="Move a trace database that is not readable aside (traces.db.corrupt-<time>) and "
    "start a fresh one.",
)
@pass_obj
def traces(obj: Obj, as_json: bool, limit: int, status: str | None, repair: bool) -> None:
    """List recent runs."""
    from wistro.app import make_store

    project = obj.project_only()
    if repair:
        from wistro.tracing.sqlite import repair as repair_store
        from wistro.tracing.sqlite import shown_path

        path = project.traces_path
        aside = repair_store(path, project.config.traces.retention_runs)
        if aside is None:
            click.echo(f"{path.name} is readable: nothing to repair", err=True)
        else:
            shown = shown_path(path)
            click.echo(
                f"moved {shown} aside to {aside.name}; started a fresh {path.name}", err=True
            )
    store = make_store(project, None)
    rows = store.list_runs(limit=limit, status=status)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        row["ms"] = f"{(row['end'] - row['start']) * 1000:.1f}" if row["end"] else "…"
        row["status"] = console.status(row["status"])
    click.echo(
        console.table(
            rows, ["trace_id", "status", "topic", "trigger", "start", "ms", "n_events", "n_errors"]
        )
    )


@main.command()
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--ids", "show_ids", is_flag=True, help="Show each event's and span's id.")
@pass_obj
def trace(obj: Obj, trace_id: str, as_json: bool, show_ids: bool) -> None:
    """Show one run: spans, events, logs and state operations as a tree."""
    from wistro.app import make_store

    data = make_store(obj.project_only(), None).get_run(trace_id)
    if as_json:
        emit_json(data)
    else:
        click.echo(console.trace_tree(data, show_ids=show_ids))


@main.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new logs.")
@click.option("--trace", "trace_id", help="Only this trace.")
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def logs(obj: Obj, follow: bool, trace_id: str | None, limit: int, as_json: bool) -> None:
    """Print the structured logs of recent runs."""
    from wistro.app import make_store

    store = make_store(obj.project_only(), None)
    rows = store.logs(after=0, limit=1_000_000, trace_id=trace_id)[-limit:]
    cursor = rows[-1]["seq"] if rows else 0
    while True:
        for row in rows:
            click.echo(json.dumps(row) if as_json else console.log_line(row))
        if not follow:
            return
        time.sleep(0.3)
        rows = store.logs(after=cursor, trace_id=trace_id)
        if rows:
            cursor = rows[-1]["seq"]


@main.command()
@click.argument("dead_letter_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def replay(obj: Obj, dead_letter_id: str | None, replay_all: bool, as_json: bool) -> None:
    """List dead letters, or deliver one (or all) again."""
    app = obj.app()
    store = app.engine.store
    if dead_letter_id is None and not replay_all:
        rows = store.dead_letters()
        if as_json:
            emit_json(rows)
        elif not rows:
            click.echo("no dead letters")
        else:
            click.echo(console.table(rows, ["id", "step", "topic", "attempts", "error", "ts"]))
        return
    targets = store.dead_letters() if replay_all else [store.get_dead_letter(dead_letter_id)]

    async def go() -> list[Any]:
        out = []
        try:
            for dead in targets:
                run = await app.engine.replay(dead)
                if run.status == "ok":
                    store.mark_replayed(dead["id"])
                out.append((dead, run))
            await app.drain()
        finally:
            await app.aclose()
        return out

    failed = 0
    for dead, run in run_async(go):
        ok = run.status == "ok"
        failed += not ok
        click.echo(
            f"{'✓' if ok else '✗'} {dead['id']} {dead['step']} <- {dead['topic']}: "
            f"trace {run.trace_id} {run.status}"
        )
    if failed:
        sys.exit(1)
