"""The ``standard-webhooks`` auth type: https://www.standardwebhooks.com/ signatures.

A request carries ``webhook-id`` (unique per message, the same on every retry),
``webhook-timestamp`` (unix seconds) and ``webhook-signature``: space-separated
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{raw body}">`` (several during a secret
rotation; other versions such as ``v1a`` are ignored). Each secret is ``whsec_<base64 key>``
(the prefix is optional). Checks, all before the body is parsed:

- the timestamp is within ``tolerance_s`` of the clock (default 300 s), in both directions;
- some ``v1`` signature matches some configured secret: every pair is compared in constant time
  without an early exit;
- with a :class:`~wistro.triggers.replay.ReplayCache`, a ``webhook-id`` already accepted raises
  :class:`~wistro.triggers.auth.DuplicateRequest` for ``dedupe_window_s`` (default
  ``tolerance_s``) and at least until its timestamp leaves the tolerance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from wistro.errors import ConfigError
from wistro.triggers.auth import (
    Clock,
    ReplayKey,
    StandardWebhooksAuth,
    _any_match,
    _claim_once,
    _header,
    _parse_timestamp,
    _secrets,
    _unauthorized,
)
from wistro.triggers.replay import ReplayCache

__all__ = ["SECRET_PREFIX", "StandardWebhooksAuthenticator", "sign"]

SECRET_PREFIX = "whsec_"
MAX_SIGNATURES = 8
MAX_SIGNATURE_HEADER = 4096
_ID = re.compile(r"^[\x21-\x7e]{1,256}$")  # visible ASCII


def decode_secret(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if not key:
        raise ValueError("empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value a sender computes (one ``v1`` signature)."""
    mac = hmac.new(decode_secret(secret), _content(msg_id, timestamp, body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def _content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


class StandardWebhooksAuthenticator:
    def __init__(
        self,
        cfg: StandardWebhooksAuth,
        environ: Mapping[str, str],
        where: str,
        clock: Clock,
        replay: ReplayCache | None,
    ) -> None:
        self._cfg = cfg
        self._keys: list[bytes] = []
        for i, (name, value) in enumerate(_secrets(environ, cfg.secret_env, where)):
            try:
                self._keys.append(decode_secret(value))
            except ValueError as e:
                field = (
                    "auth.secret_env" if isinstance(cfg.secret_env, str) else f"auth.secret_env.{i}"
                )
                raise ConfigError(
                    f"the secret in {name} is not whsec_<base64> ({e})",
                    file=where,
                    field=field,
                    hint="use the signing secret exactly as the webhook sender shows it",
                ) from None
        self._clock = clock
        self._replay = replay
        self._window = cfg.dedupe_window_s or cfg.tolerance_s

    async def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        msg_id = _header(headers, "webhook-id")
        raw_ts = _header(headers, "webhook-timestamp")
        value = _header(headers, "webhook-signature")
        if not msg_id or not raw_ts or not value:
            raise _unauthorized("missing webhook-id, webhook-timestamp or webhook-signature")
        msg_id = msg_id.strip()
        if not _ID.match(msg_id):
            raise _unauthorized("webhook-id is not visible ASCII of at most 256 characters")
        ts = _parse_timestamp(raw_ts)
        now = self._clock()
        if abs(now - ts) > self._cfg.tolerance_s:
            raise _unauthorized("timestamp outside tolerance (replay or clock skew)")
        if len(value) > MAX_SIGNATURE_HEADER:
            raise _unauthorized("webhook-signature too large")
        given: list[bytes] = []
        for item in value.split():
            version, sep, sig = item.partition(",")
            if not sep or version != "v1" or len(given) >= MAX_SIGNATURES:
                continue
            try:
                given.append(base64.b64decode(sig, validate=True))
            except (binascii.Error, ValueError):
                continue
        if not given:
            raise _unauthorized("webhook-signature has no v1 signature")
        content = _content(msg_id, ts, body)
        expected = [hmac.new(key, content, hashlib.sha256).digest() for key in self._keys]
        if not _any_match(expected, given):
            raise _unauthorized("signature mismatch")
        claims: dict[str, Any] = {
            "auth": "standard-webhooks",
            "webhook_id": msg_id,
            "timestamp": ts,
        }
        if self._replay is not None:
            _claim_once(self._replay, self._replay_keys(claims, now), now)
        return claims

    def _replay_keys(self, claims: Mapping[str, Any], now: float) -> list[tuple[ReplayKey, float]]:
        # at least while the timestamp passes the tolerance check (+1: its edge)
        expires = max(now + self._window, float(claims["timestamp"]) + self._cfg.tolerance_s + 1)
        return [(("id", str(claims["webhook_id"])), expires)]

    def release(self, claims: Mapping[str, Any], body: bytes) -> None:
        """Forget a request accepted here that was then refused before a run started."""
        if self._replay is not None and "webhook_id" in claims:
            for key, _ in self._replay_keys(claims, self._clock()):
                self._replay.release(key)
