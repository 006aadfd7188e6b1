"""``%wistro load --attach``: a notebook joins a project whose steps run in ``wistro worker``
processes (on the project's shared bus), emits into it, and gets whole runs back."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_support import cell, start_worker

from wistro.core.run import Run

SPLIT = """
config = {"name": "Split", "subscribes": ["job"], "emits": ["part"]}

async def handler(data, ctx):
    ctx.logger.info("splitting", n=data["n"])
    await ctx.emit("part", data)
"""
RECORD = """
config = {"name": "Record", "subscribes": ["part"]}

async def handler(data, ctx):
    await ctx.state.set("done", str(data["n"]), True)
"""


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[str]]:
    """A project on the local bus, and one `wistro worker` running its steps."""
    root = tmp_path / "cluster"
    (root / "src").mkdir(parents=True)
    (root / "wistro.yml").write_text("name: cluster\nbus: {adapter: local}\n", encoding="utf-8")
    (root / "src" / "split.step.py").write_text(textwrap.dedent(SPLIT), encoding="utf-8")
    (root / "src" / "record.step.py").write_text(textwrap.dedent(RECORD), encoding="utf-8")
    monkeypatch.chdir(root)
    worker = start_worker(root)
    yield worker
    worker.terminate()
    worker.wait(30)


def test_an_attached_notebook_emits_into_the_workers(
    shell: Any, cluster: subprocess.Popen[str], capsys: Any
) -> None:
    cell(shell, "%load_ext wistro_jupyter")
    try:
        cell(shell, "%wistro load . --attach")
        assert "attached to the local bus" in capsys.readouterr().out
        run = cell(shell, '%wistro emit job {"n": 7} --wait')
        assert isinstance(run, Run) and run.status == "ok"
        spans = run.spans
        assert list(spans["step"]) == ["Split", "Record"]
        # both ran in the worker process, not in this kernel
        assert set(spans["worker"].str.rpartition(":")[2]) == {str(cluster.pid)}
        assert list(run.logs["message"]) == ["splitting"]
        app = shell.user_ns["wistro_app"]
        assert app.engine.bus.consume is False
    finally:
        shell.extension_manager.unload_extension("wistro_jupyter")
