"""A real OIDC issuer on loopback (discovery document + JWKS, counting hits) and key helpers,
shared by the auth tests."""

from __future__ import annotations

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
