"""Activate / deactivate a step: applied live, persisted in wistro.yml ``inactive:`` and the lock."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from wistro.project.lock import read_lock, version_of, write_lock

if TYPE_CHECKING:
    from wistro.core.registry import Registry
    from wistro.core.step import StepRecord
    from wistro.project.paths import Project

_TOP_KEY = re.compile(r"^(\S[^:#]*):")


def _write_inactive_yaml(file: Path, inactive: list[str]) -> None:
    """Rewrite only the top-level ``inactive:`` entry, keeping comments and the rest as written."""
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    new_line = f"inactive: {json.dumps(inactive)}\n"
    start = next((i for i, line in enumerate(lines) if line.startswith("inactive:")), None)
    if start is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(new_line)
    else:
        end = start + 1
        while (
            end < len(lines)
            and not _TOP_KEY.match(lines[end])
            and (lines[end].startswith((" ", "\t", "-")) or not lines[end].strip())
        ):
            end += 1
        lines[start:end] = [new_line]
    file.write_text("".join(lines), encoding="utf-8")


def set_active(project: Project, registry: Registry, name: str, active: bool) -> StepRecord:
    """Activate or deactivate ``name`` in ``registry`` now, and persist it for ``project``."""
    record = registry.set_active(name, active)
    inactive = registry.inactive
    project.config.inactive = inactive
    if project.config_file is not None and project.config_file.suffix != ".json":
        _write_inactive_yaml(project.config_file, inactive)
        project.raw_config["inactive"] = inactive
    elif project.config_file is not None:
        data = json.loads(project.config_file.read_text(encoding="utf-8"))
        data["inactive"] = inactive
        project.config_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        project.raw_config["inactive"] = inactive
    else:
        project.config_file = project.root / "wistro.yml"
        project.config_file.write_text(f"inactive: {json.dumps(inactive)}\n", encoding="utf-8")
        project.raw_config = {"inactive": inactive}
    if project.lock_path.is_file():
        lock = read_lock(project.lock_path)
        if name in lock["steps"]:
            lock["steps"][name]["active"] = active
        lock["inactive"] = inactive
        lock["config"] = project.raw_config
        lock["version"] = version_of(lock)
        write_lock(project.lock_path, lock)
    return record
