"""Authentication of HTTP endpoints: API keys, HMAC-signed webhooks, Standard Webhooks, OIDC /
shared-secret JWTs.

``build_authenticator(auth, where=...)`` validates one ``auth:`` config (from a step config or a
``wistro.yml`` ``api:`` entry), reads its secrets from environment variables and returns an async
callable ``authenticate(method, path, headers, raw_body) -> claims``. A refused request raises
:class:`AuthFailure` with ``status`` 401 (missing or invalid credentials) or 403 (valid credentials
that are not allowed); ``reason`` is for logs only and ``str(exc)`` is a generic word, so nothing
that helps an attacker reaches the client.

Security choices:

- secrets only from the environment (``keys_env``, ``secret_env``), read once at build time;
  ``secret_env`` of a webhook may list several variables (rotation: any of them signs);
- every secret comparison is constant-time (``hmac.compare_digest``), API keys are compared as
  SHA-256 digests against every configured key without an early exit, signatures against every
  secret and every given signature without an early exit;
- HMAC signatures may carry a timestamp (own header, or Stripe's ``t=…,v1=…``); one outside
  ``tolerance_s`` of the clock is refused as a replay; with a ``ReplayCache`` (the HTTP trigger
  always passes one) a signed message or a delivery id (``dedupe_header``, Standard Webhooks'
  ``webhook-id``) accepted once raises :class:`DuplicateRequest` until it leaves its window;
- JWTs: only the configured algorithms (``none`` never, HS* never for ``oidc``, RS/ES/PS/EdDSA
  never for ``jwt``), the JWK's key type and curve must fit the token's algorithm, ``exp`` is
  required, ``nbf`` / ``iat`` in the future beyond ``leeway_s`` are refused, issuer and audience
  are checked, tokens are size-limited; JWKS is fetched with httpx, cached for ``jwks_ttl_s`` and
  refetched on an unknown ``kid`` at most once per ``jwks_refresh_min_s`` so a flood of random
  kids cannot hammer the issuer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from wistro.errors import AuthFailure, ConfigError, DuplicateRequest
from wistro.triggers.replay import ReplayCache

__all__ = [
    "AUTH_TYPES",
    "AuthFailure",
    "Authenticator",
    "DuplicateRequest",
    "build_authenticator",
    "check_auth_config",
    "describe_security",
    "protects_replays",
]

Authenticator = Callable[[str, str, Mapping[str, str], bytes], Awaitable[dict[str, Any]]]
Clock = Callable[[], float]
ReplayKey = tuple[str, bytes | str]  # ("message", digest) or ("id", delivery id)

MAX_TOKEN_BYTES = 16_384
MAX_JWKS_BYTES = 1_048_576
MAX_STRIPE_SIGNATURES = 8
MAX_SECRETS = 8
MAX_DELIVERY_ID = 256


def _unauthorized(reason: str) -> AuthFailure:
    return AuthFailure(401, reason)


# ---------------------------------------------------------------- config models

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
HeaderName = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
ClaimValue = str | int | bool

_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def _kty_of(alg: str) -> str:
    if alg.startswith(("RS", "PS")):
        return "RSA"
    if alg.startswith("ES"):
        return "EC"
    if alg == "EdDSA":
        return "OKP"
    return "oct"


class _FieldProblem(ValueError):
    """A model-level check that blames one field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class _AuthModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKeyAuth(_AuthModel):
    type: Literal["api-key"]
    keys_env: EnvName
    header: HeaderName = "X-API-Key"
    key_ids: list[str] | None = None
    description: str | None = None


def _env_names(v: str | list[str]) -> str | list[str]:
    if isinstance(v, list):
        if not v:
            raise ValueError("list at least one environment variable")
        if len(v) > MAX_SECRETS:
            raise ValueError(f"at most {MAX_SECRETS} secrets")
        if len(set(v)) < len(v):
            raise ValueError("a variable is listed twice")
    return v


class HmacAuth(_AuthModel):
    type: Literal["hmac-sha256"]
    secret_env: EnvName | list[EnvName]  # several: a signature by any of them is accepted
    header: HeaderName = "X-Signature"
    # plain: the header holds the signature (after ``prefix``); stripe: ``t=<ts>,v1=<hex>,...``.
    # Default: stripe when the header is Stripe-Signature, plain otherwise.
    format: Literal["plain", "stripe"] | None = None
    prefix: str = ""
    encoding: Literal["hex", "base64"] = "hex"
    timestamp_header: HeaderName | None = None
    tolerance_s: float = Field(default=300, gt=0)
    # a delivery id (GitHub: X-GitHub-Delivery): each is accepted once within dedupe_window_s
    dedupe_header: HeaderName | None = None
    dedupe_window_s: float | None = Field(default=None, gt=0)  # default: tolerance_s
    description: str | None = None

    @field_validator("secret_env")
    @classmethod
    def _secret_names(cls, v: str | list[str]) -> str | list[str]:
        return _env_names(v)

    @model_validator(mode="after")
    def _format(self) -> HmacAuth:
        if self.format is None:
            fmt = "stripe" if self.header.lower() == "stripe-signature" else "plain"
            object.__setattr__(self, "format", fmt)
        if self.format == "stripe":
            for key in ("prefix", "encoding", "timestamp_header"):
                if key in self.model_fields_set:
                    raise _FieldProblem(
                        key,
                        f"'{key}' does not apply to format 'stripe' "
                        "(its header is t=<timestamp>,v1=<hex signature>)",
                    )
        return self


def _check_algorithms(v: list[str], allowed: frozenset[str], kind: str) -> list[str]:
    if not v:
        raise ValueError("list at least one algorithm")
    for alg in v:
        if alg.lower() == "none":
            raise ValueError("'none' is never accepted: tokens must be signed")
        if alg not in allowed:
            raise ValueError(
                f"algorithm {alg!r} is not allowed for {kind} (allowed: {', '.join(sorted(allowed))})"
            )
    return v


class _TokenAuth(_AuthModel):
    leeway_s: float = Field(default=30, ge=0)
    required_claims: list[str] = []  # must be present (``exp`` always is)
    scopes: list[str] = []  # all must be in ``scope`` (space-separated) or ``scp``; else 403
    allow: dict[str, ClaimValue | list[ClaimValue]] = {}  # claim -> accepted value(s); else 403
    header: HeaderName = "Authorization"  # ``Authorization: Bearer <jwt>``, or the bare token
    description: str | None = None


class OidcAuth(_TokenAuth):
    type: Literal["oidc"]
    issuer: str
    audience: str | list[str]
    algorithms: list[str] = ["RS256"]
    jwks_url: str | None = None  # default: jwks_uri of {issuer}/.well-known/openid-configuration
    jwks_ttl_s: float = Field(default=3600, gt=0)
    jwks_refresh_min_s: float = Field(default=30, ge=0)
    http_timeout_s: float = Field(default=5, gt=0)
    allow_http: bool = False  # plain http to a host other than loopback

    @field_validator("algorithms")
    @classmethod
    def _algs(cls, v: list[str]) -> list[str]:
        return _check_algorithms(v, _ASYMMETRIC, "oidc (use type 'jwt' for shared secrets)")

    @field_validator("audience")
    @classmethod
    def _aud(cls, v: str | list[str]) -> str | list[str]:
        if not v:
            raise ValueError("name the audience this endpoint accepts")
        return v

    @model_validator(mode="after")
    def _urls(self) -> OidcAuth:
        for name in ("issuer", "jwks_url"):
            url = getattr(self, name)
            if url is not None and (problem := _url_problem(url, self.allow_http)):
                raise _FieldProblem(name, problem)
        return self


class JwtAuth(_TokenAuth):
    type: Literal["jwt"]
    secret_env: EnvName
    algorithms: list[str] = ["HS256"]
    issuer: str | None = None
    audience: str | list[str] | None = None

    @field_validator("algorithms")
    @classmethod
    def _algs(cls, v: list[str]) -> list[str]:
        return _check_algorithms(v, _SYMMETRIC, "jwt (use type 'oidc' for public keys)")


class StandardWebhooksAuth(_AuthModel):
    """https://www.standardwebhooks.com/: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'>``, several
    space-separated); secrets ``whsec_<base64>``."""

    type: Literal["standard-webhooks"]
    secret_env: EnvName | list[EnvName]
    tolerance_s: float = Field(default=300, gt=0)
    dedupe_window_s: float | None = Field(default=None, gt=0)  # default: tolerance_s
    description: str | None = None

    @field_validator("secret_env")
    @classmethod
    def _secret_names(cls, v: str | list[str]) -> str | list[str]:
        return _env_names(v)


AuthConfig = ApiKeyAuth | HmacAuth | StandardWebhooksAuth | OidcAuth | JwtAuth
_MODELS: dict[str, type[BaseModel]] = {
    "api-key": ApiKeyAuth,
    "hmac-sha256": HmacAuth,
    "standard-webhooks": StandardWebhooksAuth,
    "oidc": OidcAuth,
    "jwt": JwtAuth,
}
AUTH_TYPES = tuple(_MODELS)
_SECRET_KEYS = {"key", "keys", "secret", "api_key", "api_keys", "token", "password"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(url: str, allow_http: bool) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        return f"{url!r} must use https (set allow_http: true to accept plain http)"
    return None


def _parse(auth: Any, where: str) -> AuthConfig:
    if not isinstance(auth, Mapping):
        raise ConfigError("'auth' must be a mapping with a 'type'", file=where, field="auth")
    kind = auth.get("type")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(AUTH_TYPES)
        problem = "missing auth type" if kind is None else f"unknown auth type {kind!r}"
        raise ConfigError(f"{problem} (known: {known})", file=where, field="auth.type")
    try:
        parsed = model.model_validate(dict(auth))
    except PydanticValidationError as e:
        errors = sorted(e.errors(), key=lambda er: er["type"] != "extra_forbidden")
        err = errors[0]  # an unknown key first: often a typo that causes the other errors
        loc = [str(p) for p in err["loc"]]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldProblem):
            loc = [*loc, cause.field]
        field = ".".join(["auth", *loc])
        hint = None
        if err["type"] == "extra_forbidden":
            problem = "unknown key"
            if loc and loc[0] in _SECRET_KEYS:
                hint = "secrets come from environment variables: use keys_env / secret_env"
            elif loc and loc[0] == "secrets_env":
                hint = "list several variables under secret_env: [A, B]"
        else:
            problem = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "missing":
                problem = "required key is missing"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{problem}{more}", file=where, field=field, hint=hint) from None
    assert isinstance(parsed, ApiKeyAuth | HmacAuth | StandardWebhooksAuth | OidcAuth | JwtAuth)
    return parsed


def _secret(environ: Mapping[str, str], name: str, where: str, field: str) -> str:
    value = environ.get(name)
    if not value:
        state = "is empty" if value == "" else "is not set"
        raise ConfigError(
            f"environment variable {name} {state}",
            file=where,
            field=f"auth.{field}",
            hint=f"export {name}=… or add it to an env_file",
        )
    return value


def _secrets(
    environ: Mapping[str, str], names: str | list[str], where: str
) -> list[tuple[str, str]]:
    """``(variable, secret)`` of each variable of ``secret_env`` (one name or a list)."""
    if isinstance(names, str):
        return [(names, _secret(environ, names, where, "secret_env"))]
    return [(n, _secret(environ, n, where, f"secret_env.{i}")) for i, n in enumerate(names)]


def _any_match(expected: list[bytes], given: list[bytes]) -> bool:
    """Whether any given signature equals any expected one: every pair compared in constant
    time, no early exit."""
    ok = False
    for mac in expected:
        for sig in given:
            ok |= hmac.compare_digest(mac, sig)
    return ok


def check_auth_config(auth: Any, *, where: str) -> None:
    """Validate the shape of an ``auth:`` config without reading any secret (for ``wistro
    check``). Raises :class:`ConfigError` naming ``where`` and the field."""
    _parse(auth, where)


# ---------------------------------------------------------------- helpers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        low = name.lower()
        value = headers.get(low)
        if value is None:  # a plain dict with other casing
            for key, v in headers.items():
                if key.lower() == low:
                    return v
    return value


# ---------------------------------------------------------------- api key


class _ApiKeyAuthenticator:
    def __init__(self, cfg: ApiKeyAuth, environ: Mapping[str, str], where: str) -> None:
        raw = _secret(environ, cfg.keys_env, where, "keys_env")
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        if not keys:
            raise ConfigError(
                f"environment variable {cfg.keys_env} holds no key",
                file=where,
                field="auth.keys_env",
                hint="comma-separated keys",
            )
        if cfg.key_ids is not None and len(cfg.key_ids) != len(keys):
            raise ConfigError(
                f"{len(cfg.key_ids)} key_ids for {len(keys)} keys in {cfg.keys_env}",
                file=where,
                field="auth.key_ids",
            )
        self._header = cfg.header
        self._ids = list(cfg.key_ids) if cfg.key_ids else [f"key-{i + 1}" for i in range(len(keys))]
        # Digests: constant length, so comparing leaks neither content nor length of a key.
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    async def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        given = _header(headers, self._header)
        if not given:
            raise _unauthorized("missing API key header")
        digest = hashlib.sha256(given.strip().encode("utf-8", "surrogateescape")).digest()
        found = -1
        for i, expected in enumerate(self._digests):  # every key, no early exit
            if hmac.compare_digest(digest, expected):
                found = i
        if found < 0:
            raise _unauthorized("API key not recognised")
        return {"auth": "api-key", "key_id": self._ids[found]}


# ---------------------------------------------------------------- hmac


def _decode_signature(value: str, encoding: str) -> bytes:
    try:
        if encoding == "hex":
            return bytes.fromhex(value)
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise _unauthorized("signature is not valid " + encoding) from None


def _parse_timestamp(raw: str) -> int:
    raw = raw.strip()
    if not re.fullmatch(r"\d{1,12}", raw):
        raise _unauthorized("timestamp is not unix seconds")
    return int(raw)


class _HmacAuthenticator:
    def __init__(
        self,
        cfg: HmacAuth,
        environ: Mapping[str, str],
        where: str,
        clock: Clock,
        replay: ReplayCache | None,
    ) -> None:
        self._cfg = cfg
        self._secrets = [v.encode() for _, v in _secrets(environ, cfg.secret_env, where)]
        self._clock = clock
        self._replay = replay
        self._window = cfg.dedupe_window_s or cfg.tolerance_s

    def _macs(self, message: bytes) -> list[bytes]:
        return [hmac.new(secret, message, hashlib.sha256).digest() for secret in self._secrets]

    def _check_time(self, ts: int) -> None:
        if abs(self._clock() - ts) > self._cfg.tolerance_s:
            raise _unauthorized("timestamp outside tolerance (replay or clock skew)")

    async def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        cfg = self._cfg
        value = _header(headers, cfg.header)
        if not value:
            raise _unauthorized("missing signature header")
        if cfg.format == "stripe":
            ts, ok = self._stripe(value.strip(), body)
        else:
            ts, ok = self._plain(value.strip(), headers, body)
        if not ok:
            raise _unauthorized("signature mismatch")
        claims: dict[str, Any] = {"auth": "hmac-sha256"}
        if ts is not None:
            claims["timestamp"] = ts
        if cfg.dedupe_header:
            delivery = (_header(headers, cfg.dedupe_header) or "").strip()
            if not delivery:
                raise _unauthorized(f"missing {cfg.dedupe_header} header")
            if len(delivery) > MAX_DELIVERY_ID:
                raise _unauthorized(f"{cfg.dedupe_header} longer than {MAX_DELIVERY_ID} characters")
            claims["delivery_id"] = delivery
        if self._replay is not None:
            _claim_once(self._replay, self._keys(claims, body), self._clock())
        return claims

    def _keys(self, claims: Mapping[str, Any], body: bytes) -> list[tuple[ReplayKey, float]]:
        """What makes a request a duplicate: its signed message while its timestamp is inside
        the tolerance, and its delivery id (with the body's signature, as the id is not signed
        when there is no timestamp) for the dedupe window."""
        keys: list[tuple[ReplayKey, float]] = []
        ts = claims.get("timestamp")
        now = self._clock()
        if isinstance(ts, int):
            digest = hashlib.sha256(f"{ts}.".encode() + body).digest()
            keys.append((("message", digest), ts + self._cfg.tolerance_s + 1))  # 1: the edge
        delivery = claims.get("delivery_id")
        if isinstance(delivery, str):
            keys.append((("id", delivery), now + self._window))
            if ts is None:
                keys.append((("message", hashlib.sha256(body).digest()), now + self._window))
        return keys

    def release(self, claims: Mapping[str, Any], body: bytes) -> None:
        """Forget a request accepted here that was then refused before a run started, so
        the sender may send it again."""
        if self._replay is not None:
            for key, _ in self._keys(claims, body):
                self._replay.release(key)

    def _plain(
        self, value: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int | None, bool]:
        cfg = self._cfg
        if cfg.prefix:
            if not value.startswith(cfg.prefix):
                raise _unauthorized("signature prefix missing")
            value = value[len(cfg.prefix) :]
        given = _decode_signature(value, cfg.encoding)
        ts: int | None = None
        message = body
        if cfg.timestamp_header:
            raw_ts = _header(headers, cfg.timestamp_header)
            if not raw_ts:
                raise _unauthorized("missing timestamp header")
            ts = _parse_timestamp(raw_ts)
            self._check_time(ts)
            message = f"{ts}.".encode() + body
        return ts, _any_match(self._macs(message), [given])

    def _stripe(self, value: str, body: bytes) -> tuple[int | None, bool]:
        raw_ts: str | None = None
        signatures: list[str] = []
        for item in value.split(","):
            key, sep, val = item.strip().partition("=")
            if not sep:
                continue
            if key == "t":
                raw_ts = val
            elif key == "v1" and len(signatures) < MAX_STRIPE_SIGNATURES:
                signatures.append(val)
        if raw_ts is None:
            raise _unauthorized("stripe signature without timestamp")
        if not signatures:
            raise _unauthorized("stripe signature without v1 scheme")
        ts = _parse_timestamp(raw_ts)
        self._check_time(ts)
        given: list[bytes] = []
        for sig in signatures:
            try:
                given.append(bytes.fromhex(sig))
            except ValueError:
                continue
        return ts, _any_match(self._macs(f"{ts}.".encode() + body), given)


def _claim_once(cache: ReplayCache, keys: list[tuple[ReplayKey, float]], now: float) -> None:
    """Claim every key, or raise DuplicateRequest (claiming none) when one was seen. No await
    between the check and the claim: two concurrent copies cannot both pass."""
    for key, _ in keys:
        if cache.seen(key, now):
            kind = "delivery id" if key[0] == "id" else "signed message"
            raise DuplicateRequest(f"{kind} already accepted")
    for key, expires_at in keys:
        cache.claim(key, expires_at, now)


# ---------------------------------------------------------------- jwt


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


class _Jwks:
    """The issuer's signing keys: fetched with httpx, cached, refetched on an unknown kid at
    most once per ``jwks_refresh_min_s``."""

    def __init__(self, cfg: OidcAuth, http: httpx.AsyncClient | None, clock: Clock) -> None:
        self._cfg = cfg
        self._http = http
        self._clock = clock
        self._jwks_uri = cfg.jwks_url
        self._keys: list[dict[str, Any]] = []
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt (rate limit)
        self._lock = asyncio.Lock()
        self.last_error: str | None = None  # of the last failed fetch, for logs

    async def _get_json(self, url: str) -> Any:
        timeout = self._cfg.http_timeout_s
        if self._http is not None:
            resp = await self._http.get(url, timeout=timeout)
        else:
            async with httpx.AsyncClient(timeout=timeout) as client:
                resp = await client.get(url)
        resp.raise_for_status()
        if len(resp.content) > MAX_JWKS_BYTES:
            raise ValueError("document too large")
        return json.loads(resp.content)

    async def _discover(self) -> str:
        cfg = self._cfg
        url = cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = await self._get_json(url)
        if not isinstance(doc, dict):
            raise ValueError("discovery document is not an object")
        if str(doc.get("issuer", "")).rstrip("/") != cfg.issuer.rstrip("/"):
            raise ValueError("discovery document names another issuer")
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str) or _url_problem(uri, cfg.allow_http):
            raise ValueError(f"bad jwks_uri in discovery document: {uri!r}")
        return uri

    async def _fetch(self) -> None:
        if self._jwks_uri is None:
            self._jwks_uri = await self._discover()  # cached once it succeeded
        doc = await self._get_json(self._jwks_uri)
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise ValueError("JWKS has no 'keys' list")
        self._keys = [
            k
            for k in keys
            if isinstance(k, dict) and k.get("use", "sig") == "sig" and k.get("kty") != "oct"
        ]

    async def refresh(self, *, stale_before: float | None) -> None:
        """Fetch unless another task fetched after ``stale_before`` or the rate limit says no."""
        async with self._lock:
            if self._fetched_at != stale_before:
                return  # another task refreshed while this one waited
            now = self._clock()
            if (
                self._attempted_at is not None
                and now - self._attempted_at < self._cfg.jwks_refresh_min_s
            ):
                return
            self._attempted_at = now
            try:
                await self._fetch()
            except (httpx.HTTPError, ValueError, TypeError) as e:
                # keep the keys we had; the caller fails with 401 if none fits
                self.last_error = f"{type(e).__name__}: {e}"
                return
            self._fetched_at = now
            self.last_error = None

    def candidates(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        out: list[jwt.PyJWK] = []
        for data in self._keys:
            if kid is not None and data.get("kid") != kid:
                continue
            if data.get("alg") not in (None, alg) or data.get("kty") != _kty_of(alg):
                continue
            if alg in _EC_CURVES and data.get("crv") != _EC_CURVES[alg]:
                continue
            try:
                out.append(jwt.PyJWK(data, algorithm=alg))
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
        return out

    async def keys_for(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._cfg.jwks_ttl_s:
            await self.refresh(stale_before=self._fetched_at)
        found = self.candidates(kid, alg)
        if not found:  # unknown kid: maybe the issuer rotated keys
            await self.refresh(stale_before=self._fetched_at)
            found = self.candidates(kid, alg)
        return found


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


# ---------------------------------------------------------------- public


def build_authenticator(
    auth: dict[str, Any],
    *,
    where: str,
    environ: Mapping[str, str] | None = None,
    http: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
    replay: ReplayCache | None = None,
) -> Authenticator:
    """Validate ``auth`` and return ``async authenticate(method, path, headers, raw_body)``.

    ``where`` names the config's origin (a step file, ``wistro.yml``) in a :class:`ConfigError`.
    Secrets are read now from ``environ`` (default ``os.environ``). ``http`` is used to fetch
    OIDC discovery and JWKS documents (a short-lived client per fetch when not given).
    ``replay`` remembers accepted webhooks (see :func:`protects_replays`): a second copy raises
    :class:`DuplicateRequest`; without it nothing is remembered. Such authenticators also have
    ``release(claims, raw_body)``, to forget a request refused after authentication.
    """
    cfg = _parse(auth, where)
    env = os.environ if environ is None else environ
    if isinstance(cfg, ApiKeyAuth):
        return _ApiKeyAuthenticator(cfg, env, where)
    if isinstance(cfg, HmacAuth):
        return _HmacAuthenticator(cfg, env, where, clock, replay)
    if isinstance(cfg, StandardWebhooksAuth):
        from wistro.triggers.standard_webhooks import StandardWebhooksAuthenticator

        return StandardWebhooksAuthenticator(cfg, env, where, clock, replay)
    if isinstance(cfg, JwtAuth):
        return _JwtAuthenticator(cfg, env, where, clock)
    return _OidcAuthenticator(cfg, http, clock)


def _scheme_name(cfg: AuthConfig) -> str:
    digest = hashlib.sha256(
        json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()[:8]
    return f"{cfg.type}-{digest}"


def protects_replays(auth: dict[str, Any]) -> bool:
    """Whether requests under ``auth`` are accepted once (given a replay cache): HMAC with a
    timestamp or a ``dedupe_header``, and Standard Webhooks. Reads no secret."""
    cfg = _parse(auth, "auth")
    if isinstance(cfg, StandardWebhooksAuth):
        return True
    if isinstance(cfg, HmacAuth):
        return cfg.format == "stripe" or bool(cfg.timestamp_header or cfg.dedupe_header)
    return False


def describe_security(auth: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """OpenAPI 3.1 ``(securityScheme, securityRequirement)`` for an ``auth:`` config.

    The requirement's single key is the scheme's name: put the scheme under
    ``components.securitySchemes[name]`` and the requirement in the operation's ``security``.
    Names are derived from the config, so equal configs share one scheme. Reads no secret.
    """
    cfg = _parse(auth, "auth")
    name = _scheme_name(cfg)
    scopes: list[str] = []
    scheme: dict[str, Any]
    if isinstance(cfg, ApiKeyAuth):
        scheme = {"type": "apiKey", "in": "header", "name": cfg.header}
        text = "API key"
    elif isinstance(cfg, HmacAuth):
        scheme = {"type": "apiKey", "in": "header", "name": cfg.header}
        if cfg.format == "stripe":
            text = "Stripe-style signature `t=<unix time>,v1=<hex HMAC-SHA256 of '{t}.{raw body}'>`"
        else:
            signed = "'{timestamp}.{raw body}'" if cfg.timestamp_header else "the raw body"
            text = f"HMAC-SHA256 of {signed}, {cfg.encoding}-encoded"
            if cfg.prefix:
                text += f", prefixed with `{cfg.prefix}`"
            if cfg.timestamp_header:
                text += (
                    f"; unix timestamp in `{cfg.timestamp_header}`, "
                    f"accepted within {cfg.tolerance_s:g} s"
                )
        if cfg.format == "stripe" or cfg.timestamp_header:
            text += "; each signed message is accepted once"
        if cfg.dedupe_header:
            window = cfg.dedupe_window_s or cfg.tolerance_s
            text += f"; each `{cfg.dedupe_header}` is accepted once within {window:g} s"
    elif isinstance(cfg, StandardWebhooksAuth):
        scheme = {"type": "apiKey", "in": "header", "name": "webhook-signature"}
        window = max(cfg.dedupe_window_s or cfg.tolerance_s, cfg.tolerance_s)
        text = (
            "Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` "
            f"(unix seconds, accepted within {cfg.tolerance_s:g} s) and `webhook-signature`: "
            "space-separated `v1,<base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}."
            f"{{raw body}}'>`; each `webhook-id` is accepted once within {window:g} s"
        )
    else:
        scopes = list(cfg.scopes)
        bearer = cfg.header.lower() == "authorization"
        if isinstance(cfg, OidcAuth) and cfg.jwks_url is None and bearer:
            url = cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
            scheme = {"type": "openIdConnect", "openIdConnectUrl": url}
        elif bearer:
            scheme = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        else:
            scheme = {"type": "apiKey", "in": "header", "name": cfg.header}
        text = f"JWT signed with {', '.join(cfg.algorithms)}"
        if cfg.issuer:
            text += f", issuer {cfg.issuer}"
    scheme["description"] = cfg.description or text
    return scheme, {name: scopes}
