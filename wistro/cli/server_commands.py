"""The commands of the long-running side: ``wistro cron list``, ``dev``, ``start`` and
``openapi``, with the ``--host``, ``--port`` and ``--grace-s`` options ``dev`` and ``start``
share."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from wistro.cli.group import main, pass_obj
from wistro.cli.support import Obj, emit_json, fail
from wistro.tooling import console

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
@click.option(
    "--versions",
    "revisions",
    metavar="REV,REV[,...]",
    default=None,
    help="Run each git revision (`.`: the working tree) in a worker process of its own, from a "
    "temporary worktree, with the traffic split between them (docs/versions.md).",
)
@click.option(
    "--split",
    metavar="W,W[,...]",
    default=None,
    help="With --versions: the weight of each revision, in its order (default: equal).",
)
@host_option
@port_option
@grace_option
@pass_obj
def dev(
    obj: Obj,
    no_reload: bool,
    revisions: str | None,
    split: str | None,
    host: str,
    port: int,
    grace_s: float,
) -> None:
    """Run the engine, HTTP endpoints and cron jobs, with hot reload and a live log."""
    from wistro.server.serve import run_dev

    if revisions is None:
        if split is not None:
            fail("--split needs --versions, e.g. --versions HEAD~1,HEAD --split 25,75")
        run_dev(obj.project, obj.env, reload=not no_reload, host=host, port=port, grace_s=grace_s)
        return
    from wistro.eval.version import checkout
    from wistro.server.versions_dev import parse_revisions, parse_split, run_dev_versions

    names = parse_revisions(revisions)
    weights = parse_split(split, len(names))
    run_dev_versions(
        obj.project,
        obj.env,
        names,
        weights,
        checkout,
        reload=not no_reload,
        host=host,
        port=port,
        grace_s=grace_s,
    )


@main.command()
@host_option
@port_option
@grace_option
@click.option(
    "--no-workers",
    is_flag=True,
    help="Serve HTTP and cron only: deliveries are left to `wistro worker` processes.",
)
@click.option(
    "--build",
    "build_first",
    is_flag=True,
    help="First compile the TypeScript and Go steps ahead (as `wistro build`), logging each.",
)
@pass_obj
def start(
    obj: Obj, host: str, port: int, grace_s: float, no_workers: bool, build_first: bool
) -> None:
    """Production: run from wistro.yml.lock alone (no scanning, lazy step imports)."""
    from wistro.server.serve import run_start

    if build_first:
        from wistro.cli.build_commands import run_build

        run_build(obj.project, obj.env, lambda line: click.echo(f"build: {line}", err=True))

    run_start(obj.project, obj.env, host=host, port=port, grace_s=grace_s, workers=not no_workers)


@main.command()
@click.option(
    "--steps",
    "step_names",
    default=None,
    help="Comma-separated step names to take deliveries for (default: every step).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    default=None,
    help="Deliveries of one step running at once in this worker (caps each step's own).",
)
@click.option("--no-lock", is_flag=True, help="Scan the step files instead of the lock (dev).")
@click.option(
    "--data-from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Use the bus, state and traces of the project in this folder (as its wistro.yml sets "
    "them) instead of this project's own: how `wistro dev --versions` runs a revision's worker.",
)
@grace_option
@pass_obj
def worker(
    obj: Obj,
    step_names: str | None,
    concurrency: int | None,
    no_lock: bool,
    data_from: Path | None,
    grace_s: float,
) -> None:
    """Take deliveries from the shared bus (local or redis) and run them until SIGTERM."""
    from wistro.server.worker import run_worker

    steps = [s.strip() for s in step_names.split(",") if s.strip()] if step_names else None
    run_worker(
        obj.project,
        obj.env,
        steps=steps,
        concurrency=concurrency,
        grace_s=grace_s,
        use_lock=not no_lock,
        data_from=data_from,
    )


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
