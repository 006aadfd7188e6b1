"""The ``api-key`` scheme: a key from a header, compared as a SHA-256 digest against every
configured key (from ``keys_env``) in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from wistro.errors import ConfigError
from wistro.triggers.auth.config import ApiKeyAuth
from wistro.triggers.auth.shared import _header, _secret, _unauthorized


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
