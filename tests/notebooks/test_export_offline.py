"""An executed notebook with every Wistro widget (FlowGraph, TraceView, RunDiff), exported to
HTML by the real ``jupyter nbconvert`` and opened in Chromium with the network blocked: each
widget cell shows its static view (the graph and the waterfall as inline SVG, the run diff's
tables), none is blank, and a step named ``<script>...`` stays text. Plus the SVG layouts
themselves, with Graphviz's ``dot`` hidden from PATH and with it where it is installed.

A screenshot of the offline page is saved to the test's tmp_path and to
``tests/notebooks/artifacts/export-offline.png``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from notebook_support import KERNEL_NAME

from wistro_jupyter.export import StaticWidgetsPreprocessor, WistroHTMLExporter
from wistro_jupyter.static_svg import graph_svg, layered_svg, trace_svg

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
EVIL = "<script>window.__pwned = 1</script>"
STEPS = ["Validate", EVIL, "Price", "Notify"]

SETUP = '''
import subprocess, textwrap
from pathlib import Path

def git(*args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          capture_output=True, text=True, check=True).stdout

FILES = {
    "wistro.yml": "name: orders\\n",
    ".gitignore": ".wistro/\\n",
    "src/validate.step.py": """
        config = {"name": "Validate", "subscribes": ["order.placed"],
                  "emits": ["order.validated"], "flows": ["orders"]}
        async def handler(data, ctx):
            await ctx.emit("order.validated", data)
    """,
    "src/evil.step.py": """
        config = {"name": "<script>window.__pwned = 1</script>", "subscribes": ["order.validated"],
                  "emits": ["order.checked"], "flows": ["orders"]}
        async def handler(data, ctx):
            await ctx.emit("order.checked", data)
    """,
    "src/price.step.py": """
        config = {"name": "Price", "subscribes": ["order.checked"], "emits": ["order.priced"],
                  "flows": ["orders"]}
        TAX = 0.2
        async def handler(data, ctx):
            total = round(data["amount"] * (1 + TAX))
            await ctx.state.set("orders", data["order_id"], {"total": total})
            await ctx.emit("order.priced", {"order_id": data["order_id"], "total": total})
    """,
    "src/notify.step.py": """
        config = {"name": "Notify", "subscribes": ["order.priced"], "emits": ["order.notified"],
                  "flows": ["orders"]}
        async def handler(data, ctx):
            await ctx.emit("order.notified", data)
    """,
}
for rel, text in FILES.items():
    Path(rel).parent.mkdir(parents=True, exist_ok=True)
    Path(rel).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
git("init", "-q", "-b", "main"); git("add", "."); git("commit", "-q", "-m", "orders")
'''
EVAL = """
from wistro import eval as we
from wistro.eval import scorers as sc
from wistro.testing import load_app

app = load_app(".")
runs = [await app.emit("order.placed", {"order_id": f"A{i}", "amount": 100 * (i + 1)})
        for i in range(4)]
await app.aclose()
ds = we.Dataset("golden", root=".")
for run in runs:
    ds.add_run(run)
git("add", "datasets"); git("commit", "-q", "-m", "golden")
price = Path("src/price.step.py")
price.write_text(price.read_text().replace("TAX = 0.2", "TAX = 0.25"), encoding="utf-8")
git("commit", "-q", "-am", "tax 25%")
scorers = [sc.payload_equals("order.priced"), sc.error_free()]
before = await we.run(ds, version="HEAD~1", scorers=scorers, label="before", progress=False)
after = await we.run(ds, scorers=scorers, label="after", progress=False)
cmp = we.compare(before, after)
cmp
"""
CELLS = {
    "setup": SETUP,
    "load": "%load_ext wistro_jupyter\n%wistro load .",
    "graph": "%wistro graph",
    "emit": '%wistro emit order.placed {"order_id": "Z1", "amount": 100} --wait',
    "trace": "%wistro trace",
    "rundiff": EVAL,
}
WIDGET_CELLS = {"graph": "flow_graph", "trace": "trace_view", "rundiff": "run_diff"}


# ---------------------------------------------------------------- the notebook, executed


@pytest.fixture(scope="module")
def executed(
    jupyter_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, nbformat.NotebookNode]:
    """The notebook executed by nbclient in a temp project, with its widget state saved (as
    ``jupyter nbconvert --execute`` does), written to ``<tmp>/widgets.ipynb``."""
    work = tmp_path_factory.mktemp("export")
    nb = new_notebook(
        cells=[new_code_cell(src, metadata={"tags": [name]}) for name, src in CELLS.items()],
        metadata={"kernelspec": {"name": KERNEL_NAME, "display_name": "w", "language": "python"}},
    )
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=180,
        store_widget_state=True,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()
    path = work / "widgets.ipynb"
    nbformat.write(nb, path)
    return path, nb


def tagged(nb: nbformat.NotebookNode, tag: str) -> Any:
    [c] = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return c


def nbconvert(path: Path, out: Path, *args: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", *args, str(path), "--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [html] = out.glob("*.html")
    return html


def test_the_executed_notebook_saves_every_wistro_widget_in_its_state(
    executed: tuple[Path, nbformat.NotebookNode],
) -> None:
    """What makes ``--to html`` pick the widget views: every model is in the saved state."""
    _, nb = executed
    for c in nb.cells:
        assert not [o for o in c.outputs if o.output_type == "error"], c.source[:80]
    state = nb.metadata["widgets"][STATE_MIME]["state"]
    for tag, kind in WIDGET_CELLS.items():
        [out] = [o for o in tagged(nb, tag).outputs if "data" in o and VIEW_MIME in o.data]
        model = state[out.data[VIEW_MIME]["model_id"]]
        assert model["state"]["kind"] == kind
        assert "text/html" in out.data


def test_the_preprocessor_keeps_the_static_views_and_drops_the_wistro_models(
    executed: tuple[Path, nbformat.NotebookNode],
) -> None:
    _, nb = executed
    copy = nbformat.from_dict(nb)
    copy, _ = StaticWidgetsPreprocessor().preprocess(copy, {})
    assert "widgets" not in copy.metadata  # only Wistro widgets here
    for tag in WIDGET_CELLS:
        [out] = [o for o in tagged(copy, tag).outputs if "data" in o and "text/html" in o.data]
        assert VIEW_MIME not in out.data
    assert "<svg" in tagged(copy, "graph").outputs[0].data["text/html"]


# ---------------------------------------------------------------- in Chromium, offline


def open_offline(html: Path, shot: Path) -> dict[str, Any]:
    """Open ``html`` with every request that is not a file aborted; what each tagged cell's
    output area shows, the requests that were blocked, and a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})

            def route(r: Any) -> None:
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_timeout(1500)  # any widget manager would have drawn by now
            page.screenshot(path=str(shot), full_page=True)
            seen = page.evaluate(
                """() => {
                  const out = {};
                  const cells = [...document.querySelectorAll('.jp-CodeCell')];
                  cells.forEach((cell, i) => {
                    const areas = [...cell.querySelectorAll('.jp-OutputArea-output')];
                    out[i] = areas.map(a => ({
                      text: a.innerText,
                      height: a.getBoundingClientRect().height,
                      svgs: [...a.querySelectorAll('svg')].map(s => ({
                        cls: s.getAttribute('class') || '',
                        text: [...s.querySelectorAll('text')].map(t => t.textContent),
                        height: s.getBoundingClientRect().height,
                      })),
                      widget: a.classList.contains('jupyter-widgets'),
                    }));
                  });
                  return {cells: out, pwned: window.__pwned === 1,
                          scripts: [...document.querySelectorAll('script')]
                            .filter(s => s.textContent.includes('__pwned')).length};
                }"""
            )
        finally:
            browser.close()
    seen["blocked"] = blocked
    return seen


def assert_static_views(seen: dict[str, Any]) -> None:
    cells = seen["cells"]
    order = list(CELLS)
    for i, areas in cells.items():
        for area in areas:
            assert area["height"] > 5 and (area["text"].strip() or area["svgs"]), (
                f"blank output area in cell {order[int(i)]}"
            )
    graph = cells[str(order.index("graph"))]
    [picture] = [s for a in graph for s in a["svgs"] if "wistro-graph-svg" in s["cls"]]
    assert picture["height"] > 20
    words = " ".join(picture["text"])
    for step in STEPS:
        assert step in words, (step, picture["text"])
    trace = cells[str(order.index("trace"))]
    [waterfall] = [s for a in trace for s in a["svgs"] if "wistro-trace-svg" in s["cls"]]
    for step in STEPS:  # long names are cut at 30 characters (the full one is in the tooltip)
        assert any(
            t == step or (t.endswith("…") and step.startswith(t[:-1])) for t in waterfall["text"]
        )
    rundiff = " ".join(a["text"] for a in cells[str(order.index("rundiff"))])
    assert "before" in rundiff and "after" in rundiff and "Steps side by side" in rundiff
    assert "regressed" in rundiff
    assert not any(a["widget"] for areas in cells.values() for a in areas)
    assert not seen["pwned"] and seen["scripts"] == 0  # the step name stayed text


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no Chromium at /usr/bin/chromium")
def test_wistro_html_export_shows_every_widget_offline(
    executed: tuple[Path, nbformat.NotebookNode], tmp_path: Path
) -> None:
    """``jupyter nbconvert --to wistro-html`` (here by the class's import path: the entry point
    needs the package installed again) on the notebook as nbclient saved it."""
    path, _ = executed
    html = nbconvert(path, tmp_path / "out", "--to", "wistro_jupyter.export.WistroHTMLExporter")
    text = html.read_text(encoding="utf-8")
    assert STATE_MIME not in text and "widget-view+json" not in text
    shot = tmp_path / "export-offline.png"
    seen = open_offline(html, shot)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "export-offline.png")
    assert_static_views(seen)


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no Chromium at /usr/bin/chromium")
def test_plain_html_export_shows_every_widget_offline_without_saved_widget_state(
    executed: tuple[Path, nbformat.NotebookNode], tmp_path: Path
) -> None:
    """The bare ``jupyter nbconvert --to html``, on the notebook saved without widget state
    (JupyterLab's default; nbclient's ``store_widget_state=False``)."""
    _, nb = executed
    plain = nbformat.from_dict(nb)
    del plain.metadata["widgets"]
    saved = tmp_path / "plain.ipynb"
    nbformat.write(plain, saved)
    html = nbconvert(saved, tmp_path / "out", "--to", "html")
    assert_static_views(open_offline(html, tmp_path / "plain.png"))


def test_the_wistro_html_exporter_is_an_nbconvert_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    exporters = project["project"]["entry-points"]["nbconvert.exporters"]
    assert exporters["wistro-html"] == "wistro_jupyter.export:WistroHTMLExporter"
    assert WistroHTMLExporter().file_extension == ".html"


# ---------------------------------------------------------------- the SVG layouts

GRAPH: dict[str, Any] = {
    "nodes": [
        {"id": "api:0", "label": "POST /orders", "kind": "trigger"},
        {"id": "step:Validate", "label": "Validate", "kind": "step"},
        {"id": f"step:{EVIL}", "label": EVIL, "kind": "step"},
        {"id": "step:Review", "label": "Review & <b>", "kind": "noop"},
        {"id": "step:Price", "label": "Price", "kind": "step"},
        {"id": "end:order.priced", "label": "order.priced", "kind": "topic"},
    ],
    "edges": [
        {"source": "api:0", "target": "step:Validate", "label": "order.placed"},
        {"source": "step:Validate", "target": f"step:{EVIL}", "label": "a<b>&c"},
        {"source": f"step:{EVIL}", "target": "step:Review", "label": "x", "virtual": True},
        {"source": "step:Review", "target": "step:Validate", "label": "again"},  # a cycle
        {"source": f"step:{EVIL}", "target": "step:Price", "label": "ok", "conditional": True},
        {"source": "step:Price", "target": "end:order.priced", "label": "order.priced"},
    ],
}


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # well-formed XML: every label escaped
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_graph_svg_without_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot
    assert shutil.which("dot") is None
    svg = graph_svg(GRAPH)
    assert 'data-layout="layered"' in svg
    assert "<script" not in svg and "<b>" not in svg
    texts = svg_texts(svg)
    for label in ["POST /orders", "Validate", EVIL, "Review & <b>", "Price", "a<b>&c"]:
        assert label in texts
    assert graph_svg(GRAPH) == svg == layered_svg(GRAPH)  # deterministic
    counted = layered_svg(GRAPH, {"step:Price": {"deliveries": 3, "errors": 1}})
    assert "3 runs · 1 err" in svg_texts(counted)
    assert svg_texts(layered_svg({"nodes": [], "edges": []})) == []


def test_graph_svg_layers_follow_the_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    svg = layered_svg(GRAPH)
    root = ET.fromstring(svg)
    x: dict[str, float] = {}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        if "wistro-node" in (g.get("class") or ""):
            shape = next(iter(g.findall("*")[1:]))
            x[g.get("data-id") or ""] = float(
                shape.get("x") or shape.get("cx") or shape.get("points", "0,0").split(",")[0]
            )
    order = ["api:0", "step:Validate", f"step:{EVIL}", "step:Price", "end:order.priced"]
    assert [x[n] for n in order] == sorted(x[n] for n in order)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graph_svg_with_graphviz() -> None:
    svg = graph_svg(GRAPH)
    assert 'data-layout="graphviz"' in svg and svg.startswith("<svg")
    assert "<script" not in svg and "<!--" not in svg
    texts = svg_texts(svg)
    for label in ["POST /orders", "Validate", EVIL, "Review & <b>", "Price", "a<b>&c"]:
        assert label in texts
    assert graph_svg(GRAPH, graphviz=False) == layered_svg(GRAPH)


def test_trace_svg_nests_spans_by_cause() -> None:
    trace = {
        "run": {"start": 10.0, "end": 10.05},
        "spans": [
            {
                "id": "c",
                "step": "Child",
                "parent_span_id": "a",
                "start": 10.02,
                "end": 10.03,
                "status": "error",
                "duration_ms": 10.0,
            },
            {
                "id": "a",
                "step": EVIL,
                "start": 10.0,
                "end": 10.01,
                "status": "ok",
                "duration_ms": 10.0,
            },
            {
                "id": "g",
                "step": "Grandchild",
                "parent_span_id": "c",
                "start": 10.04,
                "end": None,
                "status": "running",
                "duration_ms": None,
            },
            {
                "id": "b",
                "step": "Other root",
                "parent_span_id": "gone",
                "start": 10.001,
                "end": 10.002,
                "status": "ok",
                "duration_ms": 1.0,
            },
        ],
    }
    svg = trace_svg(trace)
    assert "<script" not in svg
    root = ET.fromstring(svg)
    rows = [
        g
        for g in root.iter("{http://www.w3.org/2000/svg}g")
        if "wistro-span" in (g.get("class") or "")
    ]
    assert [g.get("data-step") for g in rows] == [EVIL, "Child", "Grandchild", "Other root"]
    indent = [float(g.find("{http://www.w3.org/2000/svg}text").get("x")) for g in rows]  # type: ignore[union-attr]
    assert indent[0] < indent[1] < indent[2] and indent[3] == indent[0]
    assert trace_svg({"run": {}, "spans": []}) == ""


def big_graph(flows: int = 50, per: int = 100) -> dict[str, Any]:
    """``flows`` chains of ``per`` steps, a topic at the end of each, one edge across flows."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for f in range(flows):
        for i in range(per):
            nodes.append(
                {
                    "id": f"step:F{f} {i}",
                    "label": f"F{f} {i}",
                    "kind": "step",
                    "flows": [f"f{f:02d}"],
                }
            )
            if i:
                edges.append(
                    {"source": f"step:F{f} {i - 1}", "target": f"step:F{f} {i}", "label": "t"}
                )
        nodes.append({"id": f"end:{f}", "label": f"t{f}", "kind": "topic", "flows": []})
        edges.append({"source": f"step:F{f} {per - 1}", "target": f"end:{f}", "label": "end"})
    edges.append({"source": "step:F0 1", "target": "step:F1 2", "label": "cross"})
    return {"nodes": nodes, "edges": edges}


def test_static_html_of_a_large_graph_is_small() -> None:
    """Over 400 nodes the static fallback (what JupyterLab's table of contents and an export
    read) draws the flows as one box each and caps its tables at 200 rows."""
    from wistro_jupyter.reprs import flow_clusters, graph_html

    graph = big_graph()
    clusters = flow_clusters(graph)
    assert len(clusters["nodes"]) == 50
    assert clusters["nodes"][0]["label"] == "f00 (101 nodes)"  # its topic goes with it
    assert clusters["edges"] == [{"source": "flow:f00", "target": "flow:f01", "label": "1 edge"}]
    html = graph_html(graph)
    assert len(html) < 300_000, len(html)
    assert "5050 nodes: the picture shows the 50 flows" in html
    assert "… and 4850 more" in html and "… and 4801 more" in html  # nodes, edges
    assert html.count("<tr>") == 2 * (1 + 200 + 1)
    svg = html[html.index("<svg") : html.index("</svg>") + 6]
    texts = svg_texts(svg)
    assert any("f07 (101 nodes)" in t for t in texts)
    assert not any(t == "F7 3" for t in texts)  # no step drawn
    # small graphs: every node, no note
    small = graph_html(big_graph(2, 5))
    assert "the picture shows" not in small and "more</i>" not in small
