"""Live versions: the workers registered on a bus, grouped by the version they run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LiveVersion:
    """A version with live workers, as the bus's worker registry tells it."""

    id: str  # the short lock hash
    label: str | None
    workers: int
    started: float  # when its first live worker started


def live_versions(workers: Iterable[Any]) -> list[LiveVersion]:
    """Workers (``WorkerInfo``) grouped by version."""
    by: dict[str, list[Any]] = {}
    for w in workers:
        by.setdefault(w.version, []).append(w)
    return [
        LiveVersion(
            version,
            next((w.label for w in ws if w.label), None),
            len(ws),
            min(w.started for w in ws),
        )
        for version, ws in sorted(by.items())
    ]
