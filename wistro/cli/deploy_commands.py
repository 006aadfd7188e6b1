"""``wistro deploy``: a Dockerfile, .dockerignore and compose.yaml or k8s/ manifests for the
project (``wistro.deploy``), from a lock that is up to date."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from wistro.cli.group import main, pass_obj
from wistro.cli.support import Obj
from wistro.config import DEFAULT_ENV
from wistro.errors import StaleLockError


def _check_lock(obj: Obj) -> None:
    """Refuse a stale lock, as the image build's `wistro lock --check` would (same environment:
    the default one), before anything is written."""
    from wistro.app import App
    from wistro.project.lock import build_lock, diff_locks, read_lock

    app = App.load(obj.project, env=DEFAULT_ENV, state="memory", traces="memory", strict=True)
    path = app.project.lock_path
    changes = diff_locks(read_lock(path), build_lock(app.project, app.registry))
    if changes:
        more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
        raise StaleLockError(
            f"the lock is stale: {changes[0]}{more}",
            file=path.name,
            hint="run `wistro lock` and commit it; the image build runs `wistro lock --check`",
        )


@main.command()
@click.option(
    "--target",
    required=True,
    metavar="compose|kubernetes",
    help="compose: compose.yaml; kubernetes: k8s/*.yaml. Both: Dockerfile and .dockerignore.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for compose.yaml / k8s/ (default: the project folder, where the Dockerfile "
    "and .dockerignore always go: the build context).",
)
@click.option(
    "--env",
    "deploy_env",
    metavar="NAME",
    help="Environment the containers run in (default: the global --env / WISTRO_ENV when "
    "given, else prod).",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="Worker replicas of this version.",
)
@click.option(
    "--image",
    metavar="NAME",
    help="Image name (default: the project's), tagged with the version unless it has a tag.",
)
@click.option("--force", is_flag=True, help="Overwrite files that `wistro deploy` did not write.")
@pass_obj
def deploy(
    obj: Obj,
    target: str,
    out: Path | None,
    deploy_env: str | None,
    workers: int,
    image: str | None,
    force: bool,
) -> None:
    """Write the files to build and run the project: Dockerfile, .dockerignore and compose.yaml
    or k8s/ (Redis, start, this version's workers). Refuses a stale lock."""
    import wistro
    from wistro.deploy import check_target
    from wistro.deploy import deploy as write_deploy
    from wistro.project.paths import find_root

    check_target(target)  # before the project loads
    if deploy_env is None:
        group = click.get_current_context().find_root()
        given = group.get_parameter_source("env") not in (ParameterSource.DEFAULT, None)
        deploy_env = obj.env if given else "prod"
    _check_lock(obj)
    result = write_deploy(
        find_root(obj.project),
        target,
        out=out,
        env=deploy_env,
        workers=workers,
        image=image,
        force=force,
        wistro_version=wistro.__version__,
        build_command="build" in main.commands,
    )
    for warning in result.warnings:
        click.echo(click.style("warning: ", fg="yellow", bold=True) + warning, err=True)
    cwd = Path.cwd()
    for verb, paths in (("wrote", result.written), ("unchanged:", result.unchanged)):
        for path in paths:
            shown = path.relative_to(cwd) if path.is_relative_to(cwd) else path
            click.echo(f"{verb} {shown}")
    plan = result.plan
    click.echo(
        f"✓ {target} files for {plan.name}, version {plan.tag}: environment {plan.env}, "
        f"{plan.workers} worker(s), image {plan.image}"
    )
    if target == "compose":
        click.echo("Next: docker compose up --build -d")
    else:
        click.echo(f"Next: docker build -t {plan.image} . && kubectl apply -f k8s/")
