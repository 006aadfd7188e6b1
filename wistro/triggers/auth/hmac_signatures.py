"""The ``hmac-sha256`` scheme: webhooks signed with HMAC-SHA256 of the raw body, plain (hex or
base64, an optional prefix and timestamp header, e.g. GitHub's ``sha256=``) or Stripe's
``t=<timestamp>,v1=<hex>``; a timestamp outside ``tolerance_s`` is a replay, and with a
``ReplayCache`` a signed message or a delivery id (``dedupe_header``) is accepted once."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from wistro.triggers.auth.config import HmacAuth
from wistro.triggers.auth.shared import (
    Clock,
    ReplayKey,
    _any_match,
    _claim_once,
    _header,
    _parse_timestamp,
    _secrets,
    _unauthorized,
)
from wistro.triggers.replay import ReplayCache

MAX_STRIPE_SIGNATURES = 8
MAX_DELIVERY_ID = 256


def _decode_signature(value: str, encoding: str) -> bytes:
    try:
        if encoding == "hex":
            return bytes.fromhex(value)
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise _unauthorized("signature is not valid " + encoding) from None


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
