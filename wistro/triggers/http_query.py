"""Query strings of the HTTP trigger: each parameter read as a list (an array in the schema)
or a single value, and converted to the JSON scalar type its schema wants (``strict``: only
text written as in JSON converts), so that validation sees numbers, booleans and nulls."""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any
from urllib.parse import parse_qsl

_INTEGER = re.compile(r"-?\d{1,4000}")
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9]\d{0,3999})")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _types_of(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    kind = schema.get("type")
    types = {kind} if isinstance(kind, str) else set(kind or ())
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or ():
            types |= _types_of(sub)
    return types


def _coerce(value: str, types: set[str], strict: bool = False) -> Any:
    """A query string value as the JSON type its schema wants (left a string when it is not
    one, so validation reports the problem). ``strict``: only text written as in JSON converts
    (``12``, ``-1.5e3``, ``true``, ``null``; not ``012``, ``1_000``, `` 1``, ``inf`` or ``''``)."""
    integer = _JSON_INTEGER if strict else _INTEGER
    if ("integer" in types or "number" in types) and integer.fullmatch(value):
        with contextlib.suppress(ValueError):  # more digits than int() takes: stays a string
            return int(value)
    if "number" in types and (not strict or _JSON_NUMBER.fullmatch(value)):
        with contextlib.suppress(ValueError):
            number = float(value)
            if math.isfinite(number):
                return number
    if "boolean" in types and value in ("true", "false"):
        return value == "true"
    if "null" in types and value in (("null",) if strict else ("", "null")):
        return None
    return value


class _QueryShape:
    """How each query parameter is read: list (array in the schema) or single value, and for a
    JSON Schema (not a pydantic model) the scalar types to coerce to."""

    def __init__(self, schema: dict[str, Any] | None, coerce: bool, strict: bool = False) -> None:
        self.strict = strict
        props = (schema or {}).get("properties") or {}
        self.arrays: dict[str, set[str]] = {}
        self.scalars: dict[str, set[str]] = {}
        for name, prop in props.items():
            types = _types_of(prop)
            if "array" in types:
                items = prop.get("items") if isinstance(prop, dict) else None
                self.arrays[name] = _types_of(items) if coerce else set()
            else:
                self.scalars[name] = types if coerce else set()

    def read(self, query_string: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if key in self.arrays:
                out.setdefault(key, []).append(_coerce(value, self.arrays[key], self.strict))
            elif key in out:  # a single-valued parameter given again: never "the last one
                # wins" (validation refuses a list where the schema wants one value)
                seen = out[key]
                out[key] = [*(seen if isinstance(seen, _Repeated) else [seen]), value]
                out[key] = _Repeated(out[key])
            else:
                out[key] = _coerce(value, self.scalars.get(key, set()), self.strict)
        return out


class _Repeated(list[Any]):
    """The values of a single-valued query parameter given more than once."""
