"""The HTTP trigger: api steps and wistro.yml ``api:`` entries served by Starlette on uvicorn,
inside the engine's event loop.

Per connection (``wistro.triggers.limits``): at most ``max_connections`` open (503), request
headers within ``header_timeout_s`` (408). Per request: trusted Host (400 ``bad_host``,
``wistro.triggers.hosts``) → route (404/405) → Content-Type JSON (415) → body read with a size
limit (413) within ``body_timeout_s`` (408) → authentication (401/403; a replayed webhook is
answered ``200 {"duplicate": true}``) → UTF-8, JSON, no lone surrogate (400) → query and body
validation (422, with field paths; ``strict`` endpoints do not coerce) → the api step's handler
through ``Engine.call`` (500 / 504 with the trace id), or an emit for a wistro.yml entry (202).
Every error is JSON ``{"error": {"type", "message", "trace_id"?, "fields"?}}``; every response
of a request that started a run carries ``x-wistro-trace-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wistro.errors import ConfigError, HandlerError, HandlerTimeout, PayloadError, WistroError
from wistro.step import StepRecord
from wistro.topics import TopicCatalog
from wistro.triggers.hosts import TrustedHosts
from wistro.triggers.http_body import (
    JSON_HEADERS,
    MAX_JSON_DEPTH,
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
from wistro.triggers.limits import ConnectionGuard, Guard
from wistro.triggers.openapi import EndpointSpec, docs_html, endpoint_specs, openapi_document
from wistro.triggers.replay import ReplayStore

if TYPE_CHECKING:
    from wistro.app import App

logger = logging.getLogger("wistro.http")

DEFAULT_PORT = 3111
MAX_FIELD_ERRORS = 20
GRACEFUL_SHUTDOWN_S = 10  # in-flight requests get this long to finish on shutdown

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Authenticator = Callable[[str, str, Mapping[str, str], bytes], Awaitable[dict[str, Any]]]
AuthenticatorFactory = Callable[..., Authenticator]  # (auth: dict, *, where: str)

_INTEGER = re.compile(r"-?\d{1,4000}")
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9]\d{0,3999})")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
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


def _pydantic_fields(where: str, e: PydanticValidationError) -> list[dict[str, str]]:
    return [
        {"path": ".".join([where, *map(str, err["loc"])]), "message": err["msg"]}
        for err in e.errors(include_url=False)[:MAX_FIELD_ERRORS]
    ]


def _invalid(fields: list[dict[str, str]]) -> HttpError:
    return HttpError(422, "validation_error", "request validation failed", fields=fields)


def _payload_field(where: str, e: PayloadError) -> dict[str, str]:
    path = where if e.field in (None, "(payload)") else f"{where}.{e.field}"
    return {"path": path, "message": e.message.removeprefix("invalid payload: ")}


Check = Callable[[Any], Any]


def _schema_check(schema: dict[str, Any], where: str, origin: str) -> Check:
    """A validator for ``schema`` that raises the 422 error with the field path."""
    validate = TopicCatalog.from_schemas({where: schema}).validator(where)
    try:
        validate({})  # compile it now: a broken schema is a startup error, not a 500
    except PayloadError:
        pass
    except Exception as e:
        raise ConfigError(f"invalid {where} schema: {e}", file=origin, field=where) from None

    def check(value: Any) -> Any:
        try:
            return validate(value)
        except PayloadError as e:
            raise _invalid([_payload_field(where, e)]) from None
        except RecursionError:
            raise HttpError(400, "bad_request", "JSON nested too deeply") from None

    return check


def _model_check(model: type[BaseModel], where: str, strict: bool = False) -> Check:
    """A validator for ``model``. ``strict``: pydantic's strict mode on the value as JSON, so
    ``"1"`` is no integer and ``1`` no boolean, while JSON's own text forms (dates, UUIDs, enum
    values) still parse."""

    def check(value: Any) -> Any:
        try:
            if strict:
                return model.model_validate_json(encode(value), strict=True)
            return model.model_validate(value)
        except PydanticValidationError as e:
            raise _invalid(_pydantic_fields(where, e)) from None

    return check


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
            else:
                out[key] = _coerce(value, self.scalars.get(key, set()), self.strict)
        return out


# ---------------------------------------------------------------- endpoints


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
        if spec.entry is not None:
            await self._emit(send, spec.entry.emits, data, trace_id)
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
        await self._call(send, request, trace_id)

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

    async def _emit(self, send: Send, topic: str, data: Any, trace_id: list[str]) -> None:
        engine = self.app.engine
        try:
            async with asyncio.timeout(self.timeout_s):
                run = await engine.emit(topic, data, wait=False, trigger="api")
        except PayloadError as e:
            error = _invalid([_payload_field("body", e)])
            error.trace_id = e.trace_id  # the run recording the refusal
            raise error from None
        except TimeoutError:
            raise HttpError(503, "unavailable", "too much work in flight, try again") from None
        trace_id.append(run.trace_id)
        body = encode({"trace_id": run.trace_id}).encode()
        await send_response(send, 202, body, [*JSON_HEADERS, (TRACE, run.trace_id.encode())])

    async def _call(self, send: Send, request: ApiRequest, trace_id: list[str]) -> None:
        record = self.call_record
        assert record is not None
        engine = self.app.engine
        try:
            result, run = await engine.call(record, request, trigger="api", topic=self.spec.topic)
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
        await send_response(send, status, body, headers)


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


# ---------------------------------------------------------------- building


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


class _Dispatch:
    """The ASGI app of one path: picks the endpoint of the request's method."""

    def __init__(self, endpoints: dict[str, Endpoint]) -> None:
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        endpoint = self.endpoints.get(method) or self.endpoints.get(
            "GET" if method == "HEAD" else ""
        )
        if endpoint is None:  # the route's ``methods`` make Starlette answer 405 first
            raise HTTPException(405)
        await endpoint(scope, receive, send)


def _routes(app: App, **options: Any) -> list[BaseRoute]:
    by_path: dict[str, dict[str, Endpoint]] = {}
    for spec in endpoint_specs(app):
        by_path.setdefault(spec.path, {})[spec.method] = _endpoint(app, spec, **options)
    routes: list[BaseRoute] = []
    for path, endpoints in by_path.items():
        try:
            routes.append(Route(path, _Dispatch(endpoints), methods=sorted(endpoints)))
        except (AssertionError, ValueError) as e:
            where = next(iter(endpoints.values())).spec.where
            raise ConfigError(f"invalid path {path!r}: {e}", file=where, field="path") from None
    return routes


_PHRASES = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "method not allowed"),
}


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind, message = _PHRASES.get(exc.status_code, ("bad_request", str(exc.detail)))
    body = {"error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    body = {"error": {"type": exc.kind, "message": exc.message}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("internal error serving %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": {"type": "internal_error", "message": "internal error"}}, 500)


class _Refresh:
    """Rebuilds the routes when the project is reloaded (``wistro dev``) or a step is activated
    or deactivated. Compares identities only: nearly free per request."""

    def __init__(self, app: Any, *, refresh: Callable[[], None]) -> None:
        self.app = app
        self.refresh = refresh

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.refresh()
        await self.app(scope, receive, send)


def build_asgi(
    app: App,
    *,
    max_body_bytes: int = 1_048_576,
    default_timeout_s: float = 30.0,
    max_json_depth: int = MAX_JSON_DEPTH,
    authenticators: Mapping[str, AuthenticatorFactory] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    trusted_hosts: Sequence[str] | None = None,
    bound_host: str | None = None,
    body_timeout_s: float | None = None,
) -> Starlette:
    """The ASGI app serving every active api step and wistro.yml ``api:`` entry, plus
    ``/openapi.json``, ``/docs`` and ``/_wistro/health``.

    ``default_timeout_s`` applies to api steps without ``timeout_s`` (when the project's engine
    sets no default). ``authenticators`` maps an auth ``type`` to a factory
    ``(auth, *, where) -> authenticate`` used instead of ``wistro.triggers.auth``.
    ``extra_routes`` are served too (``/_wistro/...`` control routes of ``wistro dev``).
    ``trusted_hosts`` (default: wistro.yml ``http.trusted_hosts``, followed on reload) are the
    Host names accepted besides loopback and ``bound_host``; ``body_timeout_s`` (default:
    ``http.body_timeout_s``) bounds the wait for a whole request body. Raises ``ConfigError``
    for a reserved or clashing path, or a bad ``auth`` config.
    """
    options: dict[str, Any] = {
        "max_body_bytes": max_body_bytes,
        "max_json_depth": max_json_depth,
        "default_timeout_s": default_timeout_s,
        "authenticators": authenticators,
        "replay": ReplayStore(),  # one per server: outlives the rebuilds of the routes
    }

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(app))

    async def docs(request: Request) -> Response:
        return HTMLResponse(
            docs_html(openapi_document(app)),
            headers={
                "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                "script-src 'unsafe-inline'; connect-src 'self'"
            },
        )

    async def health(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "project": app.project.name, "steps": len(app.registry)}
        )

    builtin: list[BaseRoute] = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/_wistro/health", health, methods=["GET"]),
        *extra_routes,
    ]
    keys = _RoutesKey(app)

    def refresh() -> None:
        if not keys.changed():
            return
        try:
            routes = _routes(app, **options)
        except WistroError as e:
            logger.error("the HTTP endpoints were not updated: %s", e)
            return
        asgi.router.routes[:] = [*builtin, *routes]

    hosts = _Hosts(app, trusted_hosts, bound_host)

    def body_timeout() -> float:
        return body_timeout_s or app.project.config.http.body_timeout_s

    asgi = Starlette(
        routes=[*_routes(app, **options), *builtin],  # no clash: builtin paths are reserved
        middleware=[
            Middleware(Guard, hosts=hosts, body_timeout_s=body_timeout),
            Middleware(_Refresh, refresh=refresh),
        ],
        exception_handlers={
            HttpError: _http_error,
            HTTPException: _http_exception,
            Exception: _internal_error,
        },
    )
    asgi.router.redirect_slashes = False
    return asgi


class _Hosts:
    """The trusted hosts: fixed when given, else wistro.yml's (rebuilt when it is reloaded)."""

    def __init__(self, app: App, fixed: Sequence[str] | None, bound_host: str | None) -> None:
        self.app = app
        self.bound_host = bound_host
        self.fixed = TrustedHosts(fixed, bound_host) if fixed is not None else None
        self.source: Any = None
        self.hosts = TrustedHosts((), bound_host)

    def __call__(self) -> TrustedHosts:
        if self.fixed is not None:
            return self.fixed
        source = self.app.project.config.http
        if source is not self.source:
            self.source = source
            self.hosts = TrustedHosts(source.trusted_hosts, self.bound_host)
        return self.hosts


class _RoutesKey:
    """What the routes depend on: the registry (replaced on reload), the wistro.yml entries and
    which api steps are active."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.registry: Any = None
        self.api: list[StepRecord] = []
        self.key = self._key()

    def _key(self) -> tuple[Any, ...]:
        registry = self.app.registry
        if self.registry is not registry:
            self.registry = registry
            self.api = [r for r in registry if r.type == "api"]
        return (registry, self.app.project.config.api, *(r.active for r in self.api))

    def changed(self) -> bool:
        key = self._key()
        if key == self.key:
            return False
        self.key = key
        return True


# ---------------------------------------------------------------- serving


Ready: TypeAlias = "asyncio.Event | asyncio.Future[HttpServer] | None"


class HttpServer:
    """uvicorn serving ``build_asgi(app)`` in the current event loop (the engine's).

    ``await server.serve(ready)`` runs until cancelled; ``ready`` is set once the socket is
    bound, then ``server.port`` is the bound port (useful with ``port=0``). ``max_connections``
    and ``header_timeout_s`` default to wistro.yml's ``http:`` settings; ``options`` go to
    :func:`build_asgi`. ``server.connections`` counts open and refused connections.
    """

    def __init__(
        self,
        app: App,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        max_connections: int | None = None,
        header_timeout_s: float | None = None,
        **options: Any,
    ) -> None:
        import uvicorn

        self.app = app
        self.host = host
        limits = app.project.config.http  # read once: a change needs a restart
        self.connections = ConnectionGuard(
            max_connections=max_connections or limits.max_connections,
            header_timeout_s=header_timeout_s or limits.header_timeout_s,
        )
        options.setdefault("bound_host", host)
        self.asgi = build_asgi(app, **options)
        config = uvicorn.Config(
            self.asgi,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        config.load()
        config.http_protocol_class = self.connections.protocol_class(config.http_protocol_class)
        config.loaded_app = self.connections.wrap(config.loaded_app)
        self.server = uvicorn.Server(config)

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", None)
        if not servers:
            raise RuntimeError("the server is not listening yet: await `ready` first")
        return int(servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self, ready: Ready = None) -> None:
        """Listen until cancelled (or ``stop()``); in-flight requests finish on the way out.
        ``ready``: an Event set once the socket is bound, or a Future that then receives this
        server."""
        server = self.server
        self.app.engine.start()  # bind the engine to this loop before the first request
        config = server.config
        try:
            if not config.loaded:
                config.load()
            server.lifespan = config.lifespan_class(config)
            try:
                await server.startup()
            except SystemExit:  # uvicorn exits when it cannot bind
                raise OSError(f"could not listen on {self.host}:{config.port}") from None
        except BaseException as e:
            if isinstance(ready, asyncio.Future) and not ready.done():
                ready.set_exception(e)
            raise
        logger.info("serving %s on %s", self.app.project.name, self.url)
        if isinstance(ready, asyncio.Future):
            if not ready.done():
                ready.set_result(self)
        elif ready is not None:
            ready.set()
        try:
            await server.main_loop()
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.shield(server.shutdown())

    def stop(self) -> None:
        self.server.should_exit = True


async def serve_http(
    app: App,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    ready: Ready = None,
    **options: Any,
) -> None:
    """Serve the project's endpoints in the current event loop until cancelled.

    ``ready``: an Event set once the socket is bound, or a Future that then receives the
    :class:`HttpServer` (its ``port`` is the bound port, for ``port=0``). ``options`` go to
    :func:`build_asgi`.
    """
    await HttpServer(app, host, port, **options).serve(ready)
