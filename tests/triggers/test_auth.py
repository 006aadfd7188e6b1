"""Endpoint authentication: API keys, HMAC webhooks, OIDC/JWT against a real JWKS on loopback.

No mocks: keys are generated here, tokens are signed with PyJWT, and the issuer (discovery
document and JWKS) is a Starlette app served by uvicorn on 127.0.0.1 that counts its hits.
Time is an injected clock, so expiry, replay windows and the JWKS refresh rate limit are tested
without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from auth_support import Issuer, public_jwk, rsa_key
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.datastructures import Headers

from wistro.errors import ConfigError
from wistro.triggers.auth import (
    Authenticator,
    AuthFailure,
    build_authenticator,
    check_auth_config,
    describe_security,
)

API_KEYS = "k_live_first_0123456789abcdef,k_live_second_fedcba9876543210"
HMAC_SECRET = "whsec_test_secret_5f1e9a7c3b2d4e6f"
JWT_SECRET = "shared-jwt-secret-" + "0123456789abcdef" * 3  # 65 bytes: enough for HS512
ENV = {"API_KEYS": API_KEYS, "HOOK_SECRET": HMAC_SECRET, "JWT_SECRET": JWT_SECRET}
SECRETS = [*API_KEYS.split(","), HMAC_SECRET, JWT_SECRET]
WHERE = "src/orders/create.step.py"
AUDIENCE = "wistro-api"


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def refused(
    auth: Authenticator, headers: dict[str, str], body: bytes = b"{}", status: int = 401
) -> AuthFailure:
    """Call and expect an AuthFailure with ``status`` whose client-facing text is generic."""
    with pytest.raises(AuthFailure) as info:
        await auth("POST", "/orders", Headers(headers), body)
    exc = info.value
    assert exc.status == status, exc.reason
    text = str(exc)
    assert text == ("Forbidden" if status == 403 else "Unauthorized")
    assert exc.reason and exc.reason not in text
    for secret in SECRETS:
        assert secret not in text and secret not in exc.reason and secret not in repr(exc)
    return exc


async def accepted(
    auth: Authenticator, headers: dict[str, str], body: bytes = b"{}"
) -> dict[str, Any]:
    return await auth("POST", "/orders", Headers(headers), body)


# ---------------------------------------------------------------- api key


async def test_api_key_accepts_every_configured_key_and_names_it() -> None:
    auth = build_authenticator(
        {"type": "api-key", "keys_env": "API_KEYS", "key_ids": ["ci", "partner"]},
        where=WHERE,
        environ=ENV,
    )
    first, second = API_KEYS.split(",")
    assert await accepted(auth, {"X-API-Key": first}) == {"auth": "api-key", "key_id": "ci"}
    # header names are case-insensitive
    assert await accepted(auth, {"x-api-key": second}) == {"auth": "api-key", "key_id": "partner"}
    # a plain dict with another casing works too
    assert await auth("GET", "/", {"X-Api-KEY": first}, b"") == {"auth": "api-key", "key_id": "ci"}


async def test_api_key_default_ids_and_custom_header() -> None:
    auth = build_authenticator(
        {"type": "api-key", "keys_env": "API_KEYS", "header": "X-Token"}, where=WHERE, environ=ENV
    )
    second = API_KEYS.split(",")[1]
    assert (await accepted(auth, {"X-Token": second}))["key_id"] == "key-2"
    await refused(auth, {"X-API-Key": second})  # the default header is not looked at


async def test_api_key_wrong_or_missing_is_401() -> None:
    auth = build_authenticator(
        {"type": "api-key", "keys_env": "API_KEYS"}, where=WHERE, environ=ENV
    )
    first = API_KEYS.split(",")[0]
    await refused(auth, {})
    await refused(auth, {"X-API-Key": ""})
    await refused(auth, {"X-API-Key": "nope"})
    await refused(auth, {"X-API-Key": first[:-1]})  # a prefix of a key
    await refused(auth, {"X-API-Key": first + "x"})
    await refused(auth, {"X-API-Key": API_KEYS})  # the whole list is not a key
    await refused(auth, {"Authorization": f"Bearer {first}"})


# ---------------------------------------------------------------- hmac


def mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


BODY = b'{"order_id":"A1","amount_cents":1200}'


async def test_hmac_hex_signature_over_raw_body() -> None:
    auth = build_authenticator(
        {"type": "hmac-sha256", "secret_env": "HOOK_SECRET"}, where=WHERE, environ=ENV
    )
    sig = mac(HMAC_SECRET, BODY).hex()
    assert await accepted(auth, {"X-Signature": sig}, BODY) == {"auth": "hmac-sha256"}
    assert await accepted(auth, {"X-Signature": sig.upper()}, BODY)  # hex is case-insensitive
    await refused(auth, {"X-Signature": sig}, BODY + b" ")  # tampered body
    await refused(auth, {"X-Signature": sig}, BODY.replace(b"1200", b"9999"))
    await refused(auth, {"X-Signature": mac("other-secret", BODY).hex()}, BODY)  # bad HMAC
    await refused(auth, {"X-Signature": sig[:-2]}, BODY)  # truncated
    await refused(auth, {"X-Signature": "zz" + sig[2:]}, BODY)  # not hex
    await refused(auth, {}, BODY)  # missing


async def test_hmac_base64() -> None:
    auth = build_authenticator(
        {"type": "hmac-sha256", "secret_env": "HOOK_SECRET", "encoding": "base64"},
        where=WHERE,
        environ=ENV,
    )
    sig = base64.b64encode(mac(HMAC_SECRET, BODY)).decode()
    assert await accepted(auth, {"X-Signature": sig}, BODY)
    await refused(auth, {"X-Signature": sig}, b"{}")
    await refused(auth, {"X-Signature": "%%%not-base64%%%"}, BODY)
    await refused(auth, {"X-Signature": mac(HMAC_SECRET, BODY).hex()}, BODY)  # hex is not b64


async def test_hmac_github_style_prefix() -> None:
    auth = build_authenticator(
        {
            "type": "hmac-sha256",
            "secret_env": "HOOK_SECRET",
            "header": "X-Hub-Signature-256",
            "prefix": "sha256=",
        },
        where=WHERE,
        environ=ENV,
    )
    sig = mac(HMAC_SECRET, BODY).hex()
    assert await accepted(auth, {"X-Hub-Signature-256": f"sha256={sig}"}, BODY)
    await refused(auth, {"X-Hub-Signature-256": sig}, BODY)  # prefix missing
    await refused(auth, {"X-Hub-Signature-256": f"sha1={sig}"}, BODY)
    await refused(auth, {"X-Hub-Signature-256": f"sha256={sig}"}, BODY + b"\n")


async def test_hmac_with_timestamp_header_refuses_replay(clock: Clock) -> None:
    auth = build_authenticator(
        {
            "type": "hmac-sha256",
            "secret_env": "HOOK_SECRET",
            "timestamp_header": "X-Timestamp",
            "tolerance_s": 300,
        },
        where=WHERE,
        environ=ENV,
        clock=clock,
    )
    ts = int(clock.now)

    def signed(t: int, body: bytes = BODY) -> dict[str, str]:
        return {
            "X-Signature": mac(HMAC_SECRET, f"{t}.".encode() + body).hex(),
            "X-Timestamp": str(t),
        }

    claims = await accepted(auth, signed(ts), BODY)
    assert claims == {"auth": "hmac-sha256", "timestamp": ts}
    assert await accepted(auth, signed(ts - 299), BODY)  # inside the tolerance
    await refused(auth, signed(ts - 301), BODY)  # replayed: too old
    await refused(auth, signed(ts + 301), BODY)  # from the future
    # the same request replayed later is refused
    headers = signed(ts)
    clock.now += 600
    await refused(auth, headers, BODY)
    clock.now -= 600
    # the timestamp is signed: changing it breaks the signature
    await refused(auth, {**signed(ts), "X-Timestamp": str(ts + 1)}, BODY)
    # a signature over the body alone does not pass
    await refused(auth, {"X-Signature": mac(HMAC_SECRET, BODY).hex(), "X-Timestamp": str(ts)}, BODY)
    missing = signed(ts)
    del missing["X-Timestamp"]
    await refused(auth, missing, BODY)  # missing timestamp
    await refused(auth, {**signed(ts), "X-Timestamp": "yesterday"}, BODY)
    await refused(auth, signed(ts), BODY + b"x")


def stripe_header(secret: str, t: int, body: bytes, extra: str = "") -> str:
    sig = mac(secret, f"{t}.".encode() + body).hex()
    return f"t={t},v1={sig}{extra}"


async def test_hmac_stripe_format(clock: Clock) -> None:
    # format inferred from the header name, as in the SPEC's wistro.yml example
    inferred = build_authenticator(
        {"type": "hmac-sha256", "secret_env": "HOOK_SECRET", "header": "Stripe-Signature"},
        where=WHERE,
        environ=ENV,
        clock=clock,
    )
    explicit = build_authenticator(
        {"type": "hmac-sha256", "secret_env": "HOOK_SECRET", "format": "stripe"},
        where=WHERE,
        environ=ENV,
        clock=clock,
    )
    ts = int(clock.now)
    good = stripe_header(HMAC_SECRET, ts, BODY, extra=",v0=deadbeef")
    claims = await accepted(inferred, {"Stripe-Signature": good}, BODY)
    assert claims == {"auth": "hmac-sha256", "timestamp": ts}
    assert await accepted(explicit, {"X-Signature": good}, BODY)
    # secret rotation: several v1 signatures, one of them valid
    rotated = (
        f"t={ts},v1={mac('old-secret', f'{ts}.'.encode() + BODY).hex()},"
        + good[2 + len(str(ts)) + 1 :]
    )
    assert await accepted(inferred, {"Stripe-Signature": rotated}, BODY)

    await refused(inferred, {"Stripe-Signature": good}, BODY + b" ")  # tampered body
    await refused(inferred, {"Stripe-Signature": stripe_header("wrong", ts, BODY)}, BODY)
    await refused(inferred, {"Stripe-Signature": stripe_header(HMAC_SECRET, ts - 301, BODY)}, BODY)
    await refused(inferred, {"Stripe-Signature": good.replace(f"t={ts}", f"t={ts + 1}")}, BODY)
    await refused(inferred, {"Stripe-Signature": good.split(",", 1)[1]}, BODY)  # no timestamp
    await refused(inferred, {"Stripe-Signature": f"t={ts},v0=abc"}, BODY)  # no v1
    await refused(inferred, {"Stripe-Signature": f"t={ts},v1=not-hex"}, BODY)
    await refused(inferred, {"Stripe-Signature": "garbage"}, BODY)
    await refused(inferred, {}, BODY)
    clock.now += 301
    await refused(inferred, {"Stripe-Signature": good}, BODY)  # replayed later


# ---------------------------------------------------------------- an issuer on loopback


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa1": rsa_key(),
        "rsa2": rsa_key(),
        "ec1": ec.generate_private_key(ec.SECP256R1()),
        "ec384": ec.generate_private_key(ec.SECP384R1()),
    }


def token(
    key: Any,
    alg: str,
    kid: str | None,
    clock: Clock,
    iss: str,
    aud: str | list[str] | None = AUDIENCE,
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "sub": "user-1",
        "iat": int(clock.now),
        "exp": int(clock.now) + 600,
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def oidc(issuer: Issuer, clock: Clock, **extra: Any) -> Authenticator:
    return build_authenticator(
        {"type": "oidc", "issuer": issuer.url, "audience": AUDIENCE, **extra},
        where=WHERE,
        clock=clock,
    )


async def test_oidc_rs256_via_discovery_and_cache(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    issuer.jwks = [public_jwk(keys["rsa1"], "r1", "RS256")]
    auth = oidc(issuer, clock)
    tok = token(keys["rsa1"], "RS256", "r1", clock, issuer.url, scope="orders:write")
    claims = await accepted(auth, bearer(tok))
    assert claims == jwt.decode(tok, options={"verify_signature": False})  # the verified claims
    assert claims["sub"] == "user-1"
    for _ in range(10):
        assert await accepted(auth, bearer(tok))
    # bearer scheme is case-insensitive
    assert await accepted(auth, {"authorization": f"bearer {tok}"})
    assert issuer.hits == {"discovery": 1, "jwks": 1}  # cached
    # after the TTL the JWKS is fetched again, the discovery document stays cached
    clock.now += 3601
    tok = token(keys["rsa1"], "RS256", "r1", clock, issuer.url)
    assert await accepted(auth, bearer(tok))
    assert issuer.hits == {"discovery": 1, "jwks": 2}


async def test_oidc_es256_and_configured_jwks_url(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    issuer.jwks = [
        public_jwk(keys["rsa1"], "r1", "RS256"),
        public_jwk(keys["ec1"], "e1", "ES256"),
    ]
    auth = oidc(issuer, clock, algorithms=["ES256"], jwks_url=f"{issuer.url}/jwks")
    tok = token(keys["ec1"], "ES256", "e1", clock, issuer.url)
    assert (await accepted(auth, bearer(tok)))["iss"] == issuer.url
    assert issuer.hits == {"jwks": 1}  # no discovery when jwks_url is configured
    # RS256 is not among the configured algorithms
    await refused(auth, bearer(token(keys["rsa1"], "RS256", "r1", clock, issuer.url)))


async def test_oidc_token_without_kid_uses_the_matching_key(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    issuer.jwks = [public_jwk(keys["rsa2"], "r2", "RS256"), public_jwk(keys["rsa1"], "r1", "RS256")]
    auth = oidc(issuer, clock)
    assert await accepted(auth, bearer(token(keys["rsa1"], "RS256", None, clock, issuer.url)))


async def test_oidc_refuses_bad_claims(issuer: Issuer, keys: dict[str, Any], clock: Clock) -> None:
    issuer.jwks = [public_jwk(keys["rsa1"], "r1", "RS256")]
    auth = oidc(issuer, clock, required_claims=["sub"])
    key, now = keys["rsa1"], int(clock.now)

    def tok(**claims: Any) -> dict[str, str]:
        return bearer(token(key, "RS256", "r1", clock, issuer.url, **claims))

    assert await accepted(auth, tok(exp=now - 20))  # expired, but inside the 30 s leeway
    await refused(auth, tok(exp=now - 31))  # expired
    await refused(auth, tok(exp=None))  # no exp at all
    await refused(auth, tok(exp="tomorrow"))
    await refused(auth, tok(nbf=now + 120))  # not yet valid
    assert await accepted(auth, tok(nbf=now + 20))  # inside the leeway
    await refused(auth, tok(iat=now + 120))  # issued in the future
    await refused(auth, tok(sub=None))  # a required claim is missing
    await refused(auth, bearer(token(key, "RS256", "r1", clock, "https://evil.example")))
    await refused(auth, bearer(token(key, "RS256", "r1", clock, issuer.url + "/other")))
    await refused(auth, bearer(token(key, "RS256", "r1", clock, None)))  # type: ignore[arg-type]
    await refused(auth, tok(aud="another-api"))  # wrong audience
    await refused(auth, tok(aud=None))
    assert await accepted(auth, tok(aud=["another-api", AUDIENCE]))
    # the issuer's key, but the clock moved on
    good = tok()
    clock.now += 631
    await refused(auth, good)


async def test_oidc_refuses_alg_none_and_hs_rs_confusion(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    issuer.jwks = [public_jwk(keys["rsa1"], "r1", "RS256")]
    auth = oidc(issuer, clock)
    payload = {"iss": issuer.url, "aud": AUDIENCE, "sub": "admin", "exp": int(clock.now) + 600}
    body = b64url(json.dumps(payload).encode())

    # alg: none, with and without a signature segment
    for alg in ("none", "None", "NONE"):
        head = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": "r1"}).encode())
        await refused(auth, bearer(f"{head}.{body}."))
        await refused(auth, bearer(f"{head}.{body}.c2ln"))

    # HS256 signed with the issuer's RSA public key (PEM, and the JWK's modulus) as HMAC secret
    pem = (
        keys["rsa1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for secret in (pem, pem.strip(), json.dumps(issuer.jwks[0]).encode()):
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "r1"}).encode())
        signing_input = f"{head}.{body}".encode()
        sig = b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
        await refused(auth, bearer(f"{head}.{body}.{sig}"))

    # an RS256 signature from another key under the issuer's kid
    await refused(auth, bearer(token(keys["rsa2"], "RS256", "r1", clock, issuer.url)))
    # the token's payload swapped after signing
    real = token(keys["rsa1"], "RS256", "r1", clock, issuer.url)
    h, _, s = real.split(".")
    await refused(auth, bearer(f"{h}.{body}.{s}"))


async def test_oidc_key_type_must_match_algorithm(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    # kid of an RSA key, alg ES256 (signed by an EC key): the RSA key cannot verify ES256
    issuer.jwks = [
        public_jwk(keys["rsa1"], "r1", "RS256"),
        public_jwk(keys["ec384"], "e384", "ES384"),
    ]
    auth = oidc(issuer, clock, algorithms=["RS256", "ES256", "ES384"])
    await refused(auth, bearer(token(keys["ec1"], "ES256", "r1", clock, issuer.url)))
    # a P-384 key offered for ES256 (JWK without alg): the curve must fit the algorithm
    no_alg = public_jwk(keys["ec384"], "e384", "ES384")
    del no_alg["alg"]
    issuer.jwks = [no_alg]
    clock.now += 3601  # let the cache expire
    payload = {"iss": issuer.url, "aud": AUDIENCE, "exp": int(clock.now) + 600}
    head = b64url(json.dumps({"alg": "ES256", "kid": "e384"}).encode())
    signing_input = f"{head}.{b64url(json.dumps(payload).encode())}"
    raw_sig = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), keys["ec384"])
    await refused(auth, bearer(f"{signing_input}.{b64url(raw_sig)}"))
    assert await accepted(auth, bearer(token(keys["ec384"], "ES384", "e384", clock, issuer.url)))
    # RS384 is not allowed even though the RSA key is there
    await refused(auth, bearer(token(keys["rsa1"], "RS384", "r1", clock, issuer.url)))


async def test_oidc_unknown_kid_refreshes_rate_limited(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    issuer.jwks = [public_jwk(keys["rsa1"], "r1", "RS256")]
    auth = oidc(issuer, clock)
    assert await accepted(auth, bearer(token(keys["rsa1"], "RS256", "r1", clock, issuer.url)))
    assert issuer.hits == {"discovery": 1, "jwks": 1}

    # the issuer rotates a new key in; within 30 s of the last fetch the refresh is rate-limited
    issuer.jwks = [public_jwk(keys["rsa2"], "r2", "RS256"), *issuer.jwks]
    rotated = lambda: bearer(token(keys["rsa2"], "RS256", "r2", clock, issuer.url))  # noqa: E731
    clock.now += 10
    await refused(auth, rotated())
    assert issuer.hits["jwks"] == 1
    # later, the unknown kid triggers one refresh, and the new key works
    clock.now += 25
    assert await accepted(auth, rotated())
    assert issuer.hits["jwks"] == 2
    assert await accepted(auth, rotated())
    assert issuer.hits["jwks"] == 2

    # a flood of random kids: at most one fetch per 30 s, all refused
    flood = [
        auth(
            "POST",
            "/",
            Headers(bearer(token(keys["rsa2"], "RS256", f"rnd{i}", clock, issuer.url))),
            b"",
        )
        for i in range(50)
    ]
    results = await asyncio.gather(*flood, return_exceptions=True)
    assert all(isinstance(r, AuthFailure) and r.status == 401 for r in results)
    assert issuer.hits["jwks"] == 2  # the last fetch was just now: rate-limited
    clock.now += 31
    results = await asyncio.gather(
        *[
            auth(
                "POST",
                "/",
                Headers(bearer(token(keys["rsa2"], "RS256", f"x{i}", clock, issuer.url))),
                b"",
            )
            for i in range(50)
        ],
        return_exceptions=True,
    )
    assert all(isinstance(r, AuthFailure) and r.status == 401 for r in results)
    assert issuer.hits["jwks"] == 3  # one refresh for the whole flood, still unknown → 401
    assert issuer.hits["discovery"] == 1
    # known keys keep working throughout
    assert await accepted(auth, bearer(token(keys["rsa1"], "RS256", "r1", clock, issuer.url)))
    assert issuer.hits["jwks"] == 3


async def test_oidc_malformed_tokens(issuer: Issuer, keys: dict[str, Any], clock: Clock) -> None:
    issuer.jwks = [public_jwk(keys["rsa1"], "r1", "RS256")]
    auth = oidc(issuer, clock)
    good = token(keys["rsa1"], "RS256", "r1", clock, issuer.url)
    h, p, s = good.split(".")
    for bad in (
        "garbage",
        "a.b",
        "a.b.c",
        f"{h}.{p}",
        f"{h}.{p}.{s}.extra",
        f"{h}.{p}.{s}.x.y",  # JWE-shaped
        f"!!!.{p}.{s}",
        f"{b64url(b'not json')}.{p}.{s}",
        f"{b64url(b'[1,2]')}.{p}.{s}",
        f"{h}.{b64url(b'not json')}.{s}",
        f"{h}.{p}.{s}x",
        f"{h}.{p}." + "A" * 40_000,  # oversized
    ):
        await refused(auth, bearer(bad))
    head = b64url(json.dumps({"alg": "RS256", "kid": 7}).encode())
    await refused(auth, bearer(f"{head}.{p}.{s}"))  # kid not a string
    await refused(auth, {"Authorization": good})  # no Bearer scheme
    await refused(auth, {"Authorization": f"Basic {good}"})
    await refused(auth, {"Authorization": "Bearer "})
    await refused(auth, {"Authorization": "Bearer"})
    await refused(auth, {})
    assert await accepted(auth, bearer(good))


async def test_oidc_custom_header_carries_the_bare_token(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    issuer.jwks = [public_jwk(keys["rsa1"], "r1", "RS256")]
    auth = oidc(issuer, clock, header="X-Id-Token")
    tok = token(keys["rsa1"], "RS256", "r1", clock, issuer.url)
    assert await accepted(auth, {"X-Id-Token": tok})
    await refused(auth, bearer(tok))


async def test_oidc_scopes_and_allowed_claims_are_403(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    issuer.jwks = [public_jwk(keys["rsa1"], "r1", "RS256")]
    auth = oidc(issuer, clock, scopes=["orders:write"], allow={"groups": ["ops", "admin"]})

    def tok(**claims: Any) -> dict[str, str]:
        return bearer(token(keys["rsa1"], "RS256", "r1", clock, issuer.url, **claims))

    assert await accepted(auth, tok(scope="orders:read orders:write", groups=["dev", "ops"]))
    assert await accepted(auth, tok(scp=["orders:write"], groups="admin"))
    await refused(auth, tok(scope="orders:read", groups=["ops"]), status=403)
    await refused(auth, tok(scope="orders:write", groups=["dev"]), status=403)
    await refused(auth, tok(scope="orders:write"), status=403)
    # an invalid token is 401 before any policy
    await refused(auth, tok(scope="orders:read", aud="other"), status=401)


async def test_oidc_issuer_problems_are_401(
    issuer: Issuer, keys: dict[str, Any], clock: Clock
) -> None:
    issuer.jwks = [public_jwk(keys["rsa1"], "r1", "RS256")]
    tok = bearer(token(keys["rsa1"], "RS256", "r1", clock, issuer.url))
    # the discovery document names another issuer: its keys are not trusted
    issuer.claimed_issuer = "https://evil.example"
    exc = await refused(oidc(issuer, clock), tok)
    assert "another issuer" in exc.reason
    issuer.claimed_issuer = None
    # the issuer is unreachable
    dead = build_authenticator(
        {"type": "oidc", "issuer": "http://127.0.0.1:9", "audience": AUDIENCE},
        where=WHERE,
        clock=clock,
    )
    await refused(dead, tok)
    # a JWKS URL that is not a JWKS
    auth = oidc(issuer, clock, jwks_url=f"{issuer.url}/.well-known/openid-configuration")
    await refused(auth, tok)


# ---------------------------------------------------------------- shared-secret jwt


async def test_shared_secret_jwt(keys: dict[str, Any], clock: Clock) -> None:
    auth = build_authenticator(
        {"type": "jwt", "secret_env": "JWT_SECRET", "issuer": "billing", "audience": AUDIENCE},
        where=WHERE,
        environ=ENV,
        clock=clock,
    )
    good = token(JWT_SECRET, "HS256", None, clock, "billing", role="ops")
    claims = await accepted(auth, bearer(good))
    assert claims["role"] == "ops" and claims["iss"] == "billing"
    await refused(
        auth, bearer(token("another-secret-" + "x" * 50, "HS256", None, clock, "billing"))
    )
    await refused(auth, bearer(token(JWT_SECRET, "HS512", None, clock, "billing")))  # not allowed
    await refused(auth, bearer(token(keys["rsa1"], "RS256", None, clock, "billing")))
    await refused(auth, bearer(token(JWT_SECRET, "HS256", None, clock, "other")))
    await refused(auth, bearer(token(JWT_SECRET, "HS256", None, clock, "billing", aud="x")))
    await refused(
        auth, bearer(token(JWT_SECRET, "HS256", None, clock, "billing", exp=int(clock.now) - 60))
    )
    head = b64url(json.dumps({"alg": "none"}).encode())
    await refused(auth, bearer(f"{head}.{good.split('.')[1]}."))

    # without issuer/audience configured, only the signature and times are checked, but a token
    # that names an audience is refused (it was meant for someone else)
    loose = build_authenticator(
        {"type": "jwt", "secret_env": "JWT_SECRET", "algorithms": ["HS256", "HS384"]},
        where=WHERE,
        environ=ENV,
        clock=clock,
    )
    assert await accepted(loose, bearer(token(JWT_SECRET, "HS384", None, clock, "x", aud=None)))
    await refused(loose, bearer(token(JWT_SECRET, "HS256", None, clock, "x")))


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("auth", "field", "words"),
    [
        ({"type": "basic"}, "auth.type", "unknown auth type 'basic'"),
        ({"keys_env": "API_KEYS"}, "auth.type", "missing auth type"),
        ({"type": "api-key"}, "auth.keys_env", "required"),
        ({"type": "api-key", "keys_env": "NOT_SET"}, "auth.keys_env", "NOT_SET is not set"),
        ({"type": "api-key", "keys_env": "EMPTY"}, "auth.keys_env", "EMPTY is empty"),
        ({"type": "api-key", "keys_env": "COMMAS"}, "auth.keys_env", "holds no key"),
        ({"type": "api-key", "keys_env": "API_KEYS", "headr": "X"}, "auth.headr", "unknown key"),
        ({"type": "api-key", "keys": ["k1"]}, "auth.keys", "unknown key"),
        (
            {"type": "api-key", "keys_env": "API_KEYS", "key_ids": ["a"]},
            "auth.key_ids",
            "1 key_ids",
        ),
        ({"type": "api-key", "keys_env": "API-KEYS"}, "auth.keys_env", "pattern"),
        ({"type": "hmac-sha256", "secret_env": "NOT_SET"}, "auth.secret_env", "is not set"),
        ({"type": "hmac-sha256", "secret": "s3cret"}, "auth.secret", "unknown key"),
        (
            {"type": "hmac-sha256", "secret_env": "HOOK_SECRET", "encoding": "b32"},
            "auth.encoding",
            "hex",
        ),
        (
            {"type": "hmac-sha256", "secret_env": "HOOK_SECRET", "tolerance_s": 0},
            "auth.tolerance_s",
            "greater than 0",
        ),
        (
            {"type": "hmac-sha256", "secret_env": "HOOK_SECRET", "format": "stripe", "prefix": "x"},
            "auth.prefix",
            "does not apply",
        ),
        ({"type": "oidc", "audience": "a"}, "auth.issuer", "required"),
        ({"type": "oidc", "issuer": "https://id.example"}, "auth.audience", "required"),
        (
            {
                "type": "oidc",
                "issuer": "https://id.example",
                "audience": "a",
                "algorithms": ["HS256"],
            },
            "auth.algorithms",
            "not allowed",
        ),
        (
            {
                "type": "oidc",
                "issuer": "https://id.example",
                "audience": "a",
                "algorithms": ["none"],
            },
            "auth.algorithms",
            "never accepted",
        ),
        (
            {"type": "oidc", "issuer": "https://id.example", "audience": "a", "algorithms": []},
            "auth.algorithms",
            "at least one",
        ),
        ({"type": "oidc", "issuer": "http://id.example", "audience": "a"}, "auth.issuer", "https"),
        (
            {
                "type": "oidc",
                "issuer": "https://id.example",
                "audience": "a",
                "jwks_url": "ftp://x",
            },
            "auth.jwks_url",
            "not an http",
        ),
        (
            {"type": "oidc", "issuer": "https://id.example", "audience": "a", "secret_env": "X"},
            "auth.secret_env",
            "unknown key",
        ),
        (
            {"type": "jwt", "secret_env": "JWT_SECRET", "algorithms": ["RS256"]},
            "auth.algorithms",
            "not allowed",
        ),
        ({"type": "jwt", "secret_env": "NOT_SET"}, "auth.secret_env", "is not set"),
        ({"type": "jwt", "secret_env": "SHORT"}, "auth.secret_env", "needs at least 32"),
        (
            {"type": "jwt", "secret_env": "JWT_SECRET", "algorithms": ["HS256", "HS512"], "x": 1},
            "auth.x",
            "unknown key",
        ),
    ],
)
def test_config_errors_name_where_and_field(auth: dict[str, Any], field: str, words: str) -> None:
    env = {**ENV, "EMPTY": "", "COMMAS": " , ,", "SHORT": "too-short"}
    with pytest.raises(ConfigError) as info:
        build_authenticator(auth, where=WHERE, environ=env)
    err = info.value
    assert err.field == field
    assert err.file == WHERE
    assert WHERE in str(err) and field in str(err)
    assert words in str(err)
    for secret in SECRETS:
        assert secret not in str(err)


def test_config_not_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        build_authenticator("api-key", where="wistro.yml", environ=ENV)  # type: ignore[arg-type]
    assert info.value.field == "auth" and "wistro.yml" in str(info.value)


def test_inline_secret_hint_and_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        build_authenticator({"type": "hmac-sha256", "secret": "x"}, where=WHERE, environ=ENV)
    assert info.value.hint and "secret_env" in info.value.hint
    # secrets are read from os.environ by default, at build time
    monkeypatch.setenv("WISTRO_TEST_KEYS", "abc123")
    auth = build_authenticator({"type": "api-key", "keys_env": "WISTRO_TEST_KEYS"}, where=WHERE)
    monkeypatch.delenv("WISTRO_TEST_KEYS")

    async def call() -> dict[str, Any]:
        return await auth("GET", "/", Headers({"x-api-key": "abc123"}), b"")

    assert asyncio.run(call())["key_id"] == "key-1"


def test_check_auth_config_reads_no_secret() -> None:
    check_auth_config({"type": "hmac-sha256", "secret_env": "SURELY_NOT_SET_ANYWHERE"}, where=WHERE)
    with pytest.raises(ConfigError):
        check_auth_config({"type": "hmac-sha256"}, where=WHERE)


# ---------------------------------------------------------------- openapi


def test_describe_security() -> None:
    scheme, req = describe_security({"type": "api-key", "keys_env": "API_KEYS"})
    assert scheme["type"] == "apiKey" and scheme["in"] == "header" and scheme["name"] == "X-API-Key"
    (name,) = req
    assert req[name] == [] and name.startswith("api-key-")
    # equal configs share one scheme name; different ones do not
    assert describe_security({"type": "api-key", "keys_env": "API_KEYS"})[1] == req
    assert describe_security({"type": "api-key", "keys_env": "OTHER"})[1] != req

    scheme, _ = describe_security(
        {"type": "hmac-sha256", "secret_env": "S", "header": "Stripe-Signature"}
    )
    assert scheme["name"] == "Stripe-Signature" and "t=" in scheme["description"]
    scheme, _ = describe_security(
        {"type": "hmac-sha256", "secret_env": "S", "prefix": "sha256=", "timestamp_header": "X-Ts"}
    )
    assert "sha256=" in scheme["description"] and "X-Ts" in scheme["description"]

    scheme, req = describe_security(
        {"type": "oidc", "issuer": "https://id.example/", "audience": "a", "scopes": ["w"]}
    )
    assert scheme["type"] == "openIdConnect"
    assert scheme["openIdConnectUrl"] == "https://id.example/.well-known/openid-configuration"
    assert list(req.values()) == [["w"]]
    scheme, _ = describe_security(
        {
            "type": "oidc",
            "issuer": "https://id.example",
            "audience": "a",
            "jwks_url": "https://id.example/k",
        }
    )
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    scheme, _ = describe_security({"type": "jwt", "secret_env": "S", "header": "X-Token"})
    assert scheme["type"] == "apiKey" and scheme["name"] == "X-Token"
    scheme, _ = describe_security({"type": "jwt", "secret_env": "S", "description": "Billing"})
    assert scheme["description"] == "Billing"
    with pytest.raises(ConfigError):
        describe_security({"type": "basic"})
