"""Schemathesis against the real server on loopback, from the project's own /openapi.json:
valid and invalid requests to every operation; never a 5xx, every 4xx is a JSON error, and
schemathesis' own checks (documented status codes, content types and response schemas, valid
data accepted, invalid data refused) hold."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from projects import write_project
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection
from schemathesis.core.parameters import ParameterLocation
from test_http import AUTH_STEP, ECHO_STEP, MODEL_QUERY_STEP, WEBHOOK_PROJECT, serving, token_auth

import wistro
from wistro.tooling.scaffold import create_project
from wistro.triggers.openapi import endpoint_specs, openapi_document

EXAMPLES_PER_OPERATION = 40

ORDER_STEP = """
from pydantic import BaseModel, Field

class Line(BaseModel):
    sku: str = Field(min_length=1, max_length=20)
    qty: int = Field(ge=1, le=1000)

class Order(BaseModel):
    order_id: str
    lines: list[Line]
    note: str | None = None

config = {"type": "api", "name": "Put order", "path": "/shops/{shop:int}/orders/{order_id}",
          "method": "PUT", "body": Order, "emits": []}

async def handler(req, ctx):
    return {"status": 200, "body": {"shop": req.path_params["shop"], "n": len(req.body.lines)}}
"""


WEBHOOK_API = """
api:
  - path: /webhooks/payment
    emits: payment.webhook
    flows: [checkout]
    body:
      type: object
      properties: {id: {type: string}, amount: {type: integer, minimum: 0}}
      required: [id, amount]
"""


def fuzz_project(root: Path) -> Path:
    """The shop template plus endpoints with path params, query schemas and models, a wistro.yml
    webhook and an authenticated step."""
    create_project(root)
    with (root / "wistro.yml").open("a", encoding="utf-8") as f:
        f.write(WEBHOOK_API)
    return write_project(
        root,
        {
            "src/extra/echo.step.py": ECHO_STEP,
            "src/extra/items.step.py": MODEL_QUERY_STEP,
            "src/extra/order.step.py": ORDER_STEP,
            "src/extra/secure.step.py": AUTH_STEP,
            "src/extra/record.step.py": WEBHOOK_PROJECT["src/record.step.py"],
        },
    )


def check_response(case: Any, resp: schemathesis.Response) -> None:
    where = f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:300]}"
    assert resp.status_code < 500, where
    if 400 <= resp.status_code < 500:
        assert resp.headers.get("content-type") == ["application/json"], where
        error = resp.json()["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str), where
        for field in error.get("fields", ()):
            assert isinstance(field["path"], str) and isinstance(field["message"], str), where


def lax_bodies(app: wistro.App) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of the endpoints whose pydantic body model validates in lax mode,
    the documented default (docs/triggers.md, "Strict bodies"): they accept what pydantic can
    coerce (``true`` or ``"12"`` for an integer), which the JSON Schema in the document does not
    allow, so schemathesis' negative-data check does not apply to them. Found when one CI run's
    random seed sent ``{"amount_cents": true}`` to the shop's POST /orders (202)."""
    return {
        (s.method, s.openapi_path())
        for s in endpoint_specs(app)
        if s.record is not None and s.record.body_model is not None and not s.strict
    }


_INTEGER_TEXT = re.compile(r"-?\d+")


def _read_text(text: str, schema: dict[str, Any]) -> Any:
    """One query value (text) read as the JSON type its documented schema names; left text
    when it is not one, so validation refuses it."""
    kind = schema.get("type")
    if kind == "integer" and _INTEGER_TEXT.fullmatch(text):
        return int(text)
    if kind == "number":
        with contextlib.suppress(ValueError):
            number = float(text)
            if math.isfinite(number):
                return number
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text


def query_as_sent_is_valid(doc: dict[str, Any], case: Any, resp: schemathesis.Response) -> bool:
    """Whether the query string the request carried is valid for the operation's documented
    query parameters, read as OpenAPI's form style sends them (an array as repeated keys, every
    value text). A negative query value of schemathesis can serialize into a valid one:
    ``tags: false`` for an array of strings is sent as ``tags=false``, ``ratio: [0.7]`` for a
    number as ``ratio=0.7``; one CI run's random seed combined the two, which schemathesis'
    own filters did not catch, and reported the server's 200 as invalid data accepted."""
    operation = doc["paths"][case.operation.path][case.method.lower()]
    params = [p for p in operation.get("parameters", ()) if p.get("in") == "query"]
    sent = parse_qs(urlsplit(resp.request.url or "").query, keep_blank_values=True)
    if set(sent) - {p["name"] for p in params}:
        return False
    query: dict[str, Any] = {}
    for param in params:
        schema, texts = param.get("schema", {}), sent.get(param["name"])
        if texts is None:
            if param.get("required"):
                return False
            continue
        if schema.get("type") == "array":
            query[param["name"]] = [_read_text(t, schema.get("items", {})) for t in texts]
        elif len(texts) == 1:
            query[param["name"]] = _read_text(texts[0], schema)
        else:
            return False
        if not jsonschema.Draft202012Validator(schema).is_valid(query[param["name"]]):
            return False
    return True


def fuzz(doc: dict[str, Any], base_url: str, lax: set[tuple[str, str]]) -> dict[str, int]:
    """Run positive and negative examples of every operation (blocking: call in a thread)."""
    schema = schemathesis.openapi.from_dict(doc)
    seen: dict[str, int] = {}
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        excluded = (
            [negative_data_rejection] if (operation.method.upper(), operation.path) in lax else []
        )
        for mode in GenerationMode:

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                resp = case.call(base_url=base_url, session=session, timeout=10)
                check_response(case, resp)
                checks_off = excluded  # noqa: B023 (run() is called in this iteration)
                meta = case.meta
                negative = (
                    {where for where, part in meta.components.items() if part.mode.is_negative}
                    if meta is not None and meta.generation.mode.is_negative
                    else set()
                )
                if negative == {ParameterLocation.QUERY} and query_as_sent_is_valid(
                    doc, case, resp
                ):
                    checks_off = [negative_data_rejection]  # what was sent is valid data
                # the doc tells the truth
                case.validate_response(resp, excluded_checks=checks_off)
                key = f"{case.method} {resp.status_code}"
                seen[key] = seen.get(key, 0) + 1

            run()
    return seen


async def test_fuzz_the_generated_openapi(tmp_path: Path) -> None:
    app = wistro.load(fuzz_project(tmp_path / "shop"), state="memory", traces="memory")
    assert app.errors == [], app.errors
    options = {"authenticators": {"test-token": token_auth([])}, "max_body_bytes": 64_000}
    try:
        async with serving(app, **options) as (client, server):
            doc = (await client.get("/openapi.json")).json()
            assert len([op for item in doc["paths"].values() for op in item]) == 6
            lax = lax_bodies(app)
            assert ("POST", "/orders") in lax and ("POST", "/webhooks/payment") not in lax
            seen = await asyncio.wait_for(asyncio.to_thread(fuzz, doc, server.url, lax), 240)
            # both sides were exercised: accepted requests and refused ones
            assert any(k.endswith((" 200", " 202")) for k in seen), seen
            assert any(k.endswith(" 422") for k in seen), seen
            assert any(k.endswith(" 401") for k in seen), seen
            await app.drain()
    finally:
        await app.aclose()


def test_the_query_as_sent_check_refuses_what_the_server_must_refuse(tmp_path: Path) -> None:
    # The fuzz turns schemathesis' negative-data check off for a request only when what it sent
    # is valid: this reading must refuse everything invalid, or it would hide a real bug.
    app = wistro.load(
        write_project(tmp_path / "echo", {"src/echo.step.py": ECHO_STEP}),
        state="memory",
        traces="memory",
    )
    assert app.errors == [], app.errors
    doc = openapi_document(app)
    operation = SimpleNamespace(path="/echo/{name}")

    def valid(query: str) -> bool:
        case = SimpleNamespace(operation=operation, method="POST")
        resp = SimpleNamespace(request=SimpleNamespace(url=f"http://h/echo/a?{query}"))
        return query_as_sent_is_valid(doc, case, resp)  # type: ignore[arg-type]

    assert valid("ratio=0.7&tags=false")  # the CI run's case: valid as sent
    assert valid("") and valid("limit=3&verbose=true&tags=a&tags=b&ratio=-1e3")
    for bad in ("ratio=abc", "ratio=inf", "limit=0", "limit=1.5", "limit=1&limit=2",
                "verbose=yes", "verbose=1", "other=x"):  # fmt: skip
        assert not valid(bad), bad
