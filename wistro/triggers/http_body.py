"""Request bodies and error responses of the HTTP trigger.

:func:`read_body` reads a body up to a size limit (413), :func:`check_content_type` wants a JSON
Content-Type (415), :func:`parse_json` parses strictly (400: invalid UTF-8, malformed JSON,
NaN/Infinity, numbers out of range, nesting too deep, lone surrogates). Every error is an
:class:`HttpError`, sent by :func:`send_error` as ``{"error": {"type", "message", ...}}``; a client
that goes away mid-body is :class:`Disconnected` (both defined in :mod:`wistro.errors`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from wistro.core.fast_json import orjson_reads_alike
from wistro.errors import Disconnected, HttpError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TRACE_HEADER = "x-wistro-trace-id"
TRACE = TRACE_HEADER.encode()
MAX_JSON_DEPTH = 64
JSON_HEADERS = [(b"content-type", b"application/json")]
encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def error_body(err: HttpError, trace_id: str | None) -> bytes:
    inner: dict[str, Any] = {"type": err.kind, "message": err.message}
    if trace_id is not None:
        inner["trace_id"] = trace_id
    if err.fields:
        inner["fields"] = err.fields
    return encode({"error": inner}).encode()


async def send_response(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, err: HttpError, trace_id: str | None) -> None:
    headers = list(JSON_HEADERS)
    for k, v in err.headers.items():
        headers.append((k.lower().encode("latin-1"), v.encode("latin-1")))
    if trace_id is not None:
        headers.append((TRACE, trace_id.encode()))
    await send_response(send, err.status, error_body(err, trace_id), headers)


# ---------------------------------------------------------------- request parsing


def _too_large(limit: int) -> HttpError:
    return HttpError(
        413,
        "payload_too_large",
        f"request body exceeds {limit} bytes",
        headers={"connection": "close"},
    )


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit`` (from
    Content-Length, or while counting the chunks of a streamed body)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise HttpError(400, "bad_request", "invalid Content-Length") from None
            if declared > limit:
                raise _too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks, size = [body], len(body)
    while True:
        if size > limit:
            raise _too_large(limit)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise _too_large(limit)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _OutOfRange(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: a float would be infinity
        raise _OutOfRange(f"body holds a number out of range ({text[:40]})")
    return value


def shown(text: str) -> str:
    """``text`` safe to show and to encode: control characters and lone surrogates escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate(value: Any, where: str) -> str | None:
    """The problem with the first lone surrogate in a JSON value's strings (keys too), e.g.
    ``lone surrogate (\\ud800) at body.name``; None when there is none."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as e:
                return f"lone surrogate (\\u{ord(item[e.start]):04x}) at {path}"
        elif isinstance(item, dict):
            for key, child in item.items():
                key_path = f"{path}.{shown(key)}"
                if _has_surrogate(key):
                    return _lone_surrogate(key, f"{key_path} (a key)")
                stack.append((child, key_path))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{i}") for i, child in enumerate(item))
    return None


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of a request body (None when empty). 400 for invalid UTF-8, malformed
    JSON, NaN/Infinity, a number out of range, nesting deeper than ``max_depth``, or a string
    holding a lone surrogate (``"\\ud800"``: valid JSON, but no text).

    orjson parses first (about a tenth of the stdlib parser's time with its hooks); what it
    refuses (every body this refuses, and a number too large for a double) and a body with an
    integer that may not fit in 64 bits go through the stdlib parser, which decides and words
    the error as before. Both give the same values for what both accept."""
    if not raw:
        return None
    if orjson_reads_alike(raw):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = _parse_strictly(raw)
    else:
        data = _parse_strictly(raw)
    if (
        isinstance(data, dict | list)
        and raw.count(b"[") + raw.count(b"{") > max_depth  # else it cannot be that deep
        and _depth_exceeds(data, max_depth)
    ):
        raise HttpError(400, "bad_request", f"JSON nested deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(raw) and (problem := _lone_surrogate(data, "body")):
        raise HttpError(400, "bad_request", f"body contains a {problem}")
    return data


def _parse_strictly(raw: bytes) -> Any:
    """The stdlib parser, with the hooks that refuse NaN/Infinity and infinite numbers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HttpError(400, "bad_request", f"body is not valid UTF-8 (byte {e.start})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise HttpError(400, "bad_request", "JSON nested too deeply") from None
    except _OutOfRange as e:
        raise HttpError(400, "bad_request", str(e)) from None
    except json.JSONDecodeError as e:
        raise HttpError(
            400, "bad_request", f"malformed JSON: {e.msg} (line {e.lineno} column {e.colno})"
        ) from None
    except ValueError as e:
        raise HttpError(400, "bad_request", f"malformed JSON: {e}") from None
    return data


def _is_json_type(value: str) -> str | None:
    """What is wrong with a Content-Type for a JSON body, or None: ``application/json`` or
    ``application/*+json``, parameters allowed, a charset only if UTF-8."""
    mime, *params = value.split(";")
    mime = mime.strip().lower()
    if not (
        mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))
    ):
        return f"Content-Type {shown(value[:100])!r} is not JSON: send application/json"
    for param in params:
        name, _, arg = param.partition("=")
        if name.strip().lower() == "charset" and arg.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return f"JSON must be UTF-8, not charset {shown(arg.strip()[:40])!r}"
    return None


def _same_origin(origin: str, host: str | None) -> bool:
    _, sep, rest = origin.partition("://")
    return bool(sep) and host is not None and rest.rstrip("/").lower() == host.strip().lower()


def check_content_type(scope: Scope) -> None:
    """415 unless the request declares a JSON body, or declares nothing and comes from no
    browser page of another origin. A cross-site form or ``text/plain`` POST (no CORS
    preflight) never reaches a handler or an emit."""
    content_type: str | None = None
    origin: str | None = None
    host: str | None = None
    has_body = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            text = value.decode("latin-1")
            content_type = text if content_type is None else f"{content_type}, {text}"
        elif name == b"content-length":
            has_body = has_body or value.strip() not in (b"0", b"")
        elif name == b"transfer-encoding":
            has_body = True
        elif name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"host":
            host = value.decode("latin-1")
    if content_type is not None:
        if problem := _is_json_type(content_type):
            raise HttpError(415, "unsupported_media_type", problem)
    elif has_body and origin is not None and not _same_origin(origin, host):
        raise HttpError(
            415,
            "unsupported_media_type",
            "a request from another origin must send its body as application/json",
        )
