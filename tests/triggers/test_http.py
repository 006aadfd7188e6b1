"""The HTTP trigger for real: uvicorn on a loopback port inside the test's event loop, driven by
httpx (and raw sockets where httpx would hide what the server does): api steps, wistro.yml
``api:`` entries, every error status with its JSON body, OpenAPI and the docs page."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi
from projects import write_project

import wistro
from wistro.errors import ConfigError
from wistro.tooling.scaffold import create_project
from wistro.triggers.auth import AuthFailure
from wistro.triggers.http import HttpServer, build_asgi, serve_http
from wistro.triggers.openapi import openapi_document

ORDER = {"order_id": "A1", "amount_cents": 1200}
Served = tuple[wistro.App, httpx.AsyncClient, HttpServer]


@asynccontextmanager
async def serving(
    app: wistro.App, **options: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, HttpServer]]:
    """``serve_http`` on port 0 in this loop; the Future hands over the bound server."""
    bound: asyncio.Future[HttpServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_http(app, "127.0.0.1", 0, bound, **options))
    server = await asyncio.wait_for(bound, 10)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            yield client, server
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Served]:
    create_project(tmp_path / "shop")
    app = wistro.load(tmp_path / "shop", state="memory", traces="memory")
    assert app.errors == []
    async with serving(app) as (client, server):
        yield app, client, server
    await app.aclose()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``async with served(files, **build_options) as (app, client):`` a small project."""
    apps: list[wistro.App] = []

    @asynccontextmanager
    async def make(
        files: dict[str, str], **options: Any
    ) -> AsyncIterator[tuple[wistro.App, httpx.AsyncClient]]:
        root = write_project(tmp_path / f"p{len(apps)}", files)
        app = wistro.load(root, state="memory", traces="memory")
        assert app.errors == [], app.errors
        apps.append(app)
        async with serving(app, **options) as (client, _):
            yield app, client

    yield make
    for app in apps:
        await app.aclose()


def error_of(resp: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    error: dict[str, Any] = resp.json()["error"]
    assert error["type"] == kind
    assert isinstance(error["message"], str) and error["message"]
    return error


async def raw_request(server: HttpServer, head: bytes, *chunks: bytes) -> tuple[int, bytes]:
    """Send ``head`` then ``chunks`` on a fresh connection; read the response (the server may
    answer before the body is complete, and close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), 10)
        while b"\r\n\r\n" not in data:
            more = await asyncio.wait_for(reader.read(65536), 10)
            if not more:
                break
            data += more
        status = int(data.split(b" ", 2)[1])
        return status, data
    finally:
        writer.close()


# ---------------------------------------------------------------- the shop


async def test_post_orders_runs_the_whole_flow(shop: Served) -> None:
    app, client, _ = shop
    resp = await client.post("/orders", json=ORDER)
    assert resp.status_code == 202, resp.text
    trace_id = resp.headers["x-wistro-trace-id"]
    assert resp.json() == {"order_id": "A1", "trace_id": trace_id}
    await app.drain()
    trace = app.trace(trace_id)
    assert trace["run"]["trigger"] == "api"
    assert trace["run"]["topic"] == "POST /orders"
    assert trace["run"]["status"] == "ok"
    spans = {s["step"]: s for s in trace["spans"]}
    assert spans["Place order"]["topic"] == "POST /orders"
    assert set(spans) == {
        "Place order",
        "Charge card",
        "Reserve stock",
        "Send receipt",
        "Pack order",
    }
    assert all(s["status"] == "ok" for s in spans.values())
    topics = [e["topic"] for e in trace["events"]]
    assert {"order.placed", "payment.captured", "stock.reserved", "order.shipped"} <= set(topics)
    assert await app.state.get("orders", "A1") == {"status": "charged", "receipt": "sent"}


async def test_shop_validation_errors_name_each_field(shop: Served) -> None:
    _, client, _ = shop
    error = error_of(await client.post("/orders", json={"order_id": ""}), 422, "validation_error")
    assert "trace_id" not in error
    paths = {f["path"]: f["message"] for f in error["fields"]}
    assert set(paths) == {"body.order_id", "body.amount_cents"}
    assert "at least 1 character" in paths["body.order_id"]
    assert paths["body.amount_cents"] == "Field required"
    error = error_of(await client.post("/orders", json=[1, 2]), 422, "validation_error")
    assert error["fields"][0]["path"] == "body"
    error_of(await client.post("/orders"), 422, "validation_error")  # no body at all


async def test_malformed_bodies_are_400(shop: Served) -> None:
    _, client, _ = shop
    for body in (b'{"order_id": ', b"{'a': 1}", b"NaN", b'{"a": Infinity}', b"[1,]"):
        resp = await client.post("/orders", content=body)
        error = error_of(resp, 400, "bad_request")
        assert "x-wistro-trace-id" not in resp.headers
        assert error["message"].startswith("malformed JSON"), error
    error = error_of(
        await client.post("/orders", content=b'{"order_id": "\xff\xfe"}'), 400, "bad_request"
    )
    assert "UTF-8" in error["message"]


async def test_deep_json_is_refused_not_crashed(shop: Served) -> None:
    _, client, _ = shop
    for body in (
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ):
        error = error_of(await client.post("/orders", content=body), 400, "bad_request")
        assert "deep" in error["message"]
    nested: Any = 1
    for _ in range(200):  # parses fine in Python, but deeper than the limit
        nested = {"a": nested}
    error = error_of(await client.post("/orders", json=nested), 400, "bad_request")
    assert "deeper than 64" in error["message"]
    # the server is still fine
    assert (await client.post("/orders", json=ORDER)).status_code == 202


async def test_unknown_route_and_wrong_method(shop: Served) -> None:
    _, client, _ = shop
    error = error_of(await client.get("/nope"), 404, "not_found")
    assert error == {"type": "not_found", "message": "no such endpoint"}
    error_of(await client.post("/orders/"), 404, "not_found")  # no redirect games
    resp = await client.get("/orders")
    error_of(resp, 405, "method_not_allowed")
    assert resp.headers["allow"] == "POST"
    error_of(await client.delete("/orders"), 405, "method_not_allowed")


async def test_body_limit_from_content_length(shop: Served) -> None:
    _, _, server = shop
    head = (
        b"POST /orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 50000000\r\n\r\n"
    )
    status, data = await raw_request(server, head, b"{")  # refused before the body arrives
    assert status == 413
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["type"] == "payload_too_large"


async def test_body_limit_while_streaming_without_content_length(shop: Served) -> None:
    _, _, server = shop
    head = b"POST /orders HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    chunk = b"[" * 65536
    # 1.2 MiB in chunks and no final chunk: the server must answer once it has counted too much
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 19
    status, data = await raw_request(server, head, *chunks)
    assert status == 413
    assert b"payload_too_large" in data


async def test_body_limit_over_httpx(served: Callable[..., Any]) -> None:
    files = {"src/echo.step.py": ECHO_STEP}
    async with served(files, max_body_bytes=1000) as (_, client):
        error_of(await client.post("/echo/x", content=b"1" * 1001), 413, "payload_too_large")

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b" " * 600

        error_of(await client.post("/echo/x", content=stream()), 413, "payload_too_large")
        resp = await client.post("/echo/x", content=b" " * 990 + b"1")
        assert resp.status_code == 200, resp.text


# ---------------------------------------------------------------- small projects

ECHO_STEP = """
config = {
    "type": "api", "name": "Echo", "path": "/echo/{name}", "method": "POST",
    "query": {"type": "object", "properties": {
        "limit": {"type": "integer", "minimum": 1},
        "ratio": {"type": "number"},
        "verbose": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    }},
    "emits": [],
}

async def handler(req, ctx):
    return {"status": 200, "body": {
        "method": req.method, "path": req.path, "path_params": req.path_params,
        "query": req.query, "body": req.body, "raw": req.raw_body.decode(),
        "agent": req.headers.get("user-agent"), "auth": req.auth,
    }, "headers": {"X-Echo": "yes", "X-Count": 3}}
"""

MODEL_QUERY_STEP = """
from pydantic import BaseModel, Field

class Page(BaseModel):
    page: int = Field(default=1, ge=1)
    size: int = Field(default=10, le=100)
    ids: list[int] = []

config = {"type": "api", "name": "List items", "path": "/items", "method": "GET",
          "query": Page, "emits": []}

async def handler(req, ctx):
    return {"body": req.query}
"""

FAILING_STEPS = {
    "src/boom.step.py": """
        config = {"type": "api", "name": "Boom", "path": "/boom", "method": "POST", "emits": []}

        async def handler(req, ctx):
            raise RuntimeError("secret-db-password=hunter2 at /srv/app.py")
    """,
    "src/slow.step.py": """
        import asyncio
        config = {"type": "api", "name": "Slow", "path": "/slow", "method": "GET",
                  "timeout_s": 0.2, "emits": []}

        async def handler(req, ctx):
            await asyncio.sleep(30)
    """,
    "src/sleepy.step.py": """
        import asyncio
        config = {"type": "api", "name": "Sleepy", "path": "/sleepy", "method": "GET",
                  "emits": []}

        async def handler(req, ctx):
            await asyncio.sleep(30)
    """,
    "src/bad_result.step.py": """
        config = {"type": "api", "name": "Bad result", "path": "/bad/{what}", "method": "GET",
                  "emits": []}

        async def handler(req, ctx):
            what = req.path_params["what"]
            if what == "none":
                return None
            if what == "status":
                return {"status": "200", "body": {}}
            if what == "header":
                return {"body": {}, "headers": {"x-a": "1\\r\\nset-cookie: evil=1"}}
            if what == "body":
                return {"body": {1, 2}}
            if what == "keys":
                return {"body": {}, "extra": 1}
            return {"status": 204, "body": {"dropped": True}}
    """,
}


async def test_path_params_and_query(served: Callable[..., Any]) -> None:
    async with served({"src/echo.step.py": ECHO_STEP}) as (_, client):
        resp = await client.post(
            "/echo/bob%20smith?limit=5&ratio=0.5&verbose=true&tags=a&tags=b&other=x",
            json={"hello": ["world"]},
            headers={"user-agent": "t/1"},
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-echo"] == "yes" and resp.headers["x-count"] == "3"
        assert resp.headers["x-wistro-trace-id"]
        echo = resp.json()
        assert echo["method"] == "POST" and echo["path"] == "/echo/bob smith"
        assert echo["path_params"] == {"name": "bob smith"}
        assert echo["query"] == {
            "limit": 5,
            "ratio": 0.5,
            "verbose": True,
            "tags": ["a", "b"],
            "other": "x",
        }
        assert echo["body"] == {"hello": ["world"]}
        assert json.loads(echo["raw"]) == {"hello": ["world"]}
        assert echo["agent"] == "t/1" and echo["auth"] == {}

        for query, field in (
            ("limit=0", "query.limit"),
            ("limit=abc", "query.limit"),
            ("verbose=yes", "query.verbose"),
            ("limit=" + "9" * 5000, "query.limit"),  # more digits than int() takes
            ("ratio=" + "9" * 5000, "query.ratio"),  # a float that is not finite
            ("ratio=nan", "query.ratio"),
        ):
            error = error_of(await client.post(f"/echo/x?{query}"), 422, "validation_error")
            assert [f["path"] for f in error["fields"]] == [field], error


async def test_query_model(served: Callable[..., Any]) -> None:
    async with served({"src/items.step.py": MODEL_QUERY_STEP}) as (_, client):
        resp = await client.get("/items?page=2&ids=1&ids=2")
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"page": 2, "size": 10, "ids": [1, 2]}
        error = error_of(await client.get("/items?page=0&size=1000&ids=x"), 422, "validation_error")
        assert {f["path"] for f in error["fields"]} == {"query.page", "query.size", "query.ids.0"}


async def test_handler_exception_is_500_with_trace_id_only(served: Callable[..., Any]) -> None:
    async with served(FAILING_STEPS) as (app, client):
        resp = await client.post("/boom", json={})
        error = error_of(resp, 500, "internal_error")
        trace_id = resp.headers["x-wistro-trace-id"]
        assert error == {
            "type": "internal_error",
            "message": "internal error",
            "trace_id": trace_id,
        }
        assert "hunter2" not in resp.text and "RuntimeError" not in resp.text
        assert "Traceback" not in resp.text and "/srv/" not in resp.text
        await app.drain()
        span = app.trace(trace_id)["spans"][0]
        assert span["status"] == "error" and "hunter2" in span["error"]
        assert "RuntimeError" in span["traceback"]


async def test_handler_timeout_is_504(served: Callable[..., Any]) -> None:
    async with served(FAILING_STEPS, default_timeout_s=0.3) as (app, client):
        for path in ("/slow", "/sleepy"):  # the step's timeout_s, then the server's default
            resp = await client.get(path)
            error = error_of(resp, 504, "timeout")
            assert error["trace_id"] == resp.headers["x-wistro-trace-id"]
            await app.drain()
            assert app.trace(error["trace_id"])["spans"][0]["status"] == "timeout"


async def test_invalid_handler_result_is_500_logged_with_the_step(
    served: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with served(FAILING_STEPS) as (_, client):
        for what in ("none", "status", "header", "body", "keys"):
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="wistro.http"):
                resp = await client.get(f"/bad/{what}")
            error = error_of(resp, 500, "internal_error")
            assert error["trace_id"] == resp.headers["x-wistro-trace-id"]
            assert "set-cookie" not in resp.headers
            assert "'Bad result'" in caplog.text and "bad_result.step.py" in caplog.text, what
        resp = await client.get("/bad/empty")
        assert resp.status_code == 204 and resp.content == b""


WEBHOOK_PROJECT = {
    "wistro.yml": """
        name: hooks
        api:
          - path: /webhooks/payment
            method: POST
            emits: payment.webhook
            flows: [billing]
            description: A payment provider calls this
            body:
              type: object
              properties:
                id: {type: string}
                amount: {type: integer, minimum: 0}
              required: [id, amount]
    """,
    "src/record.step.py": """
        config = {"name": "Record payment", "subscribes": ["payment.webhook"],
                  "flows": ["billing"]}

        async def handler(data, ctx):
            await ctx.state.set("payments", data["id"], data)
    """,
}


async def test_config_endpoint_emits(served: Callable[..., Any]) -> None:
    async with served(WEBHOOK_PROJECT) as (app, client):
        resp = await client.post("/webhooks/payment", json={"id": "p1", "amount": 5})
        assert resp.status_code == 202, resp.text
        trace_id = resp.headers["x-wistro-trace-id"]
        assert resp.json() == {"trace_id": trace_id}
        await app.drain()
        assert await app.state.get("payments", "p1") == {"id": "p1", "amount": 5}
        trace = app.trace(trace_id)
        assert trace["run"]["trigger"] == "api" and trace["run"]["topic"] == "payment.webhook"
        assert [s["step"] for s in trace["spans"]] == ["Record payment"]

        error = error_of(
            await client.post("/webhooks/payment", json={"id": "p2", "amount": -1}),
            422,
            "validation_error",
        )
        assert error["fields"][0]["path"] == "body.amount"
        error = error_of(
            await client.post("/webhooks/payment", json={"id": "p2"}), 422, "validation_error"
        )
        assert error["fields"][0]["path"] == "body.amount"
        error_of(await client.post("/webhooks/payment", content=b"{"), 400, "bad_request")
        error_of(await client.get("/webhooks/payment"), 405, "method_not_allowed")


async def test_openapi_document_is_valid_and_complete(served: Callable[..., Any]) -> None:
    files = {
        **WEBHOOK_PROJECT,
        "src/echo.step.py": ECHO_STEP,
        "src/items.step.py": MODEL_QUERY_STEP,
        "src/models.py": """
            from pydantic import BaseModel

            class Line(BaseModel):
                sku: str
                qty: int

            class Order(BaseModel):
                order_id: str
                lines: list[Line]
        """,
        "src/order.step.py": """
            from .models import Order
            from pydantic import BaseModel

            class Created(BaseModel):
                order_id: str

            config = {"type": "api", "name": "Create order", "path": "/orders/{shop:int}",
                      "method": "PUT", "body": Order, "responses": {201: Created},
                      "description": "Creates an order", "flows": ["billing"], "emits": []}

            async def handler(req, ctx):
                return {"status": 201, "body": {"order_id": req.body.order_id}}
        """,
    }
    async with served(files) as (app, client):
        resp = await client.get("/openapi.json")
        assert resp.status_code == 200
        doc = resp.json()
        validate_openapi(doc)
        assert doc == openapi_document(app)  # deterministic
        assert json.dumps(doc) == json.dumps(openapi_document(app))
        assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "hooks"
        assert set(doc["paths"]) == {
            "/echo/{name}",
            "/items",
            "/orders/{shop}",
            "/webhooks/payment",
        }
        text = json.dumps(doc)
        assert "$defs" not in text and "#/$defs/" not in text
        schemas = doc["components"]["schemas"]
        assert "Line" in schemas and "WistroError" in schemas

        put = doc["paths"]["/orders/{shop}"]["put"]
        assert put["summary"] == "Create order" and put["tags"] == ["billing"]
        assert put["parameters"] == [
            {
                "name": "shop",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        ]
        body = put["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Line"}
        assert (
            put["responses"]["201"]["content"]["application/json"]["schema"]["title"] == "Created"
        )
        for code in ("400", "404", "413", "422", "500", "504"):
            ref = put["responses"][code]["content"]["application/json"]["schema"]
            assert ref == {"$ref": "#/components/schemas/WistroError"}

        echo = doc["paths"]["/echo/{name}"]["post"]
        params = {(p["in"], p["name"]): p for p in echo["parameters"]}
        assert set(params) == {
            ("path", "name"),
            ("query", "limit"),
            ("query", "ratio"),
            ("query", "verbose"),
            ("query", "tags"),
        }
        assert params[("query", "limit")]["schema"] == {"type": "integer", "minimum": 1}
        items = doc["paths"]["/items"]["get"]
        assert {p["name"] for p in items["parameters"]} == {"page", "size", "ids"}
        assert "requestBody" not in items

        hook = doc["paths"]["/webhooks/payment"]["post"]
        assert hook["requestBody"]["content"]["application/json"]["schema"]["required"] == [
            "id",
            "amount",
        ]
        assert "202" in hook["responses"] and "504" not in hook["responses"]

        resp = await client.put(
            "/orders/7", json={"order_id": "o1", "lines": [{"sku": "a", "qty": 1}]}
        )
        assert resp.status_code == 201, resp.text
        error_of(await client.put("/orders/x", json={}), 404, "not_found")  # int path param


async def test_openapi_of_the_shop_and_docs_page(shop: Served) -> None:
    app, client, _ = shop
    doc = (await client.get("/openapi.json")).json()
    validate_openapi(doc)
    lock = json.loads(app.project.lock_path.read_text())
    assert doc["info"]["version"] == lock["version"]
    resp = await client.get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "/orders" in page and "Place order" in page and "Accepts an order over HTTP" in page
    assert "order_id" in page  # the request body schema
    for external in ("http://", "https://", "//cdn", "<link", " src="):
        assert external not in page, external
    assert "default-src 'none'" in resp.headers["content-security-policy"]


async def test_health(shop: Served) -> None:
    app, client, _ = shop
    resp = await client.get("/_wistro/health")
    assert resp.json() == {"status": "ok", "project": "shop", "steps": len(app.registry)}
    error_of(await client.get("/_wistro/other"), 404, "not_found")


async def test_deactivated_step_is_not_served(shop: Served) -> None:
    app, client, _ = shop
    app.deactivate("Place order")
    error_of(await client.post("/orders", json=ORDER), 404, "not_found")
    assert "/orders" not in (await client.get("/openapi.json")).json()["paths"]
    app.activate("Place order")
    assert (await client.post("/orders", json=ORDER)).status_code == 202


async def test_reload_updates_the_routes(served: Callable[..., Any]) -> None:
    async with served({"src/a.step.py": api_step("A", "/a")}) as (app, client):
        error_of(await client.post("/b"), 404, "not_found")
        (app.project.src / "b.step.py").write_text(api_step("B", "/b"))
        app.reload()  # what `wistro dev` does on a file change
        assert (await client.post("/b")).status_code == 200
        assert "/b" in (await client.get("/openapi.json")).json()["paths"]


# ---------------------------------------------------------------- the authentication hook

AUTH_STEP = """
config = {"type": "api", "name": "Secure", "path": "/secure", "method": "POST",
          "body": {"type": "object", "required": ["n"]},
          "auth": {"type": "test-token", "token": "s3cret"}, "emits": []}

async def handler(req, ctx):
    return {"body": {"claims": req.auth, "n": req.body["n"]}}
"""


def token_auth(calls: list[dict[str, Any]]) -> Callable[..., Any]:
    """A tiny authenticator factory: ``x-token`` must equal the config's token; ``readonly``
    is a valid token without the right (403); ``crash`` makes it fail."""

    def factory(auth: dict[str, Any], *, where: str) -> Callable[..., Any]:
        if "token" not in auth:
            raise ConfigError("missing token", file=where, field="auth.token")
        calls.append({"where": where})

        async def authenticate(method: str, path: str, headers: Any, raw: bytes) -> dict[str, Any]:
            calls.append({"method": method, "path": path, "raw": raw})
            token = headers.get("X-Token")  # case-insensitive
            if token == "crash":
                raise RuntimeError("authenticator bug")
            if token == "readonly":
                raise AuthFailure(403, "token may not write")
            if token != auth["token"]:
                raise AuthFailure(401, f"bad token {token!r}")
            return {"sub": "tester"}

        return authenticate

    return factory


async def test_authentication_hook(served: Callable[..., Any]) -> None:
    calls: list[dict[str, Any]] = []
    options = {"authenticators": {"test-token": token_auth(calls)}}
    async with served({"src/secure.step.py": AUTH_STEP}, **options) as (_, client):
        assert "src/secure.step.py" in calls[0]["where"] and "'Secure'" in calls[0]["where"]
        generic = {"type": "unauthorized", "message": "authentication failed"}
        resp = await client.post("/secure", json={"n": 1})
        assert resp.status_code == 401 and resp.json() == {"error": generic}
        assert "x-wistro-trace-id" not in resp.headers
        # before parsing: a bad body without credentials says nothing about the body
        resp = await client.post("/secure", content=b"{not json", headers={"x-token": "nope"})
        assert resp.status_code == 401 and resp.json() == {"error": generic}
        assert "nope" not in resp.text
        resp = await client.post("/secure", json={"n": 1}, headers={"x-token": "readonly"})
        assert resp.status_code == 403
        assert resp.json() == {"error": {"type": "forbidden", "message": "authentication failed"}}
        resp = await client.post("/secure", json={"n": 1}, headers={"x-token": "crash"})
        error = error_of(resp, 500, "internal_error")
        assert "authenticator bug" not in resp.text and "trace_id" not in error

        resp = await client.post("/secure", content=b'{"n": 2}', headers={"x-token": "s3cret"})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"claims": {"sub": "tester"}, "n": 2}
        assert calls[-1] == {"method": "POST", "path": "/secure", "raw": b'{"n": 2}'}
        error_of(
            await client.post("/secure", json={}, headers={"x-token": "s3cret"}),
            422,
            "validation_error",
        )

        doc = (await client.get("/openapi.json")).json()
        validate_openapi(doc)
        op = doc["paths"]["/secure"]["post"]
        assert op["security"] and {"401", "403"} <= set(op["responses"])


async def test_bad_auth_config_fails_at_startup(tmp_path: Path) -> None:
    files = {"src/secure.step.py": AUTH_STEP.replace('"token": "s3cret"', '"tokn": "x"')}
    app = wistro.load(write_project(tmp_path / "p", files), state="memory", traces="memory")
    with pytest.raises(ConfigError, match=r"secure\.step\.py"):
        build_asgi(app, authenticators={"test-token": token_auth([])})
    await app.aclose()


async def test_unknown_auth_type_never_serves_unauthenticated(tmp_path: Path) -> None:
    files = {"src/secure.step.py": AUTH_STEP}
    app = wistro.load(write_project(tmp_path / "p", files), state="memory", traces="memory")
    with pytest.raises(ConfigError):
        build_asgi(app)  # "test-token" is no type wistro.triggers.auth knows
    await app.aclose()


# ---------------------------------------------------------------- configuration errors


def api_step(name: str, path: str, method: str = "POST") -> str:
    return (
        f"config = {{'type': 'api', 'name': {name!r}, 'path': {path!r}, 'method': {method!r}, "
        "'emits': []}\n\nasync def handler(req, ctx):\n    return {'body': None}\n"
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"src/a.step.py": api_step("A", "/x"), "src/b.step.py": api_step("B", "/x")},
            "also served by",
        ),
        ({"src/a.step.py": api_step("A", "/_wistro/x")}, "reserved"),
        ({"src/a.step.py": api_step("A", "/docs", "GET")}, "reserved"),
        ({"src/a.step.py": api_step("A", "/x/{id:nope}")}, "unknown path parameter type"),
    ],
)
async def test_endpoint_config_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    app = wistro.load(write_project(tmp_path / "p", files), state="memory", traces="memory")
    with pytest.raises(ConfigError, match=message):
        build_asgi(app)
    await app.aclose()


async def test_same_path_other_methods_and_head(served: Callable[..., Any]) -> None:
    files = {
        "src/a.step.py": api_step("A", "/x", "GET"),
        "src/b.step.py": api_step("B", "/x", "DELETE"),
    }
    async with served(files) as (_, client):
        assert (await client.get("/x")).json() is None
        assert (await client.delete("/x")).status_code == 200
        resp = await client.head("/x")
        assert resp.status_code == 200 and resp.content == b""
        resp = await client.post("/x")
        error_of(resp, 405, "method_not_allowed")
        assert set(resp.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}


async def test_port_in_use_is_an_error(shop: Served) -> None:
    app, _, server = shop
    with pytest.raises(OSError, match="could not listen"):
        await serve_http(app, "127.0.0.1", server.port)
