"""Eval runs: isolation, storage, repeats, bad samples, raising scorers, resuming."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from eval_support import ORDERS, write

from wistro import eval as we
from wistro.eval import scorers as sc


class Interrupted(Exception):
    """Stands for the process being stopped in the middle of an eval."""


def dataset(root: Path, name: str = "orders", orders: list[dict] = ORDERS) -> we.Dataset:
    ds = we.Dataset(name, root=root)
    for o in orders:
        total = round(o["amount_cents"] * 1.2)
        ds.add(
            {"topic": "order.placed", "data": o},
            expected={"order.priced": {"order_id": o["order_id"], "total": total}},
        )
    return ds


def lines(result: we.EvalResult) -> list[dict]:
    assert result.path is not None
    return [json.loads(x) for x in (result.path / "results.jsonl").read_text().splitlines()]


async def test_every_sample_runs_in_isolation_and_is_stored(project: Path) -> None:
    ds = dataset(project)
    r = await we.run(
        ds, scorers=[sc.payload_equals("order.priced"), sc.error_free()], progress=False
    )
    assert len(r) == len(ORDERS) and r.complete
    assert [x.sample_id for x in r] == [s.id for s in ds]
    assert len({x.trace_id for x in r}) == len(ORDERS)
    first = r.results[0]
    assert first.state == {"orders": {"A0": {"total": 120}}}  # fresh state: only its own order
    assert first.topics == ["order.placed", "order.validated", "order.priced", "order.notified"]
    assert [s["step"] for s in first.spans] == ["Validate", "Price", "Notify"]
    assert first.spans[1]["writes"] == [["set", "orders", "A0", {"total": 120}]]
    assert first.latency_ms is not None and first.latency_ms > 0
    assert all(x.scores["payload_equals(order.priced)"]["passed"] for x in r)
    assert r.summary.set_index("scorer")["pass_rate"].to_dict() == {
        "payload_equals(order.priced)": 1.0,
        "error_free": 1.0,
    }
    assert r.path == project / ".wistro" / "evals" / r.eval_id
    assert len(lines(r)) == len(ORDERS)
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["dataset_version"] == ds.version and meta["status"] == "complete"
    loaded = we.EvalResult.load("latest", project)
    assert loaded.eval_id == r.eval_id and len(loaded) == len(ORDERS)
    assert "payload_equals(order.priced)" in r.frame.columns
    assert "pass rate 100.0%" in r.describe()


async def test_repeats_and_default_scorers(project: Path) -> None:
    r = await we.run(dataset(project), repeats=3, concurrency=4, progress=False)
    assert len(r) == 3 * len(ORDERS)
    assert sorted({x.repeat for x in r}) == [0, 1, 2]
    assert r.scorers == ["payload_equals", "error_free"]


async def test_a_sample_whose_topic_is_gone_is_reported_and_the_others_run(project: Path) -> None:
    ds = dataset(project)
    ds.add({"topic": "order.renamed", "data": {"x": 1}}, id="gone")
    r = await we.run(ds, scorers=[sc.error_free()], progress=False)
    by_id = {x.sample_id: x for x in r}
    assert by_id["gone"].status == "not_run"
    assert "order.renamed" in (by_id["gone"].error or "")
    assert not by_id["gone"].scores["error_free"]["passed"]
    assert sum(x.status == "ok" for x in r) == len(ORDERS)


async def test_a_handler_that_raises_is_an_error_of_that_sample(make_project) -> None:
    root = make_project(
        "failing",
        extra={
            "src/price.step.py": """
            config = {"name": "Price", "subscribes": ["order.validated"], "emits": ["order.priced"]}

            async def handler(data, ctx):
                if data["order_id"] == "A1":
                    raise RuntimeError("no price for A1")
                await ctx.emit("order.priced", {"order_id": data["order_id"], "total": 1})
            """
        },
    )
    r = await we.run(dataset(root), scorers=[sc.error_free()], progress=False)
    bad = [x for x in r if x.failed]
    assert [x.sample_id for x in bad] == [r.results[1].sample_id]
    assert bad[0].status == "error" and "no price for A1" in bad[0].errors[0]
    assert bad[0].spans[1]["status"] == "error"


async def test_a_scorer_that_raises_is_recorded_for_that_sample(project: Path) -> None:
    def fragile(sample, output) -> bool:
        if sample.data["order_id"] == "A2":
            raise KeyError("total")
        return True

    r = await we.run(dataset(project), scorers=[fragile, sc.error_free()], progress=False)
    errs = {x.sample_id: x.scores["fragile"].get("error") for x in r}
    assert sum(e is not None for e in errs.values()) == 1
    assert "KeyError" in next(e for e in errs.values() if e)
    assert all(x.scores["error_free"]["passed"] for x in r)
    assert r.summary.set_index("scorer").loc["fragile", "n_scorer_errors"] == 1


async def test_an_interrupted_eval_resumes_without_duplicates(project: Path) -> None:
    ds = dataset(project)
    seen: list[str] = []

    def stop_after_three(result: we.SampleResult) -> None:
        seen.append(result.sample_id)
        if len(seen) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        await we.run(
            ds, scorers=[sc.error_free()], concurrency=1, on_result=stop_after_three, progress=False
        )
    [(eval_id, meta)] = we.list_evals(project)
    assert meta.status == "running"
    results = project / ".wistro" / "evals" / eval_id / "results.jsonl"
    assert len(results.read_text().splitlines()) == 3
    with results.open("a") as fh:  # a line cut short by the interruption
        fh.write('{"sample_id": "A')

    ran: list[str] = []
    r = await we.run(
        ds, scorers=[sc.error_free()], on_result=lambda x: ran.append(x.sample_id), progress=False
    )
    assert r.eval_id == eval_id and r.complete
    assert len(ran) == len(ORDERS) - 3 and not set(ran) & set(seen)
    assert sorted(x.sample_id for x in r) == sorted(s.id for s in ds)
    assert len(lines(r)) == len(ORDERS)  # the broken line is skipped, no duplicates

    # a complete eval is not resumed: running again is a new eval
    again = await we.run(ds, scorers=[sc.error_free()], progress=False)
    assert again.eval_id != eval_id


async def test_a_cancelled_eval_resumes(project: Path) -> None:
    ds = dataset(project)
    started = asyncio.Event()
    done: list[str] = []

    def hook(result: we.SampleResult) -> None:
        done.append(result.sample_id)
        if len(done) == 2:
            started.set()

    task = asyncio.ensure_future(
        we.run(ds, scorers=[sc.error_free()], concurrency=1, on_result=hook, progress=False)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    r = await we.run(ds, scorers=[sc.error_free()], progress=False)
    assert len(r) == len(ORDERS) and len(lines(r)) == len(ORDERS)


async def test_different_scorers_are_a_different_eval(project: Path) -> None:
    ds = dataset(project)
    a = await we.run(ds, scorers=[sc.error_free()], progress=False)
    write(project, {"datasets/.keep": ""})
    b = await we.run(ds, scorers=[sc.emitted("order.priced")], progress=False)
    assert a.eval_id != b.eval_id
    assert a.meta.key != b.meta.key


async def test_a_sample_that_hangs_times_out_and_the_next_one_runs(make_project) -> None:
    root = make_project(
        "slow",
        extra={
            "src/notify.step.py": """
            import asyncio

            config = {"name": "Notify", "subscribes": ["order.priced"], "emits": ["order.notified"]}

            async def handler(data, ctx):
                if data["order_id"] == "A0":
                    await asyncio.sleep(30)
                await ctx.emit("order.notified", {"order_id": data["order_id"]})
            """
        },
    )
    r = await we.run(
        dataset(root, orders=ORDERS[:3]),
        scorers=[sc.error_free()],
        concurrency=1,
        timeout_s=0.3,
        progress=False,
    )
    assert [x.status for x in r] == ["error", "ok", "ok"]
    assert "did not finish within 0.3s" in (r.results[0].error or "")


async def test_repeats_are_aggregated_in_compare(project: Path) -> None:
    ds = dataset(project, orders=ORDERS[:4])
    a = await we.run(ds, scorers=[sc.error_free()], repeats=3, progress=False)
    b = await we.run(ds, scorers=[sc.error_free()], repeats=3, resume=False, progress=False)
    cmp = we.compare(a, b)
    assert len(cmp.rows) == 4 and set(cmp.rows["status"]) == {"unchanged"}
    assert cmp.summary.iloc[0]["n_paired"] == 4
