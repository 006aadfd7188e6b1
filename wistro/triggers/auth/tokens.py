"""The ``oidc`` and ``jwt`` schemes: a bearer JWT (size-limited) signed with one of the
configured algorithms, by the issuer's JWKS (``oidc``) or a shared secret (``jwt``); ``exp``
required, ``nbf``/``iat`` checked against the clock with ``leeway_s``, issuer and audience
verified, then the ``scopes`` and ``allow`` policy (403)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import jwt

from wistro.errors import AuthFailure, ConfigError
from wistro.triggers.auth.config import JwtAuth, OidcAuth
from wistro.triggers.auth.jwks import _Jwks
from wistro.triggers.auth.shared import Clock, _header, _secret, _unauthorized

MAX_TOKEN_BYTES = 16_384


def _bearer(headers: Mapping[str, str], name: str) -> str:
    value = _header(headers, name)
    if not value:
        raise _unauthorized("missing token")
    value = value.strip()
    if name.lower() == "authorization":
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("authorization is not a bearer token")
        value = token.strip()
    if len(value) > MAX_TOKEN_BYTES:
        raise _unauthorized("token too large")
    return value


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _unauthorized(f"claim {name} is not a number")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    exp = _number(claims, "exp")
    if exp is None:
        raise _unauthorized("token has no exp")
    if exp <= now - leeway:
        raise _unauthorized("token expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise _unauthorized("token not yet valid (nbf)")
    iat = _number(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise _unauthorized("token issued in the future (iat)")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _check_policy(cfg: OidcAuth | JwtAuth, claims: Mapping[str, Any]) -> None:
    if cfg.scopes:
        granted: set[str] = set()
        for name in ("scope", "scp"):
            value = claims.get(name)
            if isinstance(value, str):
                granted.update(value.split())
            elif isinstance(value, list):
                granted.update(s for s in value if isinstance(s, str))
        missing = [s for s in cfg.scopes if s not in granted]
        if missing:
            raise AuthFailure(403, f"token lacks scope(s) {', '.join(missing)}")
    for name, accepted in cfg.allow.items():
        allowed = _as_list(accepted)
        have = _as_list(claims.get(name))
        if not any(h in allowed for h in have if h is not None):
            raise AuthFailure(403, f"claim {name} not allowed")


class _TokenVerifier:
    """Shared by ``oidc`` and ``jwt``: header parsing, claim checks, error mapping."""

    def __init__(self, cfg: OidcAuth | JwtAuth, clock: Clock) -> None:
        self._cfg = cfg
        self._clock = clock
        self._require = sorted({"exp", *cfg.required_claims})

    def _unverified_header(self, token: str) -> dict[str, Any]:
        if token.count(".") != 2:
            raise _unauthorized("token is not a signed JWT (3 segments)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise _unauthorized(f"malformed token: {type(e).__name__}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._cfg.algorithms:
            raise _unauthorized(f"token algorithm {alg!r} not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _unauthorized("token kid is not a string")
        return header

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        cfg = self._cfg
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=cfg.audience,
            issuer=cfg.issuer,
            options={
                "verify_exp": False,  # checked below against the injectable clock
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": True,  # no audience configured: a token with `aud` is refused
                "verify_iss": cfg.issuer is not None,
                "require": self._require,
            },
        )
        return claims

    def _finish(self, claims: dict[str, Any]) -> dict[str, Any]:
        _check_times(claims, self._clock(), self._cfg.leeway_s)
        _check_policy(self._cfg, claims)
        return claims


def _jwt_failure(e: Exception) -> AuthFailure:
    return _unauthorized(f"invalid token: {type(e).__name__}: {e}")


class _JwtAuthenticator(_TokenVerifier):
    def __init__(self, cfg: JwtAuth, environ: Mapping[str, str], where: str, clock: Clock) -> None:
        super().__init__(cfg, clock)
        self._secret = _secret(environ, cfg.secret_env, where, "secret_env").encode()
        need = max(int(alg[2:]) // 8 for alg in cfg.algorithms)
        if len(self._secret) < need:  # RFC 7518 3.2: at least the size of the hash
            raise ConfigError(
                f"the secret in {cfg.secret_env} is {len(self._secret)} bytes; "
                f"{', '.join(cfg.algorithms)} needs at least {need}",
                file=where,
                field="auth.secret_env",
                hint="generate one with: python -c 'import secrets; print(secrets.token_urlsafe(64))'",
            )

    async def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        token = _bearer(headers, self._cfg.header)
        alg = self._unverified_header(token)["alg"]
        try:
            claims = self._decode(token, self._secret, alg)
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise _jwt_failure(e) from None
        return self._finish(claims)


class _OidcAuthenticator(_TokenVerifier):
    def __init__(self, cfg: OidcAuth, http: httpx.AsyncClient | None, clock: Clock) -> None:
        super().__init__(cfg, clock)
        self.jwks = _Jwks(cfg, http, clock)

    async def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        token = _bearer(headers, self._cfg.header)
        header = self._unverified_header(token)
        alg, kid = header["alg"], header.get("kid")
        keys = await self.jwks.keys_for(kid, alg)
        if not keys:
            detail = f" ({self.jwks.last_error})" if self.jwks.last_error else ""
            raise _unauthorized(f"no signing key for kid {kid!r} and {alg}{detail}")
        last: Exception | None = None
        for key in keys:  # one key when the token names its kid
            try:
                claims = self._decode(token, key.key, alg)
            except jwt.InvalidSignatureError as e:
                last = e
                continue
            except (jwt.PyJWTError, ValueError, TypeError) as e:
                raise _jwt_failure(e) from None
            return self._finish(claims)
        raise _jwt_failure(last or ValueError("no key"))
