"""Webhook authentication hardening, served for real on loopback and driven by httpx.

A signed webhook is accepted once: a replay (or a redelivery by the sender) is answered
``200 {"duplicate": true}`` and starts no run. HMAC secrets rotate (``secret_env`` lists several),
Standard Webhooks (``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature``) is one more auth
type, and every refused request is logged in one line without its secret or signature.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth_support import hmac_hex, standard_webhook_headers
from openapi_spec_validator import validate as validate_openapi
from projects import write_project
from starlette.datastructures import Headers
from test_http import serving

import wistro
from wistro.errors import ConfigError
from wistro.triggers.auth import (
    AuthFailure,
    DuplicateRequest,
    build_authenticator,
    check_auth_config,
    protects_replays,
)
from wistro.triggers.replay import ReplayCache
from wistro.triggers.standard_webhooks import sign

STRIPE_NEW = "whsec_stripe_new_4f9a2c7e1b3d5f60718293a4"
STRIPE_OLD = "whsec_stripe_old_0a1b2c3d4e5f60718293a4b5"
GITHUB = "gh-hook-secret-7c1e9a5b3d2f4e6a8b0c"
STD = "whsec_" + base64.b64encode(b"standard-webhooks-key-0123456789ab").decode()
STD_OLD = "whsec_" + base64.b64encode(b"standard-webhooks-old-key-98765432").decode()
API_KEY = "k_hardening_5e4d3c2b1a09f8e7d6c5"
SECRETS = (STRIPE_NEW, STRIPE_OLD, GITHUB, STD, STD_OLD, API_KEY)

WISTRO_YML = """
name: hooks
api:
  - path: /webhooks/stripe
    emits: payment.webhook
    body: {type: object, properties: {id: {type: string}}, required: [id]}
    auth: {type: hmac-sha256, secret_env: [WH_T_STRIPE_NEW, WH_T_STRIPE_OLD],
           header: Stripe-Signature}
  - path: /webhooks/github
    emits: push.received
    auth: {type: hmac-sha256, secret_env: WH_T_GITHUB, header: X-Hub-Signature-256,
           prefix: "sha256=", dedupe_header: X-GitHub-Delivery}
  - path: /webhooks/standard
    emits: event.received
    auth: {type: standard-webhooks, secret_env: [WH_T_STD, WH_T_STD_OLD]}
"""

RECORDER = """
config = {"name": "Record TOPIC", "subscribes": ["TOPIC"]}

async def handler(data, ctx):
    seen = await ctx.state.get("seen", "TOPIC") or []
    await ctx.state.set("seen", "TOPIC", [*seen, data])
"""

SIGNED_STEP = """
config = {"type": "api", "name": "Signed call", "path": "/signed", "method": "POST",
          "auth": {"type": "hmac-sha256", "secret_env": "WH_T_STRIPE_NEW",
                   "timestamp_header": "X-Timestamp"},
          "emits": []}

async def handler(req, ctx):
    n = (await ctx.state.get("seen", "signed") or 0) + 1
    await ctx.state.set("seen", "signed", n)
    return {"status": 201, "body": {"n": n, "auth": req.auth}}
"""

KEYED_STEP = """
config = {"type": "api", "name": "Keyed", "path": "/keyed", "method": "POST",
          "auth": {"type": "api-key", "keys_env": "WH_T_API_KEYS"}, "emits": []}

async def handler(req, ctx):
    return {"body": req.auth}
"""

Served = tuple[wistro.App, httpx.AsyncClient]


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    for name, value in {
        "WH_T_STRIPE_NEW": STRIPE_NEW,
        "WH_T_STRIPE_OLD": STRIPE_OLD,
        "WH_T_GITHUB": GITHUB,
        "WH_T_STD": STD,
        "WH_T_STD_OLD": STD_OLD,
        "WH_T_API_KEYS": API_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    files = {
        "wistro.yml": WISTRO_YML,
        "src/signed.step.py": SIGNED_STEP,
        "src/keyed.step.py": KEYED_STEP,
    }
    for topic in ("payment.webhook", "push.received", "event.received"):
        files[f"src/{topic.replace('.', '_')}.step.py"] = RECORDER.replace("TOPIC", topic)
    app = wistro.load(write_project(tmp_path / "hooks", files), state="memory", traces="memory")
    assert app.errors == [], app.errors
    async with serving(app) as (client, _):
        yield app, client
    await app.aclose()


def stripe(body: bytes, secret: str = STRIPE_NEW, t: int | None = None) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    return {
        "content-type": "application/json",
        "Stripe-Signature": f"t={t},v1={hmac_hex(secret, f'{t}.'.encode() + body)}",
    }


def github(body: bytes, delivery: str | None, secret: str = GITHUB) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac_hex(secret, body),
    }
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return headers


def standard(body: bytes, msg_id: str, t: int | None = None, *secrets: str) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    first, *more = secrets or (STD,)
    return {
        "content-type": "application/json",
        **standard_webhook_headers(first, msg_id, t, body, *more),
    }


def event(n: int) -> bytes:
    return json.dumps({"id": f"evt_{n}", "type": "payment_intent.succeeded"}).encode()


def assert_duplicate(resp: httpx.Response) -> None:
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"duplicate": True}
    assert "x-wistro-trace-id" not in resp.headers


def assert_refused(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json() == {"error": {"type": "unauthorized", "message": "authentication failed"}}


async def seen(app: wistro.App, topic: str) -> Any:
    await app.drain()
    return await app.state.get("seen", topic)


# ---------------------------------------------------------------- replays


async def test_replayed_signed_webhook_starts_one_run(served: Served) -> None:
    app, client = served
    body = event(1)
    headers = stripe(body)
    first = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert first.status_code == 202, first.text
    assert_duplicate(await client.post("/webhooks/stripe", content=body, headers=headers))
    # the same signed message under a reshuffled header, or signed again by the old secret
    sig = headers["Stripe-Signature"]
    t = sig.split(",")[0]
    mixed = f"{t},v0=00,{sig.split(',')[1]},v1=ffff"
    assert_duplicate(
        await client.post(
            "/webhooks/stripe", content=body, headers={**headers, "Stripe-Signature": mixed}
        )
    )
    old = stripe(body, STRIPE_OLD, int(t.removeprefix("t=")))
    assert_duplicate(await client.post("/webhooks/stripe", content=body, headers=old))

    # five copies at once: one run
    body2 = event(2)
    copies = await asyncio.gather(
        *(
            client.post(
                "/webhooks/stripe", content=body2, headers=stripe(body2, t=int(time.time()))
            )
            for _ in range(5)
        )
    )
    statuses = sorted(r.status_code for r in copies)
    assert statuses == [200, 200, 200, 200, 202], [r.text for r in copies]

    # a request refused after authentication is not remembered: sending it again is no duplicate
    bad = json.dumps({"type": "no id"}).encode()
    bad_headers = stripe(bad)
    refused: set[str] = set()
    for _ in range(2):
        resp = await client.post("/webhooks/stripe", content=bad, headers=bad_headers)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["trace_id"] == resp.headers["x-wistro-trace-id"]
        refused.add(resp.headers["x-wistro-trace-id"])

    # the replay cache outlives a rebuild of the routes (activation, reload)
    app.deactivate("Keyed")
    app.activate("Keyed")
    assert_duplicate(await client.post("/webhooks/stripe", content=body, headers=headers))

    assert [e["id"] for e in await seen(app, "payment.webhook")] == ["evt_1", "evt_2"]
    runs = app.runs()
    assert sorted(runs["status"]) == ["ok", "ok", "refused", "refused"]
    assert set(runs[runs["status"] == "refused"]["trace_id"]) == refused


async def test_signed_api_step_runs_its_handler_once(served: Served) -> None:
    app, client = served
    t = str(int(time.time()))
    body = b'{"n": 1}'
    headers = {
        "content-type": "application/json",
        "X-Timestamp": t,
        "X-Signature": hmac_hex(STRIPE_NEW, f"{t}.".encode() + body),
    }
    resp = await client.post("/signed", content=body, headers=headers)
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"n": 1, "auth": {"auth": "hmac-sha256", "timestamp": int(t)}}
    for _ in range(3):
        assert_duplicate(await client.post("/signed", content=body, headers=headers))
    assert await seen(app, "signed") == 1


async def test_dedupe_header_github_style(served: Served) -> None:
    app, client = served
    a, b = b'{"ref": "refs/heads/main", "n": 1}', b'{"ref": "refs/heads/main", "n": 2}'
    assert (
        await client.post("/webhooks/github", content=a, headers=github(a, "d-1"))
    ).status_code == 202
    # a redelivery of the same event
    assert_duplicate(await client.post("/webhooks/github", content=a, headers=github(a, "d-1")))
    # the delivery id is not signed: a replay under a fresh id is still a duplicate
    assert_duplicate(await client.post("/webhooks/github", content=a, headers=github(a, "d-2")))
    # another (validly signed) body under a delivery id already seen
    assert_duplicate(await client.post("/webhooks/github", content=b, headers=github(b, "d-1")))
    assert (
        await client.post("/webhooks/github", content=b, headers=github(b, "d-3"))
    ).status_code == 202
    assert_refused(await client.post("/webhooks/github", content=b, headers=github(b, None)))
    assert_refused(await client.post("/webhooks/github", content=b, headers=github(b, "d" * 257)))
    assert [e["n"] for e in await seen(app, "push.received")] == [1, 2]


async def test_hmac_secret_rotation(served: Served) -> None:
    app, client = served
    for n, secret in ((1, STRIPE_OLD), (2, STRIPE_NEW)):
        body = event(n)
        resp = await client.post("/webhooks/stripe", content=body, headers=stripe(body, secret))
        assert resp.status_code == 202, resp.text
    body = event(3)
    assert_refused(
        await client.post("/webhooks/stripe", content=body, headers=stripe(body, "whsec_other"))
    )
    assert [e["id"] for e in await seen(app, "payment.webhook")] == ["evt_1", "evt_2"]


# ---------------------------------------------------------------- standard webhooks


async def test_standard_webhooks_entry(served: Served) -> None:
    app, client = served
    now = int(time.time())
    body = b'{"type": "invoice.paid", "n": 1}'

    async def post(headers: dict[str, str], content: bytes = body) -> httpx.Response:
        return await client.post("/webhooks/standard", content=content, headers=headers)

    resp = await post(standard(body, "msg_1", now))
    assert resp.status_code == 202, resp.text
    assert resp.headers["x-wistro-trace-id"] == resp.json()["trace_id"]
    assert_duplicate(await post(standard(body, "msg_1", now)))  # replayed
    assert_duplicate(await post(standard(body, "msg_1", now + 5)))  # the sender's retry: same id
    # rotation: signed by the old secret, or by both (space-separated), with a bogus one first
    assert (await post(standard(body, "msg_2", now, STD_OLD))).status_code == 202
    both = standard(body, "msg_3", now, STD_OLD, STD)
    both["webhook-signature"] = "v1,AAAA " + both["webhook-signature"]
    assert (await post(both)).status_code == 202

    good = standard(body, "msg_4", now)
    assert_refused(await post(good, body + b" "))  # tampered body
    assert_refused(await post({**good, "webhook-id": "msg_5"}))  # the id is signed
    assert_refused(await post({**good, "webhook-timestamp": str(now + 1)}))  # so is the time
    assert_refused(
        await post(standard(body, "msg_4", now - 400))
    )  # too old (well past the 300 s window)
    assert_refused(await post(standard(body, "msg_4", now + 400)))  # from the future (well past it)
    other = "whsec_" + base64.b64encode(b"not-the-secret-at-all-0123456789").decode()
    assert_refused(await post(standard(body, "msg_4", now, other)))
    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert_refused(await post({k: v for k, v in good.items() if k != missing}))
    sig = good["webhook-signature"].removeprefix("v1,")
    assert_refused(await post({**good, "webhook-signature": f"v1a,{sig}"}))  # other versions
    assert_refused(await post({**good, "webhook-signature": sig}))  # no version
    assert_refused(await post({**good, "webhook-timestamp": "yesterday"}))
    assert (await post(good)).status_code == 202  # none of the refusals used up msg_4

    assert [e["n"] for e in await seen(app, "event.received")] == [1, 1, 1, 1]
    assert len(app.runs()) == 4


async def test_standard_webhooks_spec_example() -> None:
    """The example of the Standard Webhooks specification, with the clock at its timestamp."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, msg_id, ts, body) == expected
    cache = ReplayCache()
    auth = build_authenticator(
        {"type": "standard-webhooks", "secret_env": "S"},
        where="wistro.yml: api.0",
        environ={"S": secret},
        clock=lambda: ts + 10.0,
        replay=cache,
    )
    headers = Headers(
        {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": expected}
    )
    claims = await auth("POST", "/hook", headers, body)
    assert claims == {"auth": "standard-webhooks", "webhook_id": msg_id, "timestamp": ts}
    with pytest.raises(DuplicateRequest):
        await auth("POST", "/hook", headers, body)
    assert len(cache) == 1
    late = build_authenticator(
        {"type": "standard-webhooks", "secret_env": "S", "tolerance_s": 60},
        where="wistro.yml: api.0",
        environ={"S": secret},
        clock=lambda: ts + 61.0,
    )
    with pytest.raises(AuthFailure):
        await late("POST", "/hook", headers, body)


@pytest.mark.parametrize(
    ("auth", "field", "words"),
    [
        ({"type": "standard-webhooks"}, "auth.secret_env", "required"),
        ({"type": "standard-webhooks", "secret_env": []}, "auth.secret_env", "at least one"),
        ({"type": "standard-webhooks", "secret_env": ["A", "A"]}, "auth.secret_env", "twice"),
        (
            {"type": "standard-webhooks", "secret_env": "S", "tolerance_s": 0},
            "auth.tolerance_s",
            "greater than 0",
        ),
        (
            {"type": "standard-webhooks", "secret_env": "S", "header": "X"},
            "auth.header",
            "unknown key",
        ),
        ({"type": "standard-webhooks", "secret": "whsec_x"}, "auth.secret", "unknown key"),
        ({"type": "hmac-sha256", "secrets_env": ["A", "B"]}, "auth.secrets_env", "unknown key"),
        (
            {"type": "hmac-sha256", "secret_env": "S", "dedupe_header": "a b"},
            "auth.dedupe_header",
            "pattern",
        ),
    ],
)
def test_webhook_config_errors(auth: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_auth_config(auth, where="wistro.yml: api.0")
    assert info.value.field == field, info.value
    assert words in str(info.value) and "wistro.yml: api.0" in str(info.value)
    if field in ("auth.secret", "auth.secrets_env"):
        assert info.value.hint and "secret_env" in info.value.hint


def test_standard_webhooks_secrets_are_checked_at_build() -> None:
    where = "wistro.yml: api.2"
    cfg = {"type": "standard-webhooks", "secret_env": ["A", "B"]}
    with pytest.raises(ConfigError) as info:
        build_authenticator(cfg, where=where, environ={"A": STD, "B": "whsec_not*base64!"})
    assert info.value.field == "auth.secret_env.1" and "B" in str(info.value)
    assert "not*base64" not in str(info.value) and STD not in str(info.value)
    with pytest.raises(ConfigError) as info:
        build_authenticator(cfg, where=where, environ={"A": STD})
    assert info.value.field == "auth.secret_env.1" and "is not set" in str(info.value)
    check_auth_config(cfg, where=where)  # the shape alone reads no secret
    assert protects_replays(cfg)
    assert protects_replays(
        {"type": "hmac-sha256", "secret_env": "S", "header": "Stripe-Signature"}
    )
    assert not protects_replays({"type": "hmac-sha256", "secret_env": "S"})  # no time, no id


async def test_openapi_describes_the_webhook_schemes(served: Served) -> None:
    _, client = served
    doc = (await client.get("/openapi.json")).json()
    validate_openapi(doc)
    text = json.dumps(doc)
    for secret in SECRETS:
        assert secret not in text
    schemes = doc["components"]["securitySchemes"]
    (std,) = [s for s in schemes.values() if s.get("name") == "webhook-signature"]
    assert std["type"] == "apiKey" and std["in"] == "header"
    assert "webhook-id" in std["description"] and "v1," in std["description"]
    (gh,) = [s for s in schemes.values() if s.get("name") == "X-Hub-Signature-256"]
    assert "X-GitHub-Delivery" in gh["description"]
    op = doc["paths"]["/webhooks/standard"]["post"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["required"] == [
        "duplicate"
    ]
    assert {"401", "408", "415", "503"} <= set(op["responses"])
    assert "200" not in doc["paths"]["/keyed"]["post"]["responses"]  # api keys do not dedupe


# ---------------------------------------------------------------- logging


async def test_refused_authentication_is_logged_without_secrets(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    _, client = served
    now = int(time.time())
    body = event(9)
    wrong_stripe = stripe(body, "whsec_wrong_secret")
    wrong_std = standard(body, "msg_9", now, "whsec_" + base64.b64encode(b"w" * 32).decode())
    given_key = "k_guessed_key_1234567890"
    with caplog.at_level(logging.INFO, logger="wistro.http"):
        assert_refused(await client.post("/webhooks/stripe", content=body, headers=wrong_stripe))
        assert_refused(await client.post("/webhooks/standard", content=body, headers=wrong_std))
        assert_refused(await client.post("/keyed", json={}, headers={"X-API-Key": given_key}))
        good = stripe(body)
        assert (
            await client.post("/webhooks/stripe", content=body, headers=good)
        ).status_code == 202
        assert_duplicate(await client.post("/webhooks/stripe", content=body, headers=good))

    refused = [r for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refused) == 3, caplog.text
    for record, path, reason in zip(
        refused,
        ("/webhooks/stripe", "/webhooks/standard", "/keyed"),
        ("signature mismatch", "signature mismatch", "API key not recognised"),
        strict=True,
    ):
        line = record.getMessage()
        assert record.levelno == logging.WARNING and "\n" not in line
        assert f"refused POST {path} from 127.0.0.1:" in line and reason in line, line
    assert any("duplicate POST /webhooks/stripe" in r.getMessage() for r in caplog.records)
    for text in (
        *SECRETS,
        given_key,
        wrong_stripe["Stripe-Signature"].split("v1=")[1],
        good["Stripe-Signature"].split("v1=")[1],
        wrong_std["webhook-signature"].removeprefix("v1,"),
        "whsec_wrong_secret",
    ):
        assert text not in caplog.text


async def test_replay_window_edges_and_release() -> None:
    """With an injected clock: a signed message is a duplicate up to the edge of its tolerance
    (after that its timestamp is refused anyway); release() forgets it."""
    now = [float(int(time.time()))]
    cache = ReplayCache()
    auth = build_authenticator(
        {"type": "hmac-sha256", "secret_env": "S", "timestamp_header": "X-Ts", "tolerance_s": 60},
        where="src/x.step.py",
        environ={"S": GITHUB},
        clock=lambda: now[0],
        replay=cache,
    )
    ts = int(now[0])
    body = b'{"a": 1}'
    headers = Headers({"X-Ts": str(ts), "X-Signature": hmac_hex(GITHUB, f"{ts}.".encode() + body)})
    claims = await auth("POST", "/x", headers, body)
    now[0] = ts + 60.0  # the last second the timestamp passes
    with pytest.raises(DuplicateRequest):
        await auth("POST", "/x", headers, body)
    now[0] = ts + 61.0
    with pytest.raises(AuthFailure):
        await auth("POST", "/x", headers, body)
    now[0] = float(ts)
    auth.release(claims, body)  # type: ignore[attr-defined]
    assert await auth("POST", "/x", headers, body) == claims


def test_replay_cache_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    cache = ReplayCache(max_entries=3)
    with caplog.at_level(logging.WARNING, logger="wistro.http"):
        for i in range(5):
            assert cache.claim(("id", f"k{i}"), expires_at=100.0 + i, now=0.0)
    assert len(cache) == 3 and cache.evicted == 2
    assert ("id", "k0") not in cache and ("id", "k4") in cache  # the oldest went first
    assert "replay cache full" in caplog.text
    assert not cache.claim(("id", "k4"), expires_at=200.0, now=1.0)  # still remembered
    assert cache.claim(("id", "k4"), expires_at=200.0, now=104.0)  # expired: new again
    cache.release(("id", "k4"))
    assert ("id", "k4") not in cache
