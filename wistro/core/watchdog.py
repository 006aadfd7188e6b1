"""The event-loop watchdog: names the step that blocked the loop.

An ``async def`` handler that calls blocking code (``time.sleep``, a sync HTTP client, a long
computation) stalls every other step, the HTTP server and the notebook kernel. The loop cannot
see that itself, so a thread watches a heartbeat the loop schedules every ``threshold / 2``. When
the heartbeat is late by more than ``threshold``, the thread looks at the loop thread's stack:
when the same frame of a step file is on top in two samples, that step is blocking. Once the loop
runs again, the report goes to ``on_block`` on the loop thread, with how long it was stalled.

Nothing runs per event: the cost is one timer callback per ``threshold / 2`` and a thread that
wakes every ``threshold / 4``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any


@dataclass(slots=True)
class Blocker:
    """Where the loop was stuck: the step's file and line, and its span and run when known."""

    file: str
    line: int
    span: Any = None
    run: Any = None
    code: Any = None  # the step frame's code object

    def same_call(self, other: Blocker) -> bool:
        """Both samples caught the same delivery in the same function (frame ids alone are
        reused by Python, so they prove nothing)."""
        return self.span is not None and self.span is other.span and self.code is other.code


Finder = Callable[[FrameType], "Blocker | None"]
Reporter = Callable[[Blocker, float], None]


class LoopWatchdog:
    def __init__(self, threshold_s: float, find: Finder, report: Reporter) -> None:
        self.threshold = threshold_s
        self.interval = threshold_s / 2
        self._find = find
        self._report = report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._last = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first: Blocker | None = None  # the first sample of the current stall
        self._found: Blocker | None = None  # confirmed by a second sample
        self._stall_of = -1.0  # the heartbeat the samples belong to

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._last = time.monotonic()
        self._stop.clear()
        self._handle = loop.call_later(self.interval, self._beat)
        self._thread = threading.Thread(target=self._watch, name="wistro-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    # ------------------------------------------------------------ on the loop
    def _beat(self) -> None:
        self.report_now()
        if self._loop is not None and not self._stop.is_set():
            self._handle = self._loop.call_later(self.interval, self._beat)

    def report_now(self) -> None:
        """Report a stall the thread has confirmed, now rather than at the next heartbeat: the
        engine calls it when a handler that ran longer than the threshold returns, so that the
        warning is in the run before the run ends."""
        now = time.monotonic()
        found = self._found
        if found is not None:
            self._found = None
            self._first = None
            blocked = now - self._last - self.interval
            if blocked >= self.threshold:
                self._report(found, blocked)
        self._last = now

    # ------------------------------------------------------------ on the watchdog thread
    def _sample(self) -> Blocker | None:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return None
        try:
            return self._find(frame)
        except Exception:  # a frame that changed under us: skip this sample, never stop
            return None
        finally:
            del frame

    def _watch(self) -> None:
        while not self._stop.wait(self.threshold / 4):
            last = self._last
            late = time.monotonic() - last - self.interval
            if late < self.threshold / 2:
                continue
            if self._stall_of != last:  # a new stall: start sampling afresh
                self._stall_of, self._first, self._found = last, None, None
            if self._found is not None:
                continue
            if self._first is None:
                first = self._sample()
                if self._last == last:  # the loop did not move on meanwhile
                    self._first = first
            elif late >= self.threshold:
                second = self._sample()
                if self._last != last:  # the stall ended while sampling
                    continue
                if second is not None and second.same_call(self._first):
                    self._found = second
                else:
                    self._first = second


def find_blocker(
    step_files: Callable[[], set[str]],
    running: dict[Any, tuple[Any, Any]],
    current_task: Callable[[], Any],
) -> Finder:
    """A finder for the engine: the innermost frame of a step file, and the span and run of the
    delivery the loop's current task runs (the engine keeps ``running``: task -> (span, run)).
    Nothing here reads another thread's frame locals (not safe while that thread runs): only
    ``f_code``, ``f_lineno`` and ``f_back``."""

    def find(frame: FrameType) -> Blocker | None:
        files = step_files()
        f: FrameType | None = frame
        while f is not None:
            code = f.f_code
            if code.co_filename in files:
                blocker = Blocker(code.co_filename, f.f_lineno or 0, code=code)
                owner = running.get(current_task())
                if owner is not None:
                    blocker.span, blocker.run = owner
                return blocker
            f = f.f_back
        return None

    return find
