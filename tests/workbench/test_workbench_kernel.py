"""The Workbench in a real kernel: every op over the ``wistro.workbench`` comm, opened from the
client side on a real ipykernel after ``%load_ext wistro_jupyter``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from workbench_support import ORDER, Kernel, kernelspec, make_shop


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One kernel for the module: the shop (plus Flaky) loaded with memory state and traces."""
    root = make_shop(tmp_path_factory.mktemp("kernel") / "shop")
    k = Kernel(root, kernelspec(Path(os.environ["JUPYTER_PATH"])))
    try:
        out = k.execute("%load_ext wistro_jupyter\n%wistro load . --memory")
        assert "loaded" in out, out
        k.open_comm()
        yield k
    finally:
        k.stop()


def test_project_graph_flows_steps_topics(kernel: Kernel) -> None:
    project = kernel.op("project")
    assert project["name"] == "shop" and project["source"] == "kernel"
    assert project["bus"] == "memory" and "mode" not in project
    assert project["n_steps"] == 10 and project["n_flows"] == 4
    assert isinstance(project["version"], str)
    graph = kernel.op("graph")
    ids = {n["id"] for n in graph["nodes"]}
    assert "step:Charge card" in ids and "step:Flaky" in ids
    assert any(e["topic"] == "payment.captured" for e in graph["edges"])
    checkout = kernel.op("graph", flow="checkout")
    assert "step:Flaky" not in {n["id"] for n in checkout["nodes"]}
    assert "unknown flow 'nope'" in kernel.error("graph", flow="nope")
    flows = {f["id"]: f for f in kernel.op("flows")["flows"]}
    assert flows["jobs"]["steps"] == ["Flaky"] and flows["checkout"]["name"] == "Checkout"
    steps = {s["name"]: s for s in kernel.op("steps")["steps"]}
    assert steps["Charge card"]["subscribes"] == ["order.placed"]
    assert steps["Charge card"]["file"] == "src/checkout/charge_card.step.py"
    assert steps["Charge card"]["flows"] == ["checkout"] and steps["Flaky"]["active"] is True
    assert isinstance(steps["Charge card"]["line"], int)
    topics = {t["name"]: t for t in kernel.op("topics")["topics"]}
    placed = topics["order.placed"]
    assert placed["schema"]["required"] == ["order_id", "amount_cents"]
    assert "Charge card" in placed["subscribers"] and "Reserve stock" in placed["subscribers"]
    assert topics["payment.captured"]["publishers"] == ["Charge card"]


def test_emit_runs_and_trace_nest_by_cause(kernel: Kernel) -> None:
    emitted = kernel.op("emit", topic="order.placed", data=ORDER)
    assert emitted["status"] == "ok"
    runs = kernel.op("runs", limit=5)["runs"]
    run = next(r for r in runs if r["trace_id"] == emitted["trace_id"])
    assert run["topic"] == "order.placed" and run["status"] == "ok"
    assert {"Charge card", "Send receipt", "Reserve stock"} <= set(run["steps"])
    assert run["flows"] == ["checkout", "fulfillment"] and run["duration_ms"] > 0
    assert kernel.op("runs", flow="jobs")["runs"] == [] or all(
        "jobs" in r["flows"] for r in kernel.op("runs", flow="jobs")["runs"]
    )
    assert kernel.op("runs", after=run["start"])["runs"] == [
        r for r in kernel.op("runs")["runs"] if r["start"] > run["start"]
    ]
    trace = kernel.op("trace", trace_id=emitted["trace_id"][:10])
    assert trace["trace_id"] == emitted["trace_id"] and trace["status"] == "ok"
    spans = {s["step"]: s for s in trace["spans"]}
    assert spans["Charge card"]["parent_id"] is None
    assert spans["Send receipt"]["parent_id"] == spans["Charge card"]["id"]
    assert spans["Charge card"]["language"] == "python"
    assert trace["events"][0]["data"] == ORDER
    assert any(log["message"] == "charging" for log in trace["logs"])
    assert "trace 'ffffffffff'" in kernel.error("trace", trace_id="ffffffffff")


def test_emit_errors_are_one_line(kernel: Kernel) -> None:
    bad = kernel.error("emit", topic="order.placed", data={"order_id": "A1", "amount_cents": "x"})
    assert bad == "order.placed: amount_cents: invalid payload: must be integer"
    missing = kernel.error("emit", topic="order.placed", data={"order_id": "A1"})
    assert missing.startswith("order.placed: amount_cents: ")
    assert "topic 'order.plaed'" in kernel.error("emit", topic="order.plaed", data={})
    assert kernel.error("emit", data={}) == "emit: args.topic is required"
    assert "unknown" in kernel.error("nope")
    assert kernel.error("runs", limit="x") == "runs: args.limit: expected an integer, got a string"


def test_toggle_changes_the_kernels_registry(kernel: Kernel) -> None:
    assert kernel.op("toggle", step="Charge card", active=False) == {
        "step": "Charge card",
        "active": False,
    }
    try:
        out = kernel.execute("print(wistro_app.step('Charge card').active)\n%wistro steps")
        assert out.startswith("False"), out
        emitted = kernel.op("emit", topic="order.placed", data=ORDER)
        steps = {s["step"] for s in kernel.op("trace", trace_id=emitted["trace_id"])["spans"]}
        assert "Charge card" not in steps and "Reserve stock" in steps
        listed = {s["name"]: s["active"] for s in kernel.op("steps")["steps"]}
        assert listed["Charge card"] is False
    finally:
        assert kernel.op("toggle", step="Charge card", active=True)["active"] is True
    assert kernel.execute("print(wistro_app.step('Charge card').active)").startswith("True")
    assert "step 'Charge crad'" in kernel.error("toggle", step="Charge crad", active=True)
    assert "args.active" in kernel.error("toggle", step="Charge card", active="yes")


def test_logs_tail_with_a_cursor(kernel: Kernel) -> None:
    first = kernel.op("logs", limit=3)
    assert len(first["logs"]) <= 3 and isinstance(first["cursor"], int)
    assert kernel.op("logs", after=first["cursor"])["logs"] == []
    kernel.op("emit", topic="order.placed", data={"order_id": "L1", "amount_cents": 5})
    new = kernel.op("logs", after=first["cursor"])
    assert new["cursor"] > first["cursor"]
    charging = [log for log in new["logs"] if log["message"] == "charging"]
    assert charging and charging[0]["fields"]["order_id"] == "L1"
    assert charging[0]["step"] == "Charge card" and charging[0]["level"] == "info"
    assert kernel.op("logs", after=first["cursor"], level="error")["logs"] == []
    assert "args.level" in kernel.error("logs", level="loud")


def test_state_groups_and_items(kernel: Kernel) -> None:
    kernel.op("emit", topic="order.placed", data={"order_id": "S1", "amount_cents": 7})
    groups = {g["group"]: g["n_keys"] for g in kernel.op("state")["groups"]}
    assert groups["orders"] >= 1
    orders = kernel.op("state", group="orders")
    assert orders["items"]["S1"]["status"] == "charged" and orders["capped"] is False
    assert kernel.op("state", group="none")["items"] == {}


def test_dead_letters_and_replay(kernel: Kernel) -> None:
    failed = kernel.op("emit", topic="job.started", data={"job": 1})
    assert failed["status"] == "error"
    dead = [
        d for d in kernel.op("dead_letters")["dead_letters"] if d["trace_id"] == failed["trace_id"]
    ]
    assert len(dead) == 1 and dead[0]["step"] == "Flaky" and dead[0]["attempts"] == 2
    assert "flaky failed" in dead[0]["error"] and dead[0]["data"] == {"job": 1}
    replayed = kernel.op("replay", id=dead[0]["id"])  # fail.flag is there: it fails again
    assert replayed["id"] == dead[0]["id"] and replayed["trace_id"] != failed["trace_id"]
    assert replayed["status"] == "error"
    assert "dead letter" in kernel.error("replay", id="zzzzzzzz")


def test_200_concurrent_emits_all_reply_and_all_runs_appear(kernel: Kernel) -> None:
    ids = [
        kernel.send(
            "emit", {"topic": "order.placed", "data": {"order_id": f"C{i}", "amount_cents": i + 1}}
        )
        for i in range(200)
    ]
    replies = [kernel.reply(i, timeout=120) for i in ids]
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:3]
    traces = {r["result"]["trace_id"] for r in replies}
    assert len(traces) == 200
    runs = kernel.op("runs", limit=1000, topic="order.placed")["runs"]
    assert traces <= {r["trace_id"] for r in runs}
    assert all(r["status"] == "ok" for r in runs if r["trace_id"] in traces)
    starts = [r["start"] for r in runs]
    assert starts == sorted(starts, reverse=True)  # newest first


def test_no_app_loaded_says_to_load_one(tmp_path: Path) -> None:
    k = Kernel(tmp_path, kernelspec(Path(os.environ["JUPYTER_PATH"])))
    try:
        out = k.execute("%load_ext wistro_jupyter")
        assert "%wistro load" in out, out
        k.open_comm()
        assert "run `%wistro load PATH`" in k.error("project")
        shop = make_shop(tmp_path / "shop")
        k.execute(f"%wistro load {shop} --memory")
        assert k.op("project")["name"] == "shop"
    finally:
        k.stop()
