"""HTTP hardening, for real: uvicorn on a loopback port, httpx and raw asyncio sockets.

Slow clients (body and header timeouts, 408) and many clients (the connection cap, 503) cannot
pin the server; only trusted Host headers are served (DNS rebinding); JSON endpoints want a JSON
Content-Type (415, no cross-site simple POSTs); lone surrogates and numbers out of range are
refused up front (400); ``strict`` endpoints do not coerce.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from projects import write_project
from test_http import ECHO_STEP, error_of, serving

import wistro
import wistro.config
from wistro.errors import ConfigError, StepLoadError
from wistro.triggers.hosts import TrustedHosts, check_host_pattern, split_host
from wistro.triggers.http import HttpServer

Served = tuple[wistro.App, httpx.AsyncClient, HttpServer]

RECORD_STEP = """
config = {"type": "api", "name": "Record", "path": "/record", "method": "POST",
          "body": {"type": "object", "properties": {"name": {"type": "string"}}},
          "emits": []}

async def handler(req, ctx):
    seen = await ctx.state.get("calls", "record") or []
    await ctx.state.set("calls", "record", [*seen, req.body])
    return {"status": 201, "body": {"ok": True}}
"""

HOOK_YML = """
name: hardened
{http}
api:
  - path: /hooks/thing
    method: POST
    emits: thing.happened
    body:
      type: object
      properties: {{name: {{type: string}}, n: {{type: integer}}}}
"""

HOOK_SUBSCRIBER = """
config = {"name": "On thing", "subscribes": ["thing.happened"]}

async def handler(data, ctx):
    seen = await ctx.state.get("calls", "hook") or []
    await ctx.state.set("calls", "hook", [*seen, data])
"""


def project(http: str = "") -> dict[str, str]:
    return {
        "wistro.yml": HOOK_YML.format(http=http),
        "src/record.step.py": RECORD_STEP,
        "src/on_thing.step.py": HOOK_SUBSCRIBER,
        "src/echo.step.py": ECHO_STEP,
    }


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``async with served(files, **options) as (app, client, server):``"""
    apps: list[wistro.App] = []

    @asynccontextmanager
    async def make(files: dict[str, str], **options: Any) -> AsyncIterator[Served]:
        root = write_project(tmp_path / f"p{len(apps)}", files)
        app = wistro.load(root, state="memory", traces="memory")
        assert app.errors == [], app.errors
        apps.append(app)
        async with serving(app, **options) as (client, server):
            yield app, client, server

    yield make
    for app in apps:
        await app.aclose()


async def nothing_ran(app: wistro.App) -> None:
    await app.drain()
    assert await app.state.get("calls", "record") is None
    assert await app.state.get("calls", "hook") is None
    assert len(app.runs()) == 0


async def read_all(reader: asyncio.StreamReader, timeout: float = 20) -> bytes:
    """Everything until the server closes the connection (bounded)."""
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            data += chunk
    return data


def response_of(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def json_error(data: bytes, status: int, kind: str) -> dict[str, Any]:
    got, headers, body = response_of(data)
    assert got == status, data
    assert headers["content-type"] == "application/json"
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["type"] == kind and error["message"]
    return error


async def open_connection(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait (bounded) for a condition no event reports: the server's own connection count."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- slow and many clients


async def test_slow_bodies_get_408_and_are_closed(served: Callable[..., Any]) -> None:
    files = project("http: {body_timeout_s: 0.5}")
    async with served(files) as (app, client, server):
        head = (
            b"POST /record HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n"
        )
        started = time.monotonic()
        conns = [await open_connection(server) for _ in range(300)]
        for _, writer in conns:
            writer.write(head + b'{"nam')  # 5 of 100 bytes, then nothing
        await asyncio.gather(*(writer.drain() for _, writer in conns))

        # meanwhile a normal request is served
        resp = await client.post("/record", json={"name": "ok"})
        assert resp.status_code == 201, resp.text

        answers = await asyncio.gather(*(read_all(reader) for reader, _ in conns))
        elapsed = time.monotonic() - started
        for data in answers:  # each got its 408 and then the connection was closed
            error = json_error(data, 408, "request_timeout")
            assert "0.5 s" in error["message"]
            assert response_of(data)[1]["connection"] == "close"
        assert elapsed < 30  # generous: the timeout is 0.5 s
        for _, writer in conns:
            writer.close()
        await until(lambda: len(server.connections.open) <= 1)  # the httpx connection
        await app.drain()
        assert await app.state.get("calls", "record") == [{"name": "ok"}]  # no slow one ran


async def test_slow_or_idle_headers_are_closed(served: Callable[..., Any]) -> None:
    files = project("http: {header_timeout_s: 0.5}")
    async with served(files) as (_, client, server):
        partial_reader, partial = await open_connection(server)
        partial.write(b"POST /record HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ty")
        idle_reader, idle = await open_connection(server)  # sends nothing at all
        kept_reader, kept = await open_connection(server)  # one request, then partial headers
        kept.write(b"GET /_wistro/health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        data = await asyncio.wait_for(kept_reader.readuntil(b"}"), 10)
        assert response_of(data)[0] == 200
        await until(lambda: all(c.in_flight == 0 for c in server.connections.open))
        kept.write(b"GET /_wistro/health HTTP/1.1\r\nho")

        json_error(await read_all(partial_reader), 408, "request_timeout")
        assert await read_all(idle_reader) == b""  # idle: closed without a response
        json_error(await read_all(kept_reader), 408, "request_timeout")
        for writer in (partial, idle, kept):
            writer.close()
        assert server.connections.timed_out >= 3
        # a normal client is unaffected
        assert (await client.get("/_wistro/health")).status_code == 200


async def test_idle_connection_is_kept_for_keep_alive_s(served: Callable[..., Any]) -> None:
    # Longer than the pools of common clients keep an idle connection (httpx 5 s), so a client
    # never reuses one the server is closing: with the server's 5 s and httpx's 5 s, a request
    # sent as the server closed the connection failed with httpx.ReadError.
    assert wistro.config.HttpConfig().keep_alive_s > httpx.Limits().keepalive_expiry
    files = project("http: {header_timeout_s: 0.3, keep_alive_s: 1.5}")
    async with served(files) as (_, _, server):
        reader, writer = await open_connection(server)
        request = b"GET /_wistro/health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        writer.write(request)
        assert response_of(await asyncio.wait_for(reader.readuntil(b"}"), 10))[0] == 200
        await asyncio.sleep(0.8)  # idle past header_timeout_s: kept
        writer.write(request)
        assert response_of(await asyncio.wait_for(reader.readuntil(b"}"), 10))[0] == 200
        idle_from = time.monotonic()
        assert await read_all(reader) == b""  # then closed, silently, after keep_alive_s
        assert 1.3 < time.monotonic() - idle_from < 15
        writer.close()


def _stall_while_a_request_arrives(
    root: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> int:
    """A request whose first bytes came before the server's event loop stalled (a handler
    blocking it for 1.5 s) and whose end came during the stall, with header_timeout_s 0.5: the
    status it got."""
    block = """
import time
config = {"type": "api", "name": "Block", "path": "/block", "method": "GET", "emits": []}

async def handler(req, ctx):
    time.sleep(1.5)  # blocks the event loop
    return {"status": 200, "body": {"ok": True}}
"""

    def client(port: int, got: list[bytes]) -> None:  # blocking sockets: the loop is stalled
        with socket.create_connection(("127.0.0.1", port), timeout=20) as a:
            a.sendall(b"GET /_wistro/health HTTP/1.1\r\n")  # its header timer starts
            time.sleep(0.1)
            with socket.create_connection(("127.0.0.1", port), timeout=20) as b:
                b.sendall(b"GET /block HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
                time.sleep(0.8)  # the loop is blocked; the timer is due before it is back
                a.sendall(b"host: 127.0.0.1\r\n\r\n")
                got.append(a.recv(65536))
                got.append(b.recv(65536))

    async def main() -> int:
        files = {"wistro.yml": "name: stall\nhttp: {header_timeout_s: 0.5}\n"}
        app = wistro.load(
            write_project(root, {**files, "src/block.step.py": block}),
            state="memory",
            traces="memory",
        )
        server = HttpServer(app, "127.0.0.1", 0)
        ready = asyncio.Event()
        task = asyncio.create_task(server.serve(ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            got: list[bytes] = []
            thread = threading.Thread(target=client, args=(server.port, got))
            thread.start()
            await asyncio.to_thread(thread.join)
        finally:
            server.stop()
            await asyncio.wait_for(task, 10)
            await app.aclose()
        assert response_of(got[1])[0] == 200, got[1]
        return response_of(got[0])[0]

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_request_complete_during_a_stall_is_served(tmp_path: Path, loop: str) -> None:
    # Its headers were complete when the loop came back, but the task serving it had not run
    # when the header timer fired: it got a 408 saying its headers did not arrive in time.
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    assert _stall_while_a_request_arrives(tmp_path / "stall", factory) == 200


async def test_connection_cap_answers_503(served: Callable[..., Any]) -> None:
    files = project("http: {max_connections: 20, header_timeout_s: 60}")
    async with served(files) as (_, client, server):
        held = [await open_connection(server) for _ in range(20)]
        for _, writer in held:
            writer.write(b"GET /_wistro/health HTTP/1.1\r\nhost: 127.0.0.1\r\n")  # no end
        await until(lambda: len(server.connections.open) == 20)

        reader, writer = await open_connection(server)
        writer.write(b"GET /_wistro/health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        error = json_error(await read_all(reader), 503, "unavailable")
        assert "limit 20" in error["message"]
        writer.close()
        assert server.connections.refused == 1

        for _, w in held[:5]:
            w.close()
        await until(lambda: len(server.connections.open) == 15)
        resp = await client.get("/_wistro/health")
        assert resp.status_code == 200, resp.text
        for _, w in held[5:]:
            w.close()


async def test_limits_from_wistro_yml_are_validated(tmp_path: Path) -> None:
    for http, field in (
        ("http: {body_timeout_s: 0}", "http.body_timeout_s"),
        ("http: {max_connections: 0}", "http.max_connections"),
        ("http: {keep_alive_s: 0}", "http.keep_alive_s"),
        ("http: {trusted_hosts: [ok.example, 'bad host']}", "http.trusted_hosts.1"),
        ("http: {trusted_hosts: ['a.*.example']}", "http.trusted_hosts.0"),
        ("http: {trusted_host: [x]}", "http.trusted_host"),
    ):
        root = write_project(tmp_path / field.replace(".", "_"), project(http))
        with pytest.raises(ConfigError) as info:
            wistro.load(root, state="memory", traces="memory")
        assert info.value.field == field, info.value
        assert "wistro.yml" in str(info.value)


# ---------------------------------------------------------------- trusted hosts


async def test_untrusted_host_is_400_on_every_route(served: Callable[..., Any]) -> None:
    async with served(project()) as (app, client, _):
        routes = [
            ("POST", "/record"),
            ("POST", "/hooks/thing"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
            ("GET", "/_wistro/health"),
            ("GET", "/nope"),
        ]
        for host in ("evil.example", "evil.example:3111", "127.0.0.1.evil.example", "", "a b"):
            for method, path in routes:
                resp = await client.request(method, path, json={}, headers={"host": host})
                error = error_of(resp, 400, "bad_host")
                assert "x-wistro-trace-id" not in resp.headers
                assert "not trusted" in error["message"] or "Host" in error["message"], error
        for host in ("localhost", "localhost:9", "127.0.0.1", "127.0.0.2:80", "[::1]:3111", "x"):
            resp = await client.get("/_wistro/health", headers={"host": host})
            assert resp.status_code == 200, (host, resp.text)
        await nothing_ran(app)


async def test_trusted_hosts_from_wistro_yml(served: Callable[..., Any]) -> None:
    files = project(
        "http: {trusted_hosts: [api.example.com, '*.internal.example', 'b.example:8443']}"
    )
    async with served(files) as (_, client, _):

        async def status(host: str) -> int:
            return (await client.get("/_wistro/health", headers={"host": host})).status_code

        assert await status("api.example.com") == 200
        assert await status("API.Example.com:443") == 200  # case and any port
        assert await status("svc.internal.example") == 200
        assert await status("b.example:8443") == 200
        assert await status("b.example:8444") == 400
        assert await status("internal.example") == 400  # *. is for subdomains
        assert await status("api.example.com.evil.example") == 400
        assert await status("localhost") == 200  # loopback stays trusted
    async with served(project("http: {trusted_hosts: ['*']}")) as (_, client, _):
        resp = await client.get("/_wistro/health", headers={"host": "anything.example"})
        assert resp.status_code == 200


def test_trusted_hosts_rules() -> None:
    """The matcher on its own: the bound address and wildcard binds."""
    bound = TrustedHosts((), bound_host="192.168.1.5")
    assert bound.allows("192.168.1.5:3111") and bound.allows("localhost")
    assert not bound.allows("192.168.1.6") and not bound.allows("evil.example")
    assert TrustedHosts((), bound_host="myhost.lan").allows("myhost.lan:80")
    wildcard = TrustedHosts((), bound_host="0.0.0.0")
    assert wildcard.allows("10.0.0.7:3111") and wildcard.allows("[2001:db8::1]:80")
    assert not wildcard.allows("evil.example")  # a name still has to be trusted
    assert TrustedHosts((), bound_host="::").allows("10.0.0.7")
    assert not TrustedHosts().allows(None) and not TrustedHosts().allows("[::1")
    assert TrustedHosts(["*"]).allows(None)
    assert split_host("[::1]:8080") == ("::1", 8080) and split_host("Example.COM.") == (
        "example.com",
        None,
    )
    assert split_host("x:99999") is None and split_host("a_b.example") == ("a_b.example", None)
    assert check_host_pattern("::1") is None and check_host_pattern("*.example.com") is None
    assert check_host_pattern("*.10.0.0.1") and check_host_pattern("http://x.example")


# ---------------------------------------------------------------- content type


async def test_bodies_must_be_declared_json(served: Callable[..., Any]) -> None:
    async with served(project()) as (app, client, _):
        body = b'{"name": "x"}'
        for path in ("/record", "/hooks/thing"):
            for ctype in (
                "text/plain",
                "text/plain;charset=UTF-8",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/json; charset=latin-1",
                "application/jsonx",
                "application/json, text/plain",
            ):
                resp = await client.post(path, content=body, headers={"content-type": ctype})
                error_of(resp, 415, "unsupported_media_type")
                assert "x-wistro-trace-id" not in resp.headers
            # a cross-site "simple" POST from a page on another origin
            resp = await client.post(
                path,
                content=body,
                headers={"content-type": "text/plain", "origin": "https://evil.example"},
            )
            error_of(resp, 415, "unsupported_media_type")
            # no Content-Type at all from another origin (fetch() with a Blob body) is refused too
            resp = await client.post(path, content=body, headers={"origin": "https://evil.example"})
            error_of(resp, 415, "unsupported_media_type")
        await nothing_ran(app)

        ok = {
            "application/json": body,
            "application/json; charset=utf-8": body,
            'Application/JSON;Charset="UTF-8"': body,
            "application/merge-patch+json": body,
        }
        for ctype, content in ok.items():
            resp = await client.post("/record", content=content, headers={"content-type": ctype})
            assert resp.status_code == 201, (ctype, resp.text)
        # no Content-Type from a non-browser client, or from the same origin, is fine
        assert (await client.post("/record", content=body)).status_code == 201
        same = {"origin": str(client.base_url).rstrip("/")}
        assert (await client.post("/record", content=body, headers=same)).status_code == 201
        # a body-less request without Content-Type stays fine
        resp = await client.post("/echo/x?limit=2")
        assert resp.status_code == 200 and resp.json()["body"] is None
        # a single-valued query parameter given twice is refused, never "the last one wins"
        resp = await client.post("/echo/x?limit=2&limit=3")
        assert resp.status_code == 422 and "limit" in resp.text, resp.text
        resp = await client.post("/hooks/thing")  # reaches validation: the body is required
        error_of(resp, 422, "validation_error")


# ---------------------------------------------------------------- lone surrogates


async def test_lone_surrogates_are_400(served: Callable[..., Any]) -> None:
    async with served(project()) as (app, client, _):
        headers = {"content-type": "application/json"}
        cases = {
            b'{"name": "\\ud800"}': "lone surrogate (\\ud800) at body.name",
            b'{"name": "ok\\uDFFFok"}': "lone surrogate (\\udfff) at body.name",
            b'{"name": "x", "deep": [1, {"k": "\\udbff"}]}': "at body.deep.1.k",
            b'{"\\ud800": 1}': "(a key)",
        }
        for path in ("/record", "/hooks/thing"):
            for raw, words in cases.items():
                resp = await client.post(path, content=raw, headers=headers)
                error = error_of(resp, 400, "bad_request")
                assert words in error["message"], error
                assert error["message"].startswith("body contains a lone surrogate")
            # a number a float cannot hold is refused the same way
            resp = await client.post(path, content=b'{"n": 1e400}', headers=headers)
            assert "out of range" in error_of(resp, 400, "bad_request")["message"]
        await nothing_ran(app)

        # a valid surrogate pair is one character, and an escaped backslash is text
        resp = await client.post("/record", content=b'{"name": "\\ud83d\\ude00"}', headers=headers)
        assert resp.status_code == 201, resp.text
        resp = await client.post("/hooks/thing", content=b'{"name": "\\\\ud800"}', headers=headers)
        assert resp.status_code == 202, resp.text
        await app.drain()
        assert await app.state.get("calls", "record") == [{"name": "\U0001f600"}]
        assert await app.state.get("calls", "hook") == [{"name": "\\ud800"}]
        assert set(app.runs()["status"]) == {"ok"}

        # query strings and headers cannot carry one: percent-escapes decode with replacement,
        # header bytes as latin-1
        resp = await client.post("/echo/x?tags=%ED%A0%80", headers={"user-agent": b"\xed\xa0\x80"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["query"]["tags"] == ["\ufffd\ufffd\ufffd"]
        assert resp.json()["agent"] == "\xed\xa0\x80"


# ---------------------------------------------------------------- strict


STRICT_STEPS = {
    "src/models.py": """
        from datetime import datetime
        from enum import Enum
        from pydantic import BaseModel

        class Size(str, Enum):
            small = "small"
            large = "large"

        class Order(BaseModel):
            qty: int
            gift: bool = False
            at: datetime | None = None
            size: Size = Size.small

        class Page(BaseModel):
            page: int = 1
            verbose: bool = False
    """,
    "src/lax.step.py": """
        from .models import Order, Page
        config = {"type": "api", "name": "Lax", "path": "/lax", "method": "POST",
                  "body": Order, "query": Page, "emits": []}

        async def handler(req, ctx):
            return {"body": {"body": req.body.model_dump(mode="json"), "query": req.query}}
    """,
    "src/strict.step.py": """
        from .models import Order, Page
        config = {"type": "api", "name": "Strict", "path": "/strict", "method": "POST",
                  "body": Order, "query": Page, "strict": True, "emits": []}

        async def handler(req, ctx):
            return {"body": {"body": req.body.model_dump(mode="json"), "query": req.query}}
    """,
    "src/schema.step.py": """
        config = {"type": "api", "name": "Schema", "path": "/schema", "method": "POST",
                  "body": {"type": "object", "properties": {"qty": {"type": "integer"}}},
                  "query": {"type": "object", "properties": {"n": {"type": "integer"},
                                                             "r": {"type": "number"}}},
                  "strict": True, "emits": []}

        async def handler(req, ctx):
            return {"body": {"body": req.body, "query": req.query}}
    """,
    "wistro.yml": """
        name: strictness
        api:
          - path: /hooks/strict
            emits: order.noted
            strict: true
            body: {type: object, properties: {qty: {type: integer}}, required: [qty]}
          - path: /hooks/lax
            emits: order.seen
            body: {type: object, properties: {qty: {type: integer}}, required: [qty]}
    """,
}


async def test_strict_endpoints_do_not_coerce(served: Callable[..., Any]) -> None:
    async with served(STRICT_STEPS) as (_, client, _):
        lax = await client.post(
            "/lax?page=02&verbose=yes", json={"qty": "1", "gift": 1, "at": "2024-05-01T10:00:00Z"}
        )
        assert lax.status_code == 200, lax.text
        assert lax.json()["body"]["qty"] == 1 and lax.json()["body"]["gift"] is True
        assert lax.json()["query"] == {"page": 2, "verbose": True}

        error = error_of(
            await client.post("/strict", json={"qty": "1", "gift": 1}), 422, "validation_error"
        )
        assert {f["path"] for f in error["fields"]} == {"body.qty", "body.gift"}
        # JSON's own text forms still parse in strict mode: date-times, enum values
        ok = await client.post(
            "/strict?page=2&verbose=true",
            json={"qty": 1, "gift": True, "at": "2024-05-01T10:00:00Z", "size": "large"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json() == {
            "body": {"qty": 1, "gift": True, "at": "2024-05-01T10:00:00Z", "size": "large"},
            "query": {"page": 2, "verbose": True},
        }
        # the query is text: strict converts only JSON's spelling of the schema's type
        for query, field in (("page=02", "query.page"), ("verbose=yes", "query.verbose")):
            error = error_of(
                await client.post(f"/strict?{query}", json={"qty": 1}), 422, "validation_error"
            )
            assert [f["path"] for f in error["fields"]] == [field]

        # JSON Schema bodies never coerce, strict or not; the query converts JSON spellings
        error_of(await client.post("/schema", json={"qty": "1"}), 422, "validation_error")
        resp = await client.post("/schema?n=-3&r=2.5e1", json={"qty": 1})
        assert resp.json() == {"body": {"qty": 1}, "query": {"n": -3, "r": 25.0}}
        for query in ("n=1_000", "r=1_000", "r=.5", "n=+1"):
            error_of(await client.post(f"/schema?{query}", json={}), 422, "validation_error")
        for path in ("/hooks/strict", "/hooks/lax"):
            error_of(await client.post(path, json={"qty": "1"}), 422, "validation_error")
            assert (await client.post(path, json={"qty": 1})).status_code == 202


async def test_strict_is_for_api_steps(tmp_path: Path) -> None:
    files = {
        "src/e.step.py": """
            config = {"name": "E", "subscribes": ["a"], "strict": True}

            async def handler(data, ctx):
                pass
        """
    }
    app = wistro.load(write_project(tmp_path / "p", files), state="memory", traces="memory")
    try:
        assert len(app.errors) == 1
        assert isinstance(app.errors[0], StepLoadError)
        assert "'strict' applies to api steps only" in str(app.errors[0])
    finally:
        await app.aclose()
