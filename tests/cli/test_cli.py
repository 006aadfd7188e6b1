"""End-to-end tests of the ``wistro`` command line.

Every test runs the real console script (``python -m wistro``) in a subprocess, in a project
created by ``wistro init``, and asserts what a user sees: stdout, stderr and the exit code.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

WISTRO = [sys.executable, "-m", "wistro"]
TIMEOUT = 30  # seconds, for every subprocess and every wait
ORDER = '{"order_id": "A1", "amount_cents": 1200}'
SHOP_STEPS = ["Charge card", "Reserve stock", "Send receipt", "Pack order"]
COMMANDS = [
    "activate",
    "check",
    "deactivate",
    "dev",
    "emit",
    "flows",
    "graph",
    "init",
    "lock",
    "logs",
    "replay",
    "start",
    "steps",
    "trace",
    "traces",
    "types",
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def wistro(
    *args: str, cwd: Path, timeout: float = TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``wistro ARGS`` in ``cwd`` and capture what the user would see."""
    return subprocess.run(
        [*WISTRO, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=env or _env(),
        check=False,
    )


def ok(res: subprocess.CompletedProcess[str]) -> str:
    """Assert the command succeeded; return its stdout."""
    assert res.returncode == 0, (
        f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    )
    assert "Traceback" not in res.stderr, res.stderr
    return res.stdout


def one_line_error(res: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> str:
    """Assert the command failed with one clear ``error: …`` line on stderr naming ``needles``."""
    assert res.returncode == code, (
        f"exit {res.returncode}, expected {code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    )
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{res.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def write_step(project: Path, rel: str, source: str) -> Path:
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return path


class Server:
    """A long-running ``wistro`` process whose merged output is read by a thread, so waiting
    for a line never blocks forever."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [*WISTRO, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=_env(),
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """The first new line matching ``pattern``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} in {timeout} s:\n{self.output}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)  # stay at end of output for the next caller
                raise AssertionError(
                    f"process exited ({self.proc.poll()}) before {pattern!r}:\n{self.output}"
                )
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``, wait for the process to end and the output to be read; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=TIMEOUT)
        self._thread.join(timeout=TIMEOUT)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def server() -> Iterator[list[Server]]:
    """Servers started by a test; killed at the end whatever happened."""
    started: list[Server] = []
    yield started
    for s in started:
        s.kill()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `wistro init` per module; tests work on copies."""
    root = tmp_path_factory.mktemp("template")
    res = wistro("init", "shop", cwd=root)
    out = ok(res)
    assert "Created shop" in out and "'shop' template" in out, out
    assert "wistro emit order.placed" in out, out
    project = root / "shop"
    assert (project / "wistro.yml").is_file()
    assert (project / "wistro.yml.lock").is_file()
    assert (project / "notebooks" / "quickstart.ipynb").is_file()
    return project


@pytest.fixture
def shop(shop_template: Path, tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    shutil.copytree(shop_template, project, ignore=shutil.ignore_patterns(".wistro", "__pycache__"))
    return project


def emit_order(project: Path, payload: str = ORDER, *extra: str) -> str:
    return ok(wistro("emit", "order.placed", payload, *extra, cwd=project))


def last_trace_id(project: Path) -> str:
    rows = json.loads(ok(wistro("traces", "--json", cwd=project)))
    assert rows, "no runs listed"
    return rows[0]["trace_id"]


# ---------------------------------------------------------------- init and check


def test_init_creates_a_project_that_checks_clean(shop: Path) -> None:
    res = wistro("check", cwd=shop)
    out = ok(res)
    assert "0 error(s)" in out
    assert "9 steps" in out and "3 flows" in out
    assert (shop / ".gitignore").is_file()


def test_init_into_a_non_empty_folder_fails(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    res = wistro("init", str(target), cwd=tmp_path)
    one_line_error(res, str(target), "not empty", "--force")
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    # --force writes into it and keeps the user's file
    ok(wistro("init", str(target), "--force", cwd=tmp_path))
    assert (target / "notes.txt").read_text() == "mine\n"
    assert "0 error(s)" in ok(wistro("check", cwd=target))


def test_init_unknown_template(tmp_path: Path) -> None:
    res = wistro("init", "x", "--template", "nope", cwd=tmp_path)
    one_line_error(res, "unknown template 'nope'", "shop")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- emit and traces


def test_emit_prints_the_trace_tree_of_every_step(shop: Path) -> None:
    out = emit_order(shop)
    first = out.splitlines()[0]
    assert first.startswith("trace ") and " ok " in first and "cli order.placed" in first
    assert "0 errors" in first
    for step in SHOP_STEPS:
        assert re.search(rf"▶ {step} ok \d", out), f"{step} not in:\n{out}"
    for topic in ("order.placed", "payment.captured", "stock.reserved", "order.shipped"):
        assert f"● {topic}" in out
    assert "charging order_id=A1 amount_cents=1200" in out
    assert "receipt sent order_id=A1 total=$12.00" in out
    assert "\x1b[" not in out  # no color codes when not on a terminal


def test_traces_trace_and_logs_show_the_run(shop: Path) -> None:
    emit_order(shop)

    listing = ok(wistro("traces", cwd=shop))
    assert listing.splitlines()[0].split()[:3] == ["TRACE_ID", "STATUS", "TOPIC"]
    assert re.search(r"^[0-9a-f]{32}\s+ok\s+order\.placed\s+cli", listing, re.M), listing

    rows = json.loads(ok(wistro("traces", "--json", cwd=shop)))
    assert len(rows) == 1
    trace_id = rows[0]["trace_id"]
    assert rows[0]["status"] == "ok" and rows[0]["topic"] == "order.placed"
    assert trace_id in listing

    tree = ok(wistro("trace", trace_id[:8], cwd=shop))
    assert tree.splitlines()[0].startswith(f"trace {trace_id}")
    for step in SHOP_STEPS:
        assert f"▶ {step} ok" in tree
    assert 'state set orders/A1 = {"status":"charged"}' in tree
    assert "info charging order_id=A1" in tree

    data = json.loads(ok(wistro("trace", trace_id, "--json", cwd=shop)))
    assert data["run"]["trace_id"] == trace_id
    assert {s["step"] for s in data["spans"]} >= set(SHOP_STEPS)

    logs = ok(wistro("logs", cwd=shop))
    assert re.search(rf"info\s+{trace_id[:8]} Charge card charging order_id=A1", logs), logs
    assert "Send receipt receipt sent" in logs

    records = [json.loads(line) for line in ok(wistro("logs", "--json", cwd=shop)).splitlines()]
    assert {r["message"] for r in records} >= {"charging", "packed", "receipt sent"}
    assert all(r["trace_id"] == trace_id for r in records)

    assert ok(wistro("traces", "--status", "error", "--json", cwd=shop)).strip() == "[]"


def test_trace_of_an_unknown_id(shop: Path) -> None:
    emit_order(shop)
    res = wistro("trace", "nonexist", cwd=shop)
    one_line_error(res, "no trace 'nonexist'", "wistro traces")
    assert res.stdout == ""


def test_a_declined_order(shop: Path) -> None:
    out = emit_order(shop, '{"order_id": "B2", "amount_cents": 90000}')
    assert "● payment.declined" in out
    assert '"reason":"over limit"' in out
    assert "payment.captured" not in out
    assert "Send receipt" not in out
    assert "▶ Pack order ok" in out  # stock is reserved and packed all the same (fan-out)


def test_emit_no_wait_and_json(shop: Path) -> None:
    data = json.loads(emit_order(shop, ORDER, "--json"))
    assert data["run"]["status"] == "ok"
    assert {s["step"] for s in data["spans"]} >= set(SHOP_STEPS)
    out = emit_order(shop, '{"order_id": "N1", "amount_cents": 5}', "--no-wait")
    assert out.startswith("trace ")


def test_commands_work_from_a_subfolder_and_with_dash_C(shop: Path, tmp_path: Path) -> None:
    out = ok(wistro("steps", cwd=shop / "src" / "checkout"))
    assert "Charge card" in out
    out = ok(wistro("-C", str(shop), "flows", cwd=tmp_path))
    assert "checkout" in out and "fulfillment" in out


# ---------------------------------------------------------------- bad input


def test_emit_unknown_topic_suggests_the_right_one(shop: Path) -> None:
    res = wistro("emit", "order.placd", ORDER, cwd=shop)
    one_line_error(res, "'order.placd'", "did you mean 'order.placed'")
    assert res.stdout == ""


def test_emit_malformed_json(shop: Path) -> None:
    res = wistro("emit", "order.placed", "{bad", cwd=shop)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "the payload is not valid JSON" in res.stderr
    assert "line 1 column 2" in res.stderr
    assert "{bad" in res.stderr  # the payload is shown, with a caret under the problem
    assert res.stdout == ""


def test_emit_invalid_payload_names_the_field(shop: Path) -> None:
    res = wistro("emit", "order.placed", '{"order_id": "A1", "amount_cents": "lots"}', cwd=shop)
    one_line_error(res, "topic 'order.placed'", "field 'amount_cents'", "integer")
    res = wistro("emit", "order.placed", '{"order_id": "A1"}', cwd=shop)
    one_line_error(res, "topic 'order.placed'", "amount_cents")


def test_yaml_syntax_error_names_file_and_line(shop: Path) -> None:
    (shop / "wistro.yml").write_text(
        "name: shop\nflows:\n  checkout: {name: Checkout\nstate: {adapter: file}\n"
    )
    for cmd in (["check"], ["steps"], ["emit", "order.placed", ORDER]):
        res = wistro(*cmd, cwd=shop)
        line = one_line_error(res, "wistro.yml:", "YAML syntax error")
        assert re.search(r"wistro\.yml:[34]\b", line), line


def test_unknown_key_in_wistro_yml_names_key_path_and_line(shop: Path) -> None:
    (shop / "wistro.yml").write_text("name: shop\nsrc: src\nstate: {adapter: file, colour: red}\n")
    for cmd in (["check"], ["emit", "order.placed", ORDER]):
        res = wistro(*cmd, cwd=shop)
        one_line_error(res, "wistro.yml:3", "state.colour", "unknown key")


def test_unknown_env_lists_known_envs(shop: Path) -> None:
    res = wistro("--env", "nosuch", "steps", cwd=shop)
    one_line_error(res, "unknown environment 'nosuch'")
    with (shop / "wistro.yml").open("a") as f:
        f.write("environments:\n  prod: {state: {adapter: memory}}\n  staging: {}\n")
    res = wistro("--env", "nosuch", "steps", cwd=shop)
    one_line_error(res, "unknown environment 'nosuch'", "prod", "staging")
    assert "Charge card" in ok(wistro("--env", "prod", "steps", cwd=shop))
    res = wistro("steps", cwd=shop, env=_env(WISTRO_ENV="nosuch"))
    one_line_error(res, "unknown environment 'nosuch'")


def test_a_step_file_without_config_is_named_and_the_others_still_run(shop: Path) -> None:
    (shop / "src" / "fulfillment" / "no_config.step.py").write_text(
        "async def handler(data, ctx):\n    pass\n"
    )
    res = wistro("check", cwd=shop)
    assert res.returncode == 1
    assert "src/fulfillment/no_config.step.py" in res.stderr
    assert "no `config` defined" in res.stderr
    assert "1 error(s)" in res.stderr

    res = wistro("emit", "order.placed", ORDER, cwd=shop)
    assert res.returncode == 0, res.stderr
    assert "error: src/fulfillment/no_config.step.py" in res.stderr
    for step in SHOP_STEPS:
        assert f"▶ {step} ok" in res.stdout

    # the lock is never written from a broken project
    before = (shop / "wistro.yml.lock").read_bytes()
    res = wistro("lock", cwd=shop)
    assert res.returncode == 1
    assert "error: src/fulfillment/no_config.step.py" in res.stderr
    assert (shop / "wistro.yml.lock").read_bytes() == before


# ---------------------------------------------------------------- lock and start


def test_lock_is_deterministic_and_check_detects_a_changed_step(shop: Path) -> None:
    lock = shop / "wistro.yml.lock"
    out = ok(wistro("lock", cwd=shop))
    assert "wistro.yml.lock: 9 steps" in out
    first = lock.read_bytes()
    out = ok(wistro("lock", cwd=shop))
    assert out.startswith("unchanged:"), out
    assert lock.read_bytes() == first
    lock.unlink()
    ok(wistro("lock", cwd=shop))
    assert lock.read_bytes() == first  # from scratch: the same bytes
    assert json.loads(first)["version"]

    assert "is up to date" in ok(wistro("lock", "--check", cwd=shop))

    step = shop / "src" / "fulfillment" / "pack_order.step.py"
    step.write_text(step.read_text() + "# a change\n")
    res = wistro("lock", "--check", cwd=shop)
    assert res.returncode != 0
    assert "step 'Pack order': src/fulfillment/pack_order.step.py changed" in res.stderr
    assert "error: wistro.yml.lock is stale" in res.stderr
    assert lock.read_bytes() == first  # --check never writes

    ok(wistro("lock", cwd=shop))
    assert lock.read_bytes() != first
    ok(wistro("lock", "--check", cwd=shop))


def test_lock_label_names_a_version_without_changing_it(shop: Path) -> None:
    lock = shop / "wistro.yml.lock"
    ok(wistro("lock", cwd=shop))
    version = json.loads(lock.read_text())["version"]
    out = ok(wistro("lock", "--label", "v2", cwd=shop))
    assert out.rstrip().endswith(f"version {version[:12]} (v2)"), out
    data = json.loads(lock.read_text())
    assert (data["version"], data["label"]) == (version, "v2")  # the id stays the same
    ok(wistro("lock", cwd=shop))  # a later lock keeps the label
    assert json.loads(lock.read_text())["label"] == "v2"
    assert "is up to date" in ok(wistro("lock", "--check", cwd=shop))
    ok(wistro("lock", "--label", "", cwd=shop))  # '' removes it
    data = json.loads(lock.read_text())
    assert "label" not in data and data["version"] == version


def test_lock_check_without_a_lock(shop: Path) -> None:
    (shop / "wistro.yml.lock").unlink()
    one_line_error(wistro("lock", "--check", cwd=shop), "wistro.yml.lock", "no lock file")
    one_line_error(wistro("start", cwd=shop), "wistro.yml.lock", "no lock file", "wistro lock")


def test_start_refuses_a_stale_lock(shop: Path) -> None:
    step = shop / "src" / "fulfillment" / "pack_order.step.py"
    step.write_text(step.read_text() + "# a change\n")
    res = wistro("start", cwd=shop)
    one_line_error(
        res, "wistro.yml.lock", "stale", "src/fulfillment/pack_order.step.py", "wistro lock"
    )
    assert "ready" not in res.stdout
    res = wistro("emit", "--lock", "order.placed", ORDER, cwd=shop)
    one_line_error(res, "wistro.yml.lock", "stale")


def test_start_from_a_fresh_lock_until_sigterm(shop: Path, server: list[Server]) -> None:
    ok(wistro("lock", cwd=shop))
    s = Server("start", cwd=shop)
    server.append(s)
    ready = s.wait_for(r"^ready")
    assert "shop" in ready and "9 steps" in ready and "lock mode" in ready
    assert s.stop(signal.SIGTERM) == 0, s.output
    assert s.lines[-1] == "stopped", s.output
    assert "Traceback" not in s.output


MARKER_STEP = """
    from pathlib import Path

    Path(__file__).resolve().parents[2].joinpath("IMPORTED").write_text("yes")

    config = {
        "name": "Marker",
        "subscribes": ["order.shipped"],
        "emits": [],
        "flows": ["fulfillment"],
    }


    async def handler(data, ctx):
        ctx.logger.info("marked", order_id=data["order_id"])
"""


def test_start_imports_step_code_lazily(shop: Path, server: list[Server]) -> None:
    write_step(shop, "src/fulfillment/marker.step.py", MARKER_STEP)
    marker = shop / "IMPORTED"
    assert "10 steps" in ok(wistro("lock", cwd=shop))
    marker.unlink(missing_ok=True)  # `lock` scans, so it imported the step

    s = Server("start", cwd=shop)
    server.append(s)
    assert "10 steps" in s.wait_for(r"^ready")
    assert not marker.exists(), "`wistro start` imported step code before any event"
    assert s.stop() == 0, s.output
    assert not marker.exists()

    out = ok(wistro("emit", "--lock", "order.placed", ORDER, cwd=shop))
    assert marker.exists()
    assert "▶ Marker ok" in out and "marked order_id=A1" in out
    for step in SHOP_STEPS:
        assert f"▶ {step} ok" in out


# ---------------------------------------------------------------- registry and graph


def test_steps_and_flows_json(shop: Path) -> None:
    steps = json.loads(ok(wistro("steps", "--json", cwd=shop)))
    by_name = {s["name"]: s for s in steps}
    assert set(by_name) == {
        "Charge card",
        "Reserve stock",
        "Send receipt",
        "Pack order",
        "Place order",
        "Fraud review",
        "Courier",
        "Nightly report",
        "Build report",
    }
    charge = by_name["Charge card"]
    assert charge["subscribes"] == ["order.placed"]
    assert set(charge["emits"]) == {"payment.captured", "payment.declined"}
    assert charge["file"] == "src/checkout/charge_card.step.py"
    assert charge["language"] == "python" and charge["active"] is True
    assert by_name["Place order"]["type"] == "api"
    assert by_name["Courier"]["type"] == "noop"

    flows = {f["flow"]: f for f in json.loads(ok(wistro("flows", "--json", cwd=shop)))}
    assert set(flows) == {"checkout", "fulfillment", "reports"}
    assert by_name["Nightly report"]["type"] == "cron"
    assert flows["checkout"]["name"] == "Checkout"
    assert set(flows["checkout"]["steps"]) == {
        "Charge card",
        "Fraud review",
        "Place order",
        "Send receipt",
    }
    assert set(flows["fulfillment"]["steps"]) == {"Courier", "Pack order", "Reserve stock"}

    table = ok(wistro("steps", cwd=shop))
    assert table.splitlines()[0].split()[:3] == ["NAME", "TYPE", "LANGUAGE"]


def test_graph_formats(shop: Path) -> None:
    mermaid = ok(wistro("graph", "checkout", "--format", "mermaid", cwd=shop))
    assert mermaid.startswith("flowchart")
    for step in ("Place order", "Charge card", "Send receipt", "Fraud review"):
        assert f'"{step}"' in mermaid
    assert "Pack order" not in mermaid

    dot = ok(wistro("graph", cwd=shop))
    assert dot.startswith("digraph")
    for step in SHOP_STEPS:
        assert step in dot

    written = ok(wistro("graph", "--format", "mermaid", "-o", "graph.mmd", cwd=shop))
    assert "wrote graph.mmd" in written
    assert (shop / "graph.mmd").read_text().startswith("flowchart")

    one_line_error(
        wistro("graph", "nosuchflow", cwd=shop),
        "unknown flow 'nosuchflow'",
        "checkout",
        "fulfillment",
    )


def test_graph_svg(shop: Path) -> None:
    res = wistro("graph", "--format", "svg", cwd=shop)
    if shutil.which("dot") is None:
        one_line_error(res, "Graphviz", "dot", "not installed")
    else:
        svg = ok(res)
        assert "<svg" in svg and "</svg>" in svg
        assert "Charge card" in svg


def test_graph_svg_without_graphviz_is_a_clear_error(shop: Path) -> None:
    path = str(Path(sys.executable).parent)  # the venv's bin: python, but no `dot`
    assert shutil.which("dot", path=path) is None
    res = wistro("graph", "--format", "svg", cwd=shop, env=_env(PATH=path))
    one_line_error(res, "Graphviz", "`dot` is not installed", "--format mermaid")


# ---------------------------------------------------------------- activate / deactivate


def test_deactivate_and_activate_a_step(shop: Path) -> None:
    out = ok(wistro("deactivate", "Send receipt", cwd=shop))
    assert "deactivated 'Send receipt'" in out and "wistro.yml" in out and "lock" in out
    assert re.search(r'^inactive: \["Send receipt"\]$', (shop / "wistro.yml").read_text(), re.M)
    lock = json.loads((shop / "wistro.yml.lock").read_text())
    assert lock["inactive"] == ["Send receipt"]
    assert lock["steps"]["Send receipt"]["active"] is False
    ok(wistro("lock", "--check", cwd=shop))
    assert ok(wistro("lock", cwd=shop)).startswith("unchanged:")

    steps = {s["name"]: s for s in json.loads(ok(wistro("steps", "--json", cwd=shop)))}
    assert steps["Send receipt"]["active"] is False

    out = emit_order(shop)
    assert "● payment.captured" in out
    assert "Send receipt" not in out
    assert "▶ Charge card ok" in out
    out = ok(wistro("emit", "--lock", "order.placed", ORDER, cwd=shop))
    assert "Send receipt" not in out

    out = ok(wistro("activate", "Send receipt", cwd=shop))
    assert "activated 'Send receipt'" in out
    assert "Send receipt" not in (shop / "wistro.yml").read_text().split("inactive:")[-1]
    ok(wistro("lock", "--check", cwd=shop))
    assert "▶ Send receipt ok" in emit_order(shop)


def test_deactivate_an_unknown_step_suggests_one(shop: Path) -> None:
    before = (shop / "wistro.yml").read_bytes()
    res = wistro("deactivate", "Send reciept", cwd=shop)
    one_line_error(res, "'Send reciept'", "did you mean 'Send receipt'")
    one_line_error(wistro("activate", "Nope", cwd=shop), "'Nope'")
    assert (shop / "wistro.yml").read_bytes() == before


# ---------------------------------------------------------------- types


def test_types_writes_stubs(shop: Path) -> None:
    out = ok(wistro("types", cwd=shop))
    stub = shop / "src" / "wistro_types.py"
    assert f"wrote {stub}" in out or "wrote src/wistro_types.py" in out, out
    text = stub.read_text()
    assert "class OrderPlaced" in text and "amount_cents: int" in text
    compile(text, str(stub), "exec")
    # the stub file is not a step and the project still checks clean, the lock still fresh
    assert "0 error(s)" in ok(wistro("check", cwd=shop))
    ok(wistro("lock", "--check", cwd=shop))


# ---------------------------------------------------------------- failures and replay


FLAKY_STEP = """
    config = {
        "name": "Notify courier",
        "subscribes": ["order.shipped"],
        "emits": [],
        "flows": ["fulfillment"],
    }


    async def handler(data, ctx):
        {body}
"""


def test_a_failing_handler_goes_to_dead_letters_and_replays(shop: Path) -> None:
    rel = "src/fulfillment/notify_courier.step.py"
    broken = 'raise RuntimeError("courier API down")'
    write_step(shop, rel, FLAKY_STEP.replace("{body}", broken))

    res = wistro("emit", "order.placed", ORDER, cwd=shop)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    tree = res.stdout
    assert tree.splitlines()[0].startswith("trace ") and " error " in tree.splitlines()[0]
    assert "▶ Notify courier error" in tree
    assert "RuntimeError: courier API down" in tree
    match = re.search(r"dead letter (\S+): Notify courier <- order\.shipped", tree)
    assert match, tree
    dead_id = match.group(1)
    assert f"wistro replay {dead_id}" in tree
    for step in SHOP_STEPS:
        assert f"▶ {step} ok" in tree  # the other steps are unaffected

    listing = ok(wistro("replay", cwd=shop))
    assert re.search(rf"^{dead_id}\s+Notify courier\s+order\.shipped", listing, re.M), listing
    assert "courier API down" in listing
    rows = json.loads(ok(wistro("replay", "--json", cwd=shop)))
    assert [r["id"] for r in rows] == [dead_id]

    errors = json.loads(ok(wistro("traces", "--status", "error", "--json", cwd=shop)))
    assert len(errors) == 1

    one_line_error(wistro("replay", "nosuch", cwd=shop), "no dead letter 'nosuch'")

    write_step(shop, rel, FLAKY_STEP.replace("{body}", 'ctx.logger.info("notified")'))
    out = ok(wistro("replay", dead_id, cwd=shop))
    assert re.search(rf"✓ {dead_id} Notify courier <- order\.shipped: trace \S+ ok", out), out
    assert ok(wistro("replay", cwd=shop)).strip() == "no dead letters"
    assert "Notify courier notified" in ok(wistro("logs", cwd=shop))


BAD_EMITTER_STEP = """
    config = {
        "name": "Bad emitter",
        "subscribes": ["order.shipped"],
        "emits": ["payment.captured"],
        "flows": ["checkout"],
    }


    async def handler(data, ctx):
        await ctx.emit("payment.captured", {"order_id": "A1", "amount_cents": "lots"})
"""


def test_a_refused_emit_inside_a_handler_shows_in_the_tree(shop: Path) -> None:
    write_step(shop, "src/checkout/bad_emitter.step.py", BAD_EMITTER_STEP)
    res = wistro("emit", "order.placed", ORDER, cwd=shop)
    assert res.returncode == 1
    assert "✗ payment.captured" in res.stdout
    assert re.search(r"refused: .*topic 'payment\.captured', field 'amount_cents'", res.stdout)
    assert res.stdout.count("▶ Send receipt ok") == 1  # the invalid payload was not delivered


# ---------------------------------------------------------------- the generated project


def test_the_shops_own_tests_pass(shop: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=shop,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed" in res.stdout


# ---------------------------------------------------------------- dev


NEW_STEP = """
    config = {{
        "name": "Gift wrap",
        "subscribes": ["stock.reserved"],
        "emits": [],
        "flows": ["fulfillment"],
    }}

    VERSION = {n}


    async def handler(data, ctx):
        pass
"""


def test_dev_reloads_changed_step_files(shop: Path, server: list[Server]) -> None:
    s = Server("dev", cwd=shop)
    server.append(s)
    ready = s.wait_for(r"^ready")
    assert "9 steps" in ready and "dev mode" in ready

    # The watcher starts just after "ready": write until a reload is seen (bounded).
    deadline = time.monotonic() + TIMEOUT
    line = None
    n = 0
    while line is None:
        assert time.monotonic() < deadline, f"no reload:\n{s.output}"
        n += 1
        write_step(shop, "src/fulfillment/gift_wrap.step.py", NEW_STEP.format(n=n))
        try:
            line = s.wait_for(r"^reloaded", timeout=4)
        except AssertionError:
            if s.proc.poll() is not None:
                raise
    assert "gift_wrap.step.py" in line and "10 steps" in line, line

    # a broken step file is reported as an error; the server keeps running
    (shop / "src" / "fulfillment" / "broken.step.py").write_text("x = \n")
    s.wait_for(r"broken\.step\.py", timeout=TIMEOUT)
    s.wait_for(r"error: .*broken\.step\.py.*syntax error", timeout=TIMEOUT)
    assert s.proc.poll() is None, s.output

    # a step that worked and breaks keeps its last good version, and says so
    gift = shop / "src" / "fulfillment" / "gift_wrap.step.py"
    gift.write_text(gift.read_text() + "\ndef (:\n")
    line = s.wait_for(r"error: .*gift_wrap\.step\.py.*syntax error", timeout=TIMEOUT)
    assert "still running the last good version of 'Gift wrap" in line, line

    assert s.stop(signal.SIGINT) == 0, s.output
    assert "stopped" in s.lines[-1], s.output
    assert "Traceback" not in s.output


def test_dev_does_not_lose_a_change_made_right_after_ready(
    shop: Path, server: list[Server]
) -> None:
    """ "ready" promises hot reload: a step file saved as soon as it is printed is picked up."""
    s = Server("dev", cwd=shop)
    server.append(s)
    s.wait_for(r"^ready")
    write_step(shop, "src/fulfillment/gift_wrap.step.py", NEW_STEP.format(n=1))
    line = s.wait_for(r"^reloaded", timeout=10)
    assert "gift_wrap.step.py" in line and "10 steps" in line, line
    assert s.stop(signal.SIGTERM) == 0, s.output


# ---------------------------------------------------------------- help


def test_every_command_has_help(shop: Path) -> None:
    top = ok(wistro("--help", cwd=shop))
    listed = re.findall(r"^  (\w+)\s", top.split("Commands:")[1], re.M)
    assert set(COMMANDS) <= set(listed), listed
    procs = {  # all at once: 16 interpreter start-ups in parallel
        name: subprocess.Popen(
            [*WISTRO, name, "--help"],
            cwd=shop,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for name in listed
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, f"{name} --help: exit {proc.returncode}\n{err}"
        assert f"wistro {name} [OPTIONS]" in out, out
    assert "version" in ok(wistro("--version", cwd=shop))
    res = wistro("nosuchcommand", cwd=shop)
    assert res.returncode != 0 and "No such command" in res.stderr


def test_check_exits_without_teardown_and_loses_no_output(
    tmp_path: Path,
) -> None:
    """``wistro check`` ends its process with ``os._exit`` once it has printed (freeing what a
    large project loaded is not worth waiting for): the exit code and every line of output are
    kept, and an ``atexit`` handler a step module registered does not run."""
    proj = tmp_path / "big"
    (proj / "src").mkdir(parents=True)
    (proj / "wistro.yml").write_text("name: big\n")
    for i in range(40):
        (proj / "src" / f"s{i}.step.py").write_text(
            f'config = {{"name": "S{i}", "subscribes": ["t{i}"], "emits": ["t{i + 1}"]}}\n'
            "async def handler(data, ctx):\n"
            f'    await ctx.emit("t{i + 1}", {{}})\n'
        )
    (proj / "src" / "teardown.step.py").write_text(
        "import atexit\n"
        'atexit.register(lambda: print("teardown ran", flush=True))\n'
        'config = {"name": "Bad", "subscribes": ["t0"], "emits": ["t0"]}\n'
        "async def handler(data, ctx):\n"
        '    await ctx.emit("nowhere", {})\n'
    )
    out = subprocess.run(
        [*WISTRO, "-C", str(proj), "check"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert out.returncode == 1, out.stderr
    assert "nowhere" in out.stderr
    assert "41 steps" in out.stderr and "1 error(s)" in out.stderr
    assert "teardown ran" not in out.stdout + out.stderr
    as_json = subprocess.run(
        [*WISTRO, "-C", str(proj), "check", "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and len(report["diagnostics"]) >= 1
