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

The modules, each importing only those above it:

- ``shared`` - what the schemes share: the ``Authenticator`` type, header lookup, secrets from the
  environment, constant-time matching, accepting a request once;
- ``config`` - the pydantic model of each ``auth:`` type, parsing, :func:`check_auth_config`;
- ``api_key``, ``hmac_signatures`` (plain, Stripe and GitHub-style HMAC webhooks), ``jwks`` (the
  issuer's signing keys), ``tokens`` (``oidc`` and ``jwt``) - the schemes;
  ``wistro.triggers.standard_webhooks`` is the ``standard-webhooks`` one;
- ``build`` - :func:`build_authenticator`;
- ``describe`` - what a config means without its secrets: :func:`protects_replays`,
  :func:`describe_security` (OpenAPI).
"""

from wistro.errors import AuthFailure, DuplicateRequest
from wistro.triggers.auth.build import build_authenticator
from wistro.triggers.auth.config import AUTH_TYPES, check_auth_config
from wistro.triggers.auth.config import MAX_SECRETS as MAX_SECRETS
from wistro.triggers.auth.config import ApiKeyAuth as ApiKeyAuth
from wistro.triggers.auth.config import AuthConfig as AuthConfig
from wistro.triggers.auth.config import ClaimValue as ClaimValue
from wistro.triggers.auth.config import EnvName as EnvName
from wistro.triggers.auth.config import HeaderName as HeaderName
from wistro.triggers.auth.config import HmacAuth as HmacAuth
from wistro.triggers.auth.config import JwtAuth as JwtAuth
from wistro.triggers.auth.config import OidcAuth as OidcAuth
from wistro.triggers.auth.config import StandardWebhooksAuth as StandardWebhooksAuth
from wistro.triggers.auth.describe import describe_security, protects_replays
from wistro.triggers.auth.hmac_signatures import MAX_DELIVERY_ID as MAX_DELIVERY_ID
from wistro.triggers.auth.hmac_signatures import MAX_STRIPE_SIGNATURES as MAX_STRIPE_SIGNATURES
from wistro.triggers.auth.jwks import MAX_JWKS_BYTES as MAX_JWKS_BYTES
from wistro.triggers.auth.shared import Authenticator
from wistro.triggers.auth.shared import Clock as Clock
from wistro.triggers.auth.shared import ReplayKey as ReplayKey
from wistro.triggers.auth.shared import _any_match as _any_match
from wistro.triggers.auth.shared import _claim_once as _claim_once
from wistro.triggers.auth.shared import _header as _header
from wistro.triggers.auth.shared import _parse_timestamp as _parse_timestamp
from wistro.triggers.auth.shared import _secrets as _secrets
from wistro.triggers.auth.shared import _unauthorized as _unauthorized
from wistro.triggers.auth.tokens import MAX_TOKEN_BYTES as MAX_TOKEN_BYTES

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
