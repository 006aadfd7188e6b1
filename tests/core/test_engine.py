"""The engine as a user sees it: runs, fan-out, validation, failures, retries, dead letters."""

from __future__ import annotations

import asyncio
import json

import pytest
from projects import ORDER_MODEL, step

import wistro
from wistro.errors import (
    HandlerError,
    PayloadError,
    StateError,
    UndeclaredEmitError,
    UnknownTopicError,
)

ORDER = {"order_id": "A1", "amount_cents": 1200}


def chain_files() -> dict[str, str]:
    return {
        "src/models.py": ORDER_MODEL,
        "src/charge.step.py": step(
            "Charge",
            ["order.placed"],
            ["payment.captured"],
            header="from .models import OrderPlaced",
            extra="'input': OrderPlaced",
            body="""
                assert isinstance(data, OrderPlaced)
                ctx.logger.info("charging", order_id=data.order_id)
                await ctx.state.set(ctx.trace_id, "charged", data)
                await ctx.emit("payment.captured", {"order_id": data.order_id})
            """,
        ),
        "src/reserve.step.py": step(
            "Reserve",
            ["order.placed"],
            ["stock.reserved"],
            body="await ctx.emit('stock.reserved', {'sku': 'X'})",
        ),
        "src/receipt.step.py": step(
            "Receipt",
            ["payment.captured"],
            is_async=False,
            body="""
                charged = ctx.state.get(ctx.trace_id, "charged")
                ctx.logger.info("receipt", amount=charged["amount_cents"])
            """,
        ),
    }


async def test_a_run_holds_every_event_span_log_and_state_op(make_app) -> None:
    app = make_app(chain_files())
    run = await app.emit("order.placed", ORDER)
    assert run.status == "ok" and run.done and run.errors == []
    assert sorted(run.spans["step"]) == ["Charge", "Receipt", "Reserve"]
    assert set(run.events["topic"]) == {"order.placed", "payment.captured", "stock.reserved"}
    # causality: payment.captured was emitted by the Charge span
    charge_span = run.spans.set_index("step").loc["Charge", "id"]
    captured = run.events.set_index("topic").loc["payment.captured"]
    assert captured["parent_span_id"] == charge_span and captured["source"] == "Charge"
    assert list(run.logs["message"]) == ["charging", "receipt"]
    assert run.logs.iloc[1]["fields"] == {"amount": 1200}
    assert list(run.state_ops["op"]) == ["set", "get"]
    assert run.emitted("payment.captured", order_id="A1")
    assert not run.emitted("payment.captured", order_id="B")


async def test_runs_are_stored_and_queryable(make_app) -> None:
    app = make_app(chain_files())
    run = await app.emit("order.placed", ORDER)
    await app.drain()
    runs = app.runs()
    assert list(runs["trace_id"]) == [run.trace_id] and runs.iloc[0]["status"] == "ok"
    stored = app.trace(run.trace_id[:8])
    assert len(stored["spans"]) == 3 and len(stored["events"]) == 3
    assert stored["run"]["n_events"] == 3


async def test_wait_false_returns_once_accepted_and_drain_finishes(make_app) -> None:
    files = {
        "src/slow.step.py": step(
            "Slow", ["t"], body="await asyncio.sleep(0.05)", header="import asyncio"
        )
    }
    app = make_app(files)
    runs = [await app.emit("t", {}, wait=False) for _ in range(5)]
    assert not any(r.done for r in runs)
    await app.drain()
    assert all(r.done and r.status == "ok" for r in runs)


async def test_unknown_topic_is_refused_with_a_suggestion(make_app) -> None:
    app = make_app(chain_files())
    with pytest.raises(UnknownTopicError, match=r"did you mean 'order\.placed'"):
        await app.emit("order.placd", ORDER)
    await app.drain()
    [row] = app.runs().to_dict("records")
    assert row["status"] == "refused" and row["topic"] == "order.placd"


async def test_invalid_payload_names_topic_and_field_and_is_not_delivered(make_app) -> None:
    app = make_app(chain_files())
    with pytest.raises(PayloadError) as e:
        await app.emit("order.placed", {"order_id": "A1", "amount_cents": "twelve"})
    assert e.value.topic == "order.placed" and e.value.field == "amount_cents"
    assert "must be integer" in str(e.value)
    await app.drain()
    # Nothing ran, but the refusal is a recorded run holding the payload and the error.
    runs = app.runs()
    assert list(runs["status"]) == ["refused"]
    trace = app.trace(e.value.trace_id)
    assert trace["spans"] == []
    [event] = trace["events"]
    assert json.loads(event["data_json"]) == {"order_id": "A1", "amount_cents": "twelve"}
    assert "amount_cents" in event["error"] and "must be integer" in event["error"]


async def test_invalid_emit_from_a_step_is_traced_and_names_step_and_field(make_app) -> None:
    files = {
        "src/models.py": ORDER_MODEL,
        "src/a.step.py": step(
            "A",
            ["start"],
            ["order.placed"],
            body="await ctx.emit('order.placed', {'order_id': 7, 'amount_cents': 1})",
        ),
        "src/b.step.py": step(
            "B",
            ["order.placed"],
            header="from .models import OrderPlaced",
            extra="'input': OrderPlaced",
            body="raise AssertionError('ran')",
        ),
    }
    app = make_app(files)
    run = await app.emit("start", {})
    assert run.status == "error"
    assert not run.ran("B") and "B" not in set(run.spans["step"])
    refused = run.events[run.events["error"].notna()].iloc[0]
    assert refused["topic"] == "order.placed"
    assert "step 'A'" in refused["error"] and "field 'order_id'" in refused["error"]
    span = run.spans.iloc[0]
    assert span["status"] == "error" and "PayloadError" in span["error"]


async def test_emit_of_an_undeclared_topic_is_refused(make_app) -> None:
    files = {
        "src/a.step.py": step(
            "A",
            ["start"],
            ["allowed"],
            body="""
            try:
                await ctx.emit('secret', {})
            except UndeclaredEmitError as e:
                ctx.logger.error(str(e))
                raise
        """,
            header="from wistro.errors import UndeclaredEmitError",
        ),
        "src/b.step.py": step("B", ["secret"]),
    }
    app = make_app(files)
    run = await app.emit("start", {})
    assert run.status == "error" and not run.ran("B")
    assert "step 'A', topic 'secret'" in run.logs.iloc[0]["message"]
    assert "declared: allowed" in run.logs.iloc[0]["message"]
    assert issubclass(UndeclaredEmitError, wistro.WistroError)


async def test_a_crashing_handler_does_not_stop_other_subscribers(make_app) -> None:
    files = {
        "src/bad.step.py": step("Bad", ["t"], body="raise ValueError('card network down')"),
        "src/good.step.py": step("Good", ["t"], ["done"], body="await ctx.emit('done', {})"),
    }
    app = make_app(files)
    run = await app.emit("t", {})
    assert run.status == "error" and run.ran("Good") and run.emitted("done")
    bad = run.spans.set_index("step").loc["Bad"]
    assert bad["status"] == "error" and bad["error"] == "ValueError: card network down"
    assert "bad.step.py" in bad["traceback"] and "card network down" in bad["traceback"]
    assert "wistro/core/engine.py" not in bad["traceback"]
    assert run.errors == ["Bad: ValueError: card network down"]


async def test_timeout_then_retries_then_dead_letter_then_replay(make_app, tmp_path) -> None:
    flag = tmp_path / "fixed"
    files = {
        "src/flaky.step.py": step(
            "Flaky",
            ["t"],
            header="import asyncio, pathlib",
            extra="'timeout_s': 0.05, 'retries': 2, 'retry_backoff_s': 0.01",
            body=f"""
            if not pathlib.Path({str(flag)!r}).exists():
                await asyncio.sleep(10)
        """,
        )
    }
    app = make_app(files)
    run = await app.emit("t", {"x": 1})
    assert run.status == "error"
    assert list(run.spans["attempt"]) == [1, 2, 3]
    assert set(run.spans["status"]) == {"timeout"}
    assert "timed out after 0.05s" in run.spans.iloc[0]["error"]
    [dead] = run.dead_letters
    assert dead.attempts == 3 and dead.step == "Flaky"
    await app.drain()
    stored = app.engine.store.dead_letters()
    assert [d["id"] for d in stored] == [dead.id]
    flag.touch()
    replayed = await app.engine.replay(stored[0])
    assert replayed.status == "ok" and replayed.ran("Flaky")
    assert replayed.payloads("t") == [{"x": 1}]


async def test_retry_succeeds_with_backoff(make_app, tmp_path) -> None:
    counter = tmp_path / "n"
    files = {
        "src/flaky.step.py": step(
            "Flaky",
            ["t"],
            header="import pathlib",
            extra="'retries': 3, 'retry_backoff_s': 0.01",
            body=f"""
            p = pathlib.Path({str(counter)!r})
            n = int(p.read_text()) if p.exists() else 0
            p.write_text(str(n + 1))
            if n < 2:
                raise RuntimeError(f"attempt {{n + 1}} failed")
        """,
        )
    }
    app = make_app(files)
    run = await app.emit("t", {})
    assert run.status == "ok" and run.dead_letters == []
    assert list(run.spans["status"]) == ["error", "error", "ok"]
    starts = run.spans["start"].tolist()
    assert (starts[2] - starts[1]) > (starts[1] - starts[0])  # exponential backoff


async def test_concurrency_limit_is_respected(make_app) -> None:
    files = {
        "src/one.step.py": step(
            "One",
            ["t"],
            extra="'concurrency': 2",
            header="import asyncio\nACTIVE = [0, 0]",
            body="""
        ACTIVE[0] += 1
        ACTIVE[1] = max(ACTIVE[1], ACTIVE[0])
        await asyncio.sleep(0.01)
        ACTIVE[0] -= 1
        ctx.logger.info("peak", peak=ACTIVE[1])
    """,
        )
    }
    app = make_app(files)
    runs = await asyncio.gather(*(app.emit("t", {}) for _ in range(10)))
    peaks = [r.logs.iloc[0]["fields"]["peak"] for r in runs]
    assert max(peaks) == 2


async def test_back_pressure_holds_emits_beyond_max_in_flight(make_app) -> None:
    files = {
        "wistro.yml": "engine: {max_in_flight: 4}\n",
        "src/s.step.py": step(
            "S", ["t"], header="import asyncio", body="await asyncio.sleep(0.02)"
        ),
    }
    app = make_app(files)
    seen: list[int] = []
    for _ in range(12):
        await app.emit("t", {}, wait=False)
        seen.append(app.engine.in_flight)
    assert max(seen) <= 4
    await app.drain()
    assert app.engine.in_flight == 0


async def test_shutdown_finishes_in_flight_work(make_app) -> None:
    files = {
        "src/s.step.py": step("S", ["t"], header="import asyncio", body="await asyncio.sleep(0.03)")
    }
    app = make_app(files)
    runs = [await app.emit("t", {}, wait=False) for _ in range(3)]
    await app.aclose()
    assert all(r.status == "ok" for r in runs)


async def test_delivery_validation_rejects_what_the_topic_schema_lets_through(make_app) -> None:
    # The subscriber's model is stricter than the topic's JSON Schema (a validator): the
    # delivery is refused with the field path and the handler never runs.
    files = {
        "src/a.step.py": step(
            "A",
            ["t"],
            header="""
            from pydantic import BaseModel, field_validator
            class In(BaseModel):
                n: int
                @field_validator("n")
                @classmethod
                def even(cls, v):
                    if v % 2:
                        raise ValueError("must be even")
                    return v
        """,
            extra="'input': In",
            body="raise AssertionError('ran')",
        )
    }
    app = make_app(files)
    run = await app.emit("t", {"n": 3})
    span = run.spans.iloc[0]
    assert span["status"] == "invalid" and "n: Value error, must be even" in span["error"]
    assert len(run.dead_letters) == 1 and run.status == "error"


async def test_state_rejects_non_json_values_and_escaping_keys(make_app) -> None:
    files = {
        "src/a.step.py": step(
            "A",
            ["t"],
            body="""
        kind = data["kind"]
        if kind == "object":
            await ctx.state.set("g", "k", object())
        else:
            await ctx.state.set("g", "../../etc/passwd", 1)
    """,
        )
    }
    app = make_app(files, state="file")
    run = await app.emit("t", {"kind": "object"})
    err = run.spans.iloc[0]["error"]
    assert err.startswith(
        "StateError: step 'A', field 'k': value for key 'k' in group 'g' is not JSON"
    )
    run = await app.emit("t", {"kind": "path"})
    assert "invalid state key '../../etc/passwd'" in run.spans.iloc[0]["error"]
    with pytest.raises(StateError):
        await app.state.set("../g", "k", 1)
    assert not any(app.project.root.parent.glob("etc*"))


async def test_inactive_steps_receive_nothing_and_activation_is_live(make_app) -> None:
    app = make_app(chain_files())
    app.deactivate("Reserve")
    run = await app.emit("order.placed", ORDER)
    assert not run.ran("Reserve") and run.ran("Charge")
    assert 'inactive: ["Reserve"]' in (app.project.root / "wistro.yml").read_text()
    app.activate("Reserve")
    run = await app.emit("order.placed", ORDER)
    assert run.ran("Reserve")
    assert wistro.load(app.project.root, state="memory", traces="memory").registry.inactive == []


async def test_sqlite_traces_survive_the_process(make_app) -> None:
    app = make_app(chain_files(), traces=None)
    run = await app.emit("order.placed", ORDER)
    await app.aclose()
    again = wistro.load(app.project.root, state="memory")
    stored = again.trace(run.trace_id)
    assert stored["run"]["status"] == "ok" and len(stored["logs"]) == 2
    assert (app.project.root / ".wistro" / "traces.db").is_file()
    await again.aclose()


async def test_call_runs_one_step_as_the_first_span_of_a_new_run(make_app) -> None:
    files = {
        "src/api.step.py": """
            config = {"type": "api", "name": "Create", "path": "/orders", "method": "POST",
                      "emits": ["order.created"]}

            async def handler(req, ctx):
                if req.get("fail"):
                    raise RuntimeError("bad request body")
                await ctx.emit("order.created", {"id": req["id"]})
                return {"status": 201, "body": {"id": req["id"]}}
        """,
        "src/after.step.py": step(
            "After", ["order.created"], header="import asyncio", body="await asyncio.sleep(0.01)"
        ),
    }
    app = make_app(files)
    api = app.step("Create")
    result, run = await app.engine.call(api, {"id": "A"}, trigger="api", topic="POST /orders")
    assert result == {"status": 201, "body": {"id": "A"}}
    assert not run.done  # the handler returned; the flow it started goes on
    await run
    assert run.status == "ok" and run.ran("Create") and run.ran("After")
    with pytest.raises(HandlerError, match="bad request body") as e:
        await app.engine.call(api, {"fail": True}, trigger="api", topic="POST /orders")
    failed = app.engine.runs.get(e.value.trace_id)
    await app.drain()
    stored = app.trace(e.value.trace_id)
    assert failed is None and stored["run"]["status"] == "error"
    assert stored["spans"][0]["error"] == "RuntimeError: bad request body"
    assert stored["dead_letters"] == []  # the client got the error; nothing to replay


async def test_a_missing_required_field_is_named(make_app) -> None:
    app = make_app(chain_files())
    with pytest.raises(PayloadError) as e:
        await app.emit("order.placed", {"order_id": "A1"})
    assert e.value.field == "amount_cents" and "is required" in str(e.value)
