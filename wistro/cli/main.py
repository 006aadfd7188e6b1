"""The ``wistro`` command line. Thin: every command calls the library and prints."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from wistro.cli.support import Obj, emit_json, fail, parse_payload, run_async
from wistro.config import DEFAULT_ENV
from wistro.errors import WistroError
from wistro.tooling import console

# Obj, emit_json, fail, parse_payload, run_async live in wistro.cli.support (shared with
# wistro.cli.eval) and stay importable from here.
__all__ = [
    "Obj",
    "WistroGroup",
    "emit_json",
    "fail",
    "main",
    "parse_payload",
    "run_async",
]


class WistroGroup(click.Group):
    """Turns a WistroError anywhere into one clear line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WistroError as e:
            fail(e.format())
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            sys.exit(130)


@click.group(cls=WistroGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-C",
    "--project",
    "project",
    metavar="PATH",
    help="Project folder (default: the current folder or its parents).",
)
@click.option(
    "--env",
    default=DEFAULT_ENV,
    show_default=True,
    envvar="WISTRO_ENV",
    help="Environment overlay from wistro.yml `environments:`.",
)
@click.version_option(package_name="wistro")
@click.pass_context
def main(ctx: click.Context, project: str | None, env: str) -> None:
    """Wistro: event-driven workflows of typed steps, in Jupyter and on the command line."""
    ctx.obj = Obj(project, env)


pass_obj = click.pass_obj


def _register_groups() -> None:
    from wistro.cli.eval import dataset as dataset_group
    from wistro.cli.eval import eval_group

    main.add_command(dataset_group)
    main.add_command(eval_group)


# ---------------------------------------------------------------- project


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--template", default="shop", show_default=True, help="Example project to copy.")
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def init(directory: Path, template: str, force: bool) -> None:
    """Create a working example project with steps, tests and a notebook."""
    from wistro.tooling.scaffold import create_project

    created = create_project(directory, template, force=force)
    click.echo(f"Created {directory} ({len(created)} files) from the {template!r} template.")
    click.echo("Next:")
    click.echo(f"  cd {directory}")
    click.echo("  wistro check")
    click.echo('  wistro emit order.placed \'{"order_id": "A1", "amount_cents": 1200}\'')
    click.echo("  pytest")


@main.command()
@click.option("--strict", is_flag=True, help="Warnings are errors.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_obj
def check(obj: Obj, strict: bool, as_json: bool) -> None:
    """Validate the project's steps, topics and flows without running anything."""
    from wistro.app import App
    from wistro.tooling.check import check as run_check
    from wistro.tooling.check import check_exit_code

    app = App.load(obj.project, env=obj.env, state="memory", traces="memory")
    diags = run_check(app)
    code = check_exit_code(diags, strict)
    if as_json:
        emit_json({"ok": code == 0, "diagnostics": [d.to_dict() for d in diags]})
    else:
        for d in diags:
            color = "red" if d.severity == "error" or strict else "yellow"
            click.echo(click.style(d.format(), fg=color), err=True)
        n_err = sum(d.severity == "error" for d in diags)
        n_warn = len(diags) - n_err
        summary = (
            f"{len(app.registry)} steps, {len(app.registry.topics.topics)} topics, "
            f"{len(app.registry.flows())} flows: {n_err} error(s), {n_warn} warning(s)"
        )
        click.echo(("✓ " if code == 0 else "✗ ") + summary, err=code != 0)
    sys.exit(code)


@main.command()
@click.option("--check", "check_only", is_flag=True, help="Fail when the lock is stale.")
@pass_obj
def lock(obj: Obj, check_only: bool) -> None:
    """Write wistro.yml.lock (or check that it is up to date)."""
    from wistro.app import App
    from wistro.project.lock import build_lock, diff_locks, read_lock, write_lock

    app = App.load(obj.project, env=obj.env, state="memory", traces="memory", strict=True)
    data = build_lock(app.project, app.registry)
    path = app.project.lock_path
    if check_only:
        if not path.is_file():
            fail(f"{path.name}: no lock file (run `wistro lock`)")
        old = read_lock(path)
        changes = diff_locks(old, data)
        if changes:
            for change in changes:
                click.echo(f"  {change}", err=True)
            fail(f"{path.name} is stale: {len(changes)} change(s); run `wistro lock`")
        click.echo(f"✓ {path.name} is up to date (version {data['version'][:12]})")
        return
    changed = write_lock(path, data)
    verb = "wrote" if changed else "unchanged:"
    click.echo(
        f"{verb} {path.name}: {len(data['steps'])} steps, {len(data['topics'])} topics, "
        f"version {data['version'][:12]}"
    )


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write into (default: the step folder).",
)
@pass_obj
def types(obj: Obj, out: Path | None) -> None:
    """Write typed stubs for topics and each step's emits: wistro_types.py, and
    wistro-types.d.ts / wistro_types.go when the project has JS/TS / Go steps."""
    from wistro.typegen.python import write_types

    app = obj.app(state="memory", traces="memory")
    for path in write_types(app, out):
        click.echo(f"wrote {path}")


# ---------------------------------------------------------------- registry


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def steps(obj: Obj, as_json: bool) -> None:
    """List the steps."""
    app = obj.app(state="memory", traces="memory")
    rows = app.step_rows()
    if as_json:
        emit_json(rows)
    else:
        click.echo(
            console.table(
                rows, ["name", "type", "language", "subscribes", "emits", "flows", "active", "file"]
            )
        )


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def flows(obj: Obj, as_json: bool) -> None:
    """List the flows and their steps."""
    app = obj.app(state="memory", traces="memory")
    rows = app.flow_rows()
    if as_json:
        emit_json(rows)
    else:
        click.echo(console.table(rows, ["flow", "name", "steps", "description"]))


@main.command()
@click.argument("flow", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "mermaid", "svg"]),
    default="dot",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@pass_obj
def graph(obj: Obj, flow: str | None, fmt: str, output: Path | None) -> None:
    """Draw the flow graph (all flows, or one)."""
    from wistro.tooling import graph as g

    app = obj.app(state="memory", traces="memory")
    render = {"dot": g.to_dot, "mermaid": g.to_mermaid, "svg": g.to_svg}[fmt]
    text = render(app, flow)
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


def _set_active(obj: Obj, step: str, active: bool) -> None:
    app = obj.app(state="memory", traces="memory")
    record = app.activate(step) if active else app.deactivate(step)
    word = "activated" if active else "deactivated"
    click.echo(
        f"{word} {record.name!r} (saved in {app.project.config_file.name}"
        + (" and the lock)" if app.project.lock_path.is_file() else ")")
    )


@main.command()
@click.argument("step")
@pass_obj
def activate(obj: Obj, step: str) -> None:
    """Let a step receive events again."""
    _set_active(obj, step, True)


@main.command()
@click.argument("step")
@pass_obj
def deactivate(obj: Obj, step: str) -> None:
    """Keep a step registered but deliver it nothing."""
    _set_active(obj, step, False)


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
    help="Run in this process even when a `wistro dev`/`start` of the project runs.",
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
    app = App.from_lock(obj.project, env=obj.env) if use_lock else obj.app()

    async def go() -> Any:
        try:
            run = await app.emit(topic, data, wait=wait, trigger="cli")
            await app.drain()
            return run
        finally:
            await app.aclose()

    run = run_async(go)
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
@click.option("--status", type=click.Choice(["ok", "error", "running"]))
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


# ---------------------------------------------------------------- cron


@main.group()
def cron() -> None:
    """Cron jobs: cron steps and wistro.yml `cron:` entries."""


@cron.command("list")
@click.option(
    "-n",
    "count",
    default=3,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Next fire times to show per job.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def cron_list(obj: Obj, count: int, as_json: bool) -> None:
    """List each cron job with its schedule, target and next fire times."""
    from wistro.triggers.cron import cron_table

    app = obj.app(state="memory", traces="memory")
    rows = cron_table(app, count)
    invalid = [row for row in rows if row["error"]]
    if as_json:
        emit_json(rows)
    elif not rows:
        click.echo("no cron jobs")
    else:
        shown = [
            {**row, "next": console.styled("invalid", fg="red") if row["error"] else row["next"]}
            for row in rows
        ]
        click.echo(console.table(shown, ["name", "schedule", "timezone", "target", "next"]))
    for row in invalid:
        where = f"{row['source']}: " if row["source"] else ""
        click.echo(
            click.style("error: ", fg="red", bold=True)
            + f"{where}cron job {row['name']!r}: {row['error']}",
            err=True,
        )
    if invalid:
        sys.exit(1)


host_option = click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the HTTP endpoints (0.0.0.0 to expose them).",
)
port_option = click.option(
    "--port",
    default=3111,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the HTTP endpoints (0: any free port).",
)


grace_option = click.option(
    "--grace-s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help="On SIGTERM/Ctrl-C, how long in-flight work may take to finish before it is abandoned.",
)


@main.command()
@click.option("--no-reload", is_flag=True, help="Do not watch step files.")
@host_option
@port_option
@grace_option
@pass_obj
def dev(obj: Obj, no_reload: bool, host: str, port: int, grace_s: float) -> None:
    """Run the engine, HTTP endpoints and cron jobs, with hot reload and a live log."""
    from wistro.server.serve import run_dev

    run_dev(obj.project, obj.env, reload=not no_reload, host=host, port=port, grace_s=grace_s)


@main.command()
@host_option
@port_option
@grace_option
@pass_obj
def start(obj: Obj, host: str, port: int, grace_s: float) -> None:
    """Production: run from wistro.yml.lock alone (no scanning, lazy step imports)."""
    from wistro.server.serve import run_start

    run_start(obj.project, obj.env, host=host, port=port, grace_s=grace_s)


@main.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to a file instead of stdout.",
)
@pass_obj
def openapi(obj: Obj, output: Path | None) -> None:
    """Print (or write) the OpenAPI 3.1 document of the project's HTTP endpoints."""
    from wistro.triggers.openapi import openapi_document

    app = obj.app(state="memory", traces="memory")
    text = json.dumps(openapi_document(app), indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


_register_groups()

if __name__ == "__main__":  # pragma: no cover
    main()
