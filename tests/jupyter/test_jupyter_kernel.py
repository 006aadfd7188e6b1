"""One real kernel: a notebook executed headless by nbclient, its outputs asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec of this venv's Python in a temp JUPYTER_PATH: nothing is installed for the
    user, and a `python3` kernelspec of another Python can never be picked."""
    spec = tmp_path / "jupyter" / "kernels" / "wistro-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "wistro test",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    return "wistro-test"


def test_a_notebook_runs_in_a_real_kernel(shop: Path, kernel_name: str, stub_bundle: Path) -> None:
    cells = [
        "%load_ext wistro_jupyter",
        '%wistro emit order.placed {"order_id": "A1", "amount_cents": 1200} --wait',
        '%wistro emit order.placed {"order_id": "A2", "amount_cents": 1200}',
        # the cell above returned at once; the run goes on in the kernel's loop
        "import asyncio\n"
        "view = _\n"
        "run = await view.wait()\n"
        "(run.status, len(view.trace['spans']), "
        "wistro_app.engine.loop is asyncio.get_running_loop())",
        'run = await wistro_app.emit("order.placed", {"order_id": "A3", "amount_cents": 1})\n'
        "run.status",
        "%wistro graph checkout",
        "%wistro emit order.placd {}",
        "%wistro trace",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel_name, resources={"metadata": {"path": str(shop)}}, timeout=120
    )
    client.execute()
    out = [c.outputs for c in nb.cells]

    assert "loaded <wistro.App 'shop': 9 steps" in out[0][0]["text"]
    [wait] = out[1]
    assert wait["output_type"] == "execute_result"
    assert " ok: 4 events, 4 spans" in wait["data"]["text/plain"]
    assert "wistro-spans" in wait["data"]["text/html"]
    [live] = out[2]
    assert WIDGET_MIME in live["data"] and "text/html" in live["data"]
    assert out[3][0]["data"]["text/plain"] == "('ok', 4, True)"
    assert out[4][0]["data"]["text/plain"] == "'ok'"
    [graph] = out[5]
    assert WIDGET_MIME in graph["data"] and "Charge card" in graph["data"]["text/html"]
    # the widgets' state is saved with the notebook (nbclient records the messages of the cell
    # being executed: a live view's later updates belong to its own cell, so `%wistro trace`)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    [last] = out[7]
    trace_state = state[last["data"][WIDGET_MIME]["model_id"]]["state"]
    assert trace_state["kind"] == "trace_view"
    assert trace_state["trace"]["run"]["status"] == "ok"
    assert trace_state["trace"]["run"]["topic"] == "order.placed"
    assert len(trace_state["trace"]["spans"]) == 4
    assert "Charge card" in last["data"]["text/html"]
    graph_state = state[graph["data"][WIDGET_MIME]["model_id"]]["state"]
    labels = {n["label"] for n in graph_state["graph"]["nodes"]}
    assert labels == {"Place order", "Charge card", "Send receipt", "Fraud review"}
    # an error is one red line on stderr, and the kernel goes on
    [err] = out[6]
    assert err["name"] == "stderr" and "topic 'order.placd'" in err["text"]
    assert len(err["text"].strip().splitlines()) == 1
