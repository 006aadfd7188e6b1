"""JSON Schema helpers shared by the type generators (Python, TypeScript, Go)."""

from __future__ import annotations

import re
from typing import Any

_DOC_KEYS = ("title", "description", "examples", "default")
_LOCAL_REF = re.compile(r"#/(\$defs|definitions)/(.+)")


def pascal_case(text: str) -> str:
    """``order.placed`` -> ``OrderPlaced``; ``Charge card`` -> ``ChargeCard``; ``2fa`` -> ``T2fa``."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", text) if p]
    name = "".join(p[0].upper() + p[1:] for p in parts) or "T"
    return f"T{name}" if name[0].isdigit() else name


def strip_docs(schema: Any) -> Any:
    """The schema without the keys that document it (they do not change the type)."""
    if isinstance(schema, dict):
        return {k: strip_docs(v) for k, v in schema.items() if k not in _DOC_KEYS}
    if isinstance(schema, list):
        return [strip_docs(v) for v in schema]
    return schema


def resolve_local_ref(ref: str, root: dict[str, Any]) -> tuple[Any, str | None] | None:
    """``#`` -> ``(root, None)``; ``#/$defs/Name`` -> ``(definition, "Name")``; any other ref
    (remote, or not a definition) -> None."""
    if ref == "#":
        return root, None
    m = _LOCAL_REF.fullmatch(ref)
    if m is None:
        return None
    key = m.group(2).replace("~1", "/").replace("~0", "~")
    return (root.get(m.group(1)) or {}).get(key), key
