"""``build_authenticator``: an ``auth:`` config validated and turned into the authenticator
of its scheme, its secrets read from the environment."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from wistro.triggers.auth.api_key import _ApiKeyAuthenticator
from wistro.triggers.auth.config import ApiKeyAuth, HmacAuth, JwtAuth, StandardWebhooksAuth, _parse
from wistro.triggers.auth.hmac_signatures import _HmacAuthenticator
from wistro.triggers.auth.shared import Authenticator
from wistro.triggers.auth.tokens import _JwtAuthenticator, _OidcAuthenticator
from wistro.triggers.replay import ReplayCache


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
