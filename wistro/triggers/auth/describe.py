"""What an ``auth:`` config means, without reading its secrets: whether it accepts each request
once (:func:`protects_replays`) and its OpenAPI security scheme (:func:`describe_security`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from wistro.triggers.auth.config import (
    ApiKeyAuth,
    AuthConfig,
    HmacAuth,
    OidcAuth,
    StandardWebhooksAuth,
    _parse,
)


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
