"""The real thing: ``jupyter lab`` on loopback, headless Debian Chromium driven by Playwright opens
the quickstart notebook, runs every cell, and the graph's SVG nodes and the trace's span rows are
in the page. A screenshot is saved to the test's tmp_path and to ``tests/notebooks/artifacts/``.

Needs the Python ``playwright`` package (its driver is in the wheel; the browser is the system
Chromium at ``/usr/bin/chromium``: a test tool's own browser download is never used), the built
widget bundle, and JupyterLab 4 with anywidget's labextension (shipped in anywidget's wheel).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest
from lab_support import (
    CHROMIUM,
    free_port,
    lab_command,
    launch_chromium,
    wait_for_lab,
    write_lab_settings,
)
from notebook_support import KERNEL_NAME, NOTEBOOKS

pytest.importorskip("jupyterlab")
sync_api = pytest.importorskip("playwright.sync_api")
if TYPE_CHECKING:
    from playwright.sync_api import Page

BUNDLE = Path(__file__).resolve().parents[2] / "wistro_jupyter" / "static" / "widgets.js"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# the checkout flow: an api step, two event steps, a no-op (node ids are `step:<name>`)
CHECKOUT_NODES = {"step:Place order", "step:Charge card", "step:Send receipt", "step:Fraud review"}
BUDGET_S = 110.0  # server start, page, run all, assertions (+ at most 10 s to stop the server)

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(not BUNDLE.exists(), reason="the widget bundle is not built"),
]


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left_ms(self, cap_s: float | None = None) -> float:
        left = max(self.end - time.monotonic(), 0.5)
        return 1000 * (min(left, cap_s) if cap_s else left)


def lab_settings(config_dir: Path) -> None:
    """The tests' JupyterLab user settings (``lab_support.write_lab_settings``)."""
    write_lab_settings(config_dir)


@pytest.fixture
def lab(jupyter_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path, Deadline]]:
    """A JupyterLab server on loopback serving a temp folder with the quickstart notebook (its
    kernelspec set to this venv's Python). Yields ``(base_url_with_token, log_file, deadline)``
    (the time budget of the whole test starts here); the server is stopped at the end whatever
    happens."""
    budget = Deadline(BUDGET_S)
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    nb.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "wistro",
        "language": "python",
    }
    nbformat.write(nb, root / "01_quickstart.ipynb")
    lab_settings(Path(jupyter_env["JUPYTER_CONFIG_DIR"]))
    token, port = secrets.token_hex(16), free_port()
    log = tmp_path / "jupyterlab.log"
    env = {**os.environ, **jupyter_env}
    cmd = lab_command(root, token, port, KERNEL_NAME)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_lab(
                base,
                token,
                proc.poll,
                lambda: log.read_text()[-3000:],
                min(45.0, budget.left_ms() / 1000),
            )
        except AssertionError as e:
            pytest.fail(str(e))
        start_session(base, token, "01_quickstart.ipynb")
        yield f"{base}?token={token}", log, budget
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_quickstart_in_jupyterlab_with_headless_chromium(
    lab: tuple[str, Path, Deadline], tmp_path: Path
) -> None:
    url, log, deadline = lab
    base, token = url.split("?token=")
    console: list[str] = []
    dialogs: list[str] = []  # texts of dialogs JupyterLab showed while the cells ran
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p, tmp_path / "chromium-profile")
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(
                f"{base}/lab/tree/01_quickstart.ipynb?token={token}",
                timeout=deadline.left_ms(40),
            )
            # the notebook is open and its kernel started
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=deadline.left_ms(40))
            page.wait_for_selector(
                ".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName", timeout=deadline.left_ms(20)
            )
            wait_for_kernel_idle(page, deadline)
            page.wait_for_timeout(1000)  # a late "Select Kernel" dialog shows up by now
            accept_kernel_dialog(page)

            # Run -> Run All Cells, as a user does. Every code cell has run when each prompt
            # shows an execution count and none is busy ([*]). On a loaded machine the first
            # request can be lost while the kernel connection settles: nothing starts, the
            # kernel stays idle; then it is asked again (at most 3 times).
            run_all(page, deadline)
            asked, last_ask = 1, time.monotonic()
            while True:
                prompts = page.eval_on_selector_all(
                    ".jp-CodeCell .jp-InputArea-prompt", "els => els.map(e => e.textContent.trim())"
                )
                if prompts and all(re.fullmatch(r"\[\d+\]:", t) for t in prompts):
                    break
                assert deadline.left_ms() > 600, f"not all cells ran in time: {prompts} {dialogs}"
                dialog = page.locator(".jp-Dialog")
                if dialog.count() and dialog.first.is_visible():
                    text = dialog.first.inner_text(timeout=2000)
                    if text not in dialogs:
                        dialogs.append(text)
                started = any(t != "[ ]:" and t for t in prompts)
                if not started:  # a kernel question before anything ran: answer, ask again
                    accept_kernel_dialog(page)
                if not started and time.monotonic() - last_ask > 8 and asked < 3:
                    run_all(page, deadline)
                    asked, last_ask = asked + 1, time.monotonic()
                page.wait_for_timeout(250)
            wait_for_kernel_idle(page, deadline)
            stderr = page.eval_on_selector_all(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                "els => els.map(e => e.textContent)",
            )
            assert not [t for t in stderr if "Traceback" in t or "Error" in t], stderr

            # the graph widget: one SVG <g class="node"> per node, the checkout steps among them
            page.wait_for_selector("svg g.node[data-node-id]", timeout=deadline.left_ms(30))
            ids = set(
                page.eval_on_selector_all(
                    "svg g.node[data-node-id]", "els => els.map(e => e.dataset.nodeId)"
                )
            )
            assert ids == CHECKOUT_NODES, ids
            # the trace views: span rows of the runs (the ok one and the failed one)
            page.wait_for_selector(".span-row[data-step]", timeout=deadline.left_ms(20))
            steps = set(
                page.eval_on_selector_all(
                    ".span-row[data-step]", "els => els.map(e => e.dataset.step)"
                )
            )
            assert {"Charge card", "Reserve stock", "Send receipt", "Pack order"} <= steps
            statuses = set(
                page.eval_on_selector_all(
                    ".span-row[data-step]", "els => els.map(e => e.dataset.status)"
                )
            )
            assert {"ok", "error"} <= statuses, statuses

            shots = screenshots(page, tmp_path)
            for shot in shots:
                assert shot.stat().st_size > 10_000
        except Exception:
            with_context = f"\nbrowser console:\n{chr(10).join(console[-40:])}\n"
            with_context += f"server log:\n{log.read_text()[-3000:]}"
            print(with_context)
            with_failure = tmp_path / "failure.png"
            try:
                page.screenshot(path=str(with_failure), full_page=False, timeout=5000)
                copy_artifact(with_failure, "jupyterlab-failure.png")
            except Exception:
                pass
            raise
        finally:
            browser.close()


def wait_for_kernel_idle(page: Page, deadline: Deadline) -> None:
    """The notebook is connected to the test's kernel and that kernel is idle: the status bar
    says "wistro notebooks | Idle" (before the connection it says "No Kernel", "Connecting"...,
    and running a cell then would ask for a kernel), and the toolbar's execution indicator, when
    there is one, says idle too."""
    page.wait_for_function(
        """() => {
          const bar = [...document.querySelectorAll('.jp-StatusBar-TextItem')]
            .some(e => /wistro notebooks \\| Idle/.test(e.textContent));
          const ind = document.querySelector('.jp-NotebookPanel-toolbar [data-status]');
          return bar && (!ind || ind.getAttribute('data-status') === 'idle');
        }""",
        timeout=deadline.left_ms(60),
    )


def start_session(base: str, token: str, path: str) -> None:
    """Start the notebook's kernel session through the REST API (what JupyterLab does on
    opening it): the page then joins this session and never has to choose a kernel while it
    loads (on a busy machine JupyterLab could otherwise ask with a "Select Kernel" dialog, or
    start a second kernel)."""
    body = json.dumps(
        {"path": path, "type": "notebook", "name": path, "kernel": {"name": KERNEL_NAME}}
    ).encode()
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"{base}/api/sessions", body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as r:
        session = json.load(r)
    assert session["kernel"]["name"] == KERNEL_NAME, session


def run_all(page: Page, deadline: Deadline) -> None:
    """Run -> Run All Cells from the menu bar."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click(timeout=deadline.left_ms(10))
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").filter(
        has_not_text="Restart"
    ).click(timeout=deadline.left_ms(10))


def accept_kernel_dialog(page: Page) -> None:
    """JupyterLab sometimes asks which kernel to use although the notebook names one (a race
    with loading the kernelspecs): answer with the test's kernel."""
    dialog = page.locator(".jp-Dialog")
    if not dialog.count() or not dialog.first.is_visible():
        return
    if "Select Kernel" not in dialog.first.inner_text(timeout=2000):
        return
    select = dialog.locator("select")
    if select.count():
        with contextlib.suppress(Exception):
            select.first.select_option(label="wistro notebooks", timeout=2000)
    dialog.locator("button.jp-mod-accept").first.click(timeout=5000)
    page.wait_for_timeout(500)


def copy_artifact(path: Path, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    shutil.copyfile(path, target)
    return target


def screenshots(page: Page, tmp_path: Path) -> list[Path]:
    """The graph and the failed run's trace view, scrolled into view, as two PNGs."""
    out: list[Path] = []
    targets = {
        "jupyterlab-graph.png": "svg g.node[data-node-id]",
        "jupyterlab-trace.png": ".span-row[data-status='error']",
    }
    for name, selector in targets.items():
        page.locator(selector).first.scroll_into_view_if_needed(timeout=5000)
        page.wait_for_timeout(300)  # the scroll settles, fonts are drawn
        path = tmp_path / name
        page.screenshot(path=str(path), timeout=10_000)
        copy_artifact(path, name)
        out.append(path)
    return out
