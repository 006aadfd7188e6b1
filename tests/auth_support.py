"""A real OIDC issuer on loopback (discovery document + JWKS, counting hits), key helpers and
webhook signers, shared by the auth tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, alg: str
) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        text = RSAAlgorithm.to_jwk(key.public_key())
    else:
        text = ECAlgorithm.to_jwk(key.public_key())
    data: dict[str, Any] = json.loads(text)
    data.update(kid=kid, alg=alg, use="sig")
    return data


class Issuer:
    """An OIDC issuer: discovery document and JWKS, counting hits."""

    def __init__(self) -> None:
        self.url = ""
        self.jwks: list[dict[str, Any]] = []
        self.hits: Counter[str] = Counter()
        self.claimed_issuer: str | None = None

    def app(self) -> Starlette:
        async def discovery(request: Request) -> JSONResponse:
            self.hits["discovery"] += 1
            return JSONResponse(
                {"issuer": self.claimed_issuer or self.url, "jwks_uri": f"{self.url}/jwks"}
            )

        async def jwks(request: Request) -> JSONResponse:
            self.hits["jwks"] += 1
            return JSONResponse({"keys": self.jwks})

        return Starlette(
            routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks)]
        )


def hmac_hex(secret: str, message: bytes) -> str:
    """Hex HMAC-SHA256, as webhook senders compute it."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def standard_webhook_headers(
    secret: str, msg_id: str, timestamp: int, body: bytes, *extra_secrets: str
) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` as a Standard Webhooks
    sender computes them (https://www.standardwebhooks.com/): one ``v1,<base64>`` per secret,
    each secret ``whsec_<base64 key>``."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    signatures = []
    for s in (secret, *extra_secrets):
        key = base64.b64decode(s.removeprefix("whsec_"))
        mac = hmac.new(key, content, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(mac).decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
