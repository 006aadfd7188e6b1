"""wistro.yml.lock: everything needed to start the project, deterministic, and its version hash.

The file is JSON (which is also YAML): sorted keys, two-space indent, no timestamps, so the same
sources always give the same bytes and a diff in review shows what changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wistro.core.registry import Registry
from wistro.core.step import StepRecord
from wistro.errors import LockError, StaleLockError
from wistro.files import write_atomic
from wistro.project.discovery import file_hash
from wistro.project.paths import Project

LOCK_FORMAT = 1


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def build_lock(project: Project, registry: Registry) -> dict[str, Any]:
    steps = {
        r.name: {
            "file": r.rel_file,
            "language": r.language,
            "hash": r.hash,
            "active": r.active,
            "config": r.config_dict(),
        }
        for r in registry
    }
    topics = {
        t.name: {
            "schema": t.schema,
            "subscribers": sorted(t.subscribers),
            "producers": sorted(t.producers),
            "virtual_subscribers": sorted(t.virtual_subscribers),
            "virtual_producers": sorted(t.virtual_producers),
        }
        for t in registry.topics
    }
    flows: dict[str, Any] = {}
    for flow, names in registry.flows().items():
        meta = project.config.flows.get(flow)
        flows[flow] = {
            "name": meta.name if meta and meta.name else flow,
            "description": meta.description if meta else None,
            "steps": names,
        }
    for flow, meta in project.config.flows.items():
        flows.setdefault(
            flow, {"name": meta.name or flow, "description": meta.description, "steps": []}
        )
    endpoints = sorted(
        [{"step": r.name, **r.trigger} for r in registry if r.type == "api"]
        + [{"step": None, **ep.model_dump()} for ep in project.config.api],
        key=lambda e: (e["path"], e["method"]),
    )
    cron = {r.name: {"step": r.name, **r.trigger} for r in registry if r.type == "cron"}
    cron.update(
        {
            name: {"step": None, **job.model_dump(exclude_defaults=True)}
            for name, job in project.config.cron.items()
        }
    )
    data: dict[str, Any] = {
        "lock_format": LOCK_FORMAT,
        "project": {"name": project.name, "src": project.config.src},
        "config": project.raw_config,
        "steps": steps,
        "topics": topics,
        "flows": flows,
        "endpoints": endpoints,
        "cron": cron,
        "state": project.config.state.model_dump(),
        "inactive": registry.inactive,
    }
    data["version"] = version_of(data)
    return data


def version_of(lock: dict[str, Any]) -> str:
    """The project's version identity: a hash of everything in the lock but the hash itself
    and its label (``wistro lock --label v2`` names a version without changing it)."""
    body = {k: v for k, v in lock.items() if k not in ("version", "label")}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def render(lock: dict[str, Any]) -> str:
    return _canonical(lock)


def write_lock(path: Path, lock: dict[str, Any]) -> bool:
    """Write the lock; returns False when the file already had these exact bytes."""
    text = render(lock)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomic(path, text)
    path.chmod(0o644)  # a committed file: readable like any other
    return True


def read_lock(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LockError("no lock file", file=path.name, hint="run `wistro lock` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LockError(
            f"the lock file is not valid: {e.msg}",
            file=path.name,
            line=e.lineno,
            hint="run `wistro lock` to write it again",
        ) from None
    if not isinstance(data, dict) or data.get("lock_format") != LOCK_FORMAT:
        raise LockError(
            f"unknown lock format (expected lock_format {LOCK_FORMAT})",
            file=path.name,
            hint="run `wistro lock` to write it again",
        )
    return data


def diff_locks(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed, one line each, in words a reviewer understands."""
    changes: list[str] = []
    old_steps, new_steps = old.get("steps", {}), new.get("steps", {})
    for name in sorted(set(old_steps) | set(new_steps)):
        a, b = old_steps.get(name), new_steps.get(name)
        if a is None:
            changes.append(f"step {name!r} added ({b['file']})")
        elif b is None:
            changes.append(f"step {name!r} removed ({a['file']})")
        else:
            if a["hash"] != b["hash"]:
                changes.append(f"step {name!r}: {b['file']} changed")
            elif a["config"] != b["config"]:
                changes.append(f"step {name!r}: config changed")
            if a["active"] != b["active"]:
                changes.append(f"step {name!r}: {'activated' if b['active'] else 'deactivated'}")
    old_topics, new_topics = old.get("topics", {}), new.get("topics", {})
    for name in sorted(set(old_topics) | set(new_topics)):
        a, b = old_topics.get(name), new_topics.get(name)
        if a is None:
            changes.append(f"topic {name!r} added")
        elif b is None:
            changes.append(f"topic {name!r} removed")
        elif a.get("schema") != b.get("schema"):
            changes.append(f"topic {name!r}: schema changed")
    for key in ("project", "config", "flows", "endpoints", "cron", "state"):
        if old.get(key) != new.get(key):
            changes.append(f"{key} changed")
    if not changes and old != new:
        changes.append("lock format or content changed")
    return changes


def verify_hashes(project: Project, lock: dict[str, Any]) -> None:
    """Refuse to start when a step file differs from what the lock recorded."""
    stale: list[str] = []
    for name, step in sorted(lock["steps"].items()):
        path = project.root / step["file"]
        if not path.is_file():
            stale.append(f"{step['file']} (step {name!r}) is missing")
        elif file_hash(path) != step["hash"]:
            stale.append(f"{step['file']} (step {name!r}) changed")
    if stale:
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise StaleLockError(
            f"the lock is stale: {stale[0]}{more}",
            file=project.lock_path.name,
            hint="run `wistro lock` and commit it, or restore the files",
        )


def records_from_lock(project: Project, lock: dict[str, Any]) -> list[StepRecord]:
    records = []
    for name, step in sorted(lock["steps"].items()):
        record = StepRecord.from_config_dict(
            name, project.root, step["file"], step["language"], step["hash"], step["config"]
        )
        record.active = step["active"]
        records.append(record)
    return records


def short_version(version: str) -> str:
    """The short form of a version id that runs, queues and ``wistro versions`` show."""
    return version[:12]
