"""``wistro init``: copy an example project from the templates shipped in the package."""

from __future__ import annotations

import shutil
from pathlib import Path

from wistro.errors import WistroError

TEMPLATES = Path(__file__).parent.parent / "templates"
RENAMES = {"gitignore": ".gitignore"}


def templates() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir())


def create_project(target: Path, template: str = "shop", force: bool = False) -> list[Path]:
    """Copy the template into ``target`` and write its lock file. Returns the files written."""
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
    from wistro.app import App
    from wistro.project.lock import build_lock, write_lock

    app = App.load(target, state="memory", traces="memory", strict=True)
    lock_path = app.project.lock_path
    write_lock(lock_path, build_lock(app.project, app.registry))
    written.append(lock_path)
    return written
