"""The FlowGraph of a 5,000-step project in a real JupyterLab (headless Debian Chromium driven by
Playwright): it opens with its flows collapsed, search finds a step, Enter focuses on its
neighbourhood (2 hops), labels are legible there (font size x zoom >= 11 px), the longest
main-thread task in focus mode stays <= 200 ms (PerformanceObserver "longtask"; the overview's first draw is a figure), and the
emit form of a topic node and of a step sends events whose runs light up and show in the counts.
Then the same notebook in Notebook 7 loads with no page error. Screenshots go to tmp_path and
``tests/notebooks/artifacts/``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from lab_support import CHROMIUM, free_port, lab_command, launch_chromium, wait_for_lab
from notebook_support import KERNEL_NAME
from test_jupyterlab_browser import (
    BUNDLE,
    Deadline,
    accept_kernel_dialog,
    copy_artifact,
    lab_settings,
    start_session,
    wait_for_kernel_idle,
)

pytest.importorskip("jupyterlab")
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(not BUNDLE.exists(), reason="the widget bundle is not built"),
]

FLOWS, PER_FLOW = 50, 100  # 5,000 steps
BUDGET_S = 240.0
LONGEST_TASK_MS = 200.0
MIN_LABEL_PX = 11.0

# Every long task (> 50 ms) of the page from the moment the observer starts, and the page errors.
INIT_SCRIPT = """
window.__longtasks = [];
window.__watchTasks = () => {
  window.__longtasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longtasks.push(e.duration);
  }).observe({ type: "longtask", buffered: false });
};
"""


def make_project(root: Path, flows: int = FLOWS, per: int = PER_FLOW) -> None:
    """``flows`` flows of ``per`` steps in a chain each (step i receives what step i-1 emits)."""
    (root / "src").mkdir(parents=True)
    (root / "wistro.yml").write_text("name: big\nsrc: src\nstate: {adapter: memory}\n")
    for f in range(flows):
        folder = root / "src" / f"flow{f:02d}"
        folder.mkdir()
        for i in range(per):
            sub = f"f{f:02d}.t{i - 1:03d}" if i else f"f{f:02d}.start"
            emits = f"f{f:02d}.t{i:03d}"
            (folder / f"s{i:03d}.step.py").write_text(
                f'config = {{"name": "F{f:02d} step {i:03d}", "subscribes": ["{sub}"], '
                f'"emits": ["{emits}"], "flows": ["flow{f:02d}"]}}\n\n\n'
                "async def handler(data, ctx):\n"
                f'    await ctx.emit("{emits}", data)\n'
            )


@pytest.fixture
def server(jupyter_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str, Deadline]]:
    """``jupyter lab`` (which serves Notebook 7 too) on loopback, in a folder with the generated
    project and a notebook showing its graph."""
    budget = Deadline(BUDGET_S)
    root = tmp_path / "root"
    make_project(root)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext wistro_jupyter"),
        nbformat.v4.new_code_cell("graph = %wistro graph\ngraph"),
    ]
    nb.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "wistro",
        "language": "python",
    }
    nbformat.write(nb, root / "big.ipynb")
    lab_settings(Path(jupyter_env["JUPYTER_CONFIG_DIR"]))
    token, port = secrets.token_hex(16), free_port()
    log = tmp_path / "jupyterlab.log"
    cmd = lab_command(root, token, port, KERNEL_NAME)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env={**os.environ, **jupyter_env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_lab(base, token, proc.poll, lambda: log.read_text()[-3000:], 45.0)
        start_session(base, token, "big.ipynb")
        yield base, token, budget
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def run_all_cells(page: Any, deadline: Deadline) -> None:
    page.locator(".jp-Notebook .jp-Cell").first.click(timeout=deadline.left_ms(10))
    page.keyboard.press("Escape")
    for _ in range(2):
        page.keyboard.press("Shift+Enter")
        page.wait_for_timeout(150)


def click_node(page: Any, selector: str) -> None:
    """A click on a node's label (the details panel overlays part of the graph)."""
    page.eval_on_selector(
        f"{selector} text",
        "t => t.dispatchEvent(new MouseEvent('click', {bubbles: true}))",
    )


def shot(page: Any, tmp_path: Path, name: str, selector: str = ".wistro-flowgraph") -> Path:
    path = tmp_path / name
    if selector:
        page.locator(selector).first.screenshot(path=str(path), timeout=10_000)
    else:
        page.screenshot(path=str(path), timeout=10_000)
    copy_artifact(path, name)
    return path


WISTRO_EXTENSIONS = {
    "wistro-workbench": True,
    "anywidget": True,
    "@jupyter-widgets/jupyterlab-manager": True,
}


def open_notebook7(
    browser: Any,
    base: str,
    token: str,
    deadline: Deadline,
    tmp_path: Path,
    name: str,
    check_disabled: bool = False,
) -> list[str]:
    """Opens big.ipynb in Notebook 7 in a new page; returns its page errors (message + stack)."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
    try:
        page.goto(f"{base}/notebooks/big.ipynb?token={token}", timeout=deadline.left_ms(60))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=deadline.left_ms(60))
        if check_disabled:
            disabled = page.evaluate(
                "() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
                ".disabledExtensions"
            )
            assert set(WISTRO_EXTENSIONS) <= set(disabled), disabled
        page.wait_for_timeout(4000)
        shot(page, tmp_path, name, "")
    finally:
        page.close()
    return errors


def test_a_5000_step_graph_in_jupyterlab_and_notebook_7(
    server: tuple[str, str, Deadline], jupyter_env: dict[str, str], tmp_path: Path
) -> None:
    base, token, deadline = server
    errors: list[str] = []
    console: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p, tmp_path / "chromium-profile")
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.add_init_script(INIT_SCRIPT)
            page.on("pageerror", lambda e: errors.append(f"lab: {e}"))
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(f"{base}/lab/tree/big.ipynb?token={token}", timeout=deadline.left_ms(60))
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=deadline.left_ms(60))
            wait_for_kernel_idle(page, deadline)
            page.wait_for_timeout(800)
            accept_kernel_dialog(page)
            page.evaluate("window.__watchTasks()")  # JupyterLab has loaded: the graph from here
            run_all_cells(page, deadline)
            # the overview: one node per flow, collapsed
            page.wait_for_selector(
                'g.node[data-node-id="flow:flow07"]', timeout=deadline.left_ms(90)
            )
            info = page.locator(".wistro-fg-info").inner_text()
            assert info == f"{FLOWS} shown of {FLOWS * PER_FLOW + FLOWS} nodes", info
            page.wait_for_timeout(500)
            shot(page, tmp_path, "flowgraph-overview.png")
            # the collapsed flows are packed in rows fitting the view, legible at the default
            # zoom (not one column of 50 tiny boxes)
            boxes = page.eval_on_selector_all(
                'g.node[data-node-id^="flow:"]',
                """els => els.map(g => {
                  const r = g.getBoundingClientRect();
                  const t = g.querySelector('text');
                  return {x: r.x, y: r.y, w: r.width, h: r.height,
                          px: parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a};
                })""",
            )
            assert len(boxes) == FLOWS
            overview_px = min(b["px"] for b in boxes)
            rows = len({round(b["y"]) for b in boxes})
            columns = len({round(b["x"]) for b in boxes})
            assert overview_px >= MIN_LABEL_PX, overview_px
            assert columns >= 4 and rows <= FLOWS / 4, (rows, columns)
            view = page.locator(".wistro-fg-view").bounding_box()
            assert view is not None
            for b in boxes:  # all of them in view at the default zoom
                assert view["x"] - 1 <= b["x"] and b["x"] + b["w"] <= view["x"] + view["width"] + 1
                assert view["y"] - 1 <= b["y"] and b["y"] + b["h"] <= view["y"] + view["height"] + 1

            # the budget is for focus mode (the measure): tasks counted from here; the
            # overview's first draw is kept as a figure
            overview_tasks = page.evaluate("window.__longtasks") or [0.0]
            page.evaluate("window.__watchTasks()")
            # search, Enter: focus on the step's neighbourhood (2 hops)
            search = page.locator("input.wistro-search")
            search.fill("F07 step 097")
            assert page.locator(".wistro-match-info").inner_text() == "1 match"
            assert page.locator('g.node[data-node-id="flow:flow07"].match').count() == 1
            search.press("Enter")
            target = 'g.node[data-node-id="step:F07 step 097"]'
            page.wait_for_selector(target, timeout=deadline.left_ms(30))
            drawn = set(
                page.eval_on_selector_all(
                    "g.node[data-node-id]", "els => els.map(e => e.dataset.nodeId)"
                )
            )
            assert drawn == {
                "step:F07 step 095",
                "step:F07 step 096",
                "step:F07 step 097",
                "step:F07 step 098",
                "step:F07 step 099",
            }, drawn
            assert page.locator("input.wistro-hops").input_value() == "2"
            page.wait_for_timeout(600)
            label_px = page.eval_on_selector(
                f"{target} text",
                "t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a",
            )
            assert label_px >= MIN_LABEL_PX, label_px
            longest = max(page.evaluate("window.__longtasks") or [0.0])
            print(f"label {label_px:.1f} px; longest main-thread task {longest:.0f} ms")
            (tmp_path / "figures.txt").write_text(
                f"label_px={label_px:.2f}\noverview_label_px={overview_px:.2f}\n"
                f"overview_grid={rows}x{columns}\nlongest_task_ms={longest:.1f}\n"
                f"overview_longest_task_ms={max(overview_tasks):.1f}\n"
            )
            copy_artifact(tmp_path / "figures.txt", "flowgraph-figures.txt")
            assert longest <= LONGEST_TASK_MS, page.evaluate("window.__longtasks")
            shot(page, tmp_path, "flowgraph-focus.png")

            # more hops: a real fill replaces the value; the end topic of the flow comes into view
            hops = page.locator("input.wistro-hops")
            hops.fill("3")
            assert hops.input_value() == "3"
            topic = 'g.node[data-node-id="end:f07.t099"]'
            page.wait_for_selector(topic, timeout=deadline.left_ms(30))
            assert page.locator("g.node[data-node-id]").count() == 7  # 094..099 + the topic
            assert hops.input_value() == "3"
            # the details panel is open (the search selected the step): a real click on its
            # close button closes it
            details = page.locator(".wistro-details")
            assert details.is_visible()
            page.locator(".wistro-details-close").click(timeout=deadline.left_ms(10))
            page.wait_for_timeout(800)  # the kernel's answer to the deselection comes back
            assert not details.is_visible()
            assert page.evaluate("() => !document.querySelector('g.node.selected')"), (
                "a node is still selected"
            )
            # emit on the end topic (any JSON)
            click_node(page, topic)
            form = page.locator(".wistro-details .wistro-emit")
            form.wait_for(timeout=deadline.left_ms(20))
            form.locator("textarea").fill('{"n": 1}')
            form.locator(".wistro-emit-send").click()
            page.wait_for_selector(".wistro-emit-status.ok", timeout=deadline.left_ms(20))
            assert "trace" in page.locator(".wistro-emit-status").inner_text()
            page.wait_for_selector(f"{topic}.lit", timeout=deadline.left_ms(20))
            page.wait_for_selector(
                f"{topic} .wistro-badge.deliveries", timeout=deadline.left_ms(20)
            )
            # a step's form: the run goes down the chain, lighting each step
            step = 'g.node[data-node-id="step:F07 step 096"]'
            click_node(page, step)
            form = page.locator(".wistro-details .wistro-emit")
            form.wait_for(timeout=deadline.left_ms(20))
            form.locator("textarea").fill('{"n": 2}')
            form.locator(".wistro-emit-send").click()
            for node in ("step:F07 step 096", "step:F07 step 098", "step:F07 step 099"):
                page.wait_for_selector(
                    f'g.node[data-node-id="{node}"].lit', timeout=deadline.left_ms(20)
                )
            page.wait_for_selector(
                'g.edge.lit[data-target="step:F07 step 098"]', timeout=deadline.left_ms(20)
            )
            page.wait_for_selector(f"{step} .wistro-badge.deliveries", timeout=deadline.left_ms(20))
            page.wait_for_timeout(300)
            shot(page, tmp_path, "flowgraph-lit.png")
            page.wait_for_timeout(3000)
            assert page.locator("g.node.lit").count() >= 4  # still lit after 3 s
            # the panel of the step that ran (its details refreshed by the run): its close button closes it
            assert details.is_visible()
            page.locator(".wistro-details-close").click(timeout=deadline.left_ms(10))
            page.wait_for_timeout(1500)
            assert not details.is_visible()
            assert page.evaluate("() => !document.querySelector('g.node.selected')")
            # a real click on a node opens it again, a real click on the close button closes it
            page.locator('g.node[data-node-id="step:F07 step 095"] text').click(
                timeout=deadline.left_ms(10)
            )
            details.wait_for(timeout=deadline.left_ms(10))
            page.wait_for_timeout(800)
            page.locator(".wistro-details-close").click(timeout=deadline.left_ms(10))
            page.wait_for_timeout(1500)
            assert not details.is_visible()
            assert not errors, errors
            assert not [c for c in console if "Deprecation Warning" in c], console

            # Notebook 7: the same notebook loads, its widget renders, no page error of ours.
            nb7_errors = open_notebook7(browser, base, token, deadline, tmp_path, "notebook7.png")
            # The same page with wistro's lab extensions (the Workbench panel, anywidget, the
            # widget manager) disabled, as `jupyter labextension disable` does: Notebook 7's
            # own errors (notebook_core.js) are there too, whatever wistro does.
            labconfig = Path(jupyter_env["JUPYTER_CONFIG_DIR"]) / "labconfig"
            labconfig.mkdir(parents=True, exist_ok=True)
            page_config = labconfig / "page_config.json"
            page_config.write_text(json.dumps({"disabledExtensions": WISTRO_EXTENSIONS}))
            try:
                without = open_notebook7(
                    browser,
                    base,
                    token,
                    deadline,
                    tmp_path,
                    "notebook7-without-wistro.png",
                    check_disabled=True,
                )
            finally:
                page_config.unlink()
            (tmp_path / "notebook7-errors.txt").write_text(
                "with wistro:\n"
                + "\n\n".join(nb7_errors)
                + "\n\nwith wistro's lab extensions disabled:\n"
                + "\n\n".join(without)
            )
            copy_artifact(tmp_path / "notebook7-errors.txt", "notebook7-errors.txt")
            # Errors thrown by our code: none (the widgets' ES module is imported from a blob:
            # URL, the Workbench extension's files are named wistro).
            ours = [e for e in nb7_errors if "blob:" in e or "wistro" in e.lower()]
            assert not ours, ours
            # Every other error is Notebook 7's own: it is thrown without wistro as well.
            baseline = {e.splitlines()[0] for e in without}
            extra = [e for e in nb7_errors if e.splitlines()[0] not in baseline]
            assert not extra, (extra, without)
        except Exception:
            print("\n".join(console[-40:]))
            with_failure = tmp_path / "failure.png"
            try:
                page.screenshot(path=str(with_failure), timeout=5000)
                copy_artifact(with_failure, "flowgraph-failure.png")
            except Exception:
                pass
            raise
        finally:
            browser.close()
