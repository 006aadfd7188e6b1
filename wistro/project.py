"""A user project on disk: its root, its config, and where its files live."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wistro.config import CONFIG_NAMES, DEFAULT_ENV, ProjectConfig, read_raw, resolve_config
from wistro.errors import ProjectNotFound

LOCK_NAME = "wistro.yml.lock"
STEP_MARKER = ".step."


def config_file_in(folder: Path) -> Path | None:
    for name in CONFIG_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _has_steps(src: Path) -> bool:
    return src.is_dir() and any(p.is_file() for p in src.rglob(f"*{STEP_MARKER}*"))


def find_root(start: str | Path | None = None) -> Path:
    """The project folder: the first of ``start`` and its parents with a wistro.yml,
    wistro.json, or a ``src/`` holding step files."""
    here = Path(start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if config_file_in(folder) or (folder / LOCK_NAME).is_file() or _has_steps(folder / "src"):
            return folder
    raise ProjectNotFound(
        f"no Wistro project in {here} or its parents",
        hint="create one with `wistro init DIR`, or add a wistro.yml",
    )


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
        return self.root / ".wistro"

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def state_dir(self) -> Path:
        return self.root / (self.config.state.path or ".wistro/state")

    @property
    def traces_path(self) -> Path:
        return self.root / (self.config.traces.path or ".wistro/traces.db")

    def step_files(self) -> list[Path]:
        """Every ``*.step.*`` file under the step folder, in a stable order."""
        src = self.src
        if not src.is_dir():
            return []
        return sorted(
            p
            for p in src.rglob(f"*{STEP_MARKER}*")
            if p.is_file()
            and "__pycache__" not in p.parts
            and "node_modules" not in p.parts
            and not p.name.startswith(".")
        )


def load_project(path: str | Path | None = None, env: str = DEFAULT_ENV) -> Project:
    root = find_root(path)
    config_file = config_file_in(root)
    raw, lines = read_raw(config_file) if config_file else ({}, {})
    config, env_vars = resolve_config(raw, lines, config_file, root, env)
    return Project(root, config, config_file, env, env_vars, raw)
