"""The ``wistro`` click group, ``main``: its options (``-C/--project``, ``--env``, ``--version``)
and ``WistroGroup``, which turns a WistroError into one line on stderr. The command modules
register on it (``@main.command()``); ``wistro.cli.main`` imports them all."""

from __future__ import annotations

import sys
from typing import Any

import click

from wistro.cli.support import Obj, fail
from wistro.config import DEFAULT_ENV
from wistro.errors import WistroError


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
