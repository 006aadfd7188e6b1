"""Safe under concurrency, handler crashes and bad input: no deadlock, no lost update, nothing
dropped silently. Each test is a finding that was reproduced on the engine before the fix."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from projects import step, write_project

import wistro
from wistro.errors import EngineCallTimeout, StateError
from wistro.state.file import FileState
from wistro.state.memory import MemoryState

WISTRO = [sys.executable, "-m", "wistro"]


def cli(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WISTRO, *args], cwd=root, capture_output=True, text=True, timeout=timeout
    )


# ---------------------------------------------------------------- no deadlock


SYNC_RECEIPT = step(
    "Send receipt",
    ["payment.captured"],
    is_async=False,
    extra="'concurrency': 16",
    body="""
        order = ctx.state.get("orders", data["order_id"]) or {}
        ctx.state.set("orders", data["order_id"], {**order, "receipt": "sent"})
        ctx.logger.info("receipt sent", order_id=data["order_id"])
    """,
)


async def test_sync_handlers_with_file_state_never_deadlock(make_app) -> None:
    """40+ concurrent plain-def handlers calling file state used to hang for good: the handler
    threads waited on state I/O that needed a thread of the same (full) executor."""
    app = make_app({"src/receipt.step.py": SYNC_RECEIPT}, state="file")
    runs = [
        await app.emit("payment.captured", {"order_id": f"o{i}"}, wait=False) for i in range(300)
    ]
    async with asyncio.timeout(60):
        await app.drain()
    assert [r.status for r in runs] == ["ok"] * 300
    orders = await app.engine.state.get_group("orders")
    assert len(orders) == 300
    assert all(json.loads(v) == {"receipt": "sent"} for v in orders.values())


async def test_a_sync_call_into_a_blocked_loop_times_out_naming_the_step(make_app) -> None:
    files = {
        "wistro.yml": "engine: {sync_call_timeout_s: 0.2}\n",
        "src/hog.step.py": step(
            "Hog",
            ["go"],
            header="import asyncio, time",
            body="""
                await asyncio.sleep(0.05)  # the reader's thread is started by now
                time.sleep(1.0)
            """,
        ),
        "src/reader.step.py": step(
            "Reader",
            ["go"],
            is_async=False,
            header="import time",
            body="""
                time.sleep(0.2)  # the hog holds the loop by now
                ctx.state.get("g", "k")
            """,
        ),
    }
    app = make_app(files, state="memory")
    run = await app.emit("go", {})
    reader = next(s for s in run.span_records if s.step == "Reader")
    assert reader.status == "error"
    assert "step 'Reader'" in reader.error and "did not complete within 0.2s" in reader.error
    assert EngineCallTimeout.__name__ in reader.error or "StateError" in reader.error


# ---------------------------------------------------------------- atomic state


async def _increments(app: wistro.App, n: int) -> object:
    files = app  # noqa: F841 - the app's state view, as a notebook user has it
    await asyncio.gather(*(app.state.update("c", "n", lambda v: (v or 0) + 1) for _ in range(n)))
    return await app.state.get("c", "n")


@pytest.mark.parametrize("adapter", ["memory", "file"])
async def test_1000_concurrent_updates_lose_nothing(make_app, adapter: str) -> None:
    app = make_app({"src/noop.step.py": step("S", ["t"])}, state=adapter)
    assert await _increments(app, 1000) == 1000


@pytest.mark.parametrize("adapter", ["memory", "file"])
async def test_updates_from_handlers_async_and_sync_lose_nothing(make_app, adapter: str) -> None:
    files = {
        "src/a.step.py": step(
            "Async counter",
            ["hit"],
            body="""
                await ctx.state.get("c", "n")  # a get then set here would lose updates
                await ctx.state.update("c", "n", lambda v: (v or 0) + 1)
            """,
        ),
        "src/s.step.py": step(
            "Sync counter",
            ["hit"],
            is_async=False,
            body='assert ctx.state.update("c", "m", lambda v: (v or 0) + 1) >= 1',
        ),
    }
    app = make_app(files, state=adapter)
    runs = [await app.emit("hit", {}, wait=False) for _ in range(200)]
    async with asyncio.timeout(60):
        await app.drain()
    assert {r.status for r in runs} == {"ok"}
    assert await app.state.get("c", "n") == 200
    assert await app.state.get("c", "m") == 200
    ops = [op.op for op in runs[0].state_records]
    assert "update" in ops


def _bump_in_another_process(folder: str, n: int) -> None:
    async def go() -> None:
        state = FileState(folder)
        for _ in range(n):
            await state.update("c", "n", lambda raw: json.dumps(json.loads(raw or "0") + 1))

    asyncio.run(go())


async def test_file_state_update_is_atomic_across_processes(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    FileState(folder)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_bump_in_another_process, args=(str(folder), 150)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert await FileState(folder).get("c", "n") == "450"


async def test_an_update_whose_function_raises_writes_nothing() -> None:
    for state in (MemoryState(), None):
        adapter = state or MemoryState()
        await adapter.set("g", "k", "1")

        def boom(raw: str | None) -> str:
            raise ValueError("no")

        with pytest.raises(ValueError):
            await adapter.update("g", "k", boom)
        assert await adapter.get("g", "k") == "1"


async def test_file_state_get_group_refuses_a_symlink_out_like_get(tmp_path: Path) -> None:
    state = FileState(tmp_path / "state")
    await state.set("g", "ok", '"fine"')
    secret = tmp_path / "secret.json"
    secret.write_text('"the secret"')
    (tmp_path / "state" / "g" / "leak.json").symlink_to(secret)
    with pytest.raises(StateError, match="leads outside"):
        await state.get("g", "leak")
    with pytest.raises(StateError, match=r"leak.*leads outside"):
        await state.get_group("g")


async def test_file_state_names_a_group_folder_symlinked_out_in_every_operation(
    tmp_path: Path,
) -> None:
    """The containment check runs on the I/O threads with each operation; what it says is the
    same: the group that leads outside, whatever the operation, and nothing is written there."""
    state = FileState(tmp_path / "state")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "state" / "g").symlink_to(outside, target_is_directory=True)
    calls = [
        state.get("g", "k"),
        state.set("g", "k", "1"),
        state.update("g", "k", lambda old: "2"),
        state.delete("g", "k"),
        state.get_group("g"),
        state.clear("g"),
    ]
    for call in calls:
        with pytest.raises(StateError, match=r"state group 'g' leads outside"):
            await call
    assert list(outside.iterdir()) == []
    await state.set("fine", "k", "1")  # other groups still work
    assert await state.get("fine", "k") == "1"


async def test_state_folders_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        state = FileState(tmp_path / "state")
        await state.set("orders", "A1", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "orders").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "orders" / "A1.json").stat().st_mode & 0o777 == 0o600


async def test_a_corrupt_state_file_is_a_state_error_naming_group_key_and_file(make_app) -> None:
    files = {
        "src/read.step.py": step("Reader", ["go"], body='await ctx.state.get("orders", "A1")'),
    }
    app = make_app(files, state="file")
    path = app.project.state_dir / "orders" / "A1.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"status": "char')
    run = await app.emit("go", {})
    [span] = run.span_records
    assert span.status == "error"
    first = span.error.splitlines()[0]
    assert first.startswith("StateError: ")
    assert str(path) in first and "'orders'" in first and "'A1'" in first
    assert "step 'Reader'" in first and "not valid JSON" in first
    with pytest.raises(StateError, match=r"A1\.json"):
        await app.state.get_group("orders")


# ---------------------------------------------------------------- blocking handlers


BLOCKER = step(
    "Blocker",
    ["go"],
    header="import time",
    extra="'timeout_s': 0.3",
    body="""
        time.sleep(0.6)  # blocks the loop: never yields, so asyncio cannot time it out
    """,
)


async def test_a_blocking_async_handler_is_named_and_timed_out(make_app) -> None:
    app = make_app({"src/blocker.step.py": BLOCKER}, state="memory")
    run = await app.emit("go", {})
    [span] = run.span_records
    assert span.status == "timeout"
    assert "without yielding" in span.error and "limit 0.3s" in span.error
    assert run.status == "error"
    warnings = [log for log in run.log_records if log.level == "warning"]
    assert len(warnings) == 1, [w.message for w in warnings]
    [warning] = warnings
    assert warning.span_id == span.id and warning.step == "Blocker"
    assert "src/blocker.step.py:" in warning.message and "blocked for" in warning.message
    fields = json.loads(warning.fields_json)
    assert fields["file"] == "src/blocker.step.py" and fields["blocked_ms"] >= 300


async def test_the_watchdog_is_quiet_for_handlers_that_yield(make_app) -> None:
    files = {
        "src/fast.step.py": step(
            "Fast", ["go"], header="import asyncio", body="await asyncio.sleep(0.3)"
        ),
    }
    app = make_app(files, state="memory")
    runs = await asyncio.gather(*(app.emit("go", {}) for _ in range(200)))
    assert all(r.status == "ok" and not r.log_records for r in runs)


async def test_the_watchdog_can_be_turned_off(make_app) -> None:
    files = {"wistro.yml": "engine: {block_warn_ms: 0}\n", "src/blocker.step.py": BLOCKER}
    app = make_app(files, state="memory")
    run = await app.emit("go", {})
    assert run.log_records == []
    assert run.span_records[0].status == "timeout"  # the wall-time check still applies


# ---------------------------------------------------------------- nothing dropped silently


async def test_an_observer_that_fails_never_fails_the_run(make_app) -> None:
    class Broken:
        def __getattr__(self, name: str) -> object:
            def fail(*args: object) -> None:
                raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

            return fail

    app = make_app({"src/s.step.py": step("S", ["t"], body="ctx.logger.info('hi')")})
    app.engine.observers.append(Broken())  # type: ignore[arg-type]
    run = await app.emit("t", {"name": "\ud800"})
    assert run.status == "ok" and run.ran("S")


RECEIPT_OK = step("Receipt", ["paid"], body="await ctx.state.set('r', 'x', 'v1')")


async def test_hot_reload_keeps_the_last_good_version_of_a_broken_step(make_app) -> None:
    app = make_app({"src/receipt.step.py": RECEIPT_OK, "src/other.step.py": step("O", ["o"])})
    path = app.project.src / "receipt.step.py"
    path.write_text("config = {'name': 'Receipt'\ndef handler(:\n")  # a syntax error
    app.reload()
    [err] = app.errors
    assert err.file == "src/receipt.step.py" and "syntax error" in str(err)
    assert err.kept == ["Receipt"]  # type: ignore[attr-defined]
    run = await app.emit("paid", {})
    assert run.status == "ok" and run.ran("Receipt")
    path.write_text(RECEIPT_OK.replace("'v1'", "'v2'"))
    app.reload()
    assert app.errors == []
    await app.emit("paid", {})
    assert await app.state.get("r", "x") == "v2"


BROKEN_IMPORT = """
import not_a_module_anywhere

config = {"name": "Receipt", "subscribes": ["paid"], "emits": [], "flows": ["checkout"]}

async def handler(data, ctx):
    pass
"""


async def test_a_step_that_fails_to_import_at_start_fails_its_deliveries(make_app) -> None:
    files = {
        "src/pay.step.py": step("Pay", ["order"], ["paid"], body="await ctx.emit('paid', {})"),
        "src/receipt.step.py": BROKEN_IMPORT,
    }
    app = make_app(files, errors_ok=True, state="memory")
    [err] = app.errors
    assert "not_a_module_anywhere" in str(err)
    run = await app.emit("order", {})
    assert run.status == "error"
    receipt = next(s for s in run.span_records if s.step == "Receipt")
    assert receipt.status == "error" and "does not load" in receipt.error
    assert "src/receipt.step.py" in receipt.error
    [dead] = run.dead_letters
    assert dead.step == "Receipt"


async def test_a_syntax_error_at_start_uses_the_lock_to_fail_deliveries(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p",
        {
            "src/pay.step.py": step("Pay", ["order"], ["paid"], body="await ctx.emit('paid', {})"),
            "src/receipt.step.py": RECEIPT_OK,
        },
    )
    assert cli(root, "lock").returncode == 0
    (root / "src/receipt.step.py").write_text("config = {\n")
    app = wistro.load(root, state="memory", traces="memory")
    try:
        run = await app.emit("order", {})
        assert run.status == "error"
        assert any(s.step == "Receipt" and s.status == "error" for s in run.span_records)
    finally:
        await app.aclose()


FLAKY = step(
    "Flaky",
    ["job"],
    header="import os",
    body="""
        if not os.environ.get("FLAKY_FIXED"):
            raise RuntimeError("still broken")
        await ctx.state.update("done", "n", lambda v: (v or 0) + 1)
    """,
)


async def test_one_dead_letter_per_event_and_step_across_failed_replays(
    make_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app({"src/flaky.step.py": FLAKY}, traces=None, state="memory")
    store = app.engine.store
    run = await app.emit("job", {"n": 1})
    assert run.status == "error"
    await app.drain()
    [dead] = store.dead_letters()
    for _ in range(2):
        again = await app.engine.replay(dead)
        assert again.status == "error"
        await app.drain()
        [dead] = store.dead_letters()
    assert dead["attempts"] == 3
    history = json.loads(dead["history_json"])
    assert [h["error"] for h in history] == ["RuntimeError: still broken"] * 3
    assert len(store.dead_letters(include_replayed=True)) == 1

    monkeypatch.setenv("FLAKY_FIXED", "1")
    for dead in store.dead_letters():  # what `wistro replay --all` does
        assert (await app.engine.replay(dead)).status == "ok"
    await app.drain()
    assert store.dead_letters() == []
    [done] = store.dead_letters(include_replayed=True)
    assert done["replayed"] and json.loads(done["history_json"])[-1]["error"] is None
    assert await app.state.get("done", "n") == 1  # delivered once, not once per failure


async def test_replay_all_on_the_cli_delivers_each_event_once(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"src/flaky.step.py": FLAKY})
    res = cli(root, "emit", "job", '{"n": 1}')
    assert res.returncode == 1, res.stdout + res.stderr
    for _ in range(2):
        assert cli(root, "replay", "--all").returncode == 1
    listed = json.loads(cli(root, "replay", "--json").stdout)
    assert len(listed) == 1 and listed[0]["attempts"] == 3
    fixed = subprocess.run(
        [*WISTRO, "replay", "--all"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FLAKY_FIXED": "1"},
    )
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.count("✓") == 1
    assert json.loads(cli(root, "replay", "--json").stdout) == []


async def test_a_refused_emit_on_the_cli_is_a_recorded_run(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p",
        {
            "src/s.step.py": step(
                "S",
                ["order"],
                extra="'input': {'type': 'object', 'properties': {'n': {'type': 'integer'}}}",
            )
        },
    )
    res = cli(root, "emit", "order", '{"n": "one"}')
    assert res.returncode != 0 and "field 'n'" in res.stderr
    runs = json.loads(cli(root, "traces", "--json").stdout)
    [run] = runs
    assert run["status"] == "refused" and run["topic"] == "order"
    trace = json.loads(cli(root, "trace", run["trace_id"], "--json").stdout)
    [event] = trace["events"]
    assert json.loads(event["data_json"]) == {"n": "one"} and "integer" in event["error"]


async def test_an_older_trace_database_gains_the_dead_letter_history(tmp_path: Path) -> None:
    import sqlite3

    from wistro.tracing.sqlite import SQLiteTraceStore

    path = tmp_path / "traces.db"
    SQLiteTraceStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE dead_letters DROP COLUMN history_json")  # as an older version made it
    conn.execute(
        "INSERT INTO dead_letters VALUES ('d1', 't1', 'S', 'job', 'e1', '{}', 'boom', 1, 0.0, 0)"
    )
    conn.commit()
    conn.close()
    store = SQLiteTraceStore(path)
    try:
        [dead] = store.dead_letters()
        assert dead["id"] == "d1" and dead["history_json"] == "[]"
    finally:
        store.close()


async def test_a_burst_shares_each_loop_iteration_across_all_workers(make_app) -> None:
    """Each worker used to run 64 deliveries per loop iteration: 5 steps x 16 workers held the
    loop for 100+ ms in a burst (2,000 deliveries in one iteration here). Now the budget is per
    iteration, for all workers together, plus one each for workers woken from a yield."""
    from wistro.bus import FAIR_SHARE

    files = {
        f"src/s{i}.step.py": step(
            f"S{i}",
            [f"t{i}"],
            [f"t{i + 1}"] if i < 4 else [],
            body=f"ctx.emit('t{i + 1}', {{}})" if i < 4 else "pass",
        )
        for i in range(5)
    }
    app = make_app(files, state="memory")
    started = 0

    class Count:
        def __getattr__(self, name: str) -> object:
            return lambda record: None

        def on_span_start(self, span: object) -> None:
            nonlocal started
            started += 1

    app.engine.observers.append(Count())  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    per_iteration: list[int] = []
    last = 0
    ticking = True

    def tick() -> None:
        nonlocal last
        per_iteration.append(started - last)
        last = started
        if ticking:
            loop.call_soon(tick)

    for _ in range(2000):
        await app.emit("t0", {}, wait=False)
    loop.call_soon(tick)
    await app.drain()
    ticking = False
    assert started == 10_000
    workers = 5 * 16  # each worker may deliver one more after it yielded
    assert max(per_iteration) <= FAIR_SHARE + workers, max(per_iteration)
