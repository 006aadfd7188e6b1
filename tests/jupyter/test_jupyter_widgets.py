"""FlowGraph and TraceView through their synced state and the messages they send."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm
from jupyter_support import cell

from wistro.tooling.graph import build_graph
from wistro_jupyter.widgets import (
    INTERVAL_S,
    FlowGraph,
    TraceView,
    live_observers,
)

ORDER = '{"order_id": "A1", "amount_cents": 1200}'
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class RecordingComm(BaseComm):  # type: ignore[misc]
    """A comm that keeps what it would send to the browser, JSON-encoded as on the wire."""

    sent: list[dict[str, Any]]

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, **keys: Any
    ) -> None:
        if not hasattr(self, "sent"):
            self.sent = []
        self.sent.append(json.loads(json.dumps({"msg_type": msg_type, "data": data})))


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))


def updates(widget: Any, key: str) -> list[Any]:
    return [
        m["data"]["state"][key]
        for m in widget.comm.sent
        if m["msg_type"] == "comm_msg"
        and m["data"].get("method") == "update"
        and key in m["data"]["state"]
    ]


def test_flow_graph_of_the_shop(ip: Any) -> None:
    graph = cell(ip, "%wistro graph")
    assert isinstance(graph, FlowGraph) and graph.kind == "flow_graph"
    nodes = {n["id"]: n for n in graph.graph["nodes"]}
    app = ip.user_ns["wistro_app"]
    assert set(nodes) == set(build_graph(app).nodes)  # the one model of wistro.tooling.graph
    assert {n["label"] for n in nodes.values()} >= {"Charge card", "Courier", "Place order"}
    assert nodes["step:Place order"]["kind"] == "api"
    assert nodes["step:Fraud review"]["kind"] == "noop"
    assert nodes["step:Charge card"]["kind"] == "step"
    assert nodes["step:Charge card"]["subscribes"] == ["order.placed"]
    assert nodes["step:Charge card"]["emits"] == ["payment.captured", "payment.declined"]
    assert nodes["step:Fraud review"]["subscribes"] == ["payment.declined"]
    assert set(nodes["step:Charge card"]) == {
        "id",
        "label",
        "kind",
        "language",
        "flows",
        "description",
        "subscribes",
        "emits",
        "active",
    }
    edges = {(e["source"], e["target"], e["topic"]): e for e in graph.graph["edges"]}
    assert ("step:Charge card", "step:Send receipt", "payment.captured") in edges
    declined = edges[("step:Charge card", "step:Fraud review", "payment.declined")]
    assert (
        declined["virtual"] and declined["conditional"] and declined["label"].endswith("(declined)")
    )
    # filtered by flow, from Python or from the browser
    graph.flow = "fulfillment"
    assert {n["label"] for n in graph.graph["nodes"]} == {"Courier", "Pack order", "Reserve stock"}
    assert cell(ip, "%wistro graph checkout").flow == "checkout"
    html = graph._repr_html_()
    assert "<table" in html and "Pack order" in html and "<script" not in html
    graph.close()


def test_counts_update_live_and_details_on_select(ip: Any) -> None:
    graph = cell(ip, "%wistro graph")
    assert graph.counts == {}
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    counts = graph.counts
    assert counts["step:Charge card"] == {"deliveries": 1, "errors": 0, "running": 0}
    assert counts["step:Pack order"] == {"deliveries": 1, "errors": 0, "running": 0}
    assert "step:Courier" not in counts  # no-ops never run
    graph.selected = "step:Charge card"  # what a click in the browser does
    details = graph.details
    assert details["file"] == "src/checkout/charge_card.step.py"
    assert "async def handler" in details["source"]
    assert details["config"]["name"] == "Charge card"
    assert details["config"]["subscribes"] == ["order.placed"]
    assert details["schema"]["properties"]["amount_cents"]["type"] == "integer"
    assert details["recent_runs"][0]["trace_id"] == run.trace_id
    assert details["recent_runs"][0]["status"] == "ok"
    graph.selected = "step:Courier"
    assert graph.details["recent_runs"] == [] and graph.details["source"]
    graph.close()


def test_recent_runs_come_from_the_store_too(ip: Any) -> None:
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    graph = cell(ip, "%wistro graph")  # created after the run: only the store knows it
    graph.selected = "step:Send receipt"
    assert [r["trace_id"] for r in graph.details["recent_runs"]] == [run.trace_id]
    graph.close()


def test_observers_are_detached_on_close(ip: Any) -> None:
    engine = ip.user_ns["wistro_app"].engine
    before = len(engine.observers)
    graph = cell(ip, "%wistro graph")
    assert graph in engine.observers and graph.attached
    graph.close()
    assert graph not in engine.observers and not graph.attached
    assert len(engine.observers) == before
    # many emits leave no observer behind
    for i in range(30):
        cell(ip, f'%wistro emit order.placed {{"order_id": "N{i}", "amount_cents": 5}}')
    assert live_observers(engine) == 0 and engine.observers == []


async def test_a_live_trace_view_detaches_when_its_run_ends(ip: Any) -> None:
    engine = ip.user_ns["wistro_app"].engine
    views = [ip.run_line_magic("wistro", f"emit order.placed {ORDER}") for _ in range(5)]
    await asyncio.sleep(0)
    assert live_observers(engine) >= 1
    for view in views:
        await view.wait()
    assert live_observers(engine) == 0 and engine.observers == []
    assert all(len(v.trace["spans"]) == 4 for v in views)
    # closing a view in flight detaches it at once
    view = ip.run_line_magic("wistro", f"emit order.placed {ORDER}")
    await asyncio.sleep(0)
    view.close()
    assert not view.attached
    await asyncio.sleep(0.05)
    assert engine.observers == []


async def test_trace_updates_are_coalesced_and_the_final_state_is_sent(
    ip: Any, shop: Path, recording: None
) -> None:
    slow = (
        "import asyncio\n"
        'config = {"name": "Slow", "subscribes": ["stock.reserved"], "emits": [],'
        ' "flows": ["fulfillment"]}\n'
        "async def handler(item, ctx):\n"
        "    for i in range(40):\n"
        '        ctx.logger.info("tick", i=i)\n'
        "        await asyncio.sleep(0.005)\n"
    )
    (shop / "src" / "fulfillment" / "slow.step.py").write_text(slow, encoding="utf-8")
    ip.run_line_magic("wistro", "reload")
    graph = ip.run_line_magic("wistro", "graph")
    view = ip.run_line_magic("wistro", f"emit order.placed {ORDER}")
    started = asyncio.get_running_loop().time()
    run = await view.wait()
    took = asyncio.get_running_loop().time() - started
    assert run is not None and run.status == "ok"
    sent = updates(view, "trace")
    # 40 logs and 5 spans, yet at most ~20 messages a second (plus the first and the final one)
    assert 2 <= len(sent) <= took / INTERVAL_S + 3, (len(sent), took)
    final = sent[-1]
    assert final["run"]["status"] == "ok"
    assert sorted(s["step"] for s in final["spans"]) == sorted(
        ["Charge card", "Pack order", "Reserve stock", "Send receipt", "Slow"]
    )
    assert sum(1 for r in final["logs"] if r["message"] == "tick") == 40
    counts = updates(graph, "counts")
    assert counts and counts[-1]["step:Slow"] == {"deliveries": 1, "errors": 0, "running": 0}
    assert len(counts) <= took / INTERVAL_S + 3
    graph.close()


def test_logs_from_a_plain_def_handler_reach_the_view(ip: Any) -> None:
    # Send receipt is a plain `def`: it logs from a worker thread
    view = cell(ip, f"%wistro emit order.placed {ORDER}")
    assert any(r["message"] == "receipt sent" for r in view.trace["logs"])


def test_trace_view_of_a_stored_trace(ip: Any) -> None:
    run = cell(ip, f"%wistro emit order.placed {ORDER} --wait")
    stored = ip.user_ns["wistro_app"].trace(run.trace_id)
    view = TraceView.from_stored(stored)
    assert view.trace["run"]["trace_id"] == run.trace_id
    assert len(view.trace["spans"]) == 4
    assert view.trace["events"][0]["data"] == {"order_id": "A1", "amount_cents": 1200}
    assert "data_json" not in view.trace["events"][0]
    view.filter_step = "Pack order"
    assert "Pack order" in view._repr_html_() and "Charge card</b>" not in view._repr_html_()


def test_mimebundle_has_the_widget_and_an_html_fallback(ip: Any, stub_bundle: Path) -> None:
    view = cell(ip, f"%wistro emit order.placed {ORDER}")
    data, _ = ip.display_formatter.format(view)
    assert WIDGET_MIME in data and data[WIDGET_MIME]["model_id"] == view.model_id
    assert "<table" in data["text/html"] and "Charge card" in data["text/html"]
    assert view._esm == stub_bundle.read_text()
    graph = cell(ip, "%wistro graph")
    data, _ = ip.display_formatter.format(graph)
    assert WIDGET_MIME in data and "wistro-nodes" in data["text/html"]
    graph.close()


def test_a_missing_bundle_shows_the_static_view_with_one_warning_line(
    ip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WISTRO_WIDGETS_ESM", str(tmp_path / "nope.js"))
    graph = cell(ip, "%wistro graph")  # created fine
    data, _ = graph._repr_mimebundle_()  # no error on display either
    assert data["text/plain"].startswith("wistro: the widget JavaScript is missing")
    assert "wistro-nodes" in data["text/html"]
    assert "wistro-nodes" in graph._repr_html_()
    graph.close()


def test_app_repr_is_a_project_summary(ip: Any) -> None:
    app = ip.user_ns["wistro_app"]
    html = ip.display_formatter.format(app)[0]["text/html"]
    assert "shop" in html and "Charge card" in html and "9 steps" in html


def test_trace_spans_carry_the_language_of_their_step(ip: Any, shop: Path) -> None:
    cell(ip, "%wistro steps")  # the session records each step's language
    view = cell(ip, '%wistro emit order.placed {"order_id": "L1", "amount_cents": 100} --wait')
    trace_view = cell(ip, "%wistro trace")
    assert view.status == "ok"
    assert {s["language"] for s in trace_view.trace["spans"]} == {"python"}
