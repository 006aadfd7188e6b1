"""The engine's side of versions: the version it runs, its registration on the bus as a worker
of that version, and the router that puts each new run on a version (``routing``).

On a shared bus an engine that consumes registers ``WorkerInfo`` (its version, label, when it
started, how many steps it takes), kept alive by the bus; every ``REFRESH_S`` (and at once when
a process broadcasts ``{"op": "traffic"}``) it reads the live workers and the stored split into
its router. On the memory bus there is one process: every run is on this engine's version.
``Engine`` mixes this in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from wistro.bus.base import EventBus, WorkerInfo
from wistro.core.routing import REFRESH_S, Router
from wistro.versions.live import live_versions

logger = logging.getLogger("wistro.traffic")
FIRST_READ_S = 5.0


class Versions:
    """Mixed into ``Engine``."""

    bus: EventBus
    worker: str
    _shared: bool
    router: Router
    version_label: str | None
    _versions_task: asyncio.Task[None] | None
    _refresh_now: asyncio.Event | None
    _versions_known: asyncio.Event | None  # set once the live versions were read

    def _init_versions(self) -> None:
        self.router = Router()
        self.version_label = None
        self._versions_task = None
        self._refresh_now = None
        self._versions_known = None

    @property
    def version(self) -> str | None:
        """The version this engine runs (the short lock hash), when it is known."""
        return self.router.own

    def set_version(self, version: str | None, label: str | None = None) -> None:
        self.router.own = version
        self.version_label = label
        self.bus.version = version

    def route(self, payload: Any, trace_id: str) -> str | None:
        """The version a new run goes to (the traffic split, at the root of the trace)."""
        return self.router.choose(payload, trace_id) if self._shared else self.router.own

    async def versions_known(self) -> None:
        """Until the live versions and the split were read once (at most ``FIRST_READ_S``): the
        first runs of a process that just started are routed like the others."""
        known = self._versions_known
        if known is None or known.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_READ_S):
                await known.wait()
        known.set()  # the bus did not answer in time: route with what is known (a warning said)

    def _start_versions(self, loop: asyncio.AbstractEventLoop, steps: int) -> None:
        if self._versions_task is not None:
            self._versions_task.cancel()
            self._versions_task = None
        if not self._shared or self.router.own is None:
            return
        info = None
        if self.bus.consume:
            info = WorkerInfo(self.worker, self.router.own, self.version_label, time.time(), steps)
        self._refresh_now = asyncio.Event()
        self._versions_known = asyncio.Event()
        self._versions_task = loop.create_task(self._versions_loop(info), name="wistro-versions")

    async def _versions_loop(self, info: WorkerInfo | None) -> None:
        assert self._refresh_now is not None
        registered = False
        while self._versions_task is not None:
            try:
                if info is not None and not registered:
                    await self.bus.register(info)
                    registered = True
                await self.refresh_versions()
                if self._versions_known is not None:
                    self._versions_known.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the bus is unreachable for a while: keep what we knew
                logger.warning("traffic: cannot read the live versions (%s)", e)
            self._refresh_now.clear()
            waiting = asyncio.ensure_future(self._refresh_now.wait())
            try:
                await asyncio.wait([waiting], timeout=REFRESH_S)
            finally:
                waiting.cancel()

    async def refresh_versions(self) -> None:
        """Read the live workers and the stored split into the router now."""
        workers = await self.bus.workers()
        stored = await self.bus.traffic()
        self.router.update(live_versions(workers), stored)

    def _traffic_changed(self) -> None:
        if self._refresh_now is not None:
            self._refresh_now.set()

    async def _stop_versions(self) -> None:
        task, self._versions_task = self._versions_task, None
        if task is None:
            return
        if self._refresh_now is not None:
            self._refresh_now.set()  # it sees it is stopped (a cancel alone can be swallowed)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            async with asyncio.timeout(5):
                await task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.bus.register(None)
