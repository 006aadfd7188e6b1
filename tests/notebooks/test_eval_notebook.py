"""notebooks/03_eval.ipynb executed end to end by nbclient in a real kernel (this venv's Python,
a temp kernelspec): record runs, build a dataset, change a step, eval both versions, compare;
the outputs must show the regression at the changed step and the run-diff widget."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from notebook_support import KERNEL_NAME, NOTEBOOKS

NAME = "03_eval.ipynb"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
BUNDLE = Path(__file__).resolve().parents[2] / "wistro_jupyter" / "static" / "widgets.js"
STUB_ESM = "export default { render({ model, el }) { el.textContent = model.get('kind'); } };\n"


@pytest.fixture(scope="module")
def executed(
    jupyter_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> nbformat.NotebookNode:
    workdir = tmp_path_factory.mktemp("eval-notebook")
    copy = workdir / NAME
    shutil.copyfile(NOTEBOOKS / NAME, copy)
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=180,
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    with pytest.MonkeyPatch.context() as mp:
        if not BUNDLE.is_file():  # not built (no Node): the Python side is tested all the same
            stub = workdir / "stub-widgets.js"
            stub.write_text(STUB_ESM, encoding="utf-8")
            mp.setenv("WISTRO_WIDGETS_ESM", str(stub))
        client.execute()
    nbformat.write(nb, workdir / f"executed-{NAME}")
    return nb


def cell(nb: nbformat.NotebookNode, source_start: str) -> Any:
    found = [
        c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith(source_start)
    ]
    assert found, f"no code cell starting with {source_start!r}"
    return found[0]


def result(c: Any) -> dict[str, Any]:
    [out] = [o for o in c.outputs if o.output_type == "execute_result"]
    return dict(out["data"])


def stdout(c: Any) -> str:
    return "".join(o.text for o in c.outputs if o.output_type == "stream" and o.name == "stdout")


def test_the_committed_notebook_carries_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    nbformat.validate(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, c.source[:60]
    assert "widgets" not in nb.metadata


def test_runs_without_errors(executed: nbformat.NotebookNode) -> None:
    for c in executed.cells:
        if c.cell_type == "code":
            errors = [o for o in c.outputs if o.output_type == "error"]
            assert not errors, (c.source[:60], errors and "\n".join(errors[0]["traceback"]))


def test_dataset_and_evals(executed: nbformat.NotebookNode) -> None:
    assert "6 samples, dataset version" in stdout(cell(executed, "from wistro import eval as we"))
    evals = stdout(cell(executed, "from wistro.eval import scorers as sc"))
    assert "6 results, 0 with errors" in evals


def test_compare_flags_the_regression_at_the_changed_step(
    executed: nbformat.NotebookNode,
) -> None:
    summary = result(cell(executed, "cmp = we.compare(before, after)"))["text/plain"]
    assert "payload_equals(order.priced)" in summary and "regressed" in summary

    rows = result(cell(executed, 'cmp.rows[["sample_id"'))
    body = rows["text/html"].split("<tbody>")[1]
    trs = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    assert len(trs) == 6
    for tr in trs:  # every sample: regressed, its first divergent step the changed one
        cells = re.findall(r"<td>(.*?)</td>", tr, re.S)
        assert cells[1:3] == ["regressed", "Price"], cells

    steps = result(cell(executed, "cmp.steps"))["text/plain"]
    price = next(ln for ln in steps.splitlines() if "Price" in ln)
    assert "modified" in price

    out = stdout(cell(executed, "reg = cmp.regressions"))
    assert "6 regressions, first divergent step: Price" in out
    assert "'path': '$.total'" in out and "+TAX = 0.25" in out


def test_chart(executed: nbformat.NotebookNode) -> None:
    data = result(cell(executed, "cmp.chart()"))
    assert data["image/svg+xml"].startswith("<svg") and "wistro-chart" in data["text/html"]
    assert "payload_equals(order.priced) ▼" in data["image/svg+xml"]


def test_run_diff_widget(executed: nbformat.NotebookNode) -> None:
    [c] = [x for x in executed.cells if x.cell_type == "code" and x.source.strip() == "cmp"]
    data = result(c)
    assert WIDGET_MIME in data, list(data)
    html = data["text/html"]  # the static fallback: regressions first, the diff of the first
    assert "wistro-first-divergent'>Price<" in html and "+TAX = 0.25" in html
    model_id = data[WIDGET_MIME]["model_id"]
    state = executed.metadata["widgets"][STATE_MIME]["state"][model_id]["state"]
    assert state["kind"] == "run_diff"
    rows = state["comparison"]["rows"]
    assert {r["status"] for r in rows} == {"regressed"}
    assert {r["first_divergent_step"] for r in rows} == {"Price"}
    assert state["selected"] == rows[0]["sample_id"]
    assert state["diff"]["first_divergent_step"] == "Price"
    assert "+TAX = 0.25" in state["diff"]["code_diff"][0]["diff"]
    assert state["_esm"]
