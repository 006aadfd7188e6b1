"""The project commands: ``wistro init``, ``check``, ``lock``, ``types``, ``steps``, ``flows``,
``graph``, ``activate`` and ``deactivate``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wistro.cli.group import main, pass_obj
from wistro.cli.support import Obj, emit_json, exit_without_teardown, fail, run_async
from wistro.errors import WistroError
from wistro.tooling import console

# ---------------------------------------------------------------- project


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--template", default="shop", show_default=True, help="Example project to copy.")
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def init(directory: Path, template: str, force: bool) -> None:
    """Create a working example project with steps, tests and a notebook."""
    from wistro.tooling.scaffold import create_project

    created = create_project(directory, template, force=force, progress=click.echo)
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
    from wistro.diagnostics import Diagnostic
    from wistro.tooling.check import check as run_check
    from wistro.tooling.check import check_exit_code
    from wistro.typegen.checks import polyglot_diagnostics

    app = App.load(obj.project, env=obj.env, state="memory", traces="memory")
    diags = sorted(run_check(app) + polyglot_diagnostics(app), key=Diagnostic.sort_key)
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
    exit_without_teardown()
    sys.exit(code)


@main.command()
@click.option("--check", "check_only", is_flag=True, help="Fail when the lock is stale.")
@click.option(
    "--label",
    help="Name this version (e.g. v2) in `wistro versions` and traffic splits; the version id "
    "stays the same. Kept by later `wistro lock` runs; --label '' removes it.",
)
@pass_obj
def lock(obj: Obj, check_only: bool, label: str | None) -> None:
    """Write wistro.yml.lock (or check that it is up to date)."""
    from wistro.app import App
    from wistro.project.lock import build_lock, diff_locks, read_lock, write_lock

    app = App.load(obj.project, env=obj.env, state="memory", traces="memory", strict=True)
    data = build_lock(app.project, app.registry)
    path = app.project.lock_path
    if label is None and path.is_file():  # the label stays with the lock
        try:
            label = read_lock(path).get("label")
        except WistroError:
            label = None
    if label:
        data["label"] = label
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
    named = f" ({data['label']})" if data.get("label") else ""
    click.echo(
        f"{verb} {path.name}: {len(data['steps'])} steps, {len(data['topics'])} topics, "
        f"version {data['version'][:12]}{named}"
    )


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write into (default: the step folder).",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Write nothing; fail when a generated file is missing or stale.",
)
@pass_obj
def types(obj: Obj, out: Path | None, check_only: bool) -> None:
    """Write typed stubs for topics and each step's emits: wistro_types.py, and
    wistro-types.d.ts / wistro_types.go when the project has JS/TS / Go steps."""
    from wistro.app import App
    from wistro.typegen.python import stale_types, write_types

    app = App.load(obj.project, env=obj.env, state="memory", traces="memory")
    if check_only:
        stale = stale_types(app, out)
        for path, why in stale:
            click.echo(f"{_shown(path, app.project.root)}: {why} (run `wistro types`)", err=True)
        if stale:
            sys.exit(1)
        click.echo("✓ generated types are up to date")
        return
    for path in write_types(app, out):
        click.echo(f"wrote {path}")
    for err in app.errors:  # what the types did not fix (a step that loads before them: none)
        click.echo(click.style(f"error: {err.format()}", fg="red"), err=True)


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


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
    project = obj.project_only()
    # The bus `dev`/`start`/workers share (local unless wistro.yml says otherwise): told live.
    shared = project.config.bus.adapter in ("local", "redis") or (
        project.config.bus.adapter is None and project.bus_path.is_file()
    )
    app = obj.app(
        state="memory", traces="memory", bus_default="local" if shared else "memory", consume=False
    )
    record = app.activate(step) if active else app.deactivate(step)
    word = "activated" if active else "deactivated"
    told = ""
    if app.engine.bus.shared:
        run_async(lambda: app.broadcast_active(record.name, active))
        told = "; running processes told"
    click.echo(
        f"{word} {record.name!r} (saved in {app.project.config_file.name}"
        + (" and the lock" if app.project.lock_path.is_file() else "")
        + f"{told})"
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
