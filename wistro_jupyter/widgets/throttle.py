"""``Throttle``: a widget's updates coalesced to at most one message per ``INTERVAL_S`` on the
engine's loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wistro.core.engine import Engine

INTERVAL_S = 0.05  # at most ~20 updates a second per widget


class Throttle:
    """Coalesces ``mark()`` calls into at most one ``send`` per ``interval`` on the engine's loop;
    ``flush()`` sends at once. ``mark()`` may be called from any thread (a plain ``def`` handler
    logs from a worker thread): it then hops to the loop first."""

    __slots__ = ("_handle", "_last", "_send", "dirty", "engine", "interval")

    def __init__(self, send: Callable[[], None], interval: float = INTERVAL_S) -> None:
        self._send = send
        self.interval = interval
        self.engine: Engine | None = None
        self._last = 0.0
        self._handle: asyncio.Handle | None = None
        self.dirty = False

    def mark(self) -> None:
        engine = self.engine
        loop = engine.loop if engine is not None else None
        if loop is None or loop.is_closed():
            self.dirty = True
            self.flush()
            return
        if engine is not None and engine.loop_thread != threading.get_ident():
            loop.call_soon_threadsafe(self.mark)
            return
        self.dirty = True
        if self._handle is not None:
            return
        delay = self._last + self.interval - time.monotonic()
        if delay <= 0:
            self._handle = loop.call_soon(self._fire)
        else:
            self._handle = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        if self.dirty:
            self.flush()

    def flush(self) -> None:
        self.cancel()
        self._last = time.monotonic()
        self._send()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.dirty = False
