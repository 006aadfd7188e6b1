"""The notebook of a project made by ``wistro init`` (the shop template's
``notebooks/quickstart.ipynb``), executed by nbclient in a real kernel where ``wistro init``
put it: it loads the extension and shows the graph, an emit, the trace and the state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from notebook_support import KERNEL_NAME

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_NOTEBOOK = ROOT / "wistro" / "templates" / "shop" / "notebooks" / "quickstart.ipynb"
VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
SHOP_STEPS = ["Place order", "Charge card", "Send receipt", "Reserve stock", "Pack order"]


def test_the_committed_notebook_loads_the_extension_and_carries_no_outputs() -> None:
    nb = nbformat.read(TEMPLATE_NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source.strip() == "%load_ext wistro_jupyter"
    for c in code:
        assert c.outputs == [] and c.execution_count is None, c.source[:60]
    assert "widgets" not in nb.metadata
    sources = [c.source for c in code]
    for magic in ["%wistro graph", "%wistro emit order.placed", "%wistro trace", "%wistro state"]:
        assert any(s.startswith(magic) for s in sources), magic


@pytest.fixture(scope="module")
def executed(
    jupyter_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> nbformat.NotebookNode:
    root = tmp_path_factory.mktemp("init")
    done = subprocess.run(
        [sys.executable, "-m", "wistro", "init", "shop"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    path = root / "shop" / "notebooks" / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "w", "language": "python"}
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=120,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    nbformat.write(nb, root / "executed-quickstart.ipynb")
    return nb


def cell(nb: nbformat.NotebookNode, start: str) -> Any:
    [c] = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start)]
    return c


def result(c: Any) -> dict[str, Any]:
    [out] = [o for o in c.outputs if o.output_type == "execute_result"]
    return dict(out["data"])


def saved(nb: nbformat.NotebookNode, c: Any) -> dict[str, Any]:
    model_id = result(c)[VIEW_MIME]["model_id"]
    state: dict[str, Any] = nb.metadata["widgets"][STATE_MIME]["state"][model_id]["state"]
    return state


def test_it_runs_without_errors_and_loads_the_project(executed: nbformat.NotebookNode) -> None:
    for c in executed.cells:
        if c.cell_type == "code":
            assert not [o for o in c.outputs if o.output_type == "error"], c.source[:60]
    text = "".join(o.get("text", "") for o in cell(executed, "%load_ext").outputs)
    assert "wistro: loaded <wistro.App 'shop': 9 steps" in text


def test_it_shows_the_graph(executed: nbformat.NotebookNode) -> None:
    c = cell(executed, "%wistro graph")
    data = result(c)
    assert saved(executed, c)["kind"] == "flow_graph"
    html = data["text/html"]
    assert "<svg" in html and 'class="wistro-graph-svg"' in html
    for step in SHOP_STEPS:
        assert step in html


def test_it_shows_an_emit_its_trace_and_the_state(executed: nbformat.NotebookNode) -> None:
    run = result(cell(executed, "%wistro emit order.placed"))
    assert " ok: " in run["text/plain"] and "wistro-spans" in run["text/html"]
    c = cell(executed, "%wistro trace")
    state = saved(executed, c)
    assert state["kind"] == "trace_view" and state["trace"]["run"]["status"] == "ok"
    assert {s["step"] for s in state["trace"]["spans"]} >= {"Charge card", "Send receipt"}
    assert 'class="wistro-trace-svg"' in result(c)["text/html"]
    table = result(cell(executed, "%wistro state"))["text/plain"]
    assert "orders" in table and "A1" in table and "charged" in table
    declined = result(cell(executed, "declined = await"))["text/plain"]
    assert "payment.declined" in declined or "declined" in declined
