"""Which version a new trace runs on: the traffic split, applied once at the root of a trace.

Every entry point (``app.emit``, HTTP, cron, ``wistro emit``, the notebook) asks the engine's
``Router`` for the version of a new run; the run records it, and every event of the run carries
it (``Delivery.version``), so each version's workers run only their own version's deliveries.

- No split (none set on the bus, no ``traffic:`` in wistro.yml): a run stays on this process's
  version while that version has live workers (this process, when it consumes, or another) or
  nobody is registered; otherwise it goes to the version whose workers started last (a rolling deploy moves traffic as
  soon as the new workers are up).
- A split names versions by label (``wistro lock --label v2``) or by a prefix of their id (the
  lock hash). A version with no live worker gets nothing: its share goes to the others, and a
  warning says so once until it is back. With no live version named at all, the rule above
  applies, with a warning.

What it knows of the bus (live workers, the split set with ``wistro traffic set``) is refreshed
by the engine every ``REFRESH_S`` and at once when a process broadcasts a change, so choosing
costs a hash and a dictionary lookup, never a round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from wistro.versions.live import LiveVersion
from wistro.versions.split import Split

log = logging.getLogger("wistro.traffic")
REFRESH_S = 2.0


def resolve(name: str, versions: Iterable[LiveVersion]) -> str | None:
    """The id of the version a split names: a label, an id or a prefix of one (4+ chars)."""
    found = None
    for v in versions:
        if v.label == name or v.id == name:
            return v.id
        if len(name) >= 4 and v.id.startswith(name):
            found = v.id
    return found


class Router:
    def __init__(self, own: str | None = None, default: Split | None = None) -> None:
        self.own = own  # this process's version (None: versions are not tracked)
        self.default = default  # ``traffic:`` of wistro.yml
        self.stored: Split | None = None  # set on the bus (``wistro traffic set``)
        self.live: dict[str, LiveVersion] = {}
        self.names: dict[str, str] = {}  # split name -> live version id
        self._warned: set[str] = set()

    @property
    def split(self) -> Split | None:
        return self.stored or self.default

    def update(self, live: Iterable[LiveVersion], stored: dict[str, Any] | None) -> None:
        """What the bus says now: the live versions and what ``wistro traffic set`` stored
        (``{"split": Split.to_dict(), "set_at": ...}``)."""
        self.live = {v.id: v for v in live}
        try:
            self.stored = Split.from_dict(stored["split"]) if stored else None
        except (ValueError, KeyError, TypeError) as e:  # a newer or broken client wrote it
            log.warning("traffic: the split stored on the bus is unreadable (%s)", e)
            self.stored = None
        split = self.split
        names: dict[str, str] = {}
        if split is not None:
            for name in split.versions:
                found = resolve(name, self.live.values())
                if found is not None:
                    names[name] = found
                elif name not in self._warned:
                    self._warned.add(name)
                    log.warning(
                        "traffic: version %s has no live workers: its share goes to the others",
                        name,
                    )
            self._warned &= set(split.versions) - set(names)
            if not names:  # said once, until a version of the split is live again
                if "*" not in self._warned:
                    log.warning("traffic: no version of the split has live workers")
                self._warned.add("*")
        self.names = names

    def _fallback(self) -> str | None:
        if self.own is None or not self.live or self.own in self.live:
            return self.own
        return max(self.live.values(), key=lambda v: v.started).id

    def choose(self, payload: Any, trace_id: str) -> str | None:
        """The version of a new run whose first event carries ``payload``."""
        split = self.split
        if split is None or not self.names:
            return self._fallback()
        name = split.choose(split.key_of(payload, trace_id), self.names)
        return self.names[name] if name is not None else self._fallback()
