"""Bench-only guard for a livelock found in wistro/tracing/recorder.py (Recorder.flush).

``flush`` does ``while self._writing is not None: await self._writing``. Awaiting an asyncio
future that is already done does not yield to the loop, so a second flusher (``drain()``) that
arrives after the writer thread finished, but before the first flusher (the background
``_loop`` task) has resumed to reset ``_writing`` in its ``finally``, spins forever at 100% CPU.
The benchmark hit this on the first few thousand events.

The wrapper below yields to the loop while ``_writing`` is a finished future, so the first flusher
can run its ``finally``; it then calls the unmodified ``flush``. It changes no timing on the normal
path (one attribute check per flush). The proper fix belongs in the recorder (serialise flushes
with an ``asyncio.Lock``, or ``await asyncio.sleep(0)`` when ``_writing.done()``).
Pass ``--no-workaround`` to a benchmark to run without it.
"""

from __future__ import annotations

import asyncio
import functools

APPLIED = False


def apply() -> bool:
    global APPLIED
    from wistro.tracing.recorder import Recorder

    if APPLIED or getattr(Recorder.flush, "_bench_guard", False):
        return APPLIED
    original = Recorder.flush

    @functools.wraps(original)
    async def flush(self: Recorder) -> None:
        while (w := self._writing) is not None and w.done():
            await asyncio.sleep(0)
        await original(self)

    flush._bench_guard = True  # type: ignore[attr-defined]
    Recorder.flush = flush  # type: ignore[method-assign]
    APPLIED = True
    return True
