"""Limits that keep slow or numerous clients from pinning the HTTP server, and the trusted Host
check.

- :class:`Guard`, the outermost ASGI middleware of the app: a request whose ``Host`` is not
  trusted gets 400 ``bad_host`` before any route runs (:mod:`wistro.triggers.hosts`), and its
  body must arrive in time (below).
- :func:`body_deadline` wraps an ASGI ``receive`` so the whole request body must arrive within
  ``body_timeout_s`` of the end of its headers; later, ``receive`` raises the 408 error.
- :class:`ConnectionGuard` wraps uvicorn's HTTP protocol (``uvicorn.Config.http_protocol_class``)
  to cap open connections (a JSON 503, then close) and to close a connection whose request
  headers take longer than ``header_timeout_s``: from connecting until a request's headers are
  complete (a silent close when nothing came), and from the first byte of each later request
  (a JSON 408). Between requests, an idle connection is uvicorn's keep-alive's to close
  (``http.keep_alive_s``).

The ASGI side tells the guard when a request starts and ends on a connection
(:meth:`ConnectionGuard.wrap`), matched by the peer's address and port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, cast

from wistro.core.deadlines import Deadlines
from wistro.triggers.hosts import TrustedHosts
from wistro.triggers.http_body import HttpError, Message, Receive, Scope, Send, send_error, shown

logger = logging.getLogger("wistro.http")

ClientKey = tuple[str, int]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LINGER_S = 2.0  # a refused connection is read (and dropped) this long before it is closed


def raw_json_response(status: int, phrase: str, kind: str, message: str) -> bytes:
    """A complete ``connection: close`` HTTP/1.1 response with a JSON error body."""
    body = json.dumps({"error": {"type": kind, "message": message}}, separators=(",", ":"))
    data = body.encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + data


def body_deadline(
    receive: Receive,
    timeout_s: float,
    on_timeout: Callable[[], BaseException],
    deadlines: Deadlines | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Receive:
    """``receive`` that raises ``on_timeout()`` once the body has not fully arrived
    ``timeout_s`` after this call. After the last body chunk it is ``receive`` unchanged (a
    response may wait for a disconnect as long as it likes). The limit is kept in
    ``deadlines`` (``wistro.core.deadlines``: one timer for all requests, where an
    ``asyncio.timeout`` per read cost 5 µs of a request that is mostly one read). ``loop``: the
    running loop, when the caller has it already."""
    loop = loop or asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    limits = deadlines if deadlines is not None else Deadlines()
    done = False

    async def timed_receive() -> Message:
        nonlocal done
        if done:
            return await receive()
        # a message that came in as the limit expired is taken: it has arrived
        message, _late = await limits.within(receive(), deadline - loop.time(), on_timeout)
        if message.get("type") != "http.request" or not message.get("more_body", False):
            done = True
        return message

    return timed_receive


def _client_key(transport: asyncio.BaseTransport) -> ClientKey | None:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple | list) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return None


class ConnectionGuard:
    """The connections of one server: the cap, the header timeout, and which connection a
    request runs on (by the peer address in ``scope["client"]``)."""

    def __init__(self, *, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open: set[_GuardedProtocol] = set()
        self.by_client: dict[ClientKey, _GuardedProtocol] = {}
        self.refused = 0  # connections turned away by the cap, since start
        self.timed_out = 0  # connections closed by the header timeout, since start

    def protocol_class(self, inner: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
        """A protocol class for uvicorn: ``inner`` (uvicorn's h11 / httptools protocol) behind
        this guard."""
        attrs = {"guard": self, "inner": inner}
        return cast(type[asyncio.Protocol], type("GuardedHttpProtocol", (_GuardedProtocol,), attrs))

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The app uvicorn calls (``Config.loaded_app``, outside its proxy-headers middleware,
        so ``scope["client"]`` is still the connection's peer): tells each connection when its
        requests start and end."""

        async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
            client = scope.get("client")
            conn = self.by_client.get(tuple(client)) if isinstance(client, list | tuple) else None
            if conn is not None:
                conn.request_started()
            try:
                await app(scope, receive, send)
            finally:
                if conn is not None:
                    conn.request_finished()

        return tracked


class _GuardedProtocol(asyncio.Protocol):
    guard: ConnectionGuard
    inner: type[asyncio.Protocol]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.protocol = self.inner(*args, **kwargs)  # type: ignore[call-arg]
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.key: ClientKey | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.in_flight = 0
        self.partial = False  # bytes arrived with no request in flight (a request under way)
        self.refused = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no subclasses of asyncio.Transport: duck-typed
        self.transport = cast(asyncio.Transport, transport)
        guard = self.guard
        if len(guard.open) >= guard.max_connections:
            self.refused = True
            guard.refused += 1
            if guard.refused == 1 or guard.refused % 1000 == 0:
                logger.warning(
                    "refused a connection: %d open connections is the limit "
                    "(http.max_connections); %d refused so far",
                    guard.max_connections,
                    guard.refused,
                )
            message = f"too many open connections (limit {guard.max_connections}), try again"
            self._respond_and_close(
                raw_json_response(503, "Service Unavailable", "unavailable", message)
            )
            return
        guard.open.add(self)
        self.key = _client_key(transport)
        if self.key is not None:
            guard.by_client[self.key] = self
        self.protocol.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # read and dropped until the lingering close
        if self.in_flight == 0 and not self.partial:
            # the first bytes of a request: its headers have header_timeout_s from now
            self.partial = True
            self._arm()
        self.protocol.data_received(data)

    def eof_received(self) -> bool | None:
        if self.refused:
            if self.transport is not None:
                self.transport.close()
            return None
        return self.protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        guard = self.guard
        if self.refused:
            return
        guard.open.discard(self)
        if self.key is not None and guard.by_client.get(self.key) is self:
            del guard.by_client[self.key]
        self.protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self.refused:
            self.protocol.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.protocol.resume_writing()

    # ------------------------------------------------------------ requests

    def request_started(self) -> None:
        self.in_flight += 1
        self.partial = False
        self._disarm()

    def request_finished(self) -> None:
        # idle until the next request's first bytes: uvicorn's keep-alive closes it if none come
        self.in_flight = max(0, self.in_flight - 1)

    # ------------------------------------------------------------ timers

    def _arm(self) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.timer = self.loop.call_later(self.guard.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        transport = self.transport
        if self.in_flight or transport is None or transport.is_closing():
            return
        if self._headers_complete():
            return  # its task has not run yet (a busy loop): request_started comes next
        self.guard.timed_out += 1
        if self.partial:
            message = f"the request headers did not arrive within {self.guard.header_timeout_s:g} s"
            transport.write(raw_json_response(408, "Request Timeout", "request_timeout", message))
        transport.close()

    def _headers_complete(self) -> bool:
        """Whether uvicorn has read a whole request head that is not answered yet. After a
        stall of the event loop, uvloop runs due timers before the task that serves a request
        whose bytes came in the same turn; without this check the request got a 408."""
        cycle = getattr(self.protocol, "cycle", None)  # uvicorn's h11 and httptools protocols
        return cycle is not None and not getattr(cycle, "response_complete", True)

    def _respond_and_close(self, response: bytes) -> None:
        """Send ``response`` and half-close; drop what the client still sends, then close (an
        immediate close with unread data would reset the connection and lose the response)."""
        transport = self.transport
        assert transport is not None
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
            self.timer = self.loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()


def body_timeout_error(timeout_s: float) -> HttpError:
    return HttpError(
        408,
        "request_timeout",
        f"the request body did not arrive within {timeout_s:g} s",
        headers={"connection": "close"},
    )


class Guard:
    """ASGI middleware, outermost (see the module docstring). ``hosts`` and ``body_timeout_s``
    are asked per request, so they follow a reloaded wistro.yml. :meth:`admit` is the check
    alone, for an app that serves the request itself (``wistro.triggers.http``'s front door)."""

    def __init__(
        self,
        app: ASGIApp | None,
        *,
        hosts: Callable[[], TrustedHosts],
        body_timeout_s: Callable[[], float],
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.body_timeout_s = body_timeout_s
        # The body limits of the requests being read, per event loop (one, when served).
        self._deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        admitted = await self.admit(scope, receive, send)
        if admitted is not None:
            await self.app(scope, admitted, send)

    async def admit(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """For an ``http`` or ``websocket`` scope: the ``receive`` to serve it with (an http
        body must arrive within the body timeout), or None when its Host is not trusted and it
        has been answered (400 ``bad_host``; a websocket is closed with 1008)."""
        hosts = [v for k, v in scope["headers"] if k == b"host"]
        host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
        if not self.hosts().allows(host):
            await self._bad_host(scope, send, host, len(hosts))
            return None
        if scope["type"] != "http":
            return receive
        timeout_s = self.body_timeout_s()
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines.get(loop)
        if deadlines is None:
            deadlines = self._deadlines[loop] = Deadlines()
        return body_deadline(
            receive, timeout_s, lambda: body_timeout_error(timeout_s), deadlines, loop
        )

    async def _bad_host(self, scope: Scope, send: Send, host: str | None, n: int) -> None:
        if host is not None:
            message = f"Host {shown(host[:100])!r} is not trusted"
        else:
            message = "the request has no Host header" if n == 0 else "several Host headers"
        logger.info(
            "refused %s %s: %s (trust more names with http.trusted_hosts in wistro.yml)",
            scope.get("method", "WEBSOCKET"),
            shown(str(scope.get("path", ""))),
            message,
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(send, HttpError(400, "bad_host", message), None)
