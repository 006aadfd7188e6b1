"""The Workbench panel in a real JupyterLab: ``jupyter lab`` on a free loopback port with a known
token, headless Debian Chromium through Playwright. One JupyterLab (and one page) for the module:
a folder with the shop project and a notebook that loads it (``%load_ext wistro_jupyter``), and a
second shop with a running ``wistro dev``.

- the lab extension is the installed one (``jupyter labextension list`` shows it; nothing is
  installed or enabled by the test);
- the command "Wistro: Open Workbench" opens the panel, which reads the notebook's kernel (the
  comm target ``wistro.workbench``): flows as the graph, steps, runs, traces nested by parent;
- a step's toggle changes the registry in the kernel (read back by a cell's code);
- the emit form checks its fields in the browser, sends the event, and the new run is listed;
- the source menu lists the running project (``/wistro/api/projects``) and reads it through the
  server.

Screenshots go to ``tests/artifacts/`` (git-ignored). Also: the panel's TypeScript type check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from lab_support import CHROMIUM, launch_chromium
from workbench_panel_support import (
    NOTEBOOK,
    Process,
    api_get,
    execute,
    jupyter_env,
    run_command_from_palette,
    screenshot,
    start_dev,
    start_lab,
    start_session,
    wait_for_kernel_idle,
    widen_right_area,
    write_notebook,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = ROOT / "labextension" / "workbench"
BUILT = ROOT / "wistro_jupyter" / "labextension"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PANEL = "#wistro-workbench"
CHECKOUT_NODES = {"step:Place order", "step:Charge card", "step:Send receipt", "step:Fraud review"}


@dataclass
class Lab:
    base: str
    token: str
    page: Page
    server: Process
    env: dict[str, str]
    shop: Path
    console: list[str]


def npm(*args: str) -> subprocess.CompletedProcess[str]:
    npm_bin = shutil.which("npm")
    assert npm_bin, "npm is needed (scripts/setup.sh installs it)"
    return subprocess.run(
        [npm_bin, *args], cwd=WORKBENCH, capture_output=True, text=True, timeout=600
    )


def test_panel_typescript_typechecks() -> None:
    """``tsc --noEmit`` (strict) of labextension/workbench, and of the FlowGraph sources it
    imports from labextension/src."""
    if not (WORKBENCH / "node_modules").is_dir():
        result = npm("ci", "--no-audit", "--no-fund")
        assert result.returncode == 0, result.stdout + result.stderr
    result = npm("run", "--silent", "typecheck")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return jupyter_env(tmp_path_factory.mktemp("jupyter-env"))


def test_the_extension_is_listed_from_the_installed_package(env: dict[str, str]) -> None:
    """With the user's Jupyter folders empty (temp dirs), ``jupyter labextension list`` finds
    wistro-workbench where the installed package put it (the venv's share/jupyter: the wheel's
    shared-data, or scripts/setup.sh's link for the editable install), enabled and OK; and the
    server extension is enabled by its installed config."""
    run_env = {**_os_environ(), **env}
    jupyter = [sys.executable, "-m", "jupyter"]
    listed = subprocess.run(
        [*jupyter, "labextension", "list"], env=run_env, capture_output=True, text=True, timeout=120
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    line = next((x for x in out.splitlines() if "wistro-workbench" in x), "")
    hint = "not installed: pip install . (or, for pip install -e ., run scripts/setup.sh)"
    assert "enabled" in line and "OK" in line, f"{hint}\n{out}"
    share = Path(sys.prefix) / "share" / "jupyter" / "labextensions"
    assert str(share) in out and (share / "wistro-workbench" / "package.json").is_file(), out
    servers = subprocess.run(
        [*jupyter, "server", "extension", "list"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", servers.stdout + servers.stderr)
    assert re.search(r"wistro_jupyter\s+enabled", out), f"{hint}\n{out}"


def _os_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}


@pytest.fixture(scope="module")
def lab(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab serving a folder with ``shop/`` (its notebook's kernel loads it) and
    ``devshop/`` (a running ``wistro dev``); the notebook open in Chromium, its kernel idle, the
    extension loaded in it. Everything is stopped at the end whatever happens."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    assert (BUILT / "package.json").is_file(), "the panel is not built: scripts/setup.sh"
    from wistro.tooling.scaffold import create_project

    tmp = tmp_path_factory.mktemp("workbench-lab")
    root = tmp / "root"
    shop, devshop = root / "shop", root / "devshop"
    create_project(shop)
    create_project(devshop)
    write_notebook(shop)
    dev = start_dev(devshop, tmp / "dev.log")
    server: Process | None = None
    console: list[str] = []
    try:
        server, base, token = start_lab(root, env, tmp / "jupyterlab.log")
        start_session(base, token, f"shop/{NOTEBOOK}")
        with sync_api.sync_playwright() as p:
            browser = launch_chromium(p, tmp / "chromium-profile", width=1500)
            try:
                page = browser.pages[0] if browser.pages else browser.new_page()
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                page.goto(f"{base}/lab/tree/shop/{NOTEBOOK}?token={token}", timeout=60_000)
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
                wait_for_kernel_idle(page)
                out = execute(page, "%load_ext wistro_jupyter")
                assert "wistro: loaded" in out, out
                yield Lab(base, token, page, server, env, shop, console)
            except Exception:
                print("browser console:\n" + "\n".join(console[-40:]))
                print("server log:\n" + server.tail())
                _failure_shot(browser.pages[0] if browser.pages else None)
                raise
            finally:
                browser.close()
    finally:
        if server is not None:
            server.stop()
        dev.stop()


def _failure_shot(page: Page | None) -> None:
    if page is None:
        return
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "workbench-failure.png"), timeout=5000)
    except Exception:
        pass


def _on_failure(lab: Lab) -> None:
    print("browser console:\n" + "\n".join(lab.console[-40:]))
    print("server log:\n" + lab.server.tail())
    _failure_shot(lab.page)


@pytest.fixture
def page(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The module's page; after a failed test, the console, the server log and a screenshot."""
    failed = request.session.testsfailed
    yield lab.page
    if request.session.testsfailed > failed:
        _on_failure(lab)


def open_panel(page: Page) -> None:
    if not page.locator(f"{PANEL}:visible").count():
        run_command_from_palette(page, "Wistro: Open Workbench")
    page.wait_for_selector(f"{PANEL}:visible", timeout=20_000)
    if (page.locator(PANEL).bounding_box() or {"width": 0})["width"] < 500:
        widen_right_area(page, 560)
    page.wait_for_function(
        """() => [...document.querySelectorAll('#wistro-workbench .wistro-wb-source option')]
            .some(o => o.selected && /^kernel of workbench\\.ipynb$/.test(o.textContent))""",
        timeout=20_000,
    )


def test_the_panel_lists_flows_steps_and_runs(lab: Lab, page: Page) -> None:
    open_panel(page)
    panel = page.locator(PANEL)
    # a run: an event emitted from the panel's form (the kernel runs it)
    panel.locator(".wistro-wb-emit-topic").select_option("order.placed")
    form = panel.locator(".wistro-wb-emit-form[data-topic='order.placed']")
    form.locator("input[name='order_id']").fill("A1")
    form.locator("input[name='amount_cents']").fill("1200")
    panel.locator(".wistro-wb-emit-send").click()
    # the graph: FlowGraph's renderer in the panel, with Graphviz's SVG
    page.wait_for_selector(f"{PANEL} svg g.node[data-node-id]", timeout=30_000)
    ids = set(
        page.eval_on_selector_all(
            f"{PANEL} svg g.node[data-node-id]", "els => els.map(e => e.dataset.nodeId)"
        )
    )
    assert ids >= CHECKOUT_NODES, ids
    flows = panel.locator(".wistro-wb-filter-flow option").all_inner_texts()
    assert {"any flow", "Checkout (checkout)"} <= set(flows), flows
    header = panel.locator(".wistro-wb-header-status").inner_text()
    assert "project shop" in header and "kernel of workbench.ipynb" in header, header
    # steps with their toggles
    steps = panel.locator(".wistro-wb-step-toggle")
    names = {steps.nth(i).get_attribute("data-step") for i in range(steps.count())}
    assert {"Charge card", "Send receipt", "Reserve stock"} <= names, names
    # runs: the emitted one, ok; opened: its spans nested by parent_id
    run = panel.locator(".wistro-wb-run[data-topic='order.placed'][data-status='ok']").first
    run.wait_for(timeout=20_000)
    run.click()
    tree = panel.locator(".wistro-wb-span-tree")
    tree.wait_for(timeout=20_000)
    nested = panel.locator(
        ".wistro-wb-span[data-step='Charge card'] > .wistro-wb-span-children"
        " > .wistro-wb-span[data-step='Send receipt']"
    )
    assert nested.count() == 1
    assert panel.locator(".wistro-wb-span[data-depth='0'][data-step='Reserve stock']").count()
    # logs tailed, state browsed
    page.wait_for_selector(f"{PANEL} .wistro-wb-log", timeout=20_000)
    assert "charging" in panel.locator(".wistro-wb-logs").inner_text()
    panel.locator(".wistro-wb-refresh").click()  # the state groups after the run
    group = panel.locator(".wistro-wb-state-group[data-group='orders']")
    group.wait_for(timeout=20_000)
    group.click()
    page.wait_for_function(
        """() => /"A1"/.test(document.querySelector('#wistro-workbench .wistro-wb-state-items')
            ?.textContent ?? '')""",
        timeout=20_000,
    )
    assert '"status": "charged"' in panel.locator(".wistro-wb-state-items").inner_text()
    assert not [c for c in lab.console if c.startswith("pageerror")], lab.console
    # screenshots: the graph and steps; the runs with the open trace
    shot = screenshot(page, ARTIFACTS, "workbench-panel.png")
    panel.locator("details[data-section='runs']").scroll_into_view_if_needed()
    trace_shot = screenshot(page, ARTIFACTS, "workbench-trace.png")
    assert shot.stat().st_size > 20_000 and trace_shot.stat().st_size > 20_000


def test_a_step_toggle_changes_the_registry_in_the_kernel(lab: Lab, page: Page) -> None:
    open_panel(page)
    panel = page.locator(PANEL)
    toggle = panel.locator(".wistro-wb-step-toggle[data-step='Send receipt']")
    toggle.wait_for(timeout=20_000)
    assert toggle.is_checked()
    toggle.click()
    # the panel refreshed from the kernel: the step is listed as inactive
    panel.locator(".wistro-wb-step[data-step='Send receipt'][data-active='false']").wait_for(
        timeout=20_000
    )
    status = panel.locator(".wistro-wb-status[data-section='steps']")
    assert "Send receipt: deactivated" in status.inner_text()  # shown with the redrawn list
    out = execute(page, "print(wistro_app.step('Send receipt').active)")
    assert out.strip() == "False", out
    code = "steps = %wistro steps\nprint(steps.set_index('name').loc['Send receipt', 'active'])"
    assert execute(page, code).strip() == "False"
    screenshot(page, ARTIFACTS, "workbench-toggle.png")
    # and back
    panel.locator(".wistro-wb-step-toggle[data-step='Send receipt']").click()
    panel.locator(".wistro-wb-step[data-step='Send receipt'][data-active='true']").wait_for(
        timeout=20_000
    )
    assert execute(page, "print(wistro_app.step('Send receipt').active)").strip() == "True"


def test_the_emit_form_checks_sends_and_the_new_run_appears(lab: Lab, page: Page) -> None:
    open_panel(page)
    panel = page.locator(PANEL)
    panel.locator(".wistro-wb-emit-topic").select_option("order.placed")
    form = panel.locator(".wistro-wb-emit-form[data-topic='order.placed']")
    form.wait_for(timeout=10_000)
    # fields from the topic's JSON Schema (OrderPlaced: a string and an integer, both required)
    assert form.locator("input[name='order_id'][type='text']").count() == 1
    assert form.locator("input[name='amount_cents'][type='number']").count() == 1
    status = panel.locator(".wistro-wb-status[data-section='emit']")
    # checked in the browser: nothing is sent
    form.locator("input[name='amount_cents']").fill("12.5")
    panel.locator(".wistro-wb-emit-send").click()
    text = status.inner_text()
    assert "not sent" in text and "order_id is required" in text, text
    assert "amount_cents must be an integer" in text, text
    assert form.locator(".wistro-wb-field[data-field='order_id'].wistro-wb-invalid").count() == 1
    # the server's check, one line: amount_cents must be > 0
    form.locator("input[name='order_id']").fill("W1")
    form.locator("input[name='amount_cents']").fill("-5")
    panel.locator(".wistro-wb-emit-send").click()
    page.wait_for_function(
        """() => { const s = document.querySelector(
              "#wistro-workbench .wistro-wb-status[data-section='emit']");
            return s && s.dataset.kind === 'error' && /amount_cents/.test(s.textContent); }""",
        timeout=20_000,
    )
    error = status.inner_text()
    assert "\n" not in error.strip() and "amount_cents" in error, error
    # a good one: sent, and its run appears in the list
    form.locator("input[name='amount_cents']").fill("2500")
    panel.locator(".wistro-wb-emit-send").click()
    page.wait_for_function(
        """() => { const s = document.querySelector(
              "#wistro-workbench .wistro-wb-status[data-section='emit']");
            return s && s.dataset.kind === 'ok' && s.dataset.traceId; }""",
        timeout=30_000,
    )
    trace_id = status.get_attribute("data-trace-id")
    assert trace_id and "emitted order.placed" in status.inner_text()
    row = panel.locator(f".wistro-wb-run[data-trace-id='{trace_id}']")
    row.wait_for(timeout=10_000)
    assert row.get_attribute("data-status") in {"ok", "running"}
    # the kernel ran it: its state has the order
    out = execute(page, "print(await wistro_app.state.get('orders', 'W1'))")
    assert "charged" in out, out
    # cells and the panel drive one engine: after a cell's own emit, the panel's still runs
    # (JupyterLab sends comm messages on a kernel subshell, another thread's event loop)
    out = execute(
        page,
        "r = await wistro_app.emit('order.placed', {'order_id': 'C1', 'amount_cents': 900})\n"
        "print(r.status)",
    )
    assert "ok" in out, out
    form.locator("input[name='order_id']").fill("W2")
    panel.locator(".wistro-wb-emit-send").click()
    page.wait_for_function(
        """(previous) => { const s = document.querySelector(
              "#wistro-workbench .wistro-wb-status[data-section='emit']");
            return s && s.dataset.kind === 'ok' && s.dataset.traceId
              && s.dataset.traceId !== previous; }""",
        arg=trace_id,
        timeout=30_000,
    )
    out = execute(page, "print(await wistro_app.state.get('orders', 'W2'))")
    assert "charged" in out, out
    panel.locator("details[data-section='emit']").scroll_into_view_if_needed()
    screenshot(page, ARTIFACTS, "workbench-emit.png")


def test_the_source_menu_reads_a_running_project_through_the_server(lab: Lab, page: Page) -> None:
    projects = api_get(lab.base, lab.token, "wistro/api/projects")
    assert [p["root"] for p in projects] == ["devshop"], projects
    open_panel(page)
    panel = page.locator(PANEL)
    source = panel.locator(".wistro-wb-source")
    source.focus()  # the menu is refreshed when it gets the focus
    page.wait_for_function(
        """() => [...document.querySelectorAll('#wistro-workbench .wistro-wb-source option')]
            .some(o => o.value === 'project:devshop')""",
        timeout=20_000,
    )
    source.select_option("project:devshop")
    page.wait_for_function(
        """() => /project shop \\(devshop\\)/.test(document.querySelector(
            '#wistro-workbench .wistro-wb-header-status')?.textContent ?? '')
          && document.querySelectorAll('#wistro-workbench .wistro-wb-step-toggle').length > 5""",
        timeout=30_000,
    )
    # an emit through the server, and its run
    panel.locator(".wistro-wb-emit-topic").select_option("order.placed")
    form = panel.locator(".wistro-wb-emit-form[data-topic='order.placed']")
    form.locator("input[name='order_id']").fill("D1")
    form.locator("input[name='amount_cents']").fill("700")
    panel.locator(".wistro-wb-emit-send").click()
    status = panel.locator(".wistro-wb-status[data-section='emit']")
    page.wait_for_function(
        """() => document.querySelector(
            "#wistro-workbench .wistro-wb-status[data-section='emit']")?.dataset.traceId""",
        timeout=30_000,
    )
    trace_id = status.get_attribute("data-trace-id")
    panel.locator(f".wistro-wb-run[data-trace-id='{trace_id}']").wait_for(timeout=10_000)
    screenshot(page, ARTIFACTS, "workbench-server.png")
    # back to the kernel: its project never saw that run
    source.select_option("kernel")
    panel.locator(".wistro-wb-run").first.wait_for(timeout=20_000)
    assert not panel.locator(f".wistro-wb-run[data-trace-id='{trace_id}']").count()
