"""A user project on disk: its root, its config, and where its files live."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wistro.config import CONFIG_NAMES, DEFAULT_ENV, ProjectConfig, read_raw, resolve_config
from wistro.errors import ProjectNotFound
from wistro.files import DATA_DIR_NAME

LOCK_NAME = "wistro.yml.lock"
STEP_MARKER = ".step."
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})


def config_file_in(folder: Path) -> Path | None:
    for name in CONFIG_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _has_steps(src: Path) -> bool:
    return src.is_dir() and any(p.is_file() for p in src.rglob(f"*{STEP_MARKER}*"))


def _marks_project(folder: Path) -> bool:
    """A wistro.yml, wistro.json or wistro.yml.lock: what makes a folder a project."""
    return config_file_in(folder) is not None or (folder / LOCK_NAME).is_file()


def _bare_project_above(here: Path, limit: int = 2000) -> Path | None:
    """The nearest parent of ``here`` with a ``src/`` of step files but no wistro.yml (for the
    hint of ``ProjectNotFound``); looks at no more than ``limit`` folders of each ``src/``."""
    for folder in here.parents:
        src = folder / "src"
        if not src.is_dir():
            continue
        for seen, (_, dirnames, filenames) in enumerate(os.walk(src)):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "node_modules"]
            if any(STEP_MARKER in name for name in filenames):
                return folder
            if seen >= limit:
                break
    return None


def find_root(start: str | Path | None = None) -> Path:
    """The project folder: the first of ``start`` and its parents with a wistro.yml,
    wistro.json or wistro.yml.lock.

    A ``src/`` of step files without any of these makes a project only of ``start`` itself (or
    of its parent when ``start`` is that ``src/``): a folder that merely sits below one is not
    adopted, so its code is not imported nor ``.wistro/`` written there."""
    here = Path(start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    if _marks_project(here) or _has_steps(here / "src"):
        return here
    if here.name == "src" and _has_steps(here):
        return here.parent
    for folder in here.parents:
        if _marks_project(folder):
            return folder
    hint = "create one with `wistro init DIR`, or add a wistro.yml to the project folder"
    bare = _bare_project_above(here)
    if bare is not None:
        quoted = shlex.quote(str(bare))
        hint = (
            f"{bare} has a src/ of step files but no wistro.yml, so a folder below it is not "
            f"taken for its project: add a wistro.yml there (`touch {quoted}/wistro.yml`), or "
            f"load that folder itself (`wistro -C {quoted} ...`, `wistro.load({str(bare)!r})`, "
            f"`%wistro load {quoted}`)"
        )
    raise ProjectNotFound(f"no Wistro project in {here} or its parents", hint=hint)


@dataclass
class Project:
    root: Path
    config: ProjectConfig
    config_file: Path | None
    env: str = DEFAULT_ENV
    env_vars: dict[str, str] = field(default_factory=dict)
    raw_config: dict[str, Any] = field(default_factory=dict)  # as written, for the lock

    @property
    def name(self) -> str:
        return self.config.name or self.root.name

    @property
    def src(self) -> Path:
        return (self.root / self.config.src).resolve()

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR_NAME

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def state_dir(self) -> Path:
        return self.root / (self.config.state.path or ".wistro/state")

    @property
    def traces_path(self) -> Path:
        return self.root / (self.config.traces.path or ".wistro/traces.db")

    @property
    def bus_path(self) -> Path:
        return self.root / (self.config.bus.path or ".wistro/bus.db")

    @property
    def redis_url(self) -> str:
        """The Redis URL of the redis bus, state and traces (``redis.url``, else $REDIS_URL)."""
        url = self.config.redis.url or self.env_vars.get("REDIS_URL") or os.environ.get("REDIS_URL")
        return url or "redis://127.0.0.1:6379/0"

    @property
    def redis_prefix(self) -> str:
        """Every Redis key of this project and environment starts with this (``redis.prefix``,
        else ``wistro:<project name>:<environment>``): projects and environments sharing one
        Redis never see each other's streams, state or traces."""
        return self.config.redis.prefix or f"wistro:{self.name}:{self.env}"

    def step_files(self) -> list[Path]:
        """Every ``*.step.*`` file under the step folder, in a stable order (hidden files,
        ``__pycache__`` and ``node_modules`` left out; symlinked folders are not followed)."""
        src = self.src
        if not src.is_dir() or _SKIPPED_DIRS & set(src.parts):
            return []
        found: list[str] = []
        stack = [str(src)]
        while stack:  # os.scandir: a file's type comes with its entry, no stat per file
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                name = entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if name not in _SKIPPED_DIRS:
                            stack.append(entry.path)
                    elif STEP_MARKER in name and not name.startswith(".") and entry.is_file():
                        found.append(entry.path)
                except OSError:
                    continue
        # the order of Path comparison (part by part), without a Path comparison per pair
        found.sort(key=lambda path: path.split(os.sep))
        return [Path(path) for path in found]


def load_project(path: str | Path | None = None, env: str = DEFAULT_ENV) -> Project:
    root = find_root(path)
    config_file = config_file_in(root)
    raw, lines = read_raw(config_file) if config_file else ({}, {})
    config, env_vars = resolve_config(raw, lines, config_file, root, env)
    return Project(root, config, config_file, env, env_vars, raw)
