"""Step configs read back from ``wistro.yml.lock``: a worker language's files unchanged since
the lock was written (same sha256) need no worker and no toolchain to be read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wistro.runtimes.base import StepSource


def configs_from_lock(root: Path, files: list[Path]) -> dict[Path, StepSource]:
    """Configs of the ``files`` unchanged since ``wistro.yml.lock`` was written (same hash), read
    back from the lock: no worker (and no toolchain) is needed for them."""
    lock_path = root / "wistro.yml.lock"
    if not lock_path.is_file():
        return {}
    try:
        lock = json.loads(lock_path.read_text(encoding="utf-8"))
        steps = lock["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    wanted = {f.resolve(): f for f in files}
    out: dict[Path, StepSource] = {}
    for name, step in steps.items() if isinstance(steps, dict) else ():
        try:
            file = wanted.get((root / step["file"]).resolve())
            if file is None or file in out:
                continue
            if hashlib.sha256(file.read_bytes()).hexdigest() != step["hash"]:
                continue
            cfg = step["config"]
            out[file] = StepSource(file, raw_config(name, cfg), cfg.get("line"))
        except (OSError, KeyError, TypeError, AttributeError):
            continue
    return out


def raw_config(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A step's ``config`` as written in its file, from its lock entry (``config_dict()``)."""
    schemas = cfg.get("emit_schemas") or {}

    def emits(items: Any) -> list[dict[str, Any]]:
        out = []
        for e in items or ():
            decl = {k: v for k, v in e.items() if v is not None}
            if e["topic"] in schemas and items is cfg.get("emits"):
                decl["schema"] = schemas[e["topic"]]
            out.append(decl)
        return out

    raw: dict[str, Any] = {
        "type": cfg["type"],
        "name": name,
        "description": cfg.get("description"),
        "subscribes": list(cfg.get("subscribes") or ()),
        "emits": emits(cfg.get("emits")),
        "virtual_subscribes": list(cfg.get("virtual_subscribes") or ()),
        "virtual_emits": emits(cfg.get("virtual_emits")),
        "flows": list(cfg.get("flows") or ()),
        "input": cfg.get("input_schema"),
        "concurrency": cfg.get("concurrency"),
        "timeout_s": cfg.get("timeout_s"),
        "retries": cfg.get("retries"),
        "retry_backoff_s": cfg.get("retry_backoff_s", 0.1),
    }
    trigger = dict(cfg.get("trigger") or {})
    if cfg["type"] == "api":
        raw.update(
            path=trigger.get("path"),
            method=trigger.get("method"),
            body=trigger.get("body_schema"),
            query=trigger.get("query_schema"),
            responses=trigger.get("responses") or None,
            auth=trigger.get("auth"),
        )
    elif cfg["type"] == "cron":
        raw.update(
            cron=trigger.get("cron"),
            timezone=trigger.get("timezone"),
            allow_overlap=bool(trigger.get("allow_overlap", False)),
        )
    return {k: v for k, v in raw.items() if v is not None}
