"""Buffers trace records on the hot path and writes them to the store in batches, off the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from wistro.tracing.records import (
    Batch,
    DeadLetter,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
)
from wistro.tracing.store import TraceStore

log = logging.getLogger("wistro.tracing")


class Recorder:
    """Appends are O(1) list appends; a background task hands full batches to one writer thread
    (so the store sees batches in order) every ``interval`` seconds or at ``max_batch`` rows."""

    def __init__(
        self, store: TraceStore | None, interval: float = 0.05, max_batch: int = 20_000
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_batch = max_batch
        self.batch = Batch()
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock: asyncio.Lock | None = None
        self.write_errors = 0

    def start(self) -> None:
        if self.store is None or self._task is not None:
            return
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wistro-traces")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="wistro-recorder")

    # -- recording: what the engine calls; nothing else touches the batch ---------------------

    def run(self, record: RunRecord) -> None:
        """A run started or changed (the last write of a run in a batch wins)."""
        self.batch.runs.append(record)

    def run_ended(self, record: RunRecord) -> None:
        self.batch.runs.append(record)
        self.added()

    def event(self, record: EventRecord) -> None:
        self.batch.events.append(record)

    def span(self, record: SpanRecord) -> None:
        self.batch.spans.append(record)

    def log(self, record: LogRecord) -> None:
        self.batch.logs.append(record)
        self.added()

    def state_op(self, record: StateOpRecord) -> None:
        self.batch.state_ops.append(record)
        self.added()

    def dead_letter(self, record: DeadLetter) -> None:
        self.batch.dead_letters.append(record)
        self.added()

    def discard(self) -> None:
        """Drop what is recorded and not written yet (an eval sample with no store)."""
        self.batch, self._count = Batch(), 0

    def take_over(self, other: Recorder) -> None:
        """Carry on with what ``other`` recorded and did not write (an engine moved to a new
        event loop)."""
        self.batch, self._count = other.batch, other._count

    def added(self) -> None:
        """Called after appending rows; wakes the writer early when the batch is large."""
        self._count += 1
        if self._count >= self.max_batch and self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything recorded so far."""
        if self.store is None:
            self.batch = Batch()
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one batch at a time, in order
            if not len(self.batch):
                return
            batch, self.batch, self._count = self.batch, Batch(), 0
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._write, batch)

    def _write(self, batch: Batch) -> None:
        assert self.store is not None
        try:
            self.store.write(batch)
        except Exception:  # a trace write must never take the engine down
            self.write_errors += 1
            log.exception("writing %d trace records failed", len(batch))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
