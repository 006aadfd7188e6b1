"""``wistro dev --versions HEAD~1,HEAD --split 25,75`` on one machine: each git revision runs in
a worker process of its own, from a temporary worktree, on the bus, state and traces of the
checkout; HTTP events are split by the weights, every run ends ok, ``wistro versions`` there sees
both versions live, and SIGTERM leaves no worker and no worktree behind. Bad input is one
``error:`` line, a non-zero exit code and nothing left behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import httpx
import pytest
from processes import WISTRO, Server, env, run

from wistro.app import make_store
from wistro.project.paths import load_project

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

YML = """\
    name: shop
    api:
      - {path: /orders, method: POST, emits: order.placed}
"""
STEP = """\
    config = {"name": "Handle", "subscribes": ["order.placed"], "emits": []}

    async def handler(data, ctx):
        await ctx.state.set("handled", str(data["n"]), {"by": "BY"})
    """
EVENTS = 200


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def _git(root: Path, *args: str) -> str:
    return subprocess.check_output([*GIT, *args], cwd=root, text=True, stderr=subprocess.STDOUT)


def _write_step(root: Path, by: str) -> None:
    (root / "src" / "handle.step.py").write_text(
        textwrap.dedent(STEP).replace("BY", by), encoding="utf-8"
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding the project, with two commits whose step differs: HEAD~1 records
    ``by: one``, HEAD ``by: two``."""
    root = tmp_path / "shop"
    (root / "src").mkdir(parents=True)
    (root / "wistro.yml").write_text(textwrap.dedent(YML), encoding="utf-8")
    (root / ".gitignore").write_text(".wistro/\n", encoding="utf-8")
    _write_step(root, "one")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "one")
    _write_step(root, "two")
    _git(root, "commit", "-qam", "two")
    return root


def _worktrees(root: Path) -> list[str]:
    out = _git(root, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def _handled(root: Path) -> Counter[str]:
    folder = root / ".wistro" / "state" / "handled"
    files = folder.glob("*.json") if folder.is_dir() else []
    return Counter(json.loads(p.read_text(encoding="utf-8"))["by"] for p in files)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_two_revisions_split_on_one_machine(repo: Path, servers: list[Server]) -> None:
    dev = Server(
        "dev", "--versions", "HEAD~1,HEAD", "--split", "25,75", "--no-reload", "--port", "0",
        cwd=repo,
    )  # fmt: skip
    servers.append(dev)
    port = dev.port()
    lines = {
        m.group(1): (m.group(2), int(m.group(3)))
        for line in dev.stdout
        if (m := re.match(r"^version (\S+) = (\w+): 1 worker \(pid (\d+)\)$", line))
    }
    assert set(lines) == {"HEAD~1", "HEAD"}, dev.output
    ids = {name: vid for name, (vid, _) in lines.items()}
    assert ids["HEAD~1"] != ids["HEAD"]
    assert any(re.match(r"^\[HEAD~1\]\s+worker ready: ", line) for line in dev.stdout), dev.output
    assert dev.stdout[-1].endswith("bus: local, no workers"), dev.output
    assert len(_worktrees(repo)) == 3

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for start in range(0, EVENTS, 20):
            answers = await asyncio.gather(
                *(client.post("/orders", json={"n": n}) for n in range(start, start + 20))
            )
            assert all(a.status_code == 202 for a in answers), [a.text for a in answers]

    store = make_store(load_project(repo), None)
    async with asyncio.timeout(40):
        while True:
            runs = store.list_runs(limit=1000)
            if len(runs) == EVENTS and all(r["status"] != "running" for r in runs):
                break
            await asyncio.sleep(0.2)
    assert Counter(r["status"] for r in runs) == {"ok": EVENTS}
    by_version = Counter(r["version"] for r in runs)
    handled = _handled(repo)
    assert handled == {"one": by_version[ids["HEAD~1"]], "two": by_version[ids["HEAD"]]}
    assert abs(100 * handled["two"] / EVENTS - 75) <= 10, handled

    listed = json.loads(run("versions", "--json", cwd=repo))
    live = {r["version"]: r for r in listed if r["live"]}
    assert set(ids.values()) <= set(live), listed
    assert live[ids["HEAD~1"]]["label"] == "HEAD~1"
    assert live[ids["HEAD"]]["label"] == "HEAD"

    os.kill(lines["HEAD~1"][1], signal.SIGKILL)  # a worker that dies is said in one line
    async with asyncio.timeout(10):
        while not any("the worker of HEAD~1" in line for line in dev.stderr):
            await asyncio.sleep(0.05)
    died = [line for line in dev.stderr if "the worker of HEAD~1" in line]
    assert died == [
        f"the worker of HEAD~1 (version {ids['HEAD~1']}, pid {lines['HEAD~1'][1]}) was killed "
        "(signal 9): its share of new traces goes to the other versions"
    ]

    dev.proc.send_signal(signal.SIGTERM)
    code, _ = await dev.exited(timeout=40)
    assert code == 0, dev.output
    assert all(_gone(pid) for _, pid in lines.values()), dev.output
    assert _worktrees(repo) == [str(repo)]
    split = json.loads(run("traffic", "--json", cwd=repo))["split"]
    assert split is None  # the split set by dev is taken back
    assert (repo / "wistro.yml.lock").exists() is False  # the checkout's lock is never written


def _refused(root: Path, *args: str) -> str:
    res = subprocess.run(
        [*WISTRO, "dev", "--port", "0", "--no-reload", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        check=False,
    )
    assert res.returncode != 0, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "ready:" not in res.stdout, res.stdout
    return lines[0]


def test_bad_input_is_one_line_and_leaves_nothing(repo: Path, tmp_path: Path) -> None:
    _git(repo, "branch", "same", "HEAD")
    cases = {
        ("--versions", "HEAD~1,nope"): r"no git revision 'nope'",
        ("--versions", "HEAD"): r"--versions needs two revisions or more, got 'HEAD'",
        ("--versions", "HEAD~1,HEAD", "--split", "25,x"): r"'x' is not a number",
        ("--versions", "HEAD~1,HEAD", "--split", "100"): r"1 weight\(s\) for 2 versions",
        ("--versions", "HEAD,same"): r"HEAD and same are the same version",
        ("--split", "50,50"): r"--split needs --versions",
    }
    for args, pattern in cases.items():
        assert re.search(pattern, _refused(repo, *args)), args
        assert _worktrees(repo) == [str(repo)], args
    plain = tmp_path / "plain"
    shutil.copytree(repo, plain, ignore=shutil.ignore_patterns(".git"))
    line = _refused(plain, "--versions", "HEAD~1,HEAD")
    assert "the project is not in a git repository" in line, line
