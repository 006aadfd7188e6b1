"""What the authentication schemes share: the ``Authenticator`` type, header lookup, secrets
read from the environment, constant-time signature matching and accepting a signed request
once (with a ``ReplayCache``)."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from wistro.errors import AuthFailure, ConfigError, DuplicateRequest
from wistro.triggers.replay import ReplayCache

Authenticator = Callable[[str, str, Mapping[str, str], bytes], Awaitable[dict[str, Any]]]
Clock = Callable[[], float]
ReplayKey = tuple[str, bytes | str]  # ("message", digest) or ("id", delivery id)


def _unauthorized(reason: str) -> AuthFailure:
    return AuthFailure(401, reason)


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


def _parse_timestamp(raw: str) -> int:
    raw = raw.strip()
    if not re.fullmatch(r"\d{1,12}", raw):
        raise _unauthorized("timestamp is not unix seconds")
    return int(raw)


def _claim_once(cache: ReplayCache, keys: list[tuple[ReplayKey, float]], now: float) -> None:
    """Claim every key, or raise DuplicateRequest (claiming none) when one was seen. No await
    between the check and the claim: two concurrent copies cannot both pass."""
    for key, _ in keys:
        if cache.seen(key, now):
            kind = "delivery id" if key[0] == "id" else "signed message"
            raise DuplicateRequest(f"{kind} already accepted")
    for key, expires_at in keys:
        cache.claim(key, expires_at, now)
