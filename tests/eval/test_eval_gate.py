"""The regression gate (``Comparison.gate``, ``wistro eval compare --fail-on-regression``,
``assert_no_regression``): it fails on real regressions, small or significant, and on nothing to
judge; it passes on noise. Real evals of real projects where the behaviour matters; synthetic
evals (through the public constructors) for statistics with a known answer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from eval_support import write

from wistro import eval as we
from wistro.cli.main import main
from wistro.errors import WistroError
from wistro.eval import scorers as sc
from wistro.eval.compare import EvalComparisonWarning
from wistro.eval.compare.compute import min_discordant
from wistro.eval.results import EvalMeta, EvalResult, SampleResult
from wistro.eval.version import ProjectVersion

PLACE = """
config = {"name": "Place", "subscribes": ["order.placed"], "emits": ["order.checked"],
          "flows": ["orders"]}

async def handler(data, ctx):
    await ctx.emit("order.checked", {"order_id": data["order_id"], "n": data["n"]})
"""

# approves about 70% of orders at random (noise: the same code gives other outputs each run)
NOISY = """
import random

config = {"name": "Approve", "subscribes": ["order.checked"], "emits": ["order.decided"],
          "flows": ["orders"]}

async def handler(data, ctx):
    await ctx.emit("order.decided", {"order_id": data["order_id"],
                                    "approved": random.random() < 0.7})
"""

# the same noise, seeded by the order and a salt: deterministic for a given file
SEEDED = """
import random

SALT = "__SALT__"
config = {"name": "Approve", "subscribes": ["order.checked"], "emits": ["order.decided"],
          "flows": ["orders"]}

async def handler(data, ctx):
    rng = random.Random(SALT + data["order_id"])
    await ctx.emit("order.decided", {"order_id": data["order_id"], "approved": rng.random() < 0.7})
"""

# a price step: __BUG__ decides which orders get the wrong total
PRICE = """
config = {"name": "Price", "subscribes": ["order.checked"], "emits": ["order.priced"],
          "flows": ["orders"]}

async def handler(data, ctx):
    total = data["n"] * 100
    if __BUG__:
        total += 1
    await ctx.emit("order.priced", {"order_id": data["order_id"], "total": total})
"""

SHIP = """
config = {"name": "Ship", "subscribes": ["order.priced"], "emits": ["order.shipped"],
          "flows": ["orders"]}

async def handler(data, ctx):
    await ctx.emit("order.shipped", {"order_id": data["order_id"], "total": data["total"]})
"""

APPROVED = sc.scorer("approved")(
    lambda sample, out: any(p.get("approved") for p in out.payloads("order.decided"))
)


def project(root: Path, step: str) -> Path:
    return write(
        root,
        {"wistro.yml": "name: orders\n", "src/place.step.py": PLACE, "src/step.step.py": step},
    )


def orders(root: Path, n: int, name: str = "orders") -> we.Dataset:
    ds = we.Dataset(name, root=root)
    for i in range(n):
        ds.add({"topic": "order.placed", "data": {"order_id": f"o{i}", "n": i}})
    return ds


def quiet_compare(a: EvalResult, b: EvalResult) -> we.Comparison:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp: we.Comparison = we.compare(a, b)
    return cmp


def synthetic(
    label: str,
    outcomes: list[bool | None],
    *,
    version: str | None = None,
    errors: int = 0,
) -> EvalResult:
    """An eval of samples s0.. with one scorer ``ok``: passed / failed / None (not scored); the
    first ``errors`` samples' scorer raised."""
    meta = EvalMeta("synthetic", "d1", ProjectVersion(version or label * 8, label=label), ["ok"])
    meta.status = "complete"
    rows = []
    for i, ok in enumerate(outcomes):
        r = SampleResult(f"s{i}", f"h{i}", "t", latency_ms=1.0)
        if i < errors:
            r.scores["ok"] = {"value": None, "passed": None, "rationale": "", "error": "KeyError"}
        elif ok is None:
            r.scores["ok"] = {"value": None, "passed": None, "rationale": "not scored: nothing"}
        else:
            r.scores["ok"] = {"value": float(ok), "passed": ok, "rationale": ""}
        rows.append(r)
    return EvalResult(f"eval-{label}", meta, rows)


# ---------------------------------------------------------------- noise passes
async def test_two_evals_of_identical_noisy_code_pass_the_default_gate(tmp_path: Path) -> None:
    root = project(tmp_path / "noisy", NOISY)
    ds = orders(root, 100)
    a = await we.run(ds, scorers=[APPROVED], label="first", progress=False)
    b = await we.run(ds, scorers=[APPROVED], label="second", progress=False, resume=False)
    cmp = quiet_compare(a, b)
    counts = cmp.rows["status"].value_counts().to_dict()
    assert counts.get("flaky", 0) > 5, counts  # the noise is there: samples flip
    assert "regressed" not in counts and "improved" not in counts
    gate = cmp.gate()
    assert gate.passed, gate.reasons
    assert f"{counts['flaky']} flaky sample(s) left out of the gate" in gate.notes
    assert gate.line == "gate: passed (approved)"
    assert any("same version" in w for w in cmp.warnings)
    we.assert_no_regression(a, b)  # the pytest helper agrees


async def test_balanced_noise_between_two_versions_passes(tmp_path: Path) -> None:
    """Two versions whose code differs (a salt) but behaves the same on average: samples flip
    both ways and the test sees no significant change."""
    ds = orders(project(tmp_path / "base", SEEDED.replace("__SALT__", "x")), 100)
    v2 = project(tmp_path / "v2", SEEDED.replace("__SALT__", "y"))
    a = await we.run(ds, scorers=[APPROVED], progress=False)
    b = await we.run(ds, version=str(v2), scorers=[APPROVED], progress=False)
    cmp = quiet_compare(a, b)
    row = cmp.summary.iloc[0]
    assert row["n_regressed"] > 5 and row["n_improved"] > 5  # the old gate failed on this
    assert row["verdict"] == "no significant change" and row["can_reach_significance"]
    assert cmp.gate().passed and not cmp.has_regression
    assert cmp.any_worse  # samples did get worse: only the gate judges them noise


# ---------------------------------------------------------------- real regressions fail
async def test_a_planted_regression_in_one_step_of_200_samples_is_found_and_named(
    tmp_path: Path,
) -> None:
    base = write(
        tmp_path / "shop",
        {
            "wistro.yml": "name: orders\n",
            "src/place.step.py": PLACE,
            "src/price.step.py": PRICE.replace("__BUG__", "False"),
            "src/ship.step.py": SHIP,
        },
    )
    ds = we.Dataset("orders", root=base)
    for i in range(200):
        data = {"order_id": f"o{i}", "n": i}
        ds.add(
            {"topic": "order.placed", "data": data},
            expected={"order.shipped": {"order_id": f"o{i}", "total": i * 100}},
        )
    ds.save()
    bugged = write(
        tmp_path / "bugged",
        {
            "wistro.yml": "name: orders\n",
            "src/place.step.py": PLACE,
            "src/price.step.py": PRICE.replace("__BUG__", 'data["n"] % 5 == 0'),
            "src/ship.step.py": SHIP,
        },
    )
    scorers = [sc.payload_equals(), sc.error_free()]
    a = await we.run(ds, scorers=scorers, label="v1", progress=False)
    b = await we.run(ds, version=str(bugged), scorers=scorers, label="v2", progress=False)
    cmp = quiet_compare(a, b)
    s = cmp.summary.set_index("scorer")
    assert s.loc["payload_equals", "n_regressed"] == 40
    assert s.loc["payload_equals", "verdict"] == "regressed"
    assert s.loc["error_free", "verdict"] == "no significant change"
    gate = cmp.gate()
    assert not gate.passed
    assert gate.reasons[0].startswith("payload_equals regressed: 1.000 -> 0.800 (diff -0.200")
    assert gate.reasons[-1] == "the worse samples first diverge at step 'Price' (40 of 40)"
    steps = cmp.steps.set_index("step")
    assert steps.loc["Price", "change"] == "modified"
    assert set(steps.index[steps["change"] == "modified"]) == {"Price"}
    assert steps.loc["Price", "n_first_divergent"] == 40
    assert steps.loc["Price", "n_divergent"] == 40  # the 160 others did not diverge at all
    assert steps.loc["Ship", "n_first_divergent"] == 0 and steps.loc["Ship", "n_regressions"] == 40
    # per-step numbers: every step ran 200 times on each side, none failed
    assert list(steps.loc[["Place", "Price", "Ship"], "spans_b"]) == [200, 200, 200]
    assert steps.loc["Price", "error_rate_b"] == 0.0 and steps.loc["Price", "p50_ms_b"] >= 0.0
    # the CLI: the report ends with the gate's verdict, and --fail-on-regression exits 1
    out = CliRunner().invoke(
        main, ["-C", str(base), "eval", "compare", a.eval_id, b.eval_id, "--fail-on-regression"]
    )
    assert out.exit_code == 1
    assert "gate failed: payload_equals regressed: 1.000 -> 0.800" in out.stdout
    assert "  the worse samples first diverge at step 'Price' (40 of 40)" in out.stdout
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith("error: v2 against v1: gate failed: payload_equals regressed")
    )
    with pytest.raises(AssertionError, match="gate failed: payload_equals regressed"):
        we.assert_no_regression(a, b)
    we.assert_no_regression(a, b, scorers=["error_free"])  # per-scorer gating


async def test_five_of_five_regressing_fails_the_gate(tmp_path: Path) -> None:
    base = project(tmp_path / "base", SEEDED.replace("__SALT__", "x"))
    ds = we.Dataset("five", root=base)
    for i in range(5):
        ds.add(
            {"topic": "order.placed", "data": {"order_id": f"o{i}", "n": i}},
            expected={"order.checked": {"order_id": f"o{i}", "n": i}},
        )
    broken = project(tmp_path / "broken", SEEDED.replace("__SALT__", "x"))
    write(broken, {"src/place.step.py": PLACE.replace('"n": data["n"]', '"n": -1')})
    a = await we.run(ds, scorers=[sc.payload_equals("order.checked")], progress=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        b = await we.run(
            ds, version=str(broken), scorers=[sc.payload_equals("order.checked")], progress=False
        )
        cmp = we.compare(a, b)
    row = cmp.summary.iloc[0]
    assert row["n_regressed"] == 5 and row["n_discordant"] == 5
    assert row["p_value"] == pytest.approx(0.0625) and row["verdict"] == "no significant change"
    assert not row["can_reach_significance"]
    texts = [str(w.message) for w in seen]
    assert (
        "payload_equals(order.checked): 5 discordant pair(s) of 5: the mcnemar test cannot "
        "reach p < 0.05 with fewer than 6; the default gate fails on any regression of "
        "payload_equals(order.checked) instead"
    ) in texts
    assert any("is zero-width" in t and "[-1.000, -1.000]" in t for t in texts)
    gate = cmp.gate()
    assert gate.reasons[0] == (
        "payload_equals(order.checked): 5 sample(s) regressed, and 5 discordant pair(s) are too "
        "few for the mcnemar test to reach p < 0.05, so any regression fails the gate"
    )
    # other rules: a count instead of significance
    assert not cmp.gate(max_regressions=4).passed
    assert cmp.gate(max_regressions=5).passed


def test_min_discordant_is_where_the_exact_test_can_reach_alpha() -> None:
    assert min_discordant(0.05) == 6
    assert min_discordant(0.01) == 8
    assert 2 * 0.5 ** min_discordant(0.05) < 0.05 <= 2 * 0.5 ** (min_discordant(0.05) - 1)


# ---------------------------------------------------------------- nothing to judge fails
def test_no_paired_sample_and_empty_evals_fail_the_gate() -> None:
    a = synthetic("a", [True] * 10)
    b = synthetic("b", [True] * 10)
    for r in b.results:
        r.sample_id, r.input_hash = "other-" + r.sample_id, "x" + r.input_hash
    gate = quiet_compare(a, b).gate()
    assert gate.reasons[0] == "no sample could be paired (10 in a, 10 in b; different datasets?)"
    empty = quiet_compare(synthetic("a", []), synthetic("b", [])).gate()
    assert not empty.passed
    assert empty.reasons == ["nothing to compare: both evals have no samples (an empty dataset?)"]


def test_scorer_errors_over_the_share_fail_the_gate_and_are_counted() -> None:
    a = synthetic("a", [True] * 20)
    b = synthetic("b", [True] * 20, errors=3)  # 15% of b's samples
    with pytest.warns(EvalComparisonWarning, match="raised on"):
        cmp = we.compare(a, b)
    row = cmp.summary.iloc[0]
    assert (row["n_errors_a"], row["n_errors_b"], row["n_paired"]) == (0, 3, 17)
    assert cmp.gate().reasons == ["scorer ok raised on 3 of 20 samples of b (15% > 10%)"]
    assert cmp.gate(max_error_share=0.2).passed


def test_not_scored_is_neither_pass_nor_fail() -> None:
    a = synthetic("a", [True] * 10)
    b = synthetic("b", [None] * 10)  # nothing to check on b's side
    cmp = quiet_compare(a, b)
    assert set(cmp.rows["status"]) == {"unchanged"}
    assert cmp.summary.iloc[0]["n_paired"] == 0
    assert cmp.gate().reasons == [  # nothing was judged: say so, rather than pass blind
        "ok: no paired sample was scored on both sides (not scored, or the scorer raised), so "
        "it cannot be judged; gate on other scorers with --gate"
    ]


def test_min_effect_lets_a_small_significant_drop_through() -> None:
    a = synthetic("a", [True] * 200)
    b = synthetic("b", [True] * 188 + [False] * 12)  # -6 points, p < 0.001
    cmp = quiet_compare(a, b)
    assert cmp.summary.iloc[0]["verdict"] == "regressed"
    assert not cmp.gate().passed
    relaxed = cmp.gate(min_effect=0.1)
    assert relaxed.passed
    assert relaxed.notes[0] == (
        "ok regressed significantly but by 0.060, less than the minimum effect 0.1"
    )
    with pytest.raises(WistroError, match="cannot gate on nope: not a scorer of both evals"):
        cmp.gate(["nope"])


# ---------------------------------------------------------------- flaky samples
def test_a_sample_whose_repeats_disagree_is_flaky_and_left_out() -> None:
    a = synthetic("a", [True] * 10)
    b = synthetic("b", [True] * 10)
    # b's s0 and s1 ran twice: one repeat passed, one failed
    for i in (0, 1):
        again = SampleResult(f"s{i}", f"h{i}", "t", repeat=1, latency_ms=1.0)
        again.scores["ok"] = {"value": 0.0, "passed": False, "rationale": ""}
        b.results.append(again)
        b.results[i].scores["ok"] = {"value": 1.0, "passed": True, "rationale": ""}
    b.meta.repeats = 2
    cmp = quiet_compare(a, b)
    status = cmp.rows.set_index("sample_id")["status"]
    assert status["s0"] == status["s1"] == "flaky"
    assert cmp.summary.iloc[0]["n_flaky"] == 2 and cmp.summary.iloc[0]["n_paired"] == 8
    assert cmp.rows.set_index("sample_id").loc["s0", "flaky"] == ["ok"]


async def test_a_sample_that_flips_between_evals_of_one_version_is_flaky(tmp_path: Path) -> None:
    """The baseline was evaluated twice and s flipped between those: against a new version,
    its flip is not counted as a regression."""
    base = project(tmp_path / "base", NOISY)
    ds = orders(base, 60)
    first = await we.run(ds, scorers=[APPROVED], label="v1", progress=False)
    await we.run(ds, scorers=[APPROVED], label="v1", progress=False, resume=False)
    v2 = project(tmp_path / "v2", NOISY + "\n# v2: a comment\n")
    b = await we.run(ds, version=str(v2), scorers=[APPROVED], label="v2", progress=False)
    cmp = quiet_compare(first, b)
    assert cmp.summary.iloc[0]["n_flaky"] > 0
    flaky = set(cmp.rows.loc[cmp.rows["status"] == "flaky", "sample_id"])
    stored = {r.sample_id: r.scores["approved"]["passed"] for r in first.results}
    again = we.EvalResult.load("latest~1", base)
    assert again.label == "v1" and again.eval_id != first.eval_id
    flipped = {
        r.sample_id for r in again.results if r.scores["approved"]["passed"] != stored[r.sample_id]
    }
    assert flipped and flipped <= flaky


# ---------------------------------------------------------------- latency jitter
def test_latency_flips_within_the_relative_tolerance_are_not_regressions() -> None:
    def timed(label: str, ms: list[float]) -> EvalResult:
        meta = EvalMeta("t", "d1", ProjectVersion(label * 8, label=label), ["fast"])
        meta.status = "complete"
        rows = []
        for i, m in enumerate(ms):
            r = SampleResult(f"s{i}", f"h{i}", "t", latency_ms=m)
            ok = m <= 5.0
            r.scores["fast"] = {
                "value": float(ok),
                "passed": ok,
                "rationale": "",
                "observed": m,
                "rel_tolerance": 0.2,
            }
            rows.append(r)
        return EvalResult(f"eval-{label}", meta, rows)

    # around the 5 ms budget: 4.9 -> 5.1 ms flips pass to fail, but only by 4%
    a = timed("a", [4.9] * 30 + [3.0] * 10)
    b = timed("b", [5.1] * 30 + [3.0] * 10)
    cmp = quiet_compare(a, b)
    assert set(cmp.rows["status"]) == {"unchanged"}
    assert cmp.summary.iloc[0]["verdict"] == "no significant change"
    assert cmp.gate().passed
    # a real slowdown, 4.9 -> 8 ms, is one
    slow = quiet_compare(a, timed("c", [8.0] * 30 + [3.0] * 10))
    assert slow.summary.iloc[0]["n_regressed"] == 30
    assert slow.summary.iloc[0]["verdict"] == "regressed" and not slow.gate().passed


# ---------------------------------------------------------------- output
async def test_json_is_strict_and_the_text_report_shows_dashes(tmp_path: Path) -> None:
    root = project(tmp_path / "p", SEEDED.replace("__SALT__", "x"))
    ds = orders(root, 4)
    a = await we.run(ds, scorers=[APPROVED, sc.payload_equals()], progress=False)
    b = await we.run(ds, scorers=[APPROVED, sc.payload_equals()], progress=False, resume=False)
    out = CliRunner().invoke(
        main, ["-C", str(root), "eval", "compare", a.eval_id, b.eval_id, "--json"]
    )
    assert out.exit_code == 0, out.output

    def refuse(token: str) -> None:
        raise AssertionError(f"not JSON: {token}")

    data = json.loads(out.stdout, parse_constant=refuse)
    summary = {r["scorer"]: r for r in data["summary"]}
    assert summary["payload_equals"]["mean_a"] is None  # nothing expected: not scored
    assert data["gate"]["passed"] is False  # ... so nothing could be judged for it
    assert data["n_boot"] == 2000 and data["seed"] == 0 and data["alpha"] == 0.05
    text = CliRunner().invoke(main, ["-C", str(root), "eval", "compare", a.eval_id, b.eval_id])
    assert "nan" not in text.stdout.lower()
    assert "  payload_equals: — -> — (diff —, 95% CI [—, —], p=—, n=0): " in text.stdout
