"""Step-level scorers over what a real run recorded: a step's emitted payload field, whether a
step ran, how long it took, how many events a topic got; and their command-line specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from eval_support import ORDERS, PRICE, write

import wistro
from wistro import eval as we
from wistro.cli.eval import dataset as dataset_group
from wistro.cli.eval import eval_group
from wistro.cli.main import Obj, WistroGroup
from wistro.config import DEFAULT_ENV
from wistro.errors import WistroError
from wistro.eval import scorers as sc

SLOW_NOTIFY = """
import asyncio

config = {"name": "Notify", "subscribes": ["order.priced"], "emits": ["order.notified"],
          "flows": ["orders"]}

async def handler(data, ctx):
    await asyncio.sleep(0.03)
    await ctx.emit("order.notified", {"order_id": data["order_id"], "total": data["total"]})
"""


async def golden(root: Path, name: str = "golden") -> we.Dataset:
    """Samples from recorded runs of the project as it is: their events say what each step
    emitted."""
    app = wistro.load(root, state="memory", traces="memory")
    ds = we.Dataset(name, root=root)
    try:
        for o in [*ORDERS, {"order_id": "Z0", "amount_cents": 0}]:  # Validate rejects Z0
            ds.add_run(await app.emit("order.placed", o))
    finally:
        await app.aclose()
    return ds


async def test_step_output_judges_a_steps_emitted_field(project: Path) -> None:
    ds = await golden(project)
    scorers = [
        sc.step_output("Price", "total"),  # expected: what Price emitted in the recorded run
        sc.step_output("Price", "total", equals=120),
        sc.step_output("Price", "total", tolerance=5),
        sc.step_output("Validate", "amount_cents"),
    ]
    same = await we.run(ds, scorers=scorers, progress=False)
    by = {x.sample_id: x for x in same}
    z0 = next(s.id for s in ds if s.data["order_id"] == "Z0")
    a0 = next(s.id for s in ds if s.data["order_id"] == "A0")
    for x in same:
        if x.sample_id != z0:
            assert x.scores["step_output(Price.total)"]["passed"] is True
            assert x.scores["step_output(Validate.amount_cents)"]["passed"] is True
    # Price never ran for the rejected order, in the recording either: nothing expected
    assert by[z0].scores["step_output(Price.total)"] == {
        "value": None,
        "passed": None,
        "rationale": "not scored: nothing expected of Price.total",
    }
    assert by[z0].scores["step_output(Price.total=120)"]["rationale"] == (
        "Price did not run (expected Price.total = 120)"
    )
    assert by[a0].scores["step_output(Price.total=120)"]["passed"] is True
    assert [x.scores["step_output(Price.total=120)"]["passed"] for x in same].count(True) == 1

    # the tax goes up: every Price.total changes; within a tolerance of 5 cents only the small ones
    write(project, {"src/price.step.py": PRICE.replace("__TAX__", "0.25")})
    changed = await we.run(ds, scorers=scorers, progress=False)
    by = {x.sample_id: x for x in changed}
    exact = by[a0].scores["step_output(Price.total)"]
    assert exact["passed"] is False and exact["value"] == 0.0
    assert exact["rationale"] == "Price: total: expected 120, got 125"
    tol = {o["order_id"]: by[s.id].scores for s in ds for o in [s.data] if s.id != z0}
    name = [s.name for s in we.runner.resolve_scorers(scorers)][2]
    assert name == "step_output(Price.total)#2"
    # A0: 100 cents -> 120 vs 125 (5 off: within); A1: 200 -> 240 vs 250 (10 off)
    assert tol["A0"][name]["passed"] is True and tol["A1"][name]["passed"] is False
    assert "(tolerance 5)" in tol["A1"][name]["rationale"]
    assert all(
        x.scores["step_output(Validate.amount_cents)"]["passed"] in (True, None) for x in changed
    )


async def test_step_ran_not_ran_and_event_count(project: Path) -> None:
    ds = we.Dataset("paths", root=project)
    ds.add({"topic": "order.placed", "data": ORDERS[0]}, id="ok")
    ds.add({"topic": "order.placed", "data": {"order_id": "Z", "amount_cents": 0}}, id="rejected")
    scorers = [
        sc.step_ran("Price"),
        sc.step_not_ran("Price"),
        sc.step_ran("Nope"),
        sc.event_count("order.priced", 1),
        sc.event_count("order.rejected", max=0),
        sc.event_count("order.placed", min=1, max=1),
    ]
    r = await we.run(ds, scorers=scorers, progress=False)
    ok, rejected = r.results
    assert ok.scores["step_ran(Price)"] == {"value": 1.0, "passed": True, "rationale": "Price ran"}
    assert rejected.scores["step_ran(Price)"]["rationale"] == "Price did not run"
    assert ok.scores["step_not_ran(Price)"]["rationale"] == "Price ran 1x"
    assert rejected.scores["step_not_ran(Price)"]["passed"] is True
    assert not ok.scores["step_ran(Nope)"]["passed"]
    assert ok.scores["event_count(order.priced=1)"] == {
        "value": 1.0,
        "passed": True,
        "rationale": "order.priced emitted 1x (1)",
    }
    assert rejected.scores["event_count(order.priced=1)"]["rationale"] == (
        "order.priced emitted 0x (not 1)"
    )
    assert ok.scores["event_count(order.rejected=0..0)"]["passed"] is True
    assert rejected.scores["event_count(order.rejected=0..0)"]["passed"] is False
    assert all(x.scores["event_count(order.placed=1..1)"]["passed"] for x in r)


async def test_step_latency_records_what_it_observed(make_project) -> None:
    root = make_project("slow", extra={"src/notify.step.py": SLOW_NOTIFY})
    ds = we.Dataset("lat", root=root)
    ds.add({"topic": "order.placed", "data": ORDERS[0]}, id="ok")
    ds.add({"topic": "order.placed", "data": {"order_id": "Z", "amount_cents": 0}}, id="rejected")
    scorers = [
        sc.step_latency("Notify", 5),
        sc.step_latency("Notify", 5000, rel_tolerance=0.5),
        sc.latency_budget(5),
    ]
    r = await we.run(ds, scorers=scorers, progress=False)
    ok, rejected = r.results
    tight = ok.scores["step_latency(Notify,5ms)"]
    assert tight["passed"] is False and tight["observed"] >= 25 and tight["rel_tolerance"] == 0.2
    assert tight["rationale"] == f"Notify {tight['observed']:.1f} ms > 5 ms"
    span = next(s for s in ok.spans if s["step"] == "Notify")
    assert tight["observed"] == pytest.approx(span["end_ms"] - span["start_ms"])
    loose = ok.scores["step_latency(Notify,5000ms)"]
    assert loose["passed"] is True and loose["rel_tolerance"] == 0.5
    assert rejected.scores["step_latency(Notify,5ms)"] == {
        "value": None,
        "passed": None,
        "rationale": "not scored: Notify did not run",
    }
    whole = ok.scores["latency_budget(5ms)"]
    assert whole["passed"] is False and whole["observed"] == ok.latency_ms >= tight["observed"]


def test_specs_build_the_step_scorers() -> None:
    cases = {
        "step_output:Price.total": "step_output(Price.total)",
        "step_output:Price.items.0.sku": "step_output(Price.items.0.sku)",
        "step_output:Price.total=120": "step_output(Price.total=120)",
        'step_output:Price.code="A1"': "step_output(Price.code='A1')",
        "step_output:Price.code=A1": "step_output(Price.code='A1')",
        "step_latency:Price:250": "step_latency(Price,250ms)",
        "step_latency:Price:2.5": "step_latency(Price,2.5ms)",
        "step_ran:Price": "step_ran(Price)",
        "step_not_ran:Fraud": "step_not_ran(Fraud)",
        "event_count:order.priced:2": "event_count(order.priced=2)",
        "event_count:order.priced:1-3": "event_count(order.priced=1..3)",
        "event_count:order.priced:2-": "event_count(order.priced=2..)",
        "event_count:order.priced:-3": "event_count(order.priced=0..3)",
        "latency_budget:100": "latency_budget(100ms)",
    }
    for spec, name in cases.items():
        s = sc.from_spec(spec)
        assert s.name == name, spec
        assert sc.from_spec(s.spec).name == name  # the recorded spec round-trips
    assert sc.from_spec("step_latency:Price:250").kind == "latency"
    assert sc.from_spec("step_ran:Price").kind == "outcome"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("step_output", "scorer spec 'step_output': needs an argument"),
        (
            "step_output:Price",
            "scorer spec 'step_output:Price': needs a step and a field: STEP.FIELD",
        ),
        ("step_output:.total", "needs a step and a field"),
        ("step_latency:Price", "scorer spec 'step_latency:Price': needs a step and a budget in ms"),
        ("step_latency:Price:fast", "the budget (ms) must be a number, got 'fast'"),
        ("step_latency:Price:-5", "a latency budget must be a positive number of ms, got -5"),
        ("step_latency:Price:nan", "must be a finite number"),
        ("latency_budget:0", "a latency budget must be a positive number of ms, got 0"),
        ("event_count:order.priced", "needs a topic and a count"),
        ("event_count:order.priced:two", "a count must be a whole number >= 0, got 'two'"),
        ("event_count:order.priced:3-1", "min 3 is more than max 1"),
        ("event_count:order.priced:-", "needs at least one bound"),
        ("step_ran", "scorer spec 'step_ran': needs an argument"),
        ("sequence:a,,b", "none empty"),
        ("error_free:x", "takes no argument"),
        (
            "step_outptu:Price.total",
            "unknown scorer 'step_outptu' in spec 'step_outptu:Price.total'",
        ),
    ],
)
def test_a_bad_spec_is_one_line_naming_it(spec: str, message: str) -> None:
    with pytest.raises(WistroError) as info:
        sc.from_spec(spec)
    line = info.value.format()
    assert message in line and "\n" not in line
    assert f"{spec!r}" in line


def test_a_bad_spec_on_the_command_line(project: Path) -> None:
    write(
        project,
        {"datasets/d.jsonl": json.dumps({"topic": "order.placed", "data": ORDERS[0]}) + "\n"},
    )
    group = WistroGroup("wistro")
    group.add_command(dataset_group)
    group.add_command(eval_group)

    def cli(*args: str):
        return CliRunner().invoke(group, list(args), obj=Obj(str(project), DEFAULT_ENV))

    out = cli("eval", "run", "d", "--scorer", "step_latency:Price:soon")
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [
        "error: scorer spec 'step_latency:Price:soon': the budget (ms) must be a number, got "
        "'soon' (hint: step_latency:STEP:MS)"
    ]
    good = cli(
        "eval", "run", "d", "--scorer", "step_output:Price.total=120", "--scorer", "step_ran:Notify"
    )
    assert good.exit_code == 0, good.output
    assert "step_output(Price.total=120): mean 1.000, pass rate 100.0% (n=1)" in good.output
    assert "step_ran(Notify): mean 1.000, pass rate 100.0% (n=1)" in good.output
