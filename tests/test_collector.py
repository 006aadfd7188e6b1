"""wistro.collector: ``engine.tune_gc`` (the collector tuned once per process when an engine
starts, in a fresh interpreter each: it is process-wide), and ``collector_paused``."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from tests.projects import step, write_project
from wistro.collector import collector_paused

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, json, sys
    import wistro

    if sys.argv[2] == "own":
        gc.set_threshold(1000, 5, 5)  # the user's own tuning
    before = gc.get_threshold()

    async def main():
        app = wistro.load(sys.argv[1], state="memory", traces="memory")
        run = await app.emit("go", {})
        await app.aclose()
        return run.status

    status = asyncio.run(main())
    print(json.dumps({"before": before, "after": gc.get_threshold(),
                      "frozen": gc.get_freeze_count(), "status": status}))
    """
)


def _run(tmp_path: Path, yml: str, mode: str = "default") -> dict:
    proj = write_project(tmp_path / mode, {"wistro.yml": yml, "src/a.step.py": step("a", ["go"])})
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(proj), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_engine_freezes_what_is_loaded_and_collects_less_often(tmp_path: Path) -> None:
    r = _run(tmp_path, "name: p\n")
    assert r["status"] == "ok"
    assert r["before"] == [700, 10, 10]
    assert r["after"] == [20_000, 20, 10]
    assert r["frozen"] > 10_000  # the libraries and the step modules


def test_thresholds_a_process_set_itself_are_kept(tmp_path: Path) -> None:
    r = _run(tmp_path, "name: p\n", "own")
    assert r["after"] == [1000, 5, 5] and r["frozen"] == 0


def test_tune_gc_false_leaves_the_collector_alone(tmp_path: Path) -> None:
    r = _run(tmp_path, "name: p\nengine: {tune_gc: false}\n")
    assert r["after"] == [700, 10, 10] and r["frozen"] == 0


def test_the_collector_is_paused_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()


def test_pauses_in_two_threads_end_with_the_last_one() -> None:
    """The trace writer thread pauses the collector while the loop's thread may pause it too:
    the one that ends first must not turn it on under the other."""
    entered, leave = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with collector_paused():
            entered.set()
            leave.wait(5)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        assert entered.wait(5)
    assert not gc.isenabled()  # the other thread's pause still holds
    leave.set()
    thread.join(5)
    assert seen == [False]
    assert gc.isenabled()
