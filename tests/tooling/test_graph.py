"""``wistro graph``: DOT, Mermaid and SVG output of the event graph, filtered by flow."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import wistro
from wistro.app import App
from wistro.errors import WistroError
from wistro.tooling.graph import to_dot, to_mermaid, to_svg


def write_project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


FILES = {
    "wistro.yml": """
    flows:
      checkout: {name: Checkout}
    api:
      - {path: /webhooks/stripe, method: POST, emits: payment.webhook, flows: [checkout]}
    cron:
      nightly: {cron: "0 2 * * *", emits: report.requested}
    """,
    "src/place.step.py": """
    config = {"type": "api", "name": "Place order", "path": "/orders",
              "emits": ["order.placed"], "flows": ["checkout"]}

    async def handler(req, ctx):
        return {"status": 202}
    """,
    "src/charge.step.py": """
    config = {
        "name": "Charge card",
        "subscribes": ["order.placed", "payment.webhook"],
        "emits": ["payment.captured",
                  {"topic": "payment.declined", "label": "declined", "conditional": True}],
        "flows": ["checkout"],
    }

    def handler(d, ctx):
        pass
    """,
    "src/receipt.step.py": """
    config = {"name": 'Send "receipt"', "subscribes": ["payment.captured"],
              "flows": ["checkout"]}

    def handler(d, ctx):
        pass
    """,
    "src/review.step.py": """
    config = {"type": "noop", "name": "Fraud review",
              "virtual_subscribes": ["payment.declined"], "virtual_emits": ["order.placed"],
              "flows": ["checkout"]}
    """,
    "src/report.step.py": """
    config = {"name": "Report", "subscribes": ["report.requested"], "emits": ["report.done"],
              "flows": ["reports"]}

    def handler(d, ctx):
        pass
    """,
    "src/tick.step.py": """
    config = {"type": "cron", "name": "Tick", "cron": "* * * * *", "emits": ["report.requested"],
              "flows": ["reports"]}

    def handler(ctx):
        pass
    """,
}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    write_project(tmp_path, FILES)
    loaded = wistro.load(tmp_path, state="memory", traces="memory")
    assert loaded.errors == []
    yield loaded
    await loaded.aclose()


def dot_edges(dot: str) -> set[tuple[str, str, str]]:
    return {
        (a, b, label)
        for a, b, label in re.findall(
            r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[label="((?:[^"\\]|\\.)*)"',
            dot,
            re.MULTILINE,
        )
    }


def dot_nodes(dot: str) -> dict[str, str]:
    return dict(re.findall(r'^\s*"((?:[^"\\]|\\.)*)" \[(.*)\];$', dot, re.MULTILINE))


def test_dot_nodes_and_edges(app: App) -> None:
    dot = to_dot(app)
    assert dot.startswith("digraph ")
    assert dot.rstrip().endswith("}")
    nodes = dot_nodes(dot)
    assert "shape=hexagon" in nodes["step:Place order"]
    assert "shape=octagon" in nodes["step:Tick"]
    assert 'style="rounded"' in nodes["step:Charge card"]
    assert "dashed" in nodes["step:Fraud review"] and "grey" in nodes["step:Fraud review"]
    assert 'label="POST /webhooks/stripe"' in nodes["api:0"]
    assert 'label="nightly\\n0 2 * * *"' in nodes["cron:nightly"]
    # the quote in a step name is escaped
    assert 'step:Send \\"receipt\\"' in nodes
    assert 'label="Send \\"receipt\\""' in nodes['step:Send \\"receipt\\"']
    # a topic nobody receives ends in a small end node
    assert "end:report.done" in nodes

    edges = dot_edges(dot)
    assert ("step:Place order", "step:Charge card", "order.placed") in edges
    assert ("step:Charge card", 'step:Send \\"receipt\\"', "payment.captured") in edges
    assert ("api:0", "step:Charge card", "payment.webhook") in edges
    assert ("cron:nightly", "step:Report", "report.requested") in edges
    assert ("step:Tick", "step:Report", "report.requested") in edges
    assert ("step:Report", "end:report.done", "report.done") in edges
    # conditional emit labeled with its label, drawn to a virtual subscriber: dashed
    declined = next(line for line in dot.splitlines() if "payment.declined (declined)" in line)
    assert '"step:Charge card" -> "step:Fraud review"' in declined
    assert "dashed" in declined
    virtual = next(
        line for line in dot.splitlines() if line.strip().startswith('"step:Fraud review" ->')
    )
    assert '"step:Charge card"' in virtual and "dashed" in virtual
    solid = next(line for line in dot.splitlines() if "payment.captured" in line)
    assert "dashed" not in solid


async def test_output_is_deterministic(app: App, tmp_path: Path) -> None:
    again = wistro.load(tmp_path, state="memory", traces="memory")
    try:
        assert to_dot(app) == to_dot(again)
        assert to_mermaid(app) == to_mermaid(again)
        assert to_dot(app, "checkout") == to_dot(again, "checkout")
    finally:
        await again.aclose()


def test_flow_filter(app: App) -> None:
    dot = to_dot(app, "checkout")
    nodes = dot_nodes(dot)
    assert "step:Charge card" in nodes
    assert "step:Fraud review" in nodes
    assert "api:0" in nodes  # the webhook lists the flow and feeds Charge card
    assert "step:Report" not in nodes
    assert "step:Tick" not in nodes
    assert "cron:nightly" not in nodes
    assert "end:report.done" not in nodes
    edges = dot_edges(dot)
    assert ("api:0", "step:Charge card", "payment.webhook") in edges
    assert ("step:Place order", "step:Charge card", "order.placed") in edges
    assert all("report" not in label for _, _, label in edges)

    reports = to_dot(app, "reports")
    rnodes = dot_nodes(reports)
    assert set(rnodes) == {"step:Report", "step:Tick", "cron:nightly", "end:report.done"}
    assert ("cron:nightly", "step:Report", "report.requested") in dot_edges(reports)


def test_unknown_flow(app: App) -> None:
    with pytest.raises(WistroError) as info:
        to_dot(app, "chekout")
    message = str(info.value)
    assert "'chekout'" in message
    assert "checkout" in message and "reports" in message
    with pytest.raises(WistroError, match="chekout"):
        to_mermaid(app, "chekout")


def test_mermaid(app: App) -> None:
    text = to_mermaid(app)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  step_place_order{{"Place order"}}' in lines  # api: hexagon
    assert '  step_charge_card("Charge card")' in lines
    assert '  step_send_receipt("Send #quot;receipt#quot;")' in lines
    assert '  api_0>"POST /webhooks/stripe"]' in lines
    assert '  step_place_order -->|"order.placed"| step_charge_card' in lines
    assert '  step_charge_card -->|"payment.captured"| step_send_receipt' in lines
    assert '  step_charge_card -.->|"payment.declined (declined)"| step_fraud_review' in lines
    assert '  step_report -->|"report.done"| sink_report_done' in lines
    assert "  class step_fraud_review noop" in lines
    for line in lines[1:]:
        # every quoted label is balanced: no unescaped quote inside labels
        assert line.count('"') % 2 == 0, line

    flow = to_mermaid(app, "reports")
    assert "step_report" in flow and "step_charge_card" not in flow


def test_svg(app: App) -> None:
    if shutil.which("dot") is None:
        with pytest.raises(WistroError) as info:
            to_svg(app)
        message = str(info.value)
        assert "Graphviz" in message and "dot" in message
        assert "--format dot" in message and "mermaid" in message
    else:
        svg = to_svg(app, "checkout")
        assert "<svg" in svg
        assert "Charge card" in svg
        assert "Report" not in svg


def test_svg_runs_graphviz_on_the_dot_source(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a stand-in `dot` on PATH: the DOT source goes in on stdin, the SVG comes out."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text('#!/bin/sh\n[ "$1" = "-Tsvg" ] || exit 3\necho "<svg>"\ncat\necho "</svg>"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    svg = to_svg(app, "reports")
    assert svg.startswith("<svg>")
    assert to_dot(app, "reports") in svg

    fake.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 1\n")
    with pytest.raises(WistroError, match="syntax error in line 1"):
        to_svg(app)
