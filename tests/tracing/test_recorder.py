"""The recorder: a batch it has taken is written, whatever is cancelled meanwhile."""

from __future__ import annotations

import asyncio
import gc
import threading

from tests.trace_support import full_trace, record_trace
from wistro.tracing.memory import MemoryTraceStore
from wistro.tracing.recorder import Recorder
from wistro.tracing.records import Batch


def record_runs(recorder: Recorder, trace_id: str, start: float) -> None:
    """The run records of one trace, as the engine hands them to the recorder."""
    for record in full_trace(trace_id, start).runs:
        recorder.run(record)


async def test_a_cancelled_flush_still_writes_the_batch_it_took() -> None:
    store = MemoryTraceStore()
    recorder = Recorder(store, interval=3600)
    recorder.start()
    assert recorder._executor is not None
    busy = threading.Event()
    recorder._executor.submit(busy.wait)  # the writer thread is busy: the next write queues
    record_runs(recorder, "abcd1234", 1.0)
    flush = asyncio.ensure_future(recorder.flush())
    await asyncio.sleep(0.05)  # the batch is taken and its write queued behind the busy job
    flush.cancel()  # as aclose cancels the recorder's task in the middle of a flush
    busy.set()
    await recorder.aclose()
    assert [r["trace_id"] for r in store.list_runs()] == ["abcd1234"]


async def test_hundreds_of_runs_recorded_while_flushes_are_cancelled_are_all_written() -> None:
    store = MemoryTraceStore()
    recorder = Recorder(store, interval=0.001)
    recorder.start()
    for i in range(300):
        record_runs(recorder, f"trace{i:04d}", float(i))
        if i % 7 == 0:
            flush = asyncio.ensure_future(recorder.flush())
            await asyncio.sleep(0)
            flush.cancel()
        await asyncio.sleep(0)
    await recorder.aclose()
    assert len(store.list_runs(limit=1000)) == 300


async def test_written_resolves_only_once_the_store_has_what_was_recorded() -> None:
    """What a shared bus waits for before it forgets an ended run: ``written()`` makes no write
    of its own (the batch waits for the next regular one), and resolves after that write, for
    every one of hundreds of waiters, each seeing its run in the store."""
    store = MemoryTraceStore()
    recorder = Recorder(store, interval=0.2)
    recorder.start()
    seen: list[bool] = []

    async def record_then_wait(i: int) -> None:
        trace_id = f"trace{i:04d}"
        record_runs(recorder, trace_id, float(i))
        await recorder.written()
        seen.append(bool(store.list_runs(limit=1000)) and store.get_run(trace_id) is not None)

    waiters = [asyncio.ensure_future(record_then_wait(i)) for i in range(300)]
    await asyncio.sleep(0.05)
    assert not seen and not store.list_runs()  # no write of its own before the interval
    async with asyncio.timeout(10):
        await asyncio.gather(*waiters)
    assert seen == [True] * 300
    done = recorder.written()  # nothing recorded since: resolved at once
    assert done.done()
    await recorder.aclose()


class _Failing(MemoryTraceStore):
    """Records whether the collector ran during its writes; the second write fails."""

    def __init__(self) -> None:
        super().__init__()
        self.collector_on: list[bool] = []

    def write(self, batch: Batch) -> None:
        self.collector_on.append(gc.isenabled())
        if len(self.collector_on) == 2:
            raise RuntimeError("disk full")
        super().write(batch)


async def test_the_collector_is_off_while_a_batch_is_written_and_on_after_a_failure() -> None:
    """A batch's records become many short-lived containers at once: the collector is paused
    while the writer thread writes them, and on again after, even when the write fails."""
    store = _Failing()
    recorder = Recorder(store, interval=3600)
    recorder.start()
    for round_ in range(3):
        record_runs(recorder, f"trace{round_}", float(round_))
        await recorder.flush()
        assert gc.isenabled()
    await recorder.aclose()
    assert store.collector_on == [False, False, False]
    assert recorder.write_errors == 1
    assert sorted(r["trace_id"] for r in store.list_runs()) == ["trace0", "trace2"]


async def test_events_and_spans_made_rows_when_recorded_read_back_as_the_records(tmp_path) -> None:
    """The SQLite store takes events and spans as tuples made when they are recorded: 300
    traces through the recorder read back exactly as the same records written directly."""
    from wistro.tracing.sqlite import SQLiteTraceStore

    via_recorder = SQLiteTraceStore(tmp_path / "a.db")
    direct = SQLiteTraceStore(tmp_path / "b.db")
    recorder = Recorder(via_recorder, interval=0.001)
    recorder.start()
    for i in range(300):
        batch = full_trace(f"trace{i:04d}", float(i))
        record_trace(recorder, batch)
        direct.write(batch)
        if i % 50 == 0:
            await asyncio.sleep(0.002)  # several batches, some while others are written
    await recorder.aclose()
    for i in (0, 149, 299):
        got, want = via_recorder.get_run(f"trace{i:04d}"), direct.get_run(f"trace{i:04d}")
        assert got["events"] == want["events"] and got["spans"] == want["spans"]
        assert got["state_ops"] == want["state_ops"] and len(got["spans"]) == 1
    assert len(via_recorder.list_runs(limit=1000)) == 300
    via_recorder.close()
    direct.close()
