"""The in-memory bus: deliveries wait in this process only, in the lanes every bus dispatches
through (``wistro.bus.lanes``: a queue per step, one pool of workers). Fast, and gone with the
process (notebooks, tests, eval)."""

from __future__ import annotations

import asyncio
from typing import Any

from wistro.bus.base import BusHooks, ConcurrencyOf, Deliver, Delivery, EventBus
from wistro.bus.lanes import Lanes


def _acknowledged(delivery: Delivery, token: Any) -> None:
    """Nothing to acknowledge: a delivery in memory is gone once taken."""


class InMemoryBus(EventBus):
    """The lanes, and timers for delayed deliveries."""

    def __init__(self) -> None:
        self._lanes: Lanes | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(
        self, deliver: Deliver, concurrency_of: ConcurrencyOf, hooks: BusHooks | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lanes is None:  # first start, or a new event loop
            self._timers.clear()
            self._lanes = Lanes(deliver, concurrency_of, _acknowledged)
        self._loop = loop  # a memory bus has no run ledger: hooks are never called

    def publish(self, delivery: Delivery, delay: float = 0.0) -> None:
        if delay > 0:
            assert self._loop is not None

            def due() -> None:
                self._timers.discard(handle)
                self.publish(delivery)

            handle = self._loop.call_later(delay, due)
            self._timers.add(handle)
            return
        assert self._lanes is not None, "publish before start"
        self._lanes.put(delivery, None)

    def pending(self) -> int:
        return len(self._timers) + (self._lanes.queued() if self._lanes is not None else 0)

    def _drop_scheduled(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def abandon(self) -> None:
        self._drop_scheduled()
        if self._lanes is not None:
            self._lanes.clear()
            self._lanes.cancel_now()

    async def aclose(self) -> None:
        self._drop_scheduled()
        if self._lanes is not None:
            self._lanes.clear()
            await self._lanes.cancel()
