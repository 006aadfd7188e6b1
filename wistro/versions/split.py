"""The traffic split between live versions, chosen once at the root of each trace.

Weighted rendezvous hashing (highest random weight): each version ``v`` of weight ``w > 0``
scores ``ln(u) / w`` for a key, ``u`` in (0, 1) from a 64-bit BLAKE2b of ``(v, key)``, and the
highest score wins (the same order as ``-w / ln(u)``). So each version gets a share of keys equal
to its weight; a key goes to the same version in every process and on every machine while the
weights stay the same; a weight change moves (close to) the fewest keys; and a version with no
live worker loses only its own keys, which spread over the others in proportion to their weights.

The key is the sticky field's value when the split has one and the payload holds it, else the
trace id (:meth:`Split.key_of`). Changing how ``u`` is computed moves every sticky key: the hash
is part of the format (``tests/versions/test_split.py`` pins a few choices).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from wistro.errors import ConfigError

__all__ = ["Split"]

STICKY = "sticky"  # the one key of the yml/CLI mapping that is not a version
_PERSON = b"wistro-split-v1"  # BLAKE2b personalisation: these hashes are not any others
_U_SCALE = 2.0**-53  # the top 53 bits of the hash -> (0, 1), never 0 nor 1
_U_HALF = 2.0**-54


def _prefix(version: str) -> Any:
    """A BLAKE2b state holding the version, length-prefixed (no version/key pair is another's)."""
    raw = version.encode("utf-8", "surrogatepass")
    return blake2b(len(raw).to_bytes(4, "big") + raw, digest_size=8, person=_PERSON)


def _weight(version: str, value: Any) -> float:
    """``value`` as a weight (numeric text too: the CLI's ``v1=25``), or a ConfigError naming it."""
    number = value
    if isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                number = value
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ConfigError(f"the weight must be a number, got {value!r}", field=f"traffic.{version}")
    if not math.isfinite(number) or number < 0:
        raise ConfigError(
            f"the weight must be a finite number >= 0, got {value!r}", field=f"traffic.{version}"
        )
    return number


@dataclass(frozen=True)
class Split:
    """Weights by version (any scale: percentages or not) and the optional sticky payload field.

    ``weights`` is sorted by version, so equal splits compare equal; a weight of 0 keeps a
    version in the split with no traffic. Build one from the yml/CLI form with :meth:`parse`.
    """

    weights: tuple[tuple[str, float], ...]
    sticky: str | None = None
    # (version, 1 / weight, hash state) of each version of weight > 0: what choose() walks.
    _ranked: tuple[tuple[str, float, Any], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        pairs = sorted((str(v), w) for v, w in self.weights)
        if not pairs:
            raise ConfigError(
                "no versions: give each version its weight, e.g. {v1: 90, v2: 10}", field="traffic"
            )
        for i, (version, weight) in enumerate(pairs):
            if not version or version == STICKY:
                raise ConfigError(f"{version!r} cannot name a version", field="traffic")
            if i and pairs[i - 1][0] == version:
                raise ConfigError(f"version {version!r} is given twice", field="traffic")
            pairs[i] = (version, _weight(version, weight))
        if not any(w > 0 for _, w in pairs):
            raise ConfigError(
                "every weight is 0: at least one version needs a weight above 0", field="traffic"
            )
        if self.sticky is not None and (not isinstance(self.sticky, str) or not self.sticky):
            raise ConfigError(
                f"sticky must name a payload field, got {self.sticky!r}", field="traffic.sticky"
            )
        object.__setattr__(self, "weights", tuple(pairs))
        ranked = tuple((v, 1.0 / w, _prefix(v)) for v, w in pairs if w > 0)
        object.__setattr__(self, "_ranked", ranked)

    def __reduce__(self) -> tuple[Any, ...]:  # pickle/copy without the hash states
        return (type(self), (self.weights, self.sticky))

    @classmethod
    def parse(cls, mapping: Mapping[str, Any]) -> Split:
        """``{"v1": 25, "v2": 75, "sticky": "customer_id"}`` (wistro.yml's ``traffic``, the CLI's
        ``v1=25 v2=75 --sticky customer_id``). Errors are ConfigErrors naming the field."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                f"expected a mapping of version to weight, got {type(mapping).__name__}",
                field="traffic",
            )
        weights = tuple((str(k), v) for k, v in mapping.items() if k != STICKY)
        return cls(weights, mapping.get(STICKY))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Split:
        """The inverse of :meth:`to_dict` (the same form as :meth:`parse` reads)."""
        return cls.parse(data)

    def to_dict(self) -> dict[str, Any]:
        """The yml/CLI form, JSON-ready: ``{"v1": 25, "v2": 75, "sticky": "customer_id"}``."""
        out: dict[str, Any] = dict(self.weights)
        if self.sticky is not None:
            out[STICKY] = self.sticky
        return out

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.weights)

    def choose(self, key: str, live: Collection[str] | None = None) -> str | None:
        """The version that serves ``key``: among those of weight > 0 (and in ``live``, when given),
        the highest rendezvous score. None when no such version is live."""
        raw = key.encode("utf-8", "surrogatepass")
        log, number, scale, half = math.log, int.from_bytes, _U_SCALE, _U_HALF  # locals: faster
        best: str | None = None
        top = -math.inf
        for version, inverse, prefix in self._ranked:
            if live is not None and version not in live:
                continue
            h = prefix.copy()
            h.update(raw)
            score = log((number(h.digest(), "big") >> 11) * scale + half) * inverse
            if score > top or best is None:  # a weight so small its score is -inf still counts
                best, top = version, score
        return best

    def key_of(self, payload: Any, trace_id: str) -> str:
        """The routing key of a trace root: the sticky field's value as text (``customer.id``
        reaches into nested objects; a field literally named so wins) when the payload is a dict
        holding it with a value other than None, else the trace id."""
        name = self.sticky
        if name is None or not isinstance(payload, dict):
            return trace_id
        value = payload.get(name)
        if value is None and "." in name:
            value = payload
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return trace_id
        if isinstance(value, str):
            return value
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)

    def shares(self, live: Collection[str] | None = None) -> dict[str, float]:
        """Each version's effective fraction of traffic (summing to 1, or all 0 when nothing
        weighted is live): versions not in ``live`` get 0 and the others their weight's share."""
        alive = [(v, w) for v, w in self.weights if live is None or v in live]
        total = sum(w for _, w in alive)
        share = dict.fromkeys(self.versions, 0.0)
        for version, weight in alive:
            share[version] = weight / total if total else 0.0
        return share
