"""The loop watchdog reads the loop thread's stack with faulthandler, in one C call: what it
finds, and that sampling a busy, changing stack many times over never crashes the process
(walking the frames from Python did, on Python 3.11, under load)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from tests.projects import write_project
from wistro.core.watchdog import DumpPipe, dump_form, parse_dump, stack_of


def test_the_stack_of_another_thread_is_read_innermost_first(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    source = tmp_path / "blockéd.py"  # a path faulthandler prints escaped
    source.write_text("def wait_here(started, release):\n    started.set()\n    release.wait()\n")
    namespace: dict[str, object] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    thread = threading.Thread(target=namespace["wait_here"], args=(started, release))
    thread.start()
    try:
        started.wait(10)
        stack = stack_of(thread.ident or 0)
    finally:
        release.set()
        thread.join()
    files = [file for file, _, _ in stack]
    assert dump_form(str(source)) in files
    _, line, function = next(f for f in stack if f[0] == dump_form(str(source)))
    assert (line, function) == (3, "wait_here")
    assert stack[0][2] == "wait" and stack[-1][2] == "_bootstrap"  # innermost first


def test_one_pipe_serves_many_samples_and_leaves_no_descriptor_open(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: (started.set(), release.wait()))
    before = len(os.listdir("/proc/self/fd"))
    pipe = DumpPipe()
    thread.start()
    try:
        started.wait(10)
        stacks = [stack_of(thread.ident or 0, pipe) for _ in range(300)]
    finally:
        release.set()
        thread.join()
        pipe.close()
    assert stacks[0] and all(stack == stacks[0] for stack in stacks)  # nothing left over
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_dump_of_other_threads_only_gives_nothing() -> None:
    text = 'Thread 0x00000000000000ff (most recent call first):\n  File "a.py", line 1 in f\n'
    assert parse_dump(text, 0xFE) == []
    assert parse_dump(text, 0xFF) == [("a.py", 1, "f")]


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    import wistro

    async def main():
        app = wistro.load(sys.argv[1], state="memory", traces="memory")
        # 300 runs churning coroutines while 40 deliveries each block the loop for 60 ms:
        # the watchdog samples the loop thread's changing stack every 5 ms through all of it
        runs = [app.emit("churn", {"n": i}, wait=False) for i in range(300)]
        runs += [app.emit("block", {"n": i}, wait=False) for i in range(40)]
        runs = await asyncio.gather(*runs)
        await app.drain()
        named = sum(
            1 for r in runs for log in r.log_records
            if log.level == "warning" and "src/block.step.py:" in log.message
        )
        print(json.dumps({"runs": len(runs), "ok": sum(r.status == "ok" for r in runs),
                          "named": named}))
        await app.aclose()

    asyncio.run(main())
    """
)


def test_hundreds_of_samples_of_a_busy_loop_never_crash_and_name_the_step(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p",
        {
            "wistro.yml": "name: busy\nengine: {block_warn_ms: 20}\n",
            "src/block.step.py": (
                "import time\n\n"
                "config = {'name': 'Block', 'subscribes': ['block']}\n\n"
                "async def handler(data, ctx):\n"
                "    await asyncio_sleep0()\n"
                "    until = time.monotonic() + 0.06\n"
                "    while time.monotonic() < until:  # blocks the loop, in Python code\n"
                "        pass\n\n"
                "async def asyncio_sleep0():\n"
                "    import asyncio\n"
                "    await asyncio.sleep(0)\n"
            ),
            "src/churn.step.py": (
                "import asyncio\n\n"
                "config = {'name': 'Churn', 'subscribes': ['churn']}\n\n"
                "async def deeper(n):\n"
                "    if n:\n"
                "        await deeper(n - 1)\n"
                "    else:\n"
                "        await asyncio.sleep(0)\n\n"
                "async def handler(data, ctx):\n"
                "    for _ in range(20):\n"
                "        await deeper(8)\n"
            ),
        },
    )
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(project)], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert result["runs"] == 340 and result["ok"] == 340, result
    # Nearly all of the 40 stalls are named in the step's file (all 40 here; 9 when each
    # sample made a temporary file, whose system calls each waited for the busy loop's GIL)
    assert result["named"] >= 30, result
