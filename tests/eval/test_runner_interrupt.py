"""An eval stopped midway says which eval it was, how far it got and that a rerun resumes; the
rerun resumes it with no row twice. Through a real `python -m wistro eval run` sent SIGINT, and
through a cancelled `we.run`."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_support import write

from wistro import eval as we
from wistro.eval import scorers as sc
from wistro.eval.runner import stopped_message

SLOW_NOTIFY = """
import asyncio
from pathlib import Path

config = {"name": "Notify", "subscribes": ["order.priced"], "emits": ["order.notified"],
          "flows": ["orders"]}

HOLD = Path(__file__).parent.parent / "hold.flag"

async def handler(data, ctx):
    await asyncio.sleep(0.03)
    while int(data["order_id"][1:]) >= 8 and HOLD.exists():  # held until the test says
        await asyncio.sleep(0.01)
    await ctx.emit("order.notified", {"order_id": data["order_id"]})
"""

N = 80
STOPPED = re.compile(
    r"^stopped: eval (\S+) \((\d+)/(\d+) samples done\); run the same command again to resume$",
    re.M,
)


def slow_project(make_project) -> Path:
    root = make_project("slow", extra={"src/notify.step.py": SLOW_NOTIFY})
    lines = [
        json.dumps(
            {"topic": "order.placed", "data": {"order_id": f"A{i}", "amount_cents": 100 + i}}
        )
        for i in range(N)
    ]
    write(root, {"datasets/slow.jsonl": "\n".join(lines) + "\n"})
    return root


def stored(root: Path, eval_id: str) -> list[tuple[str, int]]:
    path = root / ".wistro" / "evals" / eval_id / "results.jsonl"
    return [(r["sample_id"], r["repeat"]) for r in map(json.loads, path.read_text().splitlines())]


def _with_sigint_as_in_a_terminal(cmd: list[str]) -> subprocess.Popen[str]:
    """Start ``cmd`` with SIGINT as in a terminal. A test run started in the background of a
    script (``.ci/run &``, ``nohup``) has SIGINT ignored, which its children inherit, and a
    Python started with SIGINT ignored keeps ignoring it (Ctrl-C does nothing). A handler is
    not inherited (exec resets it to the default), so one is set around the start; not a
    ``preexec_fn``, whose Python code between fork and exec can deadlock a process with threads."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigint_names_the_eval_and_a_rerun_resumes_it(make_project) -> None:
    """Samples from the ninth on are held until the interrupt is sent, so however late it
    comes (a loaded machine), it comes midway. The first eight reach the results file while
    the rest are held: results are written within 0.25 s even when no other result follows."""
    root = slow_project(make_project)
    (root / "hold.flag").write_text("", encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "wistro",
        "-C",
        str(root),
        "eval",
        "run",
        "slow",
        "--concurrency",
        "2",
    ]
    proc = _with_sigint_as_in_a_terminal(cmd)
    evals = root / ".wistro" / "evals"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # midway: some results are on disk
        files = list(evals.glob("*/results.jsonl")) if evals.is_dir() else []
        if files and files[0].read_text().count("\n") >= 4:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the eval wrote no results within 60 s")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, (out, err)
    match = STOPPED.search(err)
    assert match, err
    eval_id, done, total = match.group(1), int(match.group(2)), int(match.group(3))
    assert total == N and 4 <= done < N
    assert len(stored(root, eval_id)) == done  # what it says is done is what is stored
    assert "Traceback" not in err
    meta = json.loads((evals / eval_id / "meta.json").read_text())
    assert meta["status"] == "running"

    (root / "hold.flag").unlink()
    again = subprocess.run([*cmd[:-2], "--json"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["eval_id"] == eval_id  # resumed, not started again
    rows = stored(root, eval_id)
    assert len(rows) == N and len(set(rows)) == N  # no sample twice
    assert json.loads((evals / eval_id / "meta.json").read_text())["status"] == "complete"


async def test_a_cancelled_eval_says_how_to_resume(make_project, capsys) -> None:
    root = slow_project(make_project)
    ds = we.Dataset.load("slow", root)
    seen: list[str] = []
    five = asyncio.Event()

    def hook(result: we.SampleResult) -> None:
        seen.append(result.sample_id)
        if len(seen) == 5:
            five.set()

    task = asyncio.ensure_future(
        we.run(ds, scorers=[sc.error_free()], concurrency=1, on_result=hook, progress=False)
    )
    await five.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as info:
        await task
    [(eval_id, _)] = we.list_evals(root)
    done = len(stored(root, eval_id))
    assert done == len(seen) >= 5
    message = stopped_message(eval_id, done, N)
    assert message == (
        f"stopped: eval {eval_id} ({done}/{N} samples done); run the same command again to resume"
    )
    assert message in capsys.readouterr().err
    assert message in getattr(info.value, "__notes__", [])

    r = await we.run(ds, scorers=[sc.error_free()], concurrency=8, progress=False)
    assert r.eval_id == eval_id and r.complete and len(r) == N
    rows = stored(root, eval_id)
    assert len(rows) == N and len(set(rows)) == N
