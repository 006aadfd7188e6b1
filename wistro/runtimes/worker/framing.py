"""Frames of the worker protocol (``docs/worker-protocol.md``): a 4-byte big-endian length,
then that many bytes of UTF-8 JSON (one object); the JSON codec both sides of the engine use, and
the ``error`` payload of an exception."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel

from wistro.core.fast_json import ORJSON_OPTIONS, orjson_reads_alike
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


# orjson on the hot path (a frame each way per hop), the stdlib codec for what orjson would not
# treat the same: on encode, what it refuses (ints over 64 bits, keys that are not str); on
# decode, numbers of 19 digits or more (orjson reads an int over 64 bits as a float) and what it
# refuses (NaN, Infinity).


def dumps(value: Any) -> bytes:
    """Compact JSON (UTF-8) of ``value``; pydantic models dumped, dataclasses as objects."""
    try:
        return orjson.dumps(value, default=_json_default, option=ORJSON_OPTIONS)
    except TypeError:
        return _encode(value).encode()


def loads(body: bytes | bytearray) -> Any:
    """The value of a frame's JSON. Raises ValueError (UnicodeDecodeError when not UTF-8)."""
    if orjson_reads_alike(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    text = bytes(body).decode()
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        raise ValueError("not a JSON value") from None
    if end != len(text):
        value = _decode(text)  # whitespace around it, or an error to report
    return value


def encode_frame(msg: dict[str, Any]) -> bytes:
    body = dumps(msg)
    return len(body).to_bytes(_HEADER, "big") + body


def _error_payload(e: BaseException) -> dict[str, Any]:
    if isinstance(e, WistroError):
        return {"type": type(e).__name__, "message": e.format()}
    return {"type": type(e).__name__, "message": str(e)}
