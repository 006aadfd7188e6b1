"""Frames of the worker protocol (``docs/worker-protocol.md``): a 4-byte big-endian length,
then that many bytes of UTF-8 JSON (one object); the JSON codec both sides of the engine use, and
the ``error`` payload of an exception."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from wistro.errors import WistroError

MAX_FRAME = 64 * 1024 * 1024
_HEADER = 4


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. an api request
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
_decode = json.JSONDecoder().decode  # on str
# (text, 0) -> (value, end), without decode()'s whitespace handling
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def encode_frame(msg: dict[str, Any]) -> bytes:
    body = _encode(msg).encode()
    return len(body).to_bytes(_HEADER, "big") + body


def _error_payload(e: BaseException) -> dict[str, Any]:
    if isinstance(e, WistroError):
        return {"type": type(e).__name__, "message": e.format()}
    return {"type": type(e).__name__, "message": str(e)}
