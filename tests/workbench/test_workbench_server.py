"""The Workbench on a real ``wistro dev``: every op through ``POST /_wistro/workbench`` with the
server's token, toggles persisted like ``wistro deactivate``, and a real dead letter replayed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from workbench_support import ORDER, Dev, make_shop, wait_until


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    server = Dev(make_shop(tmp_path_factory.mktemp("server") / "shop"))
    try:
        yield server
    finally:
        server.stop()


def test_the_token_is_required(dev: Dev) -> None:
    for token in ("", "wrong"):
        response = dev.post({"op": "project"}, token=token)
        assert response.status_code == 403
        assert response.json() == {"ok": False, "error": "forbidden: bad x-wistro-token"}
    response = dev.client.post(
        f"{dev.url}/_wistro/workbench",
        content=b"not json",
        headers={"x-wistro-token": dev.token},
    )
    assert response.status_code == 400 and response.json()["ok"] is False


def test_project_and_the_registry_ops(dev: Dev) -> None:
    project = dev.op("project")
    assert project["name"] == "shop" and project["source"] == "server"
    assert project["mode"] == "dev" and project["bus"] == "local"
    assert project["root"] == str(dev.root.resolve()) and project["n_steps"] == 10
    assert "step:Flaky" in {n["id"] for n in dev.op("graph")["nodes"]}
    assert {f["id"] for f in dev.op("flows")["flows"]} == {
        "checkout",
        "fulfillment",
        "jobs",
        "reports",
    }
    assert "Charge card" in {s["name"] for s in dev.op("steps")["steps"]}
    assert "job.started" in {t["name"] for t in dev.op("topics")["topics"]}
    assert dev.error("bogus").startswith("op 'bogus': unknown")
    body = dev.post({"args": {}}).json()
    assert body == {"ok": False, "error": 'request: expected {"op": str, "args": {...}}'}


def test_emit_runs_trace_logs_state(dev: Dev) -> None:
    emitted = dev.op("emit", topic="order.placed", data=ORDER)
    assert emitted["status"] == "ok"
    runs = dev.op("runs", limit=10)["runs"]
    assert runs[0]["trace_id"] == emitted["trace_id"]
    assert "Charge card" in runs[0]["steps"] and "checkout" in runs[0]["flows"]
    spans = dev.op("trace", trace_id=emitted["trace_id"])["spans"]
    by_step = {s["step"]: s for s in spans}
    assert by_step["Send receipt"]["parent_id"] == by_step["Charge card"]["id"]
    logs = dev.op("logs")
    assert any(log["message"] == "charging" for log in logs["logs"])
    assert dev.op("logs", after=logs["cursor"])["logs"] == []
    assert dev.op("state", group="orders")["items"]["A1"]["status"] == "charged"
    assert {"group": "orders", "n_keys": 1} in dev.op("state")["groups"]
    bad = dev.error("emit", topic="order.placed", data={"order_id": "A1", "amount_cents": -1})
    assert bad.startswith("order.placed: amount_cents: ")
    not_waited = dev.op("emit", topic="order.placed", data=ORDER, wait=False)
    wait_until(
        lambda: dev.op("trace", trace_id=not_waited["trace_id"])["status"] == "ok",
        what="the run emitted with wait: false",
    )


def test_toggle_is_persisted_and_applied(dev: Dev) -> None:
    config = dev.root / "wistro.yml"
    assert dev.op("toggle", step="Reserve stock", active=False)["active"] is False
    try:
        assert 'inactive: ["Reserve stock"]' in config.read_text(encoding="utf-8")
        emitted = dev.op("emit", topic="order.placed", data=ORDER)
        steps = {s["step"] for s in dev.op("trace", trace_id=emitted["trace_id"])["spans"]}
        assert "Reserve stock" not in steps and "Charge card" in steps
    finally:
        assert dev.op("toggle", step="Reserve stock", active=True)["active"] is True
    assert "inactive: []" in config.read_text(encoding="utf-8")
    listed = {s["name"]: s["active"] for s in dev.op("steps")["steps"]}
    assert listed["Reserve stock"] is True
    assert dev.op("emit", topic="order.placed", data=ORDER)["status"] == "ok"
    assert "step 'Nope'" in dev.error("toggle", step="Nope", active=False)


def test_toggle_then_hot_reload_keeps_running(tmp_path: Path) -> None:
    """A toggle rewrites wistro.yml (a new lock version): after the hot reload, runs still
    finish (they stayed `running` when the reload moved the shared bus to the new version)."""
    server = Dev(make_shop(tmp_path / "shop"), reload=True)
    try:
        server.op("toggle", step="Reserve stock", active=False)
        server.process.wait_for(r"^reloaded")
        emitted = server.op("emit", topic="order.placed", data=ORDER, timeout_s=5)
        assert emitted["status"] == "ok"
    finally:
        server.stop()


def test_replay_of_a_real_dead_letter(dev: Dev) -> None:
    failed = dev.op("emit", topic="job.started", data={"job": 7})
    assert failed["status"] == "error"
    jobs = dev.op("runs", flow="jobs")["runs"]
    assert jobs and jobs[0]["trace_id"] == failed["trace_id"] and jobs[0]["steps"] == ["Flaky"]
    assert "runs: flow 'nope'" in dev.error("runs", flow="nope")
    letters = dev.op("dead_letters")["dead_letters"]
    dead = next(d for d in letters if d["trace_id"] == failed["trace_id"])
    assert dead["step"] == "Flaky" and dead["topic"] == "job.started" and dead["attempts"] == 2
    assert "flaky failed" in dead["error"] and dead["at"] > 0
    Path(dev.root / "fail.flag").unlink()  # fixed: the replay succeeds
    replayed = dev.op("replay", id=dead["id"][:8])
    assert replayed["id"] == dead["id"] and replayed["status"] == "ok"
    trace = dev.op("trace", trace_id=replayed["trace_id"])
    assert trace["status"] == "ok" and trace["spans"][0]["step"] == "Flaky"
    assert dead["id"] not in {d["id"] for d in dev.op("dead_letters")["dead_letters"]}
    assert "dead letter 'zzzzzzzz'" in dev.error("replay", id="zzzzzzzz")
