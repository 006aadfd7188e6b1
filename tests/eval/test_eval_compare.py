"""compare: a regression at a changed step, pairing, warnings, several versions, pytest helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from eval_support import ORDERS, git

from wistro import eval as we
from wistro.eval import scorers as sc
from wistro.eval.compare import EvalComparisonWarning
from wistro.eval.results import EvalMeta, EvalResult, SampleResult
from wistro.eval.version import ProjectVersion, open_version

SCORERS = [
    sc.payload_equals(),
    sc.payload_equals("order.priced"),
    sc.error_free(),
    sc.emitted("order.notified"),
]


async def golden_dataset(root: Path, revision: str | None = None) -> we.Dataset:
    """Record runs of ``revision`` and make them the samples (their payloads: the expectations)."""
    ds = we.Dataset("golden", root=root)
    with open_version(revision, root) as (_v, app):
        try:
            for o in ORDERS:
                ds.add_run(await app.emit("order.placed", o))
        finally:
            await app.aclose()
    return ds


async def test_compare_flags_the_regression_at_the_changed_step(git_project: Path) -> None:
    ds = await golden_dataset(git_project, "HEAD~1")
    old = await we.run(ds, version="HEAD~1", scorers=SCORERS, label="before", progress=False)
    new = await we.run(ds, scorers=SCORERS, label="after", progress=False)
    assert old.version.git_commit == git(git_project, "rev-parse", "HEAD~1")
    assert len(git(git_project, "worktree", "list").splitlines()) == 1

    cmp = we.compare(old, new)
    # every sample regressed by the same amount: the intervals say they cannot vary
    assert sorted(cmp.warnings) == [
        "payload_equals(order.priced): the 95% interval [-1.000, -1.000] is zero-width: all 6 "
        "paired differences are -1.000, so resampling cannot vary them",
        "payload_equals: the 95% interval [-0.667, -0.667] is zero-width: all 6 paired "
        "differences are -0.667, so resampling cannot vary them",
    ]
    gate = cmp.gate()
    assert not gate.passed and gate.line.startswith("gate failed: payload_equals regressed: ")
    assert gate.reasons[-1] == "the worse samples first diverge at step 'Price' (6 of 6)"
    s = cmp.summary.set_index("scorer")
    assert s.loc["payload_equals", "mean_a"] == 1.0
    assert s.loc["payload_equals", "mean_b"] == pytest.approx(1 / 3)  # validated still matches
    assert s.loc["payload_equals", "verdict"] == "regressed"
    assert s.loc["payload_equals", "p_value"] == pytest.approx(2 * 0.5**6)
    assert s.loc["payload_equals", "test"] == "wilcoxon"  # fractions: numeric
    assert s.loc["payload_equals(order.priced)", "test"] == "mcnemar"  # pass/fail
    assert s.loc["payload_equals(order.priced)", "p_value"] == pytest.approx(2 * 0.5**6)
    assert s.loc["payload_equals(order.priced)", "verdict"] == "regressed"
    assert s.loc["error_free", "verdict"] == "no significant change"
    assert s.loc["error_free", "p_value"] == 1.0

    rows = cmp.rows
    assert list(rows["status"]) == ["regressed"] * len(ORDERS)
    assert rows["output_changed"].all()
    assert set(rows["first_divergent_step"]) == {"Price"}
    assert list(cmp.regressions["sample_id"]) == [x.id for x in ds]

    steps = cmp.steps.set_index("step")
    assert steps.loc["Price", "change"] == "modified"
    assert steps.loc["Validate", "change"] == "unchanged"
    assert steps.loc["Price", "n_first_divergent"] == len(ORDERS)
    assert steps.loc["Notify", "n_regressions"] == len(ORDERS)

    diff = cmp.step_diff(ds.samples[0].id).set_index("step")
    assert list(diff["differs"]) == [False, True, True]
    assert diff.loc["Price", "source_changed"] == "modified"

    page = cmp._repr_html_()
    assert page.index("Regressions") < page.index("Scorers")
    assert "Price" in cmp.report()
    assert cmp.has_regression

    # the same version twice: nothing changed
    again = await we.run(ds, scorers=SCORERS, progress=False)
    same = we.compare(new, again)
    assert set(same.rows["status"]) == {"unchanged"}
    assert not same.rows["output_changed"].any()
    assert not same.has_regression

    # stored evals by id, and several versions against a baseline
    assert we.compare(old.eval_id, new.eval_id, root=git_project).summary.equals(cmp.summary)
    multi = we.compare([old, new, again], baseline=old)
    assert list(multi.summary["version"].unique()) == ["after", again.label]
    assert len(multi.summary) == 2 * len(SCORERS)
    assert len(multi.regressions) == 2 * len(ORDERS)


async def test_new_and_fixed_errors(make_project) -> None:
    good = make_project("good")
    broken = make_project(
        "broken",
        extra={
            "src/notify.step.py": """
            config = {"name": "Notify", "subscribes": ["order.priced"], "emits": ["order.notified"]}

            async def handler(data, ctx):
                if data["order_id"] in ("A0", "A1"):
                    raise RuntimeError("mail server down")
                await ctx.emit("order.notified", {"order_id": data["order_id"], "total": data["total"]})
            """
        },
    )
    ds = await golden_dataset(good)
    a = await we.run(ds, scorers=SCORERS, progress=False)
    b = await we.run(ds, version=str(broken), scorers=SCORERS, progress=False)
    rows = we.compare(a, b).rows.set_index("sample_id")
    ids = [s.id for s in ds]
    assert rows.loc[ids[0], "status"] == "new_error"
    assert rows.loc[ids[0], "first_divergent_step"] == "Notify"
    assert "mail server down" in rows.loc[ids[0], "error_b"]
    assert set(rows.loc[ids[2:], "status"]) == {"unchanged"}
    back = we.compare(b, a).rows.set_index("sample_id")
    assert back.loc[ids[1], "status"] == "fixed_error"
    with pytest.raises(AssertionError, match="mail server down"):
        we.assert_no_regression(a, b)


async def test_different_datasets_warn_and_compare_shared_samples(project: Path) -> None:
    first = we.Dataset("first", root=project)
    for o in ORDERS[:4]:
        first.add({"topic": "order.placed", "data": o})
    second = we.Dataset("second", root=project)
    for o in ORDERS[1:5]:
        second.add({"topic": "order.placed", "data": o}, id=f"renamed-{o['order_id']}")
    a = await we.run(first, scorers=SCORERS, progress=False)
    b = await we.run(second, scorers=SCORERS, progress=False)
    with pytest.warns(EvalComparisonWarning, match="different dataset versions"):
        cmp = we.compare(a, b)
    assert any("different dataset" in w for w in cmp.warnings)
    statuses = cmp.rows.set_index("sample_id")["status"]
    assert sorted(statuses.value_counts().to_dict().items()) == [
        ("only_a", 1),
        ("only_b", 1),
        ("unchanged", 3),
    ]
    paired = cmp.rows[cmp.rows["status"] == "unchanged"]
    assert all(str(x).startswith("renamed-") for x in paired["sample_id_b"])  # by input hash
    n_paired = cmp.summary.set_index("scorer")["n_paired"].to_dict()
    # the samples expect nothing: payload_equals does not score them (neither pass nor fail)
    assert n_paired == {
        "payload_equals": 0,
        "payload_equals(order.priced)": 0,
        "error_free": 3,
        "emitted(order.notified)": 3,
    }


async def test_assert_no_regression_passes_when_nothing_got_worse(project: Path) -> None:
    ds = await golden_dataset(project)
    a = await we.run(ds, scorers=SCORERS, progress=False)
    b = await we.run(ds, scorers=SCORERS, progress=False)
    cmp = we.assert_no_regression(a, b)
    assert not cmp.has_regression
    with pytest.raises(AssertionError, match="no such scorer"):
        we.assert_no_regression(a, b, scorers=["nope"])


def synthetic(label: str, outcomes: list[bool], dataset_version: str = "d1") -> EvalResult:
    """An eval built through the public constructors, for statistics with a known answer."""
    meta = EvalMeta("synthetic", dataset_version, ProjectVersion(label * 8, label=label), ["ok"])
    meta.status = "complete"
    rows = []
    for i, ok in enumerate(outcomes):
        r = SampleResult(f"s{i}", f"h{i}", "t", latency_ms=1.0)
        r.scores["ok"] = {"value": float(ok), "passed": ok, "rationale": ""}
        rows.append(r)
    return EvalResult(f"eval-{label}", meta, rows)


def test_thirty_improved_pairs_are_significant() -> None:
    cmp = we.compare(synthetic("a", [False] * 30), synthetic("b", [True] * 30))
    row = cmp.summary.iloc[0]
    assert row["p_value"] < 0.05 and row["verdict"] == "improved"
    assert (row["ci_low"], row["ci_high"]) == (1.0, 1.0)
    assert set(cmp.rows["status"]) == {"improved"}
    equal = we.compare(synthetic("a", [True, False] * 15), synthetic("b", [True, False] * 15))
    assert equal.summary.iloc[0]["p_value"] == 1.0
    assert equal.summary.iloc[0]["verdict"] == "no significant change"


def test_the_bootstrap_interval_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    a = synthetic("a", list(rng.random(100) < 0.5))
    b = synthetic("b", list(rng.random(100) < 0.7))
    one = we.compare(a, b).summary
    two = we.compare(a, b).summary
    assert one.equals(two)
    assert one.iloc[0]["ci_low"] < one.iloc[0]["diff"] < one.iloc[0]["ci_high"]


def test_assert_no_regression_limited_to_some_scorers() -> None:
    a = synthetic("a", [True] * 10)
    b = synthetic("b", [True] * 9 + [False])
    with pytest.raises(AssertionError, match="1 sample"):
        we.assert_no_regression(a, b)
    with pytest.raises(AssertionError, match="now failing: ok"):
        we.assert_no_regression(a, b, scorers=["ok"])
    b.meta.scorers.append("other")  # a scorer only b has: nothing to compare for it
    for r in b:
        r.scores["other"] = {"value": 1.0, "passed": True, "rationale": ""}
    with pytest.raises(AssertionError, match="no such scorer"):
        we.assert_no_regression(a, b, scorers=["other"])
