"""A live trace view of a run emitted from an attached notebook: the steps run in a `wistro worker`
process, and the view (whose engine runs none of them) follows the run span by span by polling
the shared trace store, on the local bus and on Redis."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_support import start_worker

from wistro_jupyter.widgets import MAX_REMOTE_VIEWS, TraceView, remote_polls

START = """
config = {"name": "Start", "subscribes": ["job"], "emits": ["wait.go"]}

async def handler(data, ctx):
    await ctx.emit("wait.go", data)
"""
WAIT = """
import asyncio
from pathlib import Path

config = {"name": "Wait", "subscribes": ["wait.go"], "emits": ["finish"]}

async def handler(data, ctx):
    release = Path(data["release"])
    for _ in range(600):  # until the test creates the file (at most 30 s)
        if release.exists():
            break
        await asyncio.sleep(0.05)
    await ctx.emit("finish", data)
"""
FINISH = """
config = {"name": "Finish", "subscribes": ["finish"]}

async def handler(data, ctx):
    ctx.logger.info("finished")
"""


@pytest.fixture(params=["local", "redis"])
def chain(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A 3-step chain whose middle step waits for a file, and a `wistro worker` running it."""
    root = tmp_path / "chain"
    (root / "src").mkdir(parents=True)
    config = "name: chain\nbus: {adapter: local}\n"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        config = (
            f"name: chain\nbus: {{adapter: redis}}\nredis: {{url: {url!r}, prefix: {prefix}}}\n"
        )
    (root / "wistro.yml").write_text(config, encoding="utf-8")
    for name, body in (("start", START), ("wait", WAIT), ("finish", FINISH)):
        (root / "src" / f"{name}.step.py").write_text(textwrap.dedent(body), encoding="utf-8")
    monkeypatch.chdir(root)
    worker = start_worker(root)
    yield root, worker
    worker.terminate()
    worker.wait(30)


@pytest.fixture
def attached(shell: Any, chain: tuple[Path, subprocess.Popen[str]]) -> Iterator[Any]:
    shell.run_line_magic("load_ext", "wistro_jupyter")
    try:
        shell.run_line_magic("wistro", "load . --attach")
        yield shell
    finally:
        shell.extension_manager.unload_extension("wistro_jupyter")


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def spans(view: TraceView) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in view.trace["spans"]}


def poll_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("wistro-trace-poll")]


async def test_the_view_follows_the_workers_run_span_by_span(
    attached: Any, chain: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    _, worker = chain
    app = attached.user_ns["wistro_app"]
    engine = app.engine
    release = tmp_path / "release"
    try:
        view = attached.run_line_magic("wistro", f'emit job {{"release": "{release}"}}')
        assert isinstance(view, TraceView)
        # before the run ends: Start's span (ok) and the event Wait is running on
        await until(lambda: "Start" in spans(view) and len(view.trace["events"]) >= 2)
        assert view.run is not None and not view.run.done
        assert view.polling and remote_polls(engine) == 1
        assert spans(view)["Start"]["status"] == "ok"
        assert "Wait" not in spans(view) or spans(view)["Wait"]["status"] == "running"
        events = {e["topic"]: e for e in view.trace["events"]}
        assert set(events) == {"job", "wait.go"}
        assert events["wait.go"]["data"] == {"release": str(release)}
        assert events["wait.go"]["source"] == "Start"
        assert view.trace["run"]["status"] == "running"
        assert view.trace["run"]["n_events"] == 2
        assert view.warning is None

        release.touch()
        run = await asyncio.wait_for(view.wait(), 30)
        assert run is not None and run.status == "ok"
        final = spans(view)
        assert set(final) == {"Start", "Wait", "Finish"}
        assert {s["status"] for s in final.values()} == {"ok"}
        assert {s["worker"].rpartition(":")[2] for s in final.values()} == {str(worker.pid)}
        assert [r["message"] for r in view.trace["logs"]] == ["finished"]
        assert view.trace["run"]["status"] == "ok" and view.trace["run"]["n_events"] == 3
        await asyncio.sleep(0)
        assert not view.polling and remote_polls(engine) == 0 and poll_tasks() == []
    finally:
        release.touch()
        await app.aclose()


async def test_closing_the_view_stops_the_polling(attached: Any, tmp_path: Path) -> None:
    app = attached.user_ns["wistro_app"]
    engine = app.engine
    release = tmp_path / "release"
    try:
        view = attached.run_line_magic("wistro", f'emit job {{"release": "{release}"}}')
        await until(lambda: view.polling)
        assert len(poll_tasks()) == 1
        view.close()
        assert not view.polling and remote_polls(engine) == 0
        await asyncio.sleep(0)
        assert poll_tasks() == []
        # a detached view stops too, and at most MAX_REMOTE_VIEWS views poll at once
        views = [
            attached.run_line_magic("wistro", f'emit job {{"release": "{release}", "i": {i}}}')
            for i in range(MAX_REMOTE_VIEWS + 2)
        ]
        await until(lambda: remote_polls(engine) == MAX_REMOTE_VIEWS and all(v.run for v in views))
        assert not views[0].polling and not views[1].polling and views[-1].polling
        views[-1].detach()
        assert remote_polls(engine) == MAX_REMOTE_VIEWS - 1
        release.touch()
        await asyncio.wait_for(asyncio.gather(*(v.wait() for v in views[:-1])), 30)
        await asyncio.sleep(0)
        assert remote_polls(engine) == 0 and poll_tasks() == []
        assert all(len(v.trace["spans"]) == 3 for v in views[:-1])
    finally:
        release.touch()
        await app.aclose()


async def test_a_store_error_is_one_warning_line_in_the_view(
    attached: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = attached.user_ns["wistro_app"]
    store = app.engine.store
    calls = []
    get_run = store.get_run
    failing = True

    def broken(trace_id: str) -> dict[str, Any]:
        calls.append(trace_id)
        if failing:
            raise OSError("disk on fire\nsecond line")
        return get_run(trace_id)

    release = tmp_path / "release"
    try:
        monkeypatch.setattr(store, "get_run", broken)
        view = attached.run_line_magic("wistro", f'emit job {{"release": "{release}"}}')
        await until(lambda: len(calls) >= 3)
        warnings = [r for r in view.trace["logs"] if r["level"] == "warning"]
        assert [r["message"] for r in warnings] == [
            "wistro: live updates of this run from the trace store failed "
            "(OSError: disk on fire); its spans show when it ends"
        ]
        assert view.polling  # it keeps trying
        failing = False
        release.touch()
        run = await asyncio.wait_for(view.wait(), 30)
        assert run is not None and run.status == "ok" and len(view.trace["spans"]) == 3
        assert not [r for r in view.trace["logs"] if r["level"] == "warning"]
    finally:
        release.touch()
        await app.aclose()


def test_with_stored_takes_each_record_once() -> None:
    from wistro_jupyter.traces import empty, with_stored

    run = {**empty("job")["run"], "trace_id": "t1", "status": "running", "start": 1.0}
    log = {"ts": 2.0, "span_id": "s1", "message": "hi", "level": "info"}
    local = {
        **empty("job"),
        "run": run,
        "events": [{"id": "e1", "ts": 1.0, "topic": "job"}],
        "spans": [{"id": "s1", "step": "A", "start": 1.5, "end": None, "status": "running"}],
        "logs": [log],
    }
    stored = {
        **empty("job"),
        "events": [{"id": "e2", "ts": 3.0, "topic": "b"}, {"id": "e1", "ts": 1.0, "topic": "job"}],
        "spans": [
            {"id": "s2", "step": "B", "start": 3.5, "end": 4.0, "status": "ok"},
            {"id": "s1", "step": "A", "start": 1.5, "end": 2.5, "status": "ok"},
        ],
        "logs": [dict(log), {"ts": 3.6, "span_id": "s2", "message": "b", "level": "info"}],
    }
    merged = with_stored(local, stored, dead_letters=1)
    assert [e["id"] for e in merged["events"]] == ["e1", "e2"]
    assert [(s["id"], s["status"]) for s in merged["spans"]] == [("s1", "ok"), ("s2", "ok")]
    assert [r["message"] for r in merged["logs"]] == ["hi", "b"]
    assert merged["run"]["n_events"] == 2 and merged["run"]["n_errors"] == 1
    assert merged["run"]["status"] == "running"
