"""Stand-ins for steps whose file does not load, so their events are never dropped silently.

When ``src/checkout/send_receipt.step.py`` has a syntax error or fails to import, its step is
not registered and an event on the topic it subscribes to would reach nobody: the run would say
``ok``. Instead, what the file's step subscribes to is recovered — from the lock file (the last
locked config of that file), else from the literal parts of its ``config = {...}`` — and a
stand-in record takes its place: every delivery to it fails with the load error, so the run is
not ``ok``, the delivery is dead-lettered, and it can be replayed once the file is fixed.

A step file that loaded before and breaks during hot reload keeps its last good version
instead (``App.reload``); a stand-in is for files with no good version in this process.
"""

from __future__ import annotations

import ast
import contextlib
import json
from pathlib import Path
from typing import Any

from wistro.core.step import Emit, StepRecord
from wistro.errors import StepLoadError, WistroError
from wistro.project.paths import Project

_LITERAL_KEYS = ("name", "type", "subscribes", "emits", "flows", "description")


def _literal_config(file: Path) -> dict[str, Any] | None:
    """The keys of ``config = {...}`` whose values are literals (None when it does not parse)."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (SyntaxError, OSError, UnicodeDecodeError, ValueError):
        return None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        value = getattr(node, "value", None)
        if not any(isinstance(t, ast.Name) and t.id == "config" for t in targets):
            continue
        if not isinstance(value, ast.Dict):
            return None
        out: dict[str, Any] = {}
        for key, item in zip(value.keys, value.values, strict=True):
            if isinstance(key, ast.Constant) and key.value in _LITERAL_KEYS:
                with contextlib.suppress(ValueError, TypeError, SyntaxError):
                    out[key.value] = ast.literal_eval(item)
        return out
    return None


def _locked_configs(project: Project) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """``rel_file -> [(step name, config), ...]`` from the lock file, when there is one."""
    try:
        lock = json.loads(project.lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    steps = lock.get("steps") if isinstance(lock, dict) else None
    for name, entry in (steps or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
            out.setdefault(str(entry.get("file")), []).append((name, entry["config"]))
    return out


def _emits(value: Any) -> tuple[Emit, ...]:
    out = []
    for item in value if isinstance(value, list | tuple) else ():
        if isinstance(item, str):
            out.append(Emit(item))
        elif isinstance(item, dict) and isinstance(item.get("topic"), str):
            out.append(Emit(item["topic"], item.get("label"), bool(item.get("conditional"))))
    return tuple(out)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list | tuple) else ()


def _stand_in(
    project: Project, rel_file: str, language: str, name: str, cfg: dict[str, Any], err: WistroError
) -> StepRecord:
    record = StepRecord(
        name=name,
        file=project.root / rel_file,
        rel_file=rel_file,
        language=language,
        type=str(cfg.get("type") or "event"),
        hash="",
        description=cfg.get("description") if isinstance(cfg.get("description"), str) else None,
        subscribes=_strings(cfg.get("subscribes")),
        emits=_emits(cfg.get("emits")),
        flows=_strings(cfg.get("flows")),
        input_schema=cfg.get("input_schema") if isinstance(cfg.get("input_schema"), dict) else None,
        retries=0,
    )
    record.load_error = err.format()
    message = err.format()

    async def not_loaded(data: Any, ctx: Any) -> Any:
        raise StepLoadError(f"the step's file does not load: {message}", step=name)

    record.invoke = not_loaded
    return record


def stand_ins(
    project: Project, errors: list[WistroError], taken: set[str], language_of: dict[str, str]
) -> list[StepRecord]:
    """One stand-in per step of each file in ``errors`` whose config can be recovered and whose
    name is not ``taken``. ``language_of`` maps a step-file suffix (``.py``) to its language."""
    out: list[StepRecord] = []
    locked: dict[str, list[tuple[str, dict[str, Any]]]] | None = None
    for err in errors:
        if not isinstance(err, StepLoadError) or not err.file:
            continue
        rel = Path(err.file).as_posix()
        suffix = "." + Path(rel).name.rsplit(".step.", 1)[-1]
        language = language_of.get(suffix)
        if language is None:
            continue
        if locked is None:
            locked = _locked_configs(project)
        found = list(locked.get(rel, ()))
        if not found and suffix == ".py":
            cfg = _literal_config(project.root / rel)
            if cfg and isinstance(cfg.get("name"), str):
                found = [(cfg["name"], cfg)]
        for name, cfg in found:
            if name in taken or cfg.get("type") in ("noop", "api", "cron"):
                continue
            if not _strings(cfg.get("subscribes")):
                continue
            taken.add(name)
            out.append(_stand_in(project, rel, language, name, cfg, err))
    return out
