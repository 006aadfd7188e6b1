"""An OIDC issuer's signing keys (JWKS): discovered from ``{issuer}/.well-known/openid-
configuration`` unless ``jwks_url`` is given, fetched with httpx (size-limited), cached for
``jwks_ttl_s``, refetched on an unknown ``kid`` at most once per ``jwks_refresh_min_s``; a key is
a candidate only when its type and curve fit the token's algorithm."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jwt

from wistro.triggers.auth.config import OidcAuth, _url_problem
from wistro.triggers.auth.shared import Clock

MAX_JWKS_BYTES = 1_048_576
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def _kty_of(alg: str) -> str:
    if alg.startswith(("RS", "PS")):
        return "RSA"
    if alg.startswith("ES"):
        return "EC"
    if alg == "EdDSA":
        return "OKP"
    return "oct"


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
