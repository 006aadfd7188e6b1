"""1,000 events from a notebook through a plain ``def`` step that uses file state, executed by
nbclient in a real kernel (this venv's Python, a temp kernelspec) in a temp project.

The kernel's event loop runs the engine; the step runs on Wistro's handler threads and calls
``ctx.state.update`` / ``get`` / ``set`` synchronously, each a round trip to the loop and to the
file-state threads. Before those had pools of their own, ``await app.drain()`` hung after about
ten such emits (handlers waiting on the loop's default executor, which they were filling).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from notebook_support import KERNEL_NAME

EVENTS = 1_000
TIMEOUT_S = 120  # per cell

WISTRO_YML = """\
    name: counting
    src: src
    state: {adapter: file}
"""

COUNT_STEP = """\
    config = {
        "name": "Count tick",
        "subscribes": ["tick"],
        "input": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
        "emits": [],
    }


    def handler(tick, ctx):
        ctx.state.update("counter", "ticks", lambda v: (v or 0) + 1)
        key = str(tick["n"])
        assert ctx.state.get("seen", key) is None, key
        ctx.state.set("seen", key, {"n": tick["n"], "trace_id": ctx.trace_id})
"""

CELLS = [
    "%load_ext wistro_jupyter",
    """\
    import time

    t0 = time.perf_counter()
    runs = [await wistro_app.emit("tick", {"n": i}, wait=False) for i in range(EVENTS)]
    await wistro_app.drain()
    took = time.perf_counter() - t0
    ticks = await wistro_app.state.get("counter", "ticks")
    seen = await wistro_app.state.get_group("seen")
    statuses = sorted({run.status for run in runs})
    print(f"drained in_flight={wistro_app.engine.in_flight} ticks={ticks} seen={len(seen)} statuses={statuses}")
    print(f"took {took:.1f} s")
    """,
    """\
    run = %wistro emit tick {"n": -1} --wait
    print(run.status, await wistro_app.state.get("counter", "ticks"))
    """,
]


def _project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "wistro.yml").write_text(textwrap.dedent(WISTRO_YML), encoding="utf-8")
    (root / "src" / "count_tick.step.py").write_text(textwrap.dedent(COUNT_STEP), encoding="utf-8")
    return root


def _stdout(cell: Any) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


@pytest.fixture(scope="module")
def executed(
    jupyter_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[nbformat.NotebookNode, Path]:
    project = _project(tmp_path_factory.mktemp("notebook-load") / "counting")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"EVENTS = {EVENTS}\nTIMEOUT_S = {TIMEOUT_S}")] + [
        nbformat.v4.new_code_cell(textwrap.dedent(src)) for src in CELLS
    ]
    nbformat.validate(nb)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=TIMEOUT_S,
        resources={"metadata": {"path": str(project)}},
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, project / "executed-load.ipynb")  # for a look after a failure
    return nb, project


def test_every_cell_finished_without_errors(
    executed: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, _ = executed
    for c in nb.cells:
        errors = [o for o in c.outputs if o.output_type == "error"]
        assert not errors, (c.source[:60], errors and "\n".join(errors[0]["traceback"]))
        assert c.execution_count is not None, c.source[:60]
    assert "wistro: loaded" in _stdout(nb.cells[1]), nb.cells[1].outputs


def test_1000_emits_drain_and_every_update_counts(
    executed: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, project = executed
    out = _stdout(nb.cells[2])
    assert f"drained in_flight=0 ticks={EVENTS} seen={EVENTS} statuses=['ok']" in out, out
    took = float(re.search(r"took ([\d.]+) s", out).group(1))  # type: ignore[union-attr]
    assert took < TIMEOUT_S - 10, out
    # the file state holds it too, one file per key (after the notebook's last emit: one more)
    state = project / ".wistro" / "state"
    assert (state / "counter" / "ticks.json").read_text(encoding="utf-8") == str(EVENTS + 1)
    assert len(list((state / "seen").glob("*.json"))) == EVENTS + 1


def test_a_magic_emit_after_the_load_still_waits_and_counts(
    executed: tuple[nbformat.NotebookNode, Path],
) -> None:
    nb, _ = executed
    assert _stdout(nb.cells[3]).split() == ["ok", str(EVENTS + 1)], nb.cells[3].outputs
