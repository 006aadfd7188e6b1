"""The trace writer process (``traces.writer``): batches written by a child process, what a user
reads back, and what happens when either side dies."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import wistro
from tests.projects import step, write_project
from tests.trace_support import full_trace, record_trace, trace_ids
from wistro.tracing.recorder import PROCESS_AFTER_ROWS, Recorder
from wistro.tracing.records import Batch
from wistro.tracing.sqlite import SQLiteTraceStore
from wistro.tracing.store import TraceStore
from wistro.tracing.writer_process import WriterSpec


def chain_project(root: Path, writer: str) -> Path:
    return write_project(
        root,
        {
            "wistro.yml": f"name: chain\ntraces: {{writer: {writer}}}\n",
            "src/a.step.py": step("a", ["start"], ["mid"], "await ctx.emit('mid', data)"),
            "src/b.step.py": step(
                "b",
                ["mid"],
                ["end"],
                "ctx.logger.info('b', n=data['n'])\nawait ctx.emit('end', data)",
            ),
            "src/c.step.py": step(
                "c", ["end"], [], "await ctx.state.set('seen', str(data['n']), 1)"
            ),
        },
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped yet) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


async def writer_pid_of(app: wistro.App, timeout: float = 30.0) -> int:
    """Emit until the writer process is ready and writing; its pid."""
    async with asyncio.timeout(timeout):
        while (pid := app.engine.recorder.writer_pid) is None:
            await app.emit("start", {"n": -1})
    return pid


async def test_hundreds_of_concurrent_runs_are_stored_by_the_writer_process(tmp_path: Path) -> None:
    app = wistro.load(chain_project(tmp_path / "p", "process"), state="memory")
    pid = await writer_pid_of(app)
    assert pid != os.getpid() and alive(pid)
    runs = await asyncio.gather(*(app.emit("start", {"n": i}) for i in range(400)))
    assert {r.status for r in runs} == {"ok"}
    await app.drain()
    # read back in this process, from the file the child wrote
    stored = app.engine.store.list_runs(limit=10_000)
    assert {r.trace_id for r in runs} <= {row["trace_id"] for row in stored}
    trace = app.engine.store.get_run(runs[123].trace_id)
    assert [s["step"] for s in trace["spans"]] == ["a", "b", "c"]
    assert [e["topic"] for e in trace["events"]] == ["start", "mid", "end"]
    assert [log["message"] for log in trace["logs"]] == ["b"]
    assert [op["op"] for op in trace["state_ops"]] == ["set"]
    await app.aclose()
    assert wait_gone(pid), "the writer process outlived its engine"


async def test_auto_switches_to_the_writer_process_once_busy(tmp_path: Path) -> None:
    app = wistro.load(chain_project(tmp_path / "p", "auto"), state="memory")
    await app.emit("start", {"n": 0})
    await app.drain()
    assert app.engine.recorder.writer_pid is None  # a few rows: written by a thread here
    # each run records 1 run row + 3 events + 3 spans + 1 log + 1 state op
    for _ in range(PROCESS_AFTER_ROWS // 9 // 500 + 2):
        await asyncio.gather(*(app.emit("start", {"n": i}, wait=False) for i in range(500)))
        await app.drain()
    pid = await writer_pid_of(app)
    assert alive(pid)
    last = await app.emit("start", {"n": 99_999})
    await app.drain()
    assert app.engine.store.get_run(last.trace_id)["run"]["status"] == "ok"
    await app.aclose()


async def test_thread_never_starts_a_process(tmp_path: Path) -> None:
    app = wistro.load(chain_project(tmp_path / "p", "thread"), state="memory")
    await asyncio.gather(*(app.emit("start", {"n": i}) for i in range(300)))
    await app.drain()
    assert app.engine.recorder.writer_pid is None
    await app.aclose()


async def test_a_killed_writer_process_falls_back_to_the_thread_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = wistro.load(chain_project(tmp_path / "p", "process"), state="memory")
    pid = await writer_pid_of(app)
    os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="wistro.tracing"):
        runs = await asyncio.gather(*(app.emit("start", {"n": i}) for i in range(300)))
        await app.drain()
    assert {r.status for r in runs} == {"ok"}
    assert app.engine.recorder.writer_pid is None
    assert any(
        "trace writer process ended" in r.message and "written by this process" in r.message
        for r in caplog.records
    ), [r.message for r in caplog.records]
    stored = {row["trace_id"] for row in app.engine.store.list_runs(limit=10_000)}
    assert {r.trace_id for r in runs} <= stored  # nothing after the kill is lost
    await app.aclose()


class _Unopenable(SQLiteTraceStore):
    """A store whose spec names a factory that fails in the child."""

    def writer_spec(self) -> WriterSpec:
        return WriterSpec("wistro.tracing.sqlite:NoSuchStore", {})


async def test_a_store_the_child_cannot_open_is_written_here(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _Unopenable(tmp_path / "traces.db")
    store.writer = "process"
    app = wistro.load(chain_project(tmp_path / "p", "process"), state="memory", traces=store)
    with caplog.at_level(logging.WARNING, logger="wistro.tracing"):
        for _ in range(20):  # until the child has answered
            await app.emit("start", {"n": 1})
            await asyncio.sleep(0.05)
            if any("could not open" in r.message for r in caplog.records):
                break
    line = next(r.message for r in caplog.records if "could not open" in r.message)
    assert "AttributeError" in line and "NoSuchStore" in line
    run = await app.emit("start", {"n": 2})
    await app.drain()
    assert store.get_run(run.trace_id)["run"]["status"] == "ok"
    await app.aclose()


def test_memory_and_custom_stores_have_no_writer_process() -> None:
    from wistro.tracing.memory import MemoryTraceStore

    class Custom(MemoryTraceStore):
        pass

    assert MemoryTraceStore().writer_spec() is None
    assert Custom().writer_spec() is None
    assert TraceStore.writer == "auto"


PARENT = textwrap.dedent(
    """
    import asyncio, sys
    import wistro

    async def main():
        app = wistro.load(sys.argv[1], state="memory")
        while app.engine.recorder.writer_pid is None:
            await app.emit("start", {"n": -1})
        runs = await asyncio.gather(*(app.emit("start", {"n": i}) for i in range(300)))
        await app.drain()
        print(app.engine.recorder.writer_pid, " ".join(r.trace_id for r in runs), flush=True)
        while True:  # more work, until killed
            await asyncio.gather(*(app.emit("start", {"n": i}, wait=False) for i in range(50)))
            await asyncio.sleep(0.01)

    asyncio.run(main())
    """
)


def test_kill_9_of_the_engine_keeps_every_flushed_run_and_ends_the_writer(tmp_path: Path) -> None:
    proj = chain_project(tmp_path / "p", "process")
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(proj)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the engine process printed nothing"
        pid_text, *trace_ids = line.split()
        writer = int(pid_text)
        time.sleep(0.3)  # batches on their way when it dies
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(writer), "the writer process outlived its killed engine"
    store = SQLiteTraceStore(proj / ".wistro" / "traces.db")
    try:
        for trace_id in trace_ids:
            assert store.get_run(trace_id)["run"]["status"] == "ok"
        # batches sent before the kill were written: more runs than the ones printed
        assert len(store.list_runs(limit=100_000)) > len(trace_ids)
    finally:
        store.close()


def test_a_batch_as_plain_values_round_trips_every_record_type() -> None:
    import marshal

    from tests.trace_support import full_trace
    from wistro.tracing.records import batch_of_rows, batch_rows

    batch = full_trace("abcd1234", 5.0)
    batch.events[0].error = "refused \udcff"  # a lone surrogate crosses as it is
    again = batch_of_rows(marshal.loads(marshal.dumps(batch_rows(batch))))
    assert again == batch
    assert isinstance(again, Batch)


def test_sqlite_rows_prepared_for_the_writer_process_store_what_write_stores(
    tmp_path: Path,
) -> None:
    import marshal

    from tests.trace_support import full_trace

    direct, prepared = SQLiteTraceStore(tmp_path / "a.db"), SQLiteTraceStore(tmp_path / "b.db")
    for i in range(3):
        batch = full_trace(f"trace{i}", float(i))
        batch.logs[0].message = "bad \udcff text"  # escaped the same way on both paths
        direct.write(batch)
        prepared.write_prepared(marshal.loads(marshal.dumps(prepared.prepare(batch))))
    for i in range(3):
        assert direct.get_run(f"trace{i}") == prepared.get_run(f"trace{i}")
    assert direct.logs() == prepared.logs()
    direct.close()
    prepared.close()


def test_an_engine_closed_before_its_writer_is_ready_leaves_no_traceback(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        from wistro.tracing.sqlite import SQLiteTraceStore
        from wistro.tracing.writer_process import ProcessWriter
        writer = ProcessWriter(SQLiteTraceStore({str(tmp_path / "t.db")!r}).writer_spec())
        writer.close()  # at once: the child is still starting
        print("closed")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "closed"
    assert out.stderr == ""  # the child's stderr is this process's: no BrokenPipeError


def test_auto_writes_with_the_thread_on_one_cpu(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import os
        os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})  # one CPU
        from wistro.tracing.recorder import Recorder
        from wistro.tracing.sqlite import SQLiteTraceStore
        store = SQLiteTraceStore({str(tmp_path / "t.db")!r})
        print(Recorder(store)._spec is None)
        store.writer = "process"  # asked for explicitly: a process all the same
        print(Recorder(store)._spec is None)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "False"], out.stderr


async def test_the_redis_trace_store_is_written_by_its_writer_process(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    from wistro.tracing.redis import RedisTraceStore

    store = RedisTraceStore(redis_url, redis_prefix)
    store.writer = "process"
    app = wistro.load(chain_project(tmp_path / "p", "process"), state="memory", traces=store)
    pid = await writer_pid_of(app)
    runs = await asyncio.gather(*(app.emit("start", {"n": i}) for i in range(200)))
    await app.drain()
    assert {r.status for r in runs} == {"ok"}
    reader = RedisTraceStore(redis_url, redis_prefix)  # what another process reads
    trace = reader.get_run(runs[57].trace_id)
    assert [s["step"] for s in trace["spans"]] == ["a", "b", "c"]
    assert trace["run"]["status"] == "ok"
    await app.aclose()
    assert wait_gone(pid)


# -- batches in the pipe: the child writes one while the recorder prepares the next ----------


def _record(recorder: Recorder, trace_ids: list[str]) -> None:
    for i, trace_id in enumerate(trace_ids):
        record_trace(recorder, full_trace(trace_id, float(i)))


async def _process_recorder(path: Path) -> tuple[Recorder, SQLiteTraceStore, int]:
    """A recorder whose batches go to its writer process (ready: its pid)."""
    store = SQLiteTraceStore(path)
    store.writer = "process"
    recorder = Recorder(store, interval=3600)  # writes only when flushed here
    recorder.start()
    async with asyncio.timeout(30):
        n = 0
        while recorder.writer_pid is None:
            _record(recorder, [f"warm{n}"])
            n += 1
            await recorder.flush()
            await asyncio.sleep(0.02)
    assert recorder.writer_pid is not None
    return recorder, store, recorder.writer_pid


async def test_a_regular_write_hands_the_batch_on_without_waiting_but_written_waits(
    tmp_path: Path,
) -> None:
    recorder, store, pid = await _process_recorder(tmp_path / "traces.db")
    os.kill(pid, signal.SIGSTOP)  # the child takes nothing from the pipe until SIGCONT
    try:
        ids = [f"held{i:03d}" for i in range(200)]
        _record(recorder, ids)
        async with asyncio.timeout(10):  # sent; not written: a regular write does not wait
            await recorder.flush(settle=False)
        written = asyncio.ensure_future(recorder.written())
        await asyncio.sleep(0.3)
        assert not written.done()  # its batch is still in the pipe
        assert ids[0] not in trace_ids(store)
    finally:
        os.kill(pid, signal.SIGCONT)
    async with asyncio.timeout(10):
        await written
    assert set(ids) <= trace_ids(store)
    assert store.get_run(ids[150])["events"][0]["topic"] == "orders"
    await recorder.aclose()
    assert wait_gone(pid)


async def test_a_writer_process_killed_with_batches_in_the_pipe_loses_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder, store, pid = await _process_recorder(tmp_path / "traces.db")
    os.kill(pid, signal.SIGSTOP)
    first = [f"first{i:03d}" for i in range(300)]
    second = [f"second{i:03d}" for i in range(300)]
    _record(recorder, first)
    await recorder.flush(settle=False)  # in the pipe, not answered
    _record(recorder, second)
    flush = asyncio.ensure_future(recorder.flush(settle=False))  # waits for the first's answer
    await asyncio.sleep(0.3)
    assert not flush.done()
    with caplog.at_level(logging.WARNING, logger="wistro.tracing"):
        os.kill(pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            await flush
    assert any("written by this process" in r.message for r in caplog.records)
    assert recorder.writer_pid is None
    assert set(first + second) <= trace_ids(store)  # both batches, written here
    third = [f"third{i:03d}" for i in range(50)]
    _record(recorder, third)
    await recorder.aclose()
    assert set(third) <= trace_ids(store)
    store.close()


async def test_written_waits_for_the_pipe_without_writing_what_came_after(tmp_path: Path) -> None:
    """``written()`` when all that was recorded is in the pipe: resolved by the child's answer,
    and a run recorded meanwhile stays in the batch for the next regular write (batches keep
    their size)."""
    recorder, store, pid = await _process_recorder(tmp_path / "traces.db")
    os.kill(pid, signal.SIGSTOP)
    try:
        sent = [f"sent{i:03d}" for i in range(100)]
        _record(recorder, sent)
        await recorder.flush(settle=False)
        # several waiters at once (a shared bus's announcer, the engine's drain, ...)
        written = asyncio.gather(*(recorder.written() for _ in range(3)))
        await asyncio.sleep(0.1)
        later = [f"later{i:03d}" for i in range(100)]
        _record(recorder, later)
        assert not written.done()
    finally:
        os.kill(pid, signal.SIGCONT)
    async with asyncio.timeout(10):
        await written
    await asyncio.sleep(0.3)  # anything the waiters set off has run by now
    stored = trace_ids(store)
    assert set(sent) <= stored and not set(later) & stored
    assert len(recorder.batch.runs) == 100  # still waiting for the next write
    await recorder.aclose()
    assert set(later) <= trace_ids(store)
