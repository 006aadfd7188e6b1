"""``wistro build``: compile every TypeScript bundle and the Go worker binary of the locked steps
ahead of time (``wistro.runtimes.build``), one line per artefact and a summary. ``run_build`` is
also what ``wistro start --build`` runs first."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from wistro.cli.group import main, pass_obj
from wistro.cli.support import Obj
from wistro.tooling import console

if TYPE_CHECKING:
    from wistro.runtimes.build import Built


def _line(built: Built) -> str:
    what = console.clean(built.what)
    state = "cached" if built.cached else "built"
    where = built.path.parent.name if built.kind == "go" else built.path.name
    return f"{state:>6}  {built.kind:<10} {what}  ->  {where}  ({built.seconds * 1000:.0f} ms)"


def run_build(project: str | None, env: str, echo: Callable[[str], None]) -> None:
    """Build from the lock (refusing a stale one, as ``wistro start`` does)."""
    from wistro.config import resolve_config
    from wistro.project.lock import read_lock, records_from_lock, verify_hashes
    from wistro.project.paths import LOCK_NAME, Project, config_file_in, find_root
    from wistro.runtimes.build import build_steps

    started = time.perf_counter()
    root = find_root(project)
    lock = read_lock(root / LOCK_NAME)
    raw = lock.get("config") or {}
    config, env_vars = resolve_config(raw, {}, root / LOCK_NAME, root, env)
    proj = Project(root, config, config_file_in(root), env, env_vars, raw)
    verify_hashes(proj, lock)
    records = records_from_lock(proj, lock)
    built = build_steps(Path(root), records, lambda b: echo(_line(b)))
    ts = sum(1 for b in built if b.kind == "typescript")
    go = sum(1 for b in built if b.kind == "go")
    fresh = sum(1 for b in built if not b.cached)
    total = time.perf_counter() - started
    if not built:
        echo(f"nothing to build (no TypeScript or Go steps) ({total * 1000:.0f} ms)")
        return
    echo(
        f"built {ts} TypeScript bundle{'s' if ts != 1 else ''} and {go} Go worker"
        f"{'s' if go != 1 else ''} ({fresh} new, {len(built) - fresh} cached) into "
        f".wistro/build/ in {total:.2f}s"
    )


@main.command()
@pass_obj
def build(obj: Obj) -> None:
    """Compile the TypeScript and Go steps of the lock ahead of time, into .wistro/build/."""
    run_build(obj.project, obj.env, click.echo)
