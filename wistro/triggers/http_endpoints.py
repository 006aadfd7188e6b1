"""The endpoints of the HTTP trigger: one method of one path, ready to serve (see
:mod:`wistro.triggers.http` for the order of the checks). ``Endpoint`` reads, authenticates
and validates a request, then calls the api step (``ApiRequest`` is its input) or emits the
wistro.yml entry's topic; ``_response_of`` checks what a handler returned; ``_endpoint`` builds
an endpoint from its spec (validators, query shape, authenticator)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from starlette.datastructures import Headers

from wistro.core.run import Run
from wistro.core.step import StepRecord
from wistro.errors import ConfigError, HandlerError, HandlerTimeout, PayloadError
from wistro.tracing.traceparent import format_traceparent, parse_traceparent
from wistro.triggers.http_body import (
    JSON_HEADERS,
    TRACE,
    TRACE_HEADER,
    Disconnected,
    HttpError,
    check_content_type,
    encode,
    parse_json,
    read_body,
    send_error,
    send_response,
    shown,
)
from wistro.triggers.http_query import _QueryShape
from wistro.triggers.http_validation import (
    Check,
    _invalid,
    _model_check,
    _payload_field,
    _schema_check,
)
from wistro.triggers.openapi import EndpointSpec
from wistro.triggers.replay import ReplayStore

if TYPE_CHECKING:
    from wistro.app import App

logger = logging.getLogger("wistro.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Authenticator = Callable[[str, str, Mapping[str, str], bytes], Awaitable[dict[str, Any]]]
AuthenticatorFactory = Callable[..., Authenticator]  # (auth: dict, *, where: str)

_RESULT_KEYS = frozenset({"status", "body", "headers"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(slots=True)
class ApiRequest:
    """What an api step's handler receives as its input."""

    method: str
    path: str
    path_params: dict[str, Any]
    query: dict[str, Any]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: Any  # a model instance (step declared a pydantic ``body``), else the parsed JSON
    raw_body: bytes
    auth: dict[str, Any] = field(default_factory=dict)  # verified claims, {} without auth


class _Duplicate(Exception):
    """A replayed or redelivered webhook: answered ``200 {"duplicate": true}``, nothing runs."""


_DUPLICATE_BODY = b'{"duplicate":true}'


def client_of(scope: Scope) -> str:
    """``host:port`` of the request's client, for logs."""
    client = scope.get("client")
    if isinstance(client, list | tuple) and len(client) >= 2:
        host = str(client[0])
        return f"[{host}]:{client[1]}" if ":" in host else f"{host}:{client[1]}"
    return "-"


def _headers_of(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names (ASGI servers already send them so); repeated headers joined."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
    if len(headers) < len(raw):
        headers = {}
        for k, v in raw:
            name, value = k.decode("latin-1").lower(), v.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _auth_status(e: BaseException) -> int | None:
    """401/403 of an ``AuthFailure`` (``wistro.triggers.auth``), None for any other error."""
    status = getattr(e, "status", None)
    return status if isinstance(status, int) and status in (401, 403) else None


@dataclass(eq=False)
class Endpoint:
    """One method of one path, ready to serve."""

    spec: EndpointSpec
    app: App
    max_body_bytes: int
    max_json_depth: int
    authenticate: Authenticator | None
    body_check: Check | None
    query: _QueryShape
    query_check: Check | None
    call_record: StepRecord | None  # the step, with the default timeout applied
    timeout_s: float  # how long a wistro.yml entry may wait for room in the engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace_id: list[str] = []
        try:
            await self._serve(scope, receive, send, trace_id)
        except HttpError as e:
            await send_error(send, e, e.trace_id or (trace_id[0] if trace_id else None))
        except _Duplicate:
            await send_response(send, 200, _DUPLICATE_BODY, list(JSON_HEADERS))
        except Disconnected:
            return

    async def _serve(self, scope: Scope, receive: Receive, send: Send, trace_id: list[str]) -> None:
        spec = self.spec
        if spec.record is not None and not spec.record.active:
            raise HttpError(404, "not_found", "no such endpoint")
        check_content_type(scope)
        raw = await read_body(scope, receive, self.max_body_bytes)
        if self.authenticate is None:
            await self._handle(scope, send, raw, {}, trace_id)
            return
        claims = await self._authenticate(scope, raw)
        try:
            await self._handle(scope, send, raw, claims, trace_id)
        except BaseException:
            release = getattr(self.authenticate, "release", None)
            if not trace_id and release is not None:  # refused before a run started: the
                release(claims, raw)  # sender may fix the request and send it again
            raise

    async def _handle(
        self, scope: Scope, send: Send, raw: bytes, claims: dict[str, Any], trace_id: list[str]
    ) -> None:
        spec = self.spec
        query_string: bytes = scope.get("query_string", b"")
        query = self.query.read(query_string) if query_string else {}
        if self.query_check is not None:
            query = self.query_check(query)
            if isinstance(query, BaseModel):
                query = query.model_dump()
        data = parse_json(raw, self.max_json_depth)
        traceparent = traceparent_of(scope)
        if spec.entry is not None:
            await self._emit(send, spec.entry.emits, data, trace_id, traceparent)
            return
        body = self.body_check(data) if self.body_check is not None else data
        request = ApiRequest(
            method=scope["method"],
            path=scope["path"],
            path_params=dict(scope.get("path_params") or {}),
            query=query,
            headers=_headers_of(scope["headers"]),
            body=body,
            raw_body=raw,
            auth=claims,
        )
        await self._call(send, request, trace_id, traceparent)

    async def _authenticate(self, scope: Scope, raw: bytes) -> dict[str, Any]:
        assert self.authenticate is not None
        try:
            claims = await self.authenticate(
                scope["method"], scope["path"], Headers(scope=scope), raw
            )
        except Exception as e:
            if getattr(e, "duplicate", False) is True:
                logger.info(
                    "duplicate %s %s from %s ignored: %s",
                    scope["method"],
                    shown(scope["path"]),
                    client_of(scope),
                    shown(str(getattr(e, "reason", "already accepted"))),
                )
                raise _Duplicate from None
            status = _auth_status(e)
            if status is None:
                logger.error(
                    "authentication of %s (%s) failed with an error",
                    self.spec.topic,
                    self.spec.where,
                    exc_info=e,
                )
                raise HttpError(500, "internal_error", "internal error") from None
            # One line: reason, method, path, client. The reason never holds a secret, a
            # signature or a token (the authenticators promise it); the query is not logged.
            logger.warning(
                "refused %s %s from %s: %s (%s, %s)",
                scope["method"],
                shown(scope["path"]),
                client_of(scope),
                shown(str(getattr(e, "reason", "authentication failed"))[:300]),
                status,
                self.spec.where,
            )
            kind = "forbidden" if status == 403 else "unauthorized"
            raise HttpError(status, kind, "authentication failed") from None
        return dict(claims or {})

    async def _emit(
        self, send: Send, topic: str, data: Any, trace_id: list[str], traceparent: str | None
    ) -> None:
        engine = self.app.engine
        try:
            async with asyncio.timeout(self.timeout_s):
                run = await engine.emit(
                    topic, data, wait=False, trigger="api", traceparent=traceparent
                )
        except PayloadError as e:
            error = _invalid([_payload_field("body", e)])
            error.trace_id = e.trace_id  # the run recording the refusal
            raise error from None
        except TimeoutError:
            raise HttpError(503, "unavailable", "too much work in flight, try again") from None
        trace_id.append(run.trace_id)
        body = encode({"trace_id": run.trace_id}).encode()
        await send_response(send, 202, body, [*JSON_HEADERS, (TRACE, run.trace_id.encode())])

    async def _call(
        self, send: Send, request: ApiRequest, trace_id: list[str], traceparent: str | None
    ) -> None:
        record = self.call_record
        assert record is not None
        engine = self.app.engine
        try:
            result, run = await engine.call(
                record, request, trigger="api", topic=self.spec.topic, traceparent=traceparent
            )
        except HandlerTimeout as e:
            trace_id.append(e.trace_id or "")
            raise HttpError(504, "timeout", "the handler timed out") from None
        except HandlerError as e:
            trace_id.append(e.trace_id or "")
            raise HttpError(500, "internal_error", "internal error") from None
        trace_id.append(run.trace_id)
        try:
            status, body, headers = _response_of(result)
        except ValueError as e:
            logger.error(
                "step %r (%s) returned an invalid response (trace %s): %s",
                record.name,
                record.rel_file,
                run.trace_id,
                e,
            )
            raise HttpError(500, "internal_error", "internal error") from None
        headers.append((TRACE, run.trace_id.encode()))
        root = root_traceparent(run)
        if root is not None and all(name != b"traceparent" for name, _ in headers):
            headers.append((b"traceparent", root.encode()))
        await send_response(send, status, body, headers)


def traceparent_of(scope: Scope) -> str | None:
    """The request's W3C ``traceparent`` header; None without one, or with several (the engine
    ignores a malformed one: the run starts a new trace)."""
    found = [v for k, v in scope["headers"] if k.lower() == b"traceparent"]
    return found[0].decode("latin-1") if len(found) == 1 else None


def root_traceparent(run: Run) -> str | None:
    """``traceparent`` naming the run's root span (the api step's), in the trace its spans are
    exported in: the caller's when the request sent one, else the run's."""
    root = next((s for s in run.span_records if s.event_id == ""), None)
    if root is None:
        return None
    header = run.traceparent
    caller = parse_traceparent(header)
    if header is None or caller is None:
        return format_traceparent(run.trace_id, root.id)
    return format_traceparent(caller[0], root.id, sampled=bool(int(header.strip()[-2:], 16) & 1))


def _response_of(result: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Check a handler's ``{"status", "body", "headers"}``; ValueError says what is wrong."""
    if not isinstance(result, dict):
        raise ValueError(
            f'expected a dict {{"status", "body", "headers"}}, got {type(result).__name__}'
        )
    if not _RESULT_KEYS.issuperset(result):
        extra = sorted(map(str, set(result) - _RESULT_KEYS))
        raise ValueError(f"unknown keys {extra} (allowed: status, body, headers)")
    status = result.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise ValueError(f"status must be an int from 200 to 599, got {status!r}")
    given = result.get("headers") or {}
    if not isinstance(given, dict):
        raise ValueError(f"headers must be a dict, got {type(given).__name__}")
    headers: list[tuple[bytes, bytes]] = []
    content_type: str | None = None
    for name, value in given.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"invalid value for header {name!r}")
        lower = name.lower()
        if lower in ("content-length", "transfer-encoding", TRACE_HEADER):
            continue
        if lower == "content-type":
            content_type = value
            continue
        try:
            headers.append((lower.encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} is not latin-1") from None
    body = result.get("body")
    if status in (204, 304):
        payload = b""
    elif isinstance(body, bytes | str) and content_type and "json" not in content_type:
        payload = body.encode() if isinstance(body, str) else body
    else:
        if isinstance(body, BaseModel):
            body = body.model_dump(mode="json")
        try:
            payload = encode(body).encode()
        except (TypeError, ValueError, RecursionError) as e:
            raise ValueError(f"body is not JSON: {e}") from None
        content_type = content_type or "application/json"
    if content_type is not None:
        headers.insert(0, (b"content-type", content_type.encode("latin-1")))
    return status, payload, headers


def _authenticator(
    spec: EndpointSpec,
    overrides: Mapping[str, AuthenticatorFactory] | None,
    replay: ReplayStore | None = None,
) -> Authenticator | None:
    if not spec.auth:
        return None
    kind = spec.auth.get("type") if isinstance(spec.auth, dict) else None
    where = f"{spec.where} auth"
    factory = (overrides or {}).get(kind) if isinstance(kind, str) else None
    if factory is None:
        try:
            from wistro.triggers.auth import build_authenticator
        except ImportError as e:  # never serve an endpoint unauthenticated
            raise ConfigError(
                f"authentication is not available: {e}", file=spec.where, field="auth"
            ) from None
        # The endpoint's replay cache outlives route rebuilds (reloads, activation).
        name = f"{spec.topic} {json.dumps(spec.auth, sort_keys=True, default=str)}"
        cache = replay.cache(name) if replay is not None else None
        return build_authenticator(spec.auth, where=where, replay=cache)
    return factory(spec.auth, where=where)


def _endpoint(
    app: App,
    spec: EndpointSpec,
    *,
    max_body_bytes: int,
    max_json_depth: int,
    default_timeout_s: float,
    authenticators: Mapping[str, AuthenticatorFactory] | None,
    replay: ReplayStore | None = None,
) -> Endpoint:
    record = spec.record
    strict = spec.strict
    body_check: Check | None = None
    query_check: Check | None = None
    call_record: StepRecord | None = None
    query_shape = _QueryShape(spec.query_schema, coerce=True, strict=strict)
    if record is not None:
        if record.body_model is not None:
            body_check = _model_check(record.body_model, "body", strict)
        elif spec.body_schema is not None:  # JSON Schema never coerces: strict as it is
            body_check = _schema_check(spec.body_schema, "body", spec.where)
        if record.query_model is not None:
            query_check = _model_check(record.query_model, "query", strict)
            # lax: the text goes to pydantic as it is; strict: converted by the model's schema
            # from its JSON form first (query values are text), then validated strictly
            query_shape = _QueryShape(spec.query_schema, coerce=strict, strict=strict)
        elif spec.query_schema is not None:
            query_check = _schema_check(spec.query_schema, "query", spec.where)
        call_record = record
        if record.timeout_s is None and app.engine.config.default_timeout_s is None:
            call_record = dataclasses.replace(record, timeout_s=default_timeout_s)
    return Endpoint(
        spec=spec,
        app=app,
        max_body_bytes=max_body_bytes,
        max_json_depth=max_json_depth,
        authenticate=_authenticator(spec, authenticators, replay),
        body_check=body_check,
        query=query_shape,
        query_check=query_check,
        call_record=call_record,
        timeout_s=default_timeout_s,
    )
