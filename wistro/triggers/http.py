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

This module assembles the server (routes, the ASGI app, uvicorn); an endpoint's serving is in
``http_endpoints``, with ``http_validation`` (422 checks), ``http_query`` (query strings) and
``http_body`` (bodies, error responses).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wistro.core.step import StepRecord
from wistro.errors import ConfigError, WistroError
from wistro.triggers.hosts import TrustedHosts
from wistro.triggers.http_body import MAX_JSON_DEPTH, HttpError, send_error
from wistro.triggers.http_body import Disconnected as Disconnected
from wistro.triggers.http_endpoints import ApiRequest as ApiRequest
from wistro.triggers.http_endpoints import Authenticator as Authenticator
from wistro.triggers.http_endpoints import (
    AuthenticatorFactory,
    Endpoint,
    Receive,
    Scope,
    Send,
    _endpoint,
)
from wistro.triggers.http_endpoints import Message as Message
from wistro.triggers.http_endpoints import client_of as client_of
from wistro.triggers.http_validation import MAX_FIELD_ERRORS as MAX_FIELD_ERRORS
from wistro.triggers.http_validation import Check as Check
from wistro.triggers.limits import ConnectionGuard, Guard
from wistro.triggers.openapi import docs_html, endpoint_specs, openapi_document
from wistro.triggers.replay import ReplayStore

if TYPE_CHECKING:
    from wistro.app import App

logger = logging.getLogger("wistro.http")

DEFAULT_PORT = 3111
GRACEFUL_SHUTDOWN_S = 10  # in-flight requests get this long to finish on shutdown


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


Direct: TypeAlias = dict[str, dict[str, Endpoint]]  # path -> method -> endpoint


def _routes(app: App, **options: Any) -> tuple[list[BaseRoute], Direct]:
    """The routes of the project's endpoints, and those the front door serves itself: fixed
    paths (no ``{param}``) that no parameterised route also matches."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for spec in endpoint_specs(app):
        by_path.setdefault(spec.path, {})[spec.method] = _endpoint(app, spec, **options)
    routes: list[Route] = []
    for path, endpoints in by_path.items():
        try:
            routes.append(Route(path, _Dispatch(endpoints), methods=sorted(endpoints)))
        except (AssertionError, ValueError) as e:
            where = next(iter(endpoints.values())).spec.where
            raise ConfigError(f"invalid path {path!r}: {e}", file=where, field="path") from None
    templated = [r for r in routes if r.param_convertors]
    direct: Direct = {
        route.path: endpoints
        for route, endpoints in zip(routes, by_path.values(), strict=True)
        if not route.param_convertors and not any(t.path_regex.match(route.path) for t in templated)
    }
    return list(routes), direct


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
    _log_internal_error(request.scope, exc)
    return JSONResponse({"error": {"type": "internal_error", "message": "internal error"}}, 500)


def _log_internal_error(scope: Scope, exc: BaseException) -> None:
    logger.error("internal error serving %s %s", scope["method"], scope["path"], exc_info=exc)


_INTERNAL_ERROR = HttpError(500, "internal_error", "internal error")


class WistroAsgi(Starlette):
    """The ASGI app of :func:`build_asgi`: Starlette behind one front door. For every request
    the door checks the Host (``limits.Guard.admit``: 400 ``bad_host``), bounds the body's
    arrival, and follows a reloaded project or a step (de)activated (the routes are rebuilt
    when the registry, the wistro.yml entries or an api step's ``active`` changed: identities
    compared, nearly free). An api endpoint of a fixed path it then serves itself, with no
    middleware or router in between (the hot path); the rest (paths with ``{params}``, other
    methods, the built-in routes, 404/405) goes through Starlette's router and exception
    handlers as before."""

    guard: Guard
    refresh: Callable[[], None]
    direct: Direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            admitted = await self.guard.admit(scope, receive, send)
            if admitted is None:
                return
            receive = admitted
            if kind == "http":
                self.refresh()
                endpoints = self.direct.get(scope["path"])
                if endpoints is not None and not scope.get("root_path"):
                    method = scope["method"]
                    endpoint = endpoints.get(method) or (
                        endpoints.get("GET") if method == "HEAD" else None
                    )
                    if endpoint is not None:
                        scope["app"] = self
                        await _serve(endpoint, scope, receive, send)
                        return
        await super().__call__(scope, receive, send)


async def _serve(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
    """``endpoint`` on a request; an exception it lets through (a bug) is logged and answered
    500 like Starlette's error middleware does (then raised again, for the server)."""
    started = False

    async def sending(message: Message) -> None:
        nonlocal started
        started = True
        await send(message)

    try:
        await endpoint(scope, receive, sending)
    except Exception as e:
        _log_internal_error(scope, e)
        if not started:
            await send_error(send, _INTERNAL_ERROR, None)
        raise


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
) -> WistroAsgi:
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
    routes, direct = _routes(app, **options)

    def refresh() -> None:
        if not keys.changed():
            return
        try:
            routes, direct = _routes(app, **options)
        except WistroError as e:
            logger.error("the HTTP endpoints were not updated: %s", e)
            return
        asgi.router.routes[:] = [*builtin, *routes]
        asgi.direct = direct

    hosts = _Hosts(app, trusted_hosts, bound_host)

    def body_timeout() -> float:
        return body_timeout_s or app.project.config.http.body_timeout_s

    asgi = WistroAsgi(
        routes=[*routes, *builtin],  # no clash: builtin paths are reserved
        exception_handlers={
            HttpError: _http_error,
            HTTPException: _http_exception,
            Exception: _internal_error,
        },
    )
    asgi.guard = Guard(None, hosts=hosts, body_timeout_s=body_timeout)
    asgi.refresh = refresh
    asgi.direct = direct
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
            timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  # a float works
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
