"""Replay protection for signed webhooks: what was already accepted, until it expires.

A :class:`ReplayCache` remembers keys (the digest of a signed message, a delivery id) until
their expiry time, in bounded memory. The HTTP trigger keeps one :class:`ReplayStore` for the
whole server, so the caches outlive the rebuilds of its routes (reloads, step activation). The
memory is the server process's: a restart forgets every key.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Hashable

__all__ = ["MAX_REPLAY_ENTRIES", "ReplayCache", "ReplayStore"]

logger = logging.getLogger("wistro.http")

MAX_REPLAY_ENTRIES = 100_000  # per endpoint


class ReplayCache:
    """Keys seen, each until its expiry (seconds on the caller's clock)."""

    def __init__(self, max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        self.max_entries = max_entries
        self._expiry: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []  # (expiry, n, key); stale ones too
        self._n = 0
        self.evicted = 0  # keys dropped before they expired because the cache was full

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._expiry

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and (heap[0][0] <= now or self._expiry.get(heap[0][2]) != heap[0][0]):
            expiry, _, key = heapq.heappop(heap)
            if self._expiry.get(key) == expiry:
                del self._expiry[key]
        if len(heap) > 4 * len(self._expiry) + 1024:  # many stale entries (released keys)
            self._heap = [(e, i, k) for e, i, k in heap if self._expiry.get(k) == e]
            heapq.heapify(self._heap)

    def seen(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` was claimed and has not expired."""
        expiry = self._expiry.get(key)
        return expiry is not None and expiry > now

    def claim(self, key: Hashable, expires_at: float, now: float) -> bool:
        """Remember ``key`` until ``expires_at``; False (and nothing changes) when it is
        already remembered."""
        self._purge(now)
        if self.seen(key, now):
            return False
        while len(self._expiry) >= self.max_entries:
            expiry, _, old = heapq.heappop(self._heap)
            if self._expiry.get(old) == expiry:
                del self._expiry[old]
                self.evicted += 1
                if self.evicted == 1 or self.evicted % 10_000 == 0:
                    logger.warning(
                        "replay cache full (%d keys): forgot %d key(s) before they expired",
                        self.max_entries,
                        self.evicted,
                    )
        self._expiry[key] = expires_at
        self._n += 1
        heapq.heappush(self._heap, (expires_at, self._n, key))
        return True

    def release(self, key: Hashable) -> None:
        """Forget ``key`` (the request it came with was refused before a run started)."""
        self._expiry.pop(key, None)


class ReplayStore:
    """One :class:`ReplayCache` per name (an endpoint and its auth config)."""

    def __init__(self, max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        self.max_entries = max_entries
        self._caches: dict[str, ReplayCache] = {}

    def cache(self, name: str) -> ReplayCache:
        cache = self._caches.get(name)
        if cache is None:
            cache = self._caches[name] = ReplayCache(self.max_entries)
        return cache
