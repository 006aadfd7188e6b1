"""The ``auth:`` configs: one pydantic model per type (``api-key``, ``hmac-sha256``,
``standard-webhooks``, ``oidc``, ``jwt``), parsed into a :class:`ConfigError` that names the
file and the field; :func:`check_auth_config` for ``wistro check``. Reads no secret."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from wistro.errors import ConfigError

MAX_SECRETS = 8

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
HeaderName = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
ClaimValue = str | int | bool

_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})


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


def check_auth_config(auth: Any, *, where: str) -> None:
    """Validate the shape of an ``auth:`` config without reading any secret (for ``wistro
    check``). Raises :class:`ConfigError` naming ``where`` and the field."""
    _parse(auth, where)
