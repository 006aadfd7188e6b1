"""Canonical JSON and content hashes shared by datasets, versions and results."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: pydantic models are dumped, tuples become lists."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def canonical(value: Any) -> str:
    """One line of JSON with sorted keys: the form that is hashed and stored."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(value: Any, length: int = 64) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:length]
