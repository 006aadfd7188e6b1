"""``wistro init``: copy an example project from the templates shipped in the package."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from wistro.errors import WistroError

TEMPLATES = Path(__file__).parent.parent / "templates"
RENAMES = {"gitignore": ".gitignore"}


def templates() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir())


def install_npm_packages(target: Path) -> None:
    """``npm install`` of the project's ``package.json`` (pinned by its ``package-lock.json``):
    esbuild, which compiles the TypeScript steps, is a dependency of the project, installed
    with it and never fetched at first use. Raises WistroError (one line) when npm is missing
    or fails."""
    from wistro.runtimes.worker import which

    npm = which("npm", "WISTRO_NPM")
    if npm is None:
        raise WistroError(
            f"{target / 'package.json'}: the template's TypeScript steps need its npm packages "
            "(esbuild), and npm is not on PATH",
            hint="install Node.js with npm, then run `npm install` in the project",
        )
    try:
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WistroError(f"{target / 'package.json'}: `npm install` failed: {e}") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
        raise WistroError(
            f"{target / 'package.json'}: `npm install` failed: {tail}",
            hint="fix the npm access, then run `npm install` and `wistro lock` in the project",
        )


def create_project(
    target: Path,
    template: str = "shop",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Copy the template into ``target``, install its npm packages when it has a
    ``package.json`` (``progress`` is told first), and write its lock file. Returns the files
    written (node_modules/ left out)."""
    source = TEMPLATES / template
    if not source.is_dir():
        raise WistroError(f"unknown template {template!r} (known: {', '.join(templates())})")
    if target.exists() and any(target.iterdir()) and not force:
        raise WistroError(f"{target} exists and is not empty", hint="use --force to write into it")
    written: list[Path] = []
    for path in sorted(source.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(source)
        dest = target / rel.with_name(RENAMES.get(rel.name, rel.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        written.append(dest)
    if (target / "package.json").is_file():
        if progress is not None:
            progress("Installing the npm packages of package.json (esbuild) with `npm install`")
        install_npm_packages(target)
    from wistro.app import App
    from wistro.project.lock import build_lock, write_lock

    app = App.load(target, state="memory", traces="memory", strict=True)
    lock_path = app.project.lock_path
    write_lock(lock_path, build_lock(app.project, app.registry))
    written.append(lock_path)
    return written
