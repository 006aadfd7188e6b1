"""``WorkerProcess`` (wistro/runtimes/worker.py) against small fake workers written in Python,
and the JS worker's protocol handling driven directly (no engine)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from wistro.errors import PayloadError
from wistro.runtimes.node import WORKER_JS
from wistro.runtimes.worker import (
    WorkerCrashed,
    WorkerError,
    WorkerProcess,
    WorkerStartError,
    encode_frame,
)

FAKE = r"""
import json, os, sys, time
out, inp = sys.stdout.buffer, sys.stdin.buffer

def send(msg):
    body = json.dumps(msg).encode()
    out.write(len(body).to_bytes(4, "big") + body)
    out.flush()

def recv():
    head = inp.read(4)
    if len(head) < 4:
        sys.exit(0)
    return json.loads(inp.read(int.from_bytes(head, "big")))

MODE = sys.argv[1]
if MODE == "silent":
    time.sleep(30)
if MODE == "garbage":
    out.write(b"\x00\x00\x00\x05hello"); out.flush(); time.sleep(30)
if MODE == "huge":
    out.write((65 * 1024 * 1024).to_bytes(4, "big")); out.flush(); time.sleep(30)
print("booting", file=sys.stderr, flush=True)
send({"t": "hello", "language": "fake", "version": "1", "pid": os.getpid()})
while True:
    msg = recv()
    t = msg["t"]
    if t == "shutdown":
        sys.exit(0)
    if t != "invoke":
        continue
    op = msg["data"]["op"]
    if op == "echo":
        send({"t": "result", "id": msg["id"], "ok": True, "value": msg["data"]})
    elif op == "fail":
        send({"t": "error", "id": msg["id"], "error": {"type": "ValueError", "message": "bad",
              "stack": "stack here", "file": "/x/a.step.go", "line": 12}})
    elif op == "call":
        send({"t": "call", "id": 1, "invoke": msg["id"], "op": "emit", "args": {"topic": "t"}})
        answer = recv()
        send({"t": "result", "id": msg["id"], "ok": True, "value": answer})
    elif op == "die":
        print("dying now", file=sys.stderr, flush=True)
        os._exit(3)
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    path = tmp_path / "fake_worker.py"
    path.write_text(textwrap.dedent(FAKE))
    return path


def cmd(fake: Path, mode: str = "ok") -> list[str]:
    return [sys.executable, str(fake), mode]


async def test_hello_request_result_and_error(fake: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wistro.worker.fake")
    proc = WorkerProcess(cmd(fake), language="fake")
    hello = await proc.start()
    assert hello["pid"] == proc.pid and hello["language"] == "fake"
    many = await asyncio.gather(
        *(proc.request({"t": "invoke", "data": {"op": "echo", "n": i}}) for i in range(50))
    )
    assert [m["n"] for m in many] == list(range(50))
    with pytest.raises(WorkerError) as info:
        await proc.request({"t": "invoke", "data": {"op": "fail"}})
    err = info.value
    assert (err.type, err.message, err.stack, err.file, err.line) == (
        "ValueError",
        "bad",
        "stack here",
        "/x/a.step.go",
        12,
    )
    await proc.close()
    assert not proc.alive and proc.returncode == 0
    assert "booting" in caplog.text  # stderr goes to the wistro.worker.<language> logger


async def test_calls_are_served_and_errors_answered_with_the_class_name(fake: Path) -> None:
    def on_call(msg: dict[str, Any]) -> Any:
        raise PayloadError("invalid payload", topic=msg["args"]["topic"], field="x")

    proc = WorkerProcess(cmd(fake), language="fake", on_call=on_call)
    await proc.start()
    answer = await proc.request({"t": "invoke", "data": {"op": "call"}})
    assert answer["t"] == "error" and answer["id"] == 1
    assert answer["error"] == {
        "type": "PayloadError",
        "message": "topic 't', field 'x': invalid payload",
    }

    async def later(msg: dict[str, Any]) -> Any:
        await asyncio.sleep(0.01)
        return {"ok": msg["op"]}

    proc.on_call = later
    answer = await proc.request({"t": "invoke", "data": {"op": "call"}})
    assert answer == {"t": "result", "id": 1, "ok": True, "value": {"ok": "emit"}}
    await proc.close()


async def test_a_crash_fails_every_pending_request(fake: Path) -> None:
    proc = WorkerProcess(cmd(fake), language="fake")
    await proc.start()
    slow = [proc.start_request({"t": "invoke", "data": {"op": "nothing"}}) for _ in range(3)]
    with pytest.raises(WorkerCrashed) as info:
        await proc.request({"t": "invoke", "data": {"op": "die"}})
    assert "exit code 3" in str(info.value) and "dying now" in str(info.value)
    for fut in slow:
        with pytest.raises(WorkerCrashed):
            await fut
    assert not proc.alive
    with pytest.raises(WorkerCrashed):
        proc.start_request({"t": "invoke", "data": {}})
    await proc.close()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("silent", "no hello within"), ("garbage", "not JSON"), ("huge", "64 MiB")],
)
async def test_start_failures(fake: Path, mode: str, expected: str) -> None:
    proc = WorkerProcess(cmd(fake, mode), language="fake", hello_timeout=0.5)
    with pytest.raises(WorkerStartError, match=expected):
        await proc.start()
    await proc.close()


async def test_a_missing_binary_is_a_start_error(tmp_path: Path) -> None:
    proc = WorkerProcess([str(tmp_path / "nope")], language="fake")
    with pytest.raises(WorkerStartError, match="cannot start"):
        await proc.start()


def test_frames_are_length_prefixed_json() -> None:
    frame = encode_frame({"t": "cancel", "id": 3})
    assert frame[:4] == len(frame[4:]).to_bytes(4, "big")
    assert frame[4:] == b'{"t":"cancel","id":3}'


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
async def test_js_worker_directly(tmp_path: Path) -> None:
    step = tmp_path / "a.step.mjs"
    step.write_text(
        "export const config = { name: 'a', subscribes: ['x'] };\n"
        "export async function handler(input, ctx) {\n"
        "  ctx.emit('y', { n: input.n }).catch(() => {});\n"  # observed: does not fail the invoke
        "  await new Promise((r) => setTimeout(r, input.ms));\n"
        "  return { n: input.n, trace: ctx.traceId, flows: ctx.flows };\n"
        "}\n"
    )
    calls: list[dict[str, Any]] = []

    def on_call(msg: dict[str, Any]) -> Any:
        calls.append(msg)
        return None

    proc = WorkerProcess(
        [str(shutil.which("node")), str(WORKER_JS)], language="javascript", on_call=on_call
    )
    hello = await proc.start()
    assert hello["language"] == "javascript" and hello["version"].startswith("v")
    loaded = await proc.request({"t": "load", "files": [str(step)]})
    assert loaded["errors"] == []
    assert loaded["steps"] == [
        {"file": str(step), "config": {"name": "a", "subscribes": ["x"]}, "line": 1}
    ]
    ctx = {"trace_id": "T", "span_id": "S", "step": "a", "flows": ["f"]}
    # answered in completion order, not request order
    futs = [
        proc.start_request(
            {"t": "invoke", "file": str(step), "step": "a", "data": {"n": n, "ms": ms}, "ctx": ctx}
        )
        for n, ms in ((1, 150), (2, 1), (3, 60))
    ]
    done, _ = await asyncio.wait(futs, return_when=asyncio.FIRST_COMPLETED)
    assert [f.result()["n"] for f in done] == [2]
    results = [await f for f in futs]
    assert results[0] == {"n": 1, "trace": "T", "flows": ["f"]}
    assert sorted(c["args"]["data"]["n"] for c in calls) == [1, 2, 3]
    assert all(c["op"] == "emit" and c["args"]["topic"] == "y" for c in calls)
    await proc.close()
    assert proc.returncode == 0


_FORK_PIPE: list[int] = []  # the write end the at-fork hook below reports to, while a test runs


def _in_a_forked_child() -> None:
    if _FORK_PIPE:
        os.write(_FORK_PIPE[0], b"python ran in a forked child\n")


async def test_starting_a_worker_runs_no_python_between_fork_and_exec(fake: Path) -> None:
    """Python code between fork and exec (a ``preexec_fn``, and the at-fork hooks it runs) can
    deadlock the child of a process with threads, as the engine is: the worker's start never
    returns. The parent-death signal is set by ``setpriv`` after the exec instead."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    if not getattr(_in_a_forked_child, "registered", False):
        os.register_at_fork(after_in_child=_in_a_forked_child)
        _in_a_forked_child.registered = True  # type: ignore[attr-defined]
    busy = threading.Event()
    thread = threading.Thread(target=busy.wait, daemon=True)  # a process with threads
    thread.start()
    _FORK_PIPE.append(write)
    try:
        workers = [WorkerProcess(cmd(fake), language="fake") for _ in range(20)]
        await asyncio.gather(*(w.start() for w in workers))
        assert all(w.hello and w.hello["pid"] == w.pid for w in workers)  # exec'd in place
        await asyncio.gather(*(w.close() for w in workers))
    finally:
        _FORK_PIPE.clear()
        busy.set()
        os.close(write)
    try:
        reported = os.read(read, 4096)
    except BlockingIOError:
        reported = b""
    finally:
        os.close(read)
    assert reported == b""
