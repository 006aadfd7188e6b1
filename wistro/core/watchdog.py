"""The event-loop watchdog: names the step that blocked the loop.

An ``async def`` handler that calls blocking code (``time.sleep``, a sync HTTP client, a long
computation) stalls every other step, the HTTP server and the notebook kernel. The loop cannot
see that itself, so a thread watches a heartbeat the loop schedules every ``threshold / 2``. When
the heartbeat is late by more than ``threshold``, the thread looks at the loop thread's stack:
when the same frame of a step file is on top in two samples, that step is blocking. Once the loop
runs again, the report goes to ``on_block`` on the loop thread, with how long it was stalled.

Nothing runs per event: the cost is one timer callback per ``threshold / 2`` and a thread that
wakes every ``threshold / 4``.

The loop thread's stack is read by ``faulthandler`` (``stack_of``), in one C call made with the
GIL held, so no bytecode of any thread runs while it is read. Walking another thread's frames
from Python (``sys._current_frames()`` and ``f_back``) lets that thread run between two reads,
and on Python 3.11 that crashed the interpreter (a segmentation fault in a load test): a frame
read half-way through its thread's changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wistro.processes import widen_pipe

# One frame of a stack: (file, line, function), as faulthandler prints them.
Frame = tuple[str, int, str]
_HEADER = re.compile(r"(?:Current thread|Thread) 0x([0-9a-f]+) \(most recent call first\):")
_FRAME = re.compile(r'  File "(.*)", line (\d+|\?\?\?) in (.*)')


@dataclass(slots=True)
class Blocker:
    """Where the loop was stuck: the step's file and line, and its span and run when known."""

    file: str
    line: int
    span: Any = None
    run: Any = None
    function: str = ""  # the step frame's function

    def same_call(self, other: Blocker) -> bool:
        """Both samples caught the same delivery in the same function of the same file."""
        return (
            self.span is not None
            and self.span is other.span
            and (self.file, self.function) == (other.file, other.function)
        )


class DumpPipe:
    """Where ``faulthandler`` writes a dump, read back with one ``read``. Every system call
    made from Python gives up the GIL, and a loop thread busy in Python code hands it back only
    after the switch interval (5 ms): a temporary file per sample (open, seek, read, close)
    took 25-40 ms a sample that way, so a 60 ms stall ended before two samples could name it.
    Both ends are non-blocking: a dump larger than the pipe (1 MiB where Linux allows it) is
    cut short, never a hang. Used by one thread."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        widen_pipe(self._write)

    def dump(self) -> str:
        faulthandler.dump_traceback(self._write, all_threads=True)
        chunks = []
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._read, 1 << 20):
                chunks.append(chunk)
        return b"".join(chunks).decode("ascii", "replace")

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


def stack_of(thread_id: int, pipe: DumpPipe | None = None) -> list[Frame]:
    """The Python frames of thread ``thread_id``, innermost first (at most 100), read by
    ``faulthandler`` in one C call: the thread cannot change its stack while it is read.
    ``pipe``: the caller's, kept for many samples (else one for this call)."""
    if pipe is not None:
        return parse_dump(pipe.dump(), thread_id)
    own = DumpPipe()
    try:
        return parse_dump(own.dump(), thread_id)
    finally:
        own.close()


def parse_dump(text: str, thread_id: int) -> list[Frame]:
    """The frames of ``thread_id`` in a ``faulthandler`` dump of every thread."""
    frames: list[Frame] = []
    inside = False
    for line in text.splitlines():
        header = _HEADER.fullmatch(line)
        if header is not None:
            if inside:
                break
            inside = int(header.group(1), 16) == thread_id
            continue
        if inside:
            frame = _FRAME.fullmatch(line)
            if frame is not None:
                number = frame.group(2)
                frames.append(
                    (frame.group(1), int(number) if number.isdigit() else 0, frame.group(3))
                )
    return frames


def dump_form(text: str) -> str:
    """``text`` as faulthandler prints it: ASCII, other characters escaped."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 32 <= code <= 126:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


Finder = Callable[[list[Frame]], "Blocker | None"]
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
    def _sample(self, pipe: DumpPipe) -> Blocker | None:
        try:
            stack = stack_of(self._loop_thread, pipe)
            return self._find(stack) if stack else None
        except Exception:  # a dump that could not be read: skip this sample, never stop
            return None

    def _watch(self) -> None:
        pipe = DumpPipe()  # this thread's, for its whole life
        try:
            self._watch_with(pipe)
        finally:
            pipe.close()

    def _watch_with(self, pipe: DumpPipe) -> None:
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
                first = self._sample(pipe)
                if self._last == last:  # the loop did not move on meanwhile
                    self._first = first
            elif late >= self.threshold:
                second = self._sample(pipe)
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
    delivery the loop's current task runs (the engine keeps ``running``: task -> (span, run))."""
    seen: list[Any] = [None, {}]  # the step files' set, and its paths as faulthandler prints them

    def find(stack: list[Frame]) -> Blocker | None:
        files = step_files()
        if seen[0] is not files:
            seen[0], seen[1] = files, {dump_form(f): f for f in files}
        printed: dict[str, str] = seen[1]
        for file, line, function in stack:
            real = printed.get(file)
            if real is not None:
                blocker = Blocker(real, line, function=function)
                owner = running.get(current_task())
                if owner is not None:
                    blocker.span, blocker.run = owner
                return blocker
        return None

    return find
