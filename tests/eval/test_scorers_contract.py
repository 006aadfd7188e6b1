"""The score contract on real evals: "not scored" is neither pass nor fail, a failed run fails
every outcome scorer, a raising scorer is counted, and the eval's meta records each scorer's
kind and spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_support import ORDERS

from wistro import eval as we
from wistro.eval import scorers as sc
from wistro.eval.runner import ScorerErrorWarning

# Price fails for every order whose number is a multiple of 4
CRASHING_PRICE = """
config = {"name": "Price", "subscribes": ["order.validated"], "emits": ["order.priced"],
          "flows": ["orders"]}

async def handler(data, ctx):
    if int(data["order_id"][1:]) % 4 == 0:
        raise RuntimeError(f"no price for {data['order_id']}")
    total = round(data["amount_cents"] * 1.2)
    await ctx.emit("order.priced", {"order_id": data["order_id"], "total": total})
"""


def orders(n: int) -> list[dict]:
    return [{"order_id": f"A{i}", "amount_cents": 100 + i} for i in range(n)]


async def test_a_sample_with_nothing_expected_is_not_scored(project: Path) -> None:
    ds = we.Dataset("bare", root=project)
    for o in ORDERS:
        ds.add({"topic": "order.placed", "data": o})  # no expectation
    r = await we.run(ds, progress=False)  # default scorers: payload_equals, error_free
    for x in r:
        assert x.scores["payload_equals"] == {
            "value": None,
            "passed": None,
            "rationale": "not scored: the sample expects nothing",
        }
    row = r.summary.set_index("scorer").loc["payload_equals"]
    assert row["n"] == 0 and row["n_not_scored"] == len(ORDERS) and row["n_passed"] == 0
    text = r.describe()
    assert f"payload_equals: mean —, pass rate — (n=0, {len(ORDERS)} not scored)" in text
    assert "error_free: mean 1.000, pass rate 100.0% (n=6)" in text
    assert "nan" not in text.lower()
    assert "nan" not in r._repr_html_().lower()


async def test_a_crashed_run_fails_every_outcome_scorer_of_300_samples(make_project) -> None:
    root = make_project("crashing", extra={"src/price.step.py": CRASHING_PRICE})
    ds = we.Dataset("many", root=root, autosave=False)
    for i, o in enumerate(orders(300)):
        # a third of the samples expect something; the others expect nothing
        expected = {
            "order.priced": {"order_id": o["order_id"], "total": round(o["amount_cents"] * 1.2)}
        }
        ds.add({"topic": "order.placed", "data": o}, expected=expected if i % 3 == 0 else None)
    ds.add({"topic": "order.renamed", "data": {"x": 1}}, id="gone")  # cannot even run
    called: list[str] = []

    def plain(sample, output) -> bool:  # a custom scorer: not called for failed runs
        called.append(sample.id)
        return True

    @sc.scorer("looks_at_failures", score_failed_runs=True)
    def opted_out(sample, output) -> bool:
        return output.failed

    scorers = [
        sc.payload_equals(),
        sc.emitted("order.notified"),
        sc.sequence(["order.placed", "order.validated"]),
        sc.step_output("Validate", "order_id", equals="A1"),
        sc.not_emitted("order.rejected"),
        plain,
        opted_out,
        sc.error_free(),
        sc.latency_budget(60_000),
    ]
    r = await we.run(ds, scorers=scorers, concurrency=8, progress=False)
    assert len(r) == 301
    crashed = [x for x in r if x.failed]
    n_crash = len([o for o in orders(300) if int(o["order_id"][1:]) % 4 == 0])
    assert len(crashed) == n_crash + 1 == 76
    outcome = [s.name for s in we.runner.resolve_scorers(scorers)[:6]]
    for x in crashed:
        for name in outcome:
            s = x.scores[name]
            assert s["value"] == 0.0 and s["passed"] is False, (x.sample_id, name, s)
            assert s["rationale"].startswith("the run failed: ")
        why = x.scores["payload_equals"]["rationale"]
        if x.sample_id == "gone":
            assert "order.renamed" in why
        else:
            assert f"no price for {ds[x.sample_id].data['order_id']}" in why
        assert x.scores["looks_at_failures"]["passed"] is True
        assert x.scores["error_free"]["passed"] is False
    assert sorted(called) == sorted(x.sample_id for x in r if not x.failed)
    # a crashed sample that expected nothing fails too: no failed run passes payload_equals
    assert not any(x.scores["payload_equals"]["passed"] for x in crashed)
    ok = [x for x in r if not x.failed]
    assert {x.scores["payload_equals"]["passed"] for x in ok} == {True, None}
    summary = r.summary.set_index("scorer")
    with_expectation = [x for x in ok if ds[x.sample_id].expected]
    assert len(with_expectation) == 75
    assert summary.loc["payload_equals", "n"] == len(with_expectation) + len(crashed)
    assert summary.loc["payload_equals", "n_passed"] == len(with_expectation)
    assert summary.loc["payload_equals", "n_not_scored"] == 301 - 75 - 76
    assert summary.loc["error_free", "pass_rate"] == pytest.approx(225 / 301)
    # latency is not an outcome: a run that crashed still has its latency judged
    gone = next(x for x in r if x.sample_id == "gone")
    assert gone.scores["latency_budget(60000ms)"]["passed"] is None  # it did not run
    assert all(x.scores["latency_budget(60000ms)"]["passed"] for x in crashed if x is not gone)


async def test_scorer_errors_are_counted_per_scorer_and_warned(project: Path) -> None:
    ds = we.Dataset("orders", root=project)
    for o in ORDERS:
        ds.add({"topic": "order.placed", "data": o})

    def fragile(sample, output) -> bool:
        if sample.data["order_id"] in ("A2", "A4"):
            raise KeyError("total")
        return True

    def broken(sample, output) -> str:
        return "yes"  # not a Score, a bool or a number

    with pytest.warns(ScorerErrorWarning, match=r"fragile raised for 2 sample\(s\)"):
        r = await we.run(ds, scorers=[fragile, broken, sc.error_free()], progress=False)
    assert r.scorer_errors == {"fragile": 2, "broken": 6}
    stored = [json.loads(line) for line in (r.path / "results.jsonl").read_text().splitlines()]
    bad = [s["scores"]["fragile"] for s in stored if "error" in s["scores"]["fragile"]]
    assert (
        bad == [{"value": None, "passed": None, "rationale": "", "error": "KeyError: 'total'"}] * 2
    )
    summary = r.summary.set_index("scorer")
    assert summary.loc["fragile", "n_scorer_errors"] == 2 and summary.loc["fragile", "n"] == 4
    assert summary.loc["fragile", "pass_rate"] == 1.0  # errors are neither passes nor failures
    text = r.describe()
    assert "fragile: mean 1.000, pass rate 100.0% (n=4, 2 scorer error(s))" in text
    assert (
        "warning: scorer error(s): fragile raised for 2 sample(s) (first: KeyError: 'total')"
        in text
    )
    assert "broken raised for 6 sample(s) (first: TypeError: a scorer must return" in text
    loaded = we.EvalResult.load(r.eval_id, project)
    assert loaded.scorer_errors == {"fragile": 2, "broken": 6}


async def test_the_meta_records_kind_and_spec_and_old_evals_still_load(project: Path) -> None:
    ds = we.Dataset("orders", root=project)
    ds.add({"topic": "order.placed", "data": ORDERS[0]})

    def mine(sample, output) -> float:
        return 0.7

    scorers = [
        sc.payload_equals("order.priced"),
        sc.error_free(),
        sc.latency_budget(250),
        sc.step_latency("Price", 50),
        sc.event_count("order.priced", 1),
        mine,
        sc.error_free(),
    ]
    r = await we.run(ds, scorers=scorers, progress=False)
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["scorers"] == [
        "payload_equals(order.priced)",
        "error_free",
        "latency_budget(250ms)",
        "step_latency(Price,50ms)",
        "event_count(order.priced=1)",
        "mine",
        "error_free#2",
    ]
    assert meta["scorer_info"] == [
        {
            "name": "payload_equals(order.priced)",
            "kind": "outcome",
            "spec": "payload_equals:order.priced",
        },
        {"name": "error_free", "kind": "error", "spec": "error_free"},
        {"name": "latency_budget(250ms)", "kind": "latency", "spec": "latency_budget:250"},
        {"name": "step_latency(Price,50ms)", "kind": "latency", "spec": "step_latency:Price:50"},
        {
            "name": "event_count(order.priced=1)",
            "kind": "outcome",
            "spec": "event_count:order.priced:1",
        },
        {"name": "mine", "kind": "custom", "spec": None},
        {"name": "error_free#2", "kind": "error", "spec": "error_free"},
    ]
    # every spec builds the scorer it names
    for info in meta["scorer_info"][:5]:
        assert sc.from_spec(info["spec"]).name == info["name"]
    # an eval stored before kinds were recorded: names only
    del meta["scorer_info"]
    (r.path / "meta.json").write_text(json.dumps(meta))
    old = we.EvalResult.load(r.eval_id, project)
    assert [old.meta.kind(n) for n in old.scorers] == [
        "outcome",
        "error",
        "latency",
        "latency",
        "outcome",
        "custom",
        "error",
    ]
    assert list(old.summary["kind"]) == [old.meta.kind(n) for n in old.scorers]
    # latency scores carry what was observed and the tolerance compare allows
    lat = old.results[0].scores["latency_budget(250ms)"]
    assert lat["observed"] == pytest.approx(old.results[0].latency_ms)
    assert lat["rel_tolerance"] == 0.2
    assert "observed" not in old.results[0].scores["error_free"]
