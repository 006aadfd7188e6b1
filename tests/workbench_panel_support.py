"""Helpers of tests/test_workbench_panel.py: a real JupyterLab on loopback (its Jupyter folders in
a temp dir, a kernelspec of this venv's Python, a known token), a real ``wistro dev`` next to it,
and what the tests do in the page through Playwright (the command palette, the kernel, waits).

Every start and every wait has a timeout; every process started here is stopped by its fixture.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab_support import (
    free_port,
    lab_command,
    wait_for_lab,
    write_lab_settings,
)
from process_support import Process

if TYPE_CHECKING:
    from playwright.sync_api import Page

KERNEL_NAME = "wistro-workbench-tests"
TIMEOUT_S = 60.0
NOTEBOOK = "workbench.ipynb"


def jupyter_env(base: Path) -> dict[str, str]:
    """Jupyter's and IPython's folders under ``base`` (nothing of the user's is read or
    written), with a kernelspec of this venv's Python and JupyterLab's user settings of the
    tests (no windowing, no news)."""
    env = {
        "JUPYTER_PATH": str(base / "path"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "IPYTHONDIR": str(base / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    spec = base / "path" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "wistro workbench tests",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    write_lab_settings(base / "config")
    return env


def write_notebook(folder: Path) -> Path:
    """A notebook whose first cell loads the extension (the project of its folder)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext wistro_jupyter")]
    nb.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "wistro workbench tests",
        "language": "python",
    }
    path = folder / NOTEBOOK
    nbformat.write(nb, path)
    return path


def start_lab(root: Path, env: dict[str, str], log: Path) -> tuple[Process, str, str]:
    """``jupyter lab`` serving ``root`` on a free loopback port with a known token; returns the
    process, the base URL and the token once ``/api/status`` answers. The lab extension and the
    server extension are the installed ones (nothing is enabled here)."""
    token, port = secrets.token_hex(16), free_port()
    # window.jupyterapp: the tests ask the kernel through it
    cmd = lab_command(root, token, port, KERNEL_NAME, "--LabApp.expose_app_in_browser=True")
    proc = Process(cmd, root, {**os.environ, **env}, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_lab(base, token, proc.proc.poll, proc.tail, TIMEOUT_S)
    except AssertionError:
        proc.stop()
        raise
    return proc, base, token


def start_session(base: str, token: str, path: str) -> None:
    """The notebook's kernel session, started through the REST API (the page joins it)."""
    body = json.dumps(
        {"path": path, "type": "notebook", "name": path, "kernel": {"name": KERNEL_NAME}}
    ).encode()
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"{base}/api/sessions", body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as r:
        session = json.load(r)
    assert session["kernel"]["name"] == KERNEL_NAME, session


def api_get(base: str, token: str, path: str) -> Any:
    request = urllib.request.Request(f"{base}/{path}", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def start_dev(root: Path, log: Path) -> Process:
    """``wistro dev --port 0`` of the project at ``root``; returns once it serves HTTP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}
    dev = Process([sys.executable, "-m", "wistro", "dev", "--port", "0"], root, env, log)
    dev.wait_for(r"^http: (\S+)")
    return dev


# ---------------------------------------------------------------- in the page

EXECUTE_JS = """async (code) => {
  const panel = [...window.jupyterapp.shell.widgets('main')]
    .find(w => w.sessionContext && w.context && w.context.path.endsWith('.ipynb'));
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, store_history: false});
  const out = [];
  future.onIOPub = (msg) => {
    const c = msg.content;
    if (msg.header.msg_type === 'stream') out.push(c.text);
    else if (msg.header.msg_type === 'execute_result' || msg.header.msg_type === 'display_data')
      out.push(c.data['text/plain'] || '');
    else if (msg.header.msg_type === 'error') out.push('ERROR ' + c.ename + ': ' + c.evalue);
  };
  const reply = await future.done;
  return {status: reply.content.status, output: out.join('')};
}"""


def execute(page: Page, code: str, timeout_s: float = 30) -> str:
    """Runs ``code`` in the notebook's kernel (as a cell would, without adding one to the
    notebook); returns its output (stdout, results) and fails on an error."""
    page.set_default_timeout(timeout_s * 1000)
    result: dict[str, str] = page.evaluate(EXECUTE_JS, code)
    assert result["status"] == "ok", result
    return result["output"]


def wait_for_kernel_idle(page: Page, timeout_s: float = 60) -> None:
    """The notebook is connected to the test's kernel and it is idle."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
            .some(e => /wistro workbench tests \\| Idle/.test(e.textContent))""",
        timeout=timeout_s * 1000,
    )


def run_command_from_palette(page: Page, label: str) -> None:
    """Opens the command palette (Ctrl+Shift+C), types ``label`` and runs the match."""
    page.locator(".jp-Notebook").first.click(timeout=10_000)
    page.keyboard.press("Control+Shift+C")
    search = page.locator(".lm-CommandPalette-input")
    search.wait_for(timeout=10_000)
    search.fill(label)
    item = page.locator(".lm-CommandPalette-item", has_text=label).first
    item.wait_for(timeout=10_000)
    item.click(timeout=10_000)


def widen_right_area(page: Page, width: int) -> None:
    """Drags the handle between the main area and the right area so that the right area is
    ``width`` px wide (as a user does to read a side panel)."""
    box = page.evaluate(
        """() => {
          const hs = [...document.querySelectorAll('#jp-main-split-panel > .lm-SplitPanel-handle')]
            .filter(h => !h.classList.contains('lm-mod-hidden'))
            .map(h => h.getBoundingClientRect()).filter(r => r.height > 0);
          hs.sort((a, b) => b.x - a.x);
          const r = hs[0];
          return r ? {x: r.x + r.width / 2, y: r.y + r.height / 2} : null;
        }"""
    )
    if not box:
        return
    viewport = page.viewport_size or {"width": 1500}
    page.mouse.move(box["x"], box["y"])
    page.mouse.down()
    page.mouse.move(viewport["width"] - width - 33, box["y"], steps=5)
    page.mouse.up()
    page.wait_for_timeout(300)


def screenshot(page: Page, folder: Path, name: str, selector: str | None = None) -> Path:
    """The window (or the element of ``selector``) as a PNG in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.wait_for_timeout(300)  # fonts drawn, the last poll rendered
    if selector is None:
        page.screenshot(path=str(path), timeout=10_000)
    else:
        page.locator(selector).first.screenshot(path=str(path), timeout=10_000)
    return path
