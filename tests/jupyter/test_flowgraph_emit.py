"""Acting from the graph: the emit form's ``{"type": "emit"}`` message handled by the kernel-side
``FlowGraph`` (``_handle_custom_msg``, called as anywidget does), the reply, the lit path of the
run, every flow in ``flows``, the emit topics in ``details``; and the ``parent_id`` of spans that
the TraceView nests by."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm
from jupyter_support import cell

from wistro_jupyter.widgets import FlowGraph, TraceView

ORDER = {"order_id": "A1", "amount_cents": 1200}


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


def custom(widget: Any, kind: str | None = None) -> list[dict[str, Any]]:
    out = [
        m["data"]["content"]
        for m in getattr(widget.comm, "sent", [])
        if m["msg_type"] == "comm_msg" and m["data"].get("method") == "custom"
    ]
    return [c for c in out if kind is None or c["type"] == kind]


def browser_emit(graph: FlowGraph, topic: str, data: Any, node: str = "") -> None:
    """What anywidget does with `model.send({type: "emit", ...})` from the browser."""
    graph._handle_custom_msg({"type": "emit", "topic": topic, "data": data, "node": node}, [])


async def settle(graph: FlowGraph, app: Any) -> None:
    while graph._tasks:
        await asyncio.gather(*list(graph._tasks))
    await app.drain()
    await asyncio.sleep(0.12)  # the throttled counts and lit messages


async def test_emit_from_the_graph_round_trip_and_lit_path(ip: Any, recording: None) -> None:
    app = ip.user_ns["wistro_app"]
    graph = cell(ip, "%wistro graph")
    browser_emit(graph, "order.placed", ORDER, node="step:Place order")
    await settle(graph, app)
    [reply] = custom(graph, "emitted")
    assert reply["topic"] == "order.placed" and len(reply["trace_id"]) >= 12
    run = app.engine.runs.get(reply["trace_id"]) or app.trace(reply["trace_id"])
    assert run is not None
    assert graph.counts["step:Charge card"] == {"deliveries": 1, "errors": 0, "running": 0}
    lit = [i for m in custom(graph, "lit") for i in m["items"]]
    assert {i["trace_id"] for i in lit} == {reply["trace_id"]}
    states = [(i["node"], i["state"]) for i in lit]
    assert ("step:Place order", "ok") in states  # the node the form was on
    # step by step: each step starts (running), then ends (ok)
    for step in ("step:Charge card", "step:Pack order", "step:Send receipt"):
        assert states.index((step, "running")) < states.index((step, "ok")), (step, states)
    assert custom(graph, "error") == []
    graph.close()


async def test_bad_data_is_refused_with_one_line_naming_the_field(ip: Any, recording: None) -> None:
    app = ip.user_ns["wistro_app"]
    graph = cell(ip, "%wistro graph")
    runs_before = len(app.engine.runs)
    browser_emit(graph, "order.placed", {"order_id": "A1", "amount_cents": "lots"})
    browser_emit(graph, "order.placed", {"order_id": "A1"})
    browser_emit(graph, "no.such.topic", {})
    browser_emit(graph, "", None)
    await settle(graph, app)
    errors = custom(graph, "error")
    assert [e["topic"] for e in errors] == ["order.placed", "order.placed", "no.such.topic", ""]
    assert "amount_cents" in errors[0]["message"]
    assert "amount_cents" in errors[1]["message"] and "required" in errors[1]["message"]
    assert "no.such.topic" in errors[2]["message"]
    assert all("\n" not in e["message"] for e in errors)
    assert custom(graph, "emitted") == [] and custom(graph, "lit") == []
    assert len(app.engine.runs) == runs_before
    # a message of another type is ignored
    graph._handle_custom_msg({"type": "open_trace", "trace_id": "x"}, [])
    graph.close()


async def test_a_hundred_concurrent_emits(ip: Any, recording: None) -> None:
    app = ip.user_ns["wistro_app"]
    graph = cell(ip, "%wistro graph")
    for i in range(100):
        browser_emit(graph, "order.placed", {"order_id": f"C{i}", "amount_cents": 100 + i})
    assert len(graph._tasks) == 100  # all in flight at once
    await settle(graph, app)
    replies = custom(graph, "emitted")
    assert len(replies) == 100 and len({r["trace_id"] for r in replies}) == 100
    assert custom(graph, "error") == []
    assert graph.counts["step:Charge card"]["deliveries"] == 100
    assert graph.counts["step:Charge card"]["running"] == 0
    lit_traces = {i["trace_id"] for m in custom(graph, "lit") for i in m["items"]}
    assert lit_traces == {r["trace_id"] for r in replies}
    # coalesced: each message carries several starts and ends (a run's end always flushes)
    items = [i for m in custom(graph, "lit") for i in m["items"]]
    assert len(items) >= 100 * 4 * 2 and len(custom(graph, "lit")) < len(items) / 4
    assert graph._lit_traces == {}  # every run ended
    graph.close()


def test_every_flow_is_listed_and_details_offer_emit_topics(ip: Any) -> None:
    graph = cell(ip, "%wistro graph checkout")
    assert graph.flow == "checkout"
    assert set(graph.flows) >= {"checkout", "fulfillment"}
    graph.selected = "step:Charge card"
    [offer] = graph.details["emit_topics"]
    assert offer["topic"] == "order.placed"
    assert offer["schema"]["required"] == ["order_id", "amount_cents"]
    graph.selected = "step:Place order"  # an api step: what it emits
    assert [o["topic"] for o in graph.details["emit_topics"]] == ["order.placed"]
    graph.close()


def test_trace_spans_carry_their_parent_span(ip: Any) -> None:
    run = cell(ip, f"%wistro emit order.placed {json.dumps(ORDER)} --wait")
    view = TraceView.from_run(run)
    spans = {s["step"]: s for s in view.trace["spans"]}
    assert spans["Charge card"]["parent_id"] is None  # handles the notebook's event
    assert spans["Send receipt"]["parent_id"] == spans["Charge card"]["id"]
    assert spans["Reserve stock"]["parent_id"] is None
    assert spans["Pack order"]["parent_id"] == spans["Reserve stock"]["id"]
    stored = TraceView.from_stored(ip.user_ns["wistro_app"].trace(run.trace_id))
    assert {s["id"]: s["parent_id"] for s in stored.trace["spans"]} == {
        s["id"]: s["parent_id"] for s in spans.values()
    }
