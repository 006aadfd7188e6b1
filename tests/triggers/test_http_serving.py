"""The HTTP trigger's request path, for real (uvicorn on a loopback port, raw keep-alive sockets
and httpx): hundreds of concurrent requests on asyncio's loop and on uvloop's, every one answered
and every run recorded; the front door that serves fixed paths itself agrees with Starlette's
router (parameterised paths, HEAD, 405, a bug answered 500); the event loop ``wistro dev`` uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from projects import write_project
from test_http import error_of, serving

import wistro
from wistro.errors import WistroError
from wistro.server.serve import EVENT_LOOP_ENV, loop_factory, run_loop
from wistro.tooling.scaffold import create_project
from wistro.triggers.hosts import TrustedHosts
from wistro.triggers.http import HttpServer, WistroAsgi

try:
    import uvloop
except ImportError:  # not on Windows
    uvloop = None  # type: ignore[assignment]
needs_uvloop = pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")

CONNECTIONS = 100
PER_CONNECTION = 4  # keep-alive requests on each connection, one after the other


def in_loop(kind: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    factory = uvloop.new_event_loop if kind == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


async def post_orders(port: int, first: int, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``n`` POST /orders on one keep-alive connection, each sent once the last is answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    try:
        for i in range(first, first + n):
            body = json.dumps({"order_id": f"C{i:04d}", "amount_cents": 100 + i}).encode()
            writer.write(
                b"POST /orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
            content = await reader.readexactly(int(headers["content-length"]))
            out.append((int(lines[0].split(" ")[1]), headers, content))
    finally:
        writer.close()
    return out


@pytest.mark.parametrize("loop", ["asyncio", pytest.param("uvloop", marks=needs_uvloop)])
def test_hundreds_of_concurrent_posts_are_all_answered_and_recorded(
    tmp_path: Path, loop: str
) -> None:
    """The shop (SQLite traces) under 100 keep-alive clients at once: every request gets its
    202 and its own trace id, and every run is in the trace store, finished ok."""
    create_project(tmp_path / "shop")

    async def main() -> None:
        app = wistro.load(tmp_path / "shop", state="memory")
        assert app.errors == []
        bound: asyncio.Future[HttpServer] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(HttpServer(app, "127.0.0.1", 0).serve(bound))
        server = await asyncio.wait_for(bound, 10)
        try:
            batches = await asyncio.gather(
                *(
                    post_orders(server.port, c * PER_CONNECTION, PER_CONNECTION)
                    for c in range(CONNECTIONS)
                )
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        responses = [r for batch in batches for r in batch]
        assert len(responses) == CONNECTIONS * PER_CONNECTION
        trace_ids = set()
        for status, headers, content in responses:
            assert status == 202, content
            trace_id = headers["x-wistro-trace-id"]
            assert json.loads(content)["trace_id"] == trace_id
            assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers["traceparent"])
            trace_ids.add(trace_id)
        assert len(trace_ids) == len(responses)  # one run per request, none shared
        await app.drain()
        runs = app.runs(limit=10_000)
        orders = runs[runs["topic"] == "POST /orders"]
        assert set(orders["trace_id"]) == trace_ids
        assert set(orders["status"]) == {"ok"}
        for i in (0, len(responses) // 2, len(responses) - 1):
            assert (await app.state.get("orders", f"C{i:04d}"))["receipt"] == "sent"
        await app.aclose()

    in_loop(loop, main)


PATHS = {
    "src/thing.step.py": """
config = {"type": "api", "name": "Thing", "path": "/things/{id}", "method": "GET", "emits": []}

async def handler(req, ctx):
    return {"body": {"id": req.path_params["id"]}}
""",
    "src/special.step.py": """
config = {"type": "api", "name": "Special", "path": "/things/special", "method": "GET",
          "emits": []}

async def handler(req, ctx):
    return {"body": {"special": True}}
""",
    "src/ping.step.py": """
config = {"type": "api", "name": "Ping", "path": "/ping", "method": "GET", "emits": []}

async def handler(req, ctx):
    return {"body": {"pong": True}, "headers": {"x-pong": "1"}}
""",
}


async def test_the_front_door_serves_what_the_router_would(tmp_path: Path) -> None:
    """Fixed paths go straight to their endpoint; a fixed path a parameterised route also
    matches, other methods and unknown paths go through Starlette's router as before."""
    app = wistro.load(write_project(tmp_path / "p", PATHS), state="memory", traces="memory")
    assert app.errors == [], app.errors
    async with serving(app) as (client, server):
        assert isinstance(server.asgi, WistroAsgi)
        assert set(server.asgi.direct) == {"/ping"}  # /things/special: /things/{id} matches it
        resp = await client.get("/ping")
        assert resp.status_code == 200 and resp.json() == {"pong": True}
        assert resp.headers["x-pong"] == "1" and resp.headers["x-wistro-trace-id"]
        head = await client.head("/ping")
        assert head.status_code == 200 and head.content == b"" and head.headers["x-pong"] == "1"
        # sorted by path, /things/special comes first: Starlette serves it, not /things/{id}
        assert (await client.get("/things/special")).json() == {"special": True}
        assert (await client.get("/things/x1")).json() == {"id": "x1"}
        error_of(await client.post("/ping", json={}), 405, "method_not_allowed")
        error_of(await client.post("/things/special", json={}), 405, "method_not_allowed")
        error_of(await client.get("/ping/"), 404, "not_found")  # no redirect either
        error_of(await client.get("/nope"), 404, "not_found")
    await app.aclose()


SECURE_STEP = """
config = {"type": "api", "name": "Secure", "path": "/secure", "method": "POST",
          "body": {"type": "object", "required": ["n"]},
          "auth": {"type": "releasing"}, "emits": []}

async def handler(req, ctx):
    return {"body": {"n": req.body["n"]}}
"""


def releasing_auth(auth: dict[str, Any], *, where: str) -> Callable[..., Any]:
    """Lets every request in; its ``release`` (called when a request is refused after
    authentication) is broken: a bug in the request path, not in a handler."""

    async def authenticate(method: str, path: str, headers: Any, raw: bytes) -> dict[str, Any]:
        return {"sub": "anyone"}

    def release(claims: dict[str, Any], raw: bytes) -> None:
        raise RuntimeError("release is broken")

    authenticate.release = release  # type: ignore[attr-defined]
    return authenticate


async def test_a_bug_on_the_direct_path_is_a_logged_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = {"src/secure.step.py": SECURE_STEP}
    app = wistro.load(write_project(tmp_path / "p", files), state="memory", traces="memory")
    async with serving(app, authenticators={"releasing": releasing_auth}) as (client, server):
        assert "/secure" in server.asgi.direct
        with caplog.at_level(logging.ERROR, logger="wistro.http"):
            resp = await client.post("/secure", json={})  # 422, then release raises
        error = error_of(resp, 500, "internal_error")
        assert error == {"type": "internal_error", "message": "internal error"}
        assert "release is broken" not in resp.text
        assert "internal error serving POST /secure" in caplog.text
        assert "release is broken" in caplog.text
        resp = await client.post("/secure", json={"n": 3})  # the server goes on
        assert resp.status_code == 200 and resp.json() == {"n": 3}
    await app.aclose()


def test_many_distinct_hosts_keep_their_verdicts() -> None:
    """The verdict of each Host value is remembered (bounded): thousands of distinct values,
    trusted or not, are judged as the first time."""
    hosts = TrustedHosts(["api.example.com"], bound_host="127.0.0.1")
    for round_ in range(2):
        for i in range(2_000):
            assert hosts.allows(f"{i}.api.example.com") is False, (round_, i)
            assert hosts.allows(f"127.0.{i % 256}.1:{i}") is True
            assert hosts.allows(f"evil{i}.example") is False
            assert hosts.allows("api.example.com:443") is True
        assert len(hosts._verdicts) <= 256
    assert hosts.allows("") is False and hosts.allows(None) is False


# ---------------------------------------------------------------- the event loop


@needs_uvloop
def test_wistro_dev_runs_in_uvloop_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert loop_factory() is uvloop.new_event_loop

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_loop(which()).startswith("uvloop")
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert loop_factory() is None
    assert run_loop(which()).startswith("asyncio")
    monkeypatch.setenv(EVENT_LOOP_ENV, " UVLoop ")
    assert loop_factory() is uvloop.new_event_loop


def test_an_unknown_event_loop_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(WistroError, match=r"WISTRO_EVENT_LOOP='trio' is not an event loop"):
        run_loop(never())


@needs_uvloop
def test_the_connection_guard_on_uvloop_transports(tmp_path: Path) -> None:
    """uvloop's transports are no ``asyncio.Transport``: the guard takes them all the same."""

    async def main() -> None:
        app = wistro.load(write_project(tmp_path / "p", PATHS), state="memory", traces="memory")
        async with serving(app) as (client, server):
            assert (await client.get("/ping")).json() == {"pong": True}
            assert len(server.connections.open) == 1  # the guard holds the connection
        await app.aclose()

    in_loop("uvloop", main)
