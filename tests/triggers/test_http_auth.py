"""Endpoint authentication end to end: a project served for real on loopback, requests via httpx.

An api step with an API key, one with a shared-secret JWT and a scope (403), one with OIDC against
a JWKS served on loopback, and a wistro.yml ``api:`` webhook with a Stripe-style HMAC signature.
Handlers see the verified claims as ``req.auth``; refused requests get a generic JSON error.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from auth_support import Issuer, public_jwk, rsa_key
from cryptography.hazmat.primitives import serialization
from projects import write_project

import wistro
from wistro.errors import ConfigError
from wistro.triggers.http import HttpServer

API_KEY = "k_test_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
HOOK_SECRET = "whsec_test_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
JWT_SECRET = "jwt-test-secret-" + "a1b2c3d4e5f6a7b8" * 3
AUDIENCE = "shop-api"
SECRETS = (API_KEY, HOOK_SECRET, JWT_SECRET)

CREATE_ORDER = """
config = {
    "type": "api", "name": "Create order", "path": "/orders", "method": "POST",
    "body": {"type": "object", "properties": {"order_id": {"type": "string"}},
             "required": ["order_id"]},
    "auth": {"type": "api-key", "keys_env": "WISTRO_T_API_KEYS", "key_ids": ["old", "ci"]},
    "flows": ["checkout"],
}

async def handler(req, ctx):
    return {"status": 201, "body": {"order_id": req.body["order_id"], "auth": req.auth}}
"""

ADMIN = """
config = {
    "type": "api", "name": "Admin report", "path": "/admin/report", "method": "GET",
    "auth": {"type": "jwt", "secret_env": "WISTRO_T_JWT_SECRET", "issuer": "shop",
             "audience": "shop-api", "scopes": ["reports:read"]},
}

async def handler(req, ctx):
    return {"status": 200, "body": {"sub": req.auth["sub"], "scope": req.auth["scope"]}}
"""

ME = """
config = {
    "type": "api", "name": "Me", "path": "/me", "method": "GET",
    "auth": {"type": "oidc", "issuer": "ISSUER_URL", "audience": "shop-api",
             "algorithms": ["RS256"]},
}

async def handler(req, ctx):
    return {"status": 200, "body": req.auth}
"""

RECORD_WEBHOOK = """
config = {"name": "Record webhook", "subscribes": ["payment.webhook"], "flows": ["checkout"]}

async def handler(data, ctx):
    seen = await ctx.state.get("hooks", "seen") or []
    await ctx.state.set("hooks", "seen", [*seen, data["id"]])
"""

WISTRO_YML = """
name: authshop
flows:
  checkout: {name: Checkout}
api:
  - path: /webhooks/stripe
    method: POST
    emits: payment.webhook
    flows: [checkout]
    auth: {type: hmac-sha256, secret_env: WISTRO_T_HOOK_SECRET, header: Stripe-Signature}
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WISTRO_T_API_KEYS", f"k_old_key_0000000000000000,{API_KEY}")
    monkeypatch.setenv("WISTRO_T_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("WISTRO_T_JWT_SECRET", JWT_SECRET)


def project_files(issuer_url: str) -> dict[str, str]:
    return {
        "wistro.yml": WISTRO_YML,
        "src/orders/create_order.step.py": CREATE_ORDER,
        "src/admin/report.step.py": ADMIN,
        "src/me.step.py": ME.replace("ISSUER_URL", issuer_url),
        "src/payments/record_webhook.step.py": RECORD_WEBHOOK,
    }


@pytest.fixture
async def served(
    tmp_path: Path, issuer: Issuer, secrets_env: None
) -> AsyncIterator[tuple[wistro.App, httpx.AsyncClient]]:
    root = write_project(tmp_path / "shop", project_files(issuer.url))
    app = wistro.load(root, state="memory", traces="memory")
    assert app.errors == []
    server = HttpServer(app, "127.0.0.1", 0)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            yield app, client
    finally:
        server.stop()
        await asyncio.wait_for(task, 10)
        await app.aclose()


def assert_refused(resp: httpx.Response, status: int) -> None:
    """A refusal: the status, a generic JSON error, nothing that helps an attacker."""
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    error.pop("trace_id", None)
    kind = "forbidden" if status == 403 else "unauthorized"
    assert error == {"type": kind, "message": "authentication failed"}
    for secret in SECRETS:
        assert secret not in resp.text and secret not in str(resp.headers)


async def test_api_key_step(served: tuple[wistro.App, httpx.AsyncClient]) -> None:
    _, client = served
    order = {"order_id": "A1"}
    assert_refused(await client.post("/orders", json=order), 401)
    assert_refused(await client.post("/orders", json=order, headers={"X-API-Key": "nope"}), 401)
    assert_refused(
        await client.post("/orders", json=order, headers={"X-API-Key": API_KEY[:-1]}), 401
    )
    # authentication comes before parsing and validation: no hint about the body without a key
    assert_refused(await client.post("/orders", content=b"{not json"), 401)
    assert_refused(await client.post("/orders", json={"wrong": 1}), 401)

    resp = await client.post("/orders", json=order, headers={"x-api-key": API_KEY})
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"order_id": "A1", "auth": {"auth": "api-key", "key_id": "ci"}}
    assert resp.headers["x-wistro-trace-id"]
    # with a valid key, validation errors are reported as usual
    resp = await client.post("/orders", json={"wrong": 1}, headers={"X-API-Key": API_KEY})
    assert resp.status_code == 422


def stripe_signature(body: bytes, t: int, secret: str = HOOK_SECRET) -> str:
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={sig}"


async def test_hmac_webhook_entry(served: tuple[wistro.App, httpx.AsyncClient]) -> None:
    app, client = served
    now = int(time.time())

    async def post(body: bytes, signature: str | None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return await client.post("/webhooks/stripe", content=body, headers=headers)

    good = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()
    assert_refused(await post(good, None), 401)
    assert_refused(await post(good, stripe_signature(good, now, "whsec_wrong")), 401)
    assert_refused(await post(good + b" ", stripe_signature(good, now)), 401)  # tampered
    tampered = good.replace(b"evt_1", b"evt_X")
    assert_refused(await post(tampered, stripe_signature(good, now)), 401)
    assert_refused(await post(good, stripe_signature(good, now - 3600)), 401)  # replayed
    assert_refused(await post(good, stripe_signature(good, now)[:-4]), 401)

    resp = await post(good, stripe_signature(good, now))
    assert resp.status_code == 202, resp.text
    trace_id = resp.json()["trace_id"]
    assert resp.headers["x-wistro-trace-id"] == trace_id
    await app.drain()
    # only the authenticated request was delivered
    assert await app.state.get("hooks", "seen") == ["evt_1"]


async def test_jwt_step_401_and_403(served: tuple[wistro.App, httpx.AsyncClient]) -> None:
    _, client = served
    now = int(time.time())

    def tok(**claims: Any) -> dict[str, str]:
        payload = {"iss": "shop", "aud": AUDIENCE, "sub": "ana", "iat": now, "exp": now + 300}
        payload.update(claims)
        return {"Authorization": "Bearer " + jwt.encode(payload, JWT_SECRET, algorithm="HS256")}

    assert_refused(await client.get("/admin/report"), 401)
    assert_refused(await client.get("/admin/report", headers=tok(scope="orders:read")), 403)
    assert_refused(await client.get("/admin/report", headers=tok(exp=now - 600)), 401)
    assert_refused(await client.get("/admin/report", headers=tok(aud="other")), 401)
    assert_refused(await client.get("/admin/report", headers={"Authorization": "Bearer x.y"}), 401)
    resp = await client.get("/admin/report", headers=tok(scope="orders:read reports:read"))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"sub": "ana", "scope": "orders:read reports:read"}


async def test_oidc_step_with_loopback_jwks(
    served: tuple[wistro.App, httpx.AsyncClient], issuer: Issuer
) -> None:
    _, client = served
    key = rsa_key()
    issuer.jwks = [public_jwk(key, "k1", "RS256")]
    now = int(time.time())

    def tok(kid: str = "k1", **claims: Any) -> dict[str, str]:
        payload = {"iss": issuer.url, "aud": AUDIENCE, "sub": "bo", "iat": now, "exp": now + 300}
        payload.update(claims)
        token = jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})
        return {"Authorization": f"Bearer {token}"}

    resp = await client.get("/me", headers=tok(email="bo@example.com"))
    assert resp.status_code == 200, resp.text
    claims = resp.json()
    assert claims["sub"] == "bo" and claims["email"] == "bo@example.com"
    assert claims["iss"] == issuer.url
    assert_refused(await client.get("/me", headers=tok(exp=now - 600)), 401)
    assert_refused(await client.get("/me", headers=tok(iss="https://evil.example")), 401)
    assert_refused(await client.get("/me", headers=tok(kid="unknown")), 401)
    assert_refused(await client.get("/me"), 401)
    # HS256 signed with the issuer's public key (PEM) as the HMAC secret: refused
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64url(json.dumps({"iss": issuer.url, "aud": AUDIENCE, "exp": now + 300}).encode())
    sig = b64url(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    forged = f"{head}.{body}.{sig}"
    assert_refused(await client.get("/me", headers={"Authorization": f"Bearer {forged}"}), 401)
    # the JWKS was fetched once: the unknown kid came within the refresh rate limit
    assert issuer.hits["jwks"] == 1


async def test_openapi_lists_the_security_schemes(
    served: tuple[wistro.App, httpx.AsyncClient],
) -> None:
    _, client = served
    doc = (await client.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    by_header = {s.get("name"): s for s in schemes.values() if s["type"] == "apiKey"}
    assert "X-API-Key" in by_header and "Stripe-Signature" in by_header
    assert any(s["type"] == "openIdConnect" for s in schemes.values())
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    op = doc["paths"]["/orders"]["post"]
    (requirement,) = op["security"]
    assert set(requirement) <= set(schemes)
    for secret in SECRETS:
        assert secret not in json.dumps(doc)


async def test_missing_secret_is_a_config_error_naming_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WISTRO_T_API_KEYS", raising=False)
    root = write_project(tmp_path / "p", {"src/orders/create_order.step.py": CREATE_ORDER})
    app = wistro.load(root, state="memory", traces="memory")
    try:
        with pytest.raises(ConfigError) as info:
            HttpServer(app, "127.0.0.1", 0)
        assert "create_order.step.py" in str(info.value)
        assert info.value.field == "auth.keys_env"
        assert "WISTRO_T_API_KEYS" in str(info.value)
    finally:
        await app.aclose()
