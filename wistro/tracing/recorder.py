"""Buffers trace records on the hot path and writes them to the store in batches, off the loop.

The batches go to one writer thread. For a store that says how to open it again
(``TraceStore.writer_spec``: SQLite, Redis), that thread hands them on to a writer *process*
(``wistro.tracing.writer_process``), so that the store's CPU is not taken under this process's
GIL: with ``traces.writer: auto`` (the default, with two CPUs or more) once the process has
written ``PROCESS_AFTER_ROWS`` rows, which a notebook or a test rarely does and a busy server
does in its first second; ``process`` from the start; ``thread`` never. The child starts in the
background; batches are written by the thread until it is ready. If it ends, the thread writes
again (a batch it was writing may then be written twice)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from wistro.collector import collector_paused
from wistro.tracing.records import (
    EVENT_ROW,
    SPAN_ROW,
    Batch,
    DeadLetter,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    StateOpRecord,
)
from wistro.tracing.store import TraceStore
from wistro.tracing.writer_process import ProcessWriter, WriterGone, encode

log = logging.getLogger("wistro.tracing")
PROCESS_AFTER_ROWS = 20_000


def _cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
        self._flushing: set[asyncio.Task[None]] = set()
        self.write_errors = 0
        self._written: list[asyncio.Future[None]] = []  # written(): resolved by the next write
        # Batches handed to the writer process and not answered yet (the writer thread's).
        self._sent: deque[Batch] = deque()
        # The writer process, its spec (None: this store is written here), rows written here.
        self._writer: ProcessWriter | None = None
        mode = getattr(store, "writer", "auto") if store is not None else "thread"
        if mode == "auto" and _cpus() < 2:  # no other core for the writer process to run on
            mode = "thread"
        self._spec = store.writer_spec() if store is not None and mode != "thread" else None
        self._rows_here = PROCESS_AFTER_ROWS if mode == "process" else 0
        if store is not None and store.rows_when_recorded:  # as tuples, while in cache
            self.event = self._event_row  # type: ignore[method-assign]
            self.span = self._span_row  # type: ignore[method-assign]

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

    def _event_row(self, record: EventRecord) -> None:
        self.batch.events.append(EVENT_ROW(record))  # type: ignore[arg-type]

    def _span_row(self, record: SpanRecord) -> None:
        self.batch.spans.append(SPAN_ROW(record))  # type: ignore[arg-type]

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
        self._writer, self._spec, self._rows_here = other._writer, other._spec, other._rows_here
        self._sent, other._sent = other._sent, deque()
        other._writer = None

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
            await self.flush(settle=False)

    def written(self) -> asyncio.Future[None]:
        """Resolves once everything recorded so far is in the store: at the next regular write
        (it makes none of its own, so a busy process's batches keep their size), or, when all
        of it is with the writer process already, once the process has written it. A shared
        bus forgets a run that ended only after this: a ``kill -9`` in between leaves the run
        ended in the bus, whose next process records the end again."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        writing = self._lock is not None and self._lock.locked()
        if self.store is None or (not len(self.batch) and not self._sent and not writing):
            fut.set_result(None)
        elif not len(self.batch) and not writing and self._executor is not None:
            # All of it went to the writer process already: once it has answered (the writer
            # thread waits for the answers; a batch recorded meanwhile is not written here).
            settled = loop.run_in_executor(self._executor, self._settle_sent)
            settled.add_done_callback(lambda _: _resolve([fut]))
        else:
            self._written.append(fut)
            if self._task is None or self._task.done():  # nothing writes regularly: now
                self._written_now()
        return fut

    def _settle_sent(self) -> None:
        """On the writer thread: wait until the writer process has answered every batch sent."""
        self._write(Batch(), settle=True)

    def _written_now(self) -> None:
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self, settle: bool = True) -> None:
        """Write everything recorded so far. ``settle=False`` (the regular writes): a batch
        handed to the writer process may still be being written when this returns, while the
        recorder goes on with the next; the waiters of ``written()`` are resolved only once
        their batch is in the store."""
        if self.store is None:
            self.batch = Batch()
            _resolve(self._written)
            self._written = []
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one batch at a time, in order
            waiters, self._written = self._written, []
            settle = settle or bool(waiters)
            if not len(self.batch) and not (settle and self._sent):
                _resolve(waiters)
                return
            batch, self.batch, self._count = self.batch, Batch(), 0
            loop = asyncio.get_running_loop()
            # Shielded: cancelling a flush (the recorder stopping, a drain given up) must not
            # cancel the write of a batch already taken, which the executor may not have
            # started yet; the next write queues behind it on the one thread.
            write = loop.run_in_executor(self._executor, self._write, batch, settle)
            if waiters:
                write.add_done_callback(lambda _: _resolve(waiters))
            await asyncio.shield(write)

    def _write(self, batch: Batch, settle: bool = True) -> None:
        """On the writer thread: one batch, prepared (``store.prepare``: plain values) for the
        writer process when it is ready, else to the store. Measured: preparing here, not on
        the loop's thread, is as fast amortised and faster one event at a time. The batch
        before it may still be written by the child while this one is prepared; ``settle``
        waits until every batch sent is written, else all but this one."""
        assert self.store is not None
        writer = self._writer_ready(len(batch)) if len(batch) else self._writer
        if writer is not None and writer.ready:
            sent = self._sent
            try:
                if len(batch):
                    with collector_paused():  # a tuple per record, gone once encoded
                        body = encode(self.store.prepare(batch))
                    sent.append(batch)
                    writer.submit(body)
                while len(sent) > (0 if settle else 1):
                    error = writer.answer()
                    written = sent.popleft()
                    if error is not None:
                        self.write_errors += 1
                        log.error("writing %d trace records failed: %s", len(written), error)
            except WriterGone as e:
                self._writer_gone(e)
                # What the child may not have written, written here (some of it maybe twice).
                while sent:
                    self._write_here(sent.popleft())
            return
        if len(batch):
            self._write_here(batch)

    def _write_here(self, batch: Batch) -> None:
        assert self.store is not None
        try:
            with collector_paused():
                self.store.write(batch)
        except Exception:  # a trace write must never take the engine down
            self.write_errors += 1
            log.exception("writing %d trace records failed", len(batch))

    def _writer_ready(self, rows: int) -> ProcessWriter | None:
        """The writer process if it is ready; starts it once enough rows were written here."""
        writer = self._writer
        if writer is None:
            if self._spec is None:
                return None
            self._rows_here += rows
            if self._rows_here < PROCESS_AFTER_ROWS:
                return None
            try:
                writer = self._writer = ProcessWriter(self._spec)
            except (OSError, WriterGone) as e:
                self._writer_gone(e)
                return None
        try:
            return writer if writer.poll_ready() else None
        except WriterGone as e:
            self._writer_gone(e)
            return None

    def _writer_gone(self, error: BaseException) -> None:
        """Write here from now on."""
        log.warning("%s; trace batches are written by this process from now on", error)
        self._writer, self._spec = None, None
        assert self.store is not None
        self.store.written_elsewhere()

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid while it writes the batches, else None."""
        writer = self._writer
        return writer.pid if writer is not None and writer.ready else None

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        if self._executor is not None:
            self._executor.submit(self._close_writer)
            self._executor.shutdown(wait=True)
            self._executor = None
        else:
            self._close_writer()


def _resolve(waiters: list[asyncio.Future[None]]) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)
