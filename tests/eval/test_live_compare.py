"""Comparing live versions over recorded production runs, and sampling runs into a dataset.

Two "versions" of the order flow run on real engines and record into one SQLite trace store:
the same project in two folders, each engine given its version (``engine.set_version``), so
every run records it. v2's Validate step raises for 30% of the orders (order ids ending in
0-2)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from eval_support import VALIDATE, order_files, write
from scipy.stats import fisher_exact, mannwhitneyu

import wistro
from wistro import eval as we
from wistro.cli.eval import dataset, eval_group
from wistro.cli.main import Obj, WistroGroup
from wistro.config import DEFAULT_ENV
from wistro.errors import WistroError
from wistro.eval.recorded import parse_duration, parse_sample
from wistro.eval.stats import unpaired_test

V1, V2 = "aaaa1111aaaa", "bbbb2222bbbb"
LABELS = {"v1": V1, "v2": V2}
N = 300
BUGGY = VALIDATE.replace(
    "async def handler(order, ctx):\n",
    "async def handler(order, ctx):\n"
    "    if int(order.order_id[1:]) % 10 < 3:\n"
    "        raise RuntimeError('v2 cannot validate this order')\n",
)


def orders(prefix: str, n: int = N) -> list[dict[str, Any]]:
    return [{"order_id": f"{prefix}{i}", "amount_cents": 100 + i} for i in range(n)]


def cli(root: Path, *args: str) -> Result:
    group = WistroGroup("wistro")
    group.add_command(dataset)
    group.add_command(eval_group)
    return CliRunner().invoke(group, list(args), obj=Obj(str(root), DEFAULT_ENV))


async def _emit(apps: list[tuple[Any, list[dict[str, Any]]]], wave: int = 25) -> None:
    """Emit every app's orders concurrently, in waves of ``wave`` per app, interleaved with the
    order alternating, so that the versions see the same load (in one event loop a run's
    latency is mostly the queue ahead of it)."""
    for start in range(0, max(len(o) for _, o in apps), wave):
        jobs = []
        for i in range(start, start + wave):
            turn = apps if i % 2 == 0 else apps[::-1]
            jobs += [app.emit("order.placed", o[i]) for app, o in turn if i < len(o)]
        await asyncio.gather(*jobs)


class Recorded:
    """Folders v1 (the project the CLI runs in: its trace store is the shared one), v2, and
    v2-fixed (v2's id, v1's code)."""

    def __init__(self, base: Path) -> None:
        self.v1 = write(base / "v1", order_files())
        self.v2 = write(base / "v2", {**order_files(), "src/validate.step.py": BUGGY})
        self.v2_fixed = write(base / "v2-fixed", order_files())
        self.db = wistro.load(self.v1, state="memory").project.traces_path

    def record(self, *batches: tuple[Path, str, list[dict[str, Any]]]) -> None:
        async def go() -> None:
            apps = []
            try:
                for folder, version, inputs in batches:
                    app = wistro.load(folder, state="memory", traces=str(self.db))
                    app.engine.set_version(version, "v1" if version == V1 else "v2")
                    apps.append((app, inputs))
                await _emit(apps)
            finally:
                for app, _ in apps:
                    await app.aclose()

        asyncio.run(go())

    def app(self) -> Any:
        return wistro.load(self.v1, state="memory")


@pytest.fixture(scope="module")
def regressed(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """v1 and the buggy v2, N different orders each."""
    r = Recorded(tmp_path_factory.mktemp("regressed"))
    r.record((r.v1, V1, orders("A")), (r.v2, V2, orders("B")))
    return r


@pytest.fixture(scope="module")
def same(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Two versions running the same code."""
    r = Recorded(tmp_path_factory.mktemp("same"))
    r.record((r.v1, V1, orders("A")), (r.v2_fixed, V2, orders("B")))
    return r


@pytest.fixture
def app_of() -> Iterator[Any]:
    apps: list[Any] = []

    def make(r: Recorded) -> Any:
        apps.append(r.app())
        return apps[-1]

    yield make
    for app in apps:
        asyncio.run(app.aclose())


# ---------------------------------------------------------------- compare_live
def test_compare_live_finds_the_planted_regression(regressed: Recorded, app_of: Any) -> None:
    cmp = we.compare_live(app_of(regressed), "v1", "v2", since="1h", labels=LABELS)
    assert isinstance(cmp, we.LiveComparison) and isinstance(cmp, we.Comparison)
    assert cmp.versions == (V1, V2) and (cmp.a.label, cmp.b.label) == ("v1", "v2")
    assert len(cmp.a.results) == N and len(cmp.b.results) == N
    assert cmp.pairing == "unpaired"  # every order is a different input
    row = cmp.summary.set_index("scorer").loc["error_free"]
    assert row["mean_a"] == 1.0 and row["mean_b"] == pytest.approx(0.7)
    assert row["test"] == "fisher" and row["verdict"] == "regressed"
    assert row["ci_high"] < 0 and row["p_value"] < 1e-10
    assert (row["n_a"], row["n_b"]) == (N, N)
    assert cmp.has_regression
    assert cmp.verdict().startswith("verdict: v2 regressed against v1 (error_free")
    # the same frames as an offline compare: a row per input, each scorer's values
    assert set(cmp.rows["status"]) == {"only_a", "only_b"} and len(cmp.rows) == 2 * N
    assert {"error_free:a", "error_free:b", "latency_ms:a", "latency_ms:b"} <= set(cmp.rows)
    failed = [r for r in cmp.b.results if r.failed]
    assert len(failed) == 90 and all("v2 cannot validate" in r.errors[0] for r in failed)
    assert "latency_ms" in list(cmp.summary["scorer"])
    chart = cmp.chart()
    assert [s[0] for s in chart.series] == ["error_free"] and chart.series[0][2] == "regressed"
    assert "<svg" in chart.to_svg() and "latency_ms" in repr(cmp.chart(scorers=["latency_ms"]))
    assert "verdict: v2 regressed" in cmp.report()
    assert json.dumps(cmp.to_dict(), default=str)


def test_compare_live_scorers_judge_recorded_runs(regressed: Recorded, app_of: Any) -> None:
    @we.scorers.scorer("total_ok")
    def total_ok(sample: we.Sample, output: we.SampleResult) -> bool:
        return all(p["total"] > 0 for p in output.payloads("order.priced")) and output.emitted(
            "order.priced"
        )

    cmp = we.compare_live(
        app_of(regressed),
        "aaaa",  # id prefixes name versions too
        V2,
        since=3600,
        scorers=[we.scorers.emitted("order.notified"), total_ok],
    )
    s = cmp.summary.set_index("scorer")
    assert s.loc["emitted(order.notified)", "verdict"] == "regressed"
    assert s.loc["total_ok", "mean_b"] == pytest.approx(0.7)
    assert cmp.a.label == V1  # no label known: the id


def test_no_regression_when_both_versions_run_the_same_code(same: Recorded, app_of: Any) -> None:
    cmp = we.compare_live(app_of(same), "v1", "v2", labels=LABELS)
    row = cmp.summary.set_index("scorer").loc["error_free"]
    assert row["mean_a"] == row["mean_b"] == 1.0 and row["verdict"] == "no significant change"
    assert not cmp.has_regression, cmp.report()
    assert cmp.verdict() == "verdict: no significant change from v1 to v2"


def test_paired_when_the_same_inputs_ran_on_both(tmp_path: Path, app_of: Any) -> None:
    r = Recorded(tmp_path)
    r.record((r.v1, V1, orders("C", 200)), (r.v2, V2, orders("C", 200)))
    cmp = we.compare_live(app_of(r), "v1", "v2", labels=LABELS)
    assert cmp.pairing == "paired"
    row = cmp.summary.set_index("scorer").loc["error_free"]
    assert row["test"] == "mcnemar" and row["n_paired"] == 200 and row["verdict"] == "regressed"
    assert (cmp.rows["status"] == "new_error").sum() == 60 and len(cmp.regressions) == 60
    first = cmp.regressions.iloc[0]
    assert first["first_divergent_step"] == "Validate"
    forced = we.compare_live(app_of(r), "v1", "v2", labels=LABELS, pairing="unpaired")
    assert forced.summary.set_index("scorer").loc["error_free", "test"] == "fisher"


def test_since_excludes_older_runs(tmp_path: Path, app_of: Any) -> None:
    r = Recorded(tmp_path)
    r.record((r.v1, V1, orders("A", 150)), (r.v2, V2, orders("B", 150)))  # v2 buggy
    time.sleep(1.0)
    split = time.time()
    r.record((r.v1, V1, orders("D", 150)), (r.v2_fixed, V2, orders("E", 150)))  # v2 fixed
    app = app_of(r)
    everything = we.compare_live(app, "v1", "v2", since=None, labels=LABELS)
    assert len(everything.b.results) == 300 and everything.has_regression
    recent = we.compare_live(app, "v1", "v2", since=time.time() - split + 0.05, labels=LABELS)
    assert len(recent.a.results) == len(recent.b.results) == 150
    assert {res.events[0]["data"]["order_id"][0] for res in recent.b.results} == {"E"}
    assert not any(res.failed for res in recent.b.results) and not recent.has_regression
    with pytest.raises(WistroError, match="no finished runs"):
        we.compare_live(app, "v1", "v2", since=0.001, labels=LABELS)


def test_naming_versions(regressed: Recorded, app_of: Any) -> None:
    app = app_of(regressed)
    with pytest.raises(WistroError, match=r"no version 'v3'.*aaaa1111aaaa"):
        we.compare_live(app, "v1", "v3", labels=LABELS)
    with pytest.raises(WistroError, match="same version"):
        we.compare_live(app, "v1", "aaaa1111", labels=LABELS)
    with pytest.raises(WistroError, match="no version 'v1'"):
        we.compare_live(app, "v1", "v2")  # labels of versions that are not live: a mapping


async def test_acompare_live_takes_labels_from_the_bus(regressed: Recorded) -> None:
    from wistro.versions.live import LiveVersion

    app = regressed.app()
    try:
        cmp = await we.acompare_live(
            app, "v1", "v2", live=[LiveVersion(V1, "v1", 1, 0.0), LiveVersion(V2, "v2", 1, 1.0)]
        )
    finally:
        await app.aclose()
    assert cmp.versions == (V1, V2) and cmp.has_regression


# ---------------------------------------------------------------- the command line
def test_cli_compare_live_prints_the_verdict(regressed: Recorded) -> None:
    out = cli(regressed.v1, "eval", "compare", "--live", "aaaa", "bbbb", "--since", "1h")
    assert out.exit_code == 0, out.output
    assert "compare live aaaa1111aaaa (aaaa1111aaaa) -> bbbb2222bbbb" in out.stdout
    assert "error_free: 1.000 -> 0.700" in out.stdout and "runs): regressed" in out.stdout
    assert (
        out.stdout.strip()
        .splitlines()[-1]
        .startswith("verdict: bbbb2222bbbb regressed against aaaa1111aaaa (error_free")
    )
    failed = cli(regressed.v1, "eval", "compare", "--live", "aaaa", "bbbb", "--fail-on-regression")
    assert failed.exit_code == 1
    assert "error: bbbb2222bbbb against aaaa1111aaaa: gate failed: error_free regressed" in (
        failed.stderr
    )
    js = cli(regressed.v1, "eval", "compare", "--live", "aaaa", "bbbb", "--json",
             "--scorer", "emitted:order.notified")  # fmt: skip
    data = json.loads(js.stdout)
    assert data["live"] and data["has_regression"] and data["n_runs_b"] == N
    assert [s["scorer"] for s in data["summary"]] == [
        "error_free",
        "latency_ms",
        "emitted(order.notified)",
    ]


def test_cli_compare_live_same_code(same: Recorded) -> None:
    out = cli(same.v1, "eval", "compare", "--live", "aaaa", "bbbb", "--fail-on-regression")
    assert out.exit_code == 0, out.output
    assert out.stdout.strip().splitlines()[-1].startswith("verdict: no significant change")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eval", "compare", "--live", "aaaa", "zzzz"), "no version 'zzzz'"),
        (("eval", "compare", "--live", "aaaa"), "--live compares two versions"),
        (("eval", "compare", "--live", "aaaa", "bbbb", "--since", "banana"), "not a duration"),
        (
            ("dataset", "add", "s", "--from-runs", "--version", "bbbb", "--sample", "150%"),
            "a sample percentage must be in (0%, 100%]",
        ),
        (("dataset", "add", "s", "--from-runs", "--version", "nope"), "no version 'nope'"),
        (("dataset", "add", "s", "--from-runs"), "--from-runs needs --version"),
        (
            ("dataset", "add", "s", "--from-runs", "--version", "bbbb", "--since", "banana"),
            "not a duration",
        ),
    ],
)
def test_cli_bad_input_is_one_line(
    regressed: Recorded, args: tuple[str, ...], message: str
) -> None:
    out = cli(regressed.v1, *args)
    assert out.exit_code != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr


# ---------------------------------------------------------------- sampling runs into datasets
def test_dataset_from_runs_samples_and_runs_as_an_eval(regressed: Recorded) -> None:
    root = regressed.v1
    out = cli(root, "dataset", "add", "prod", "--from-runs", "--version", "bbbb", "--sample",
              "10%", "--seed", "7", "--tag", "prod")  # fmt: skip
    assert out.exit_code == 0, out.output
    lines = (root / "datasets" / "prod.jsonl").read_text().splitlines()
    assert len(lines) == N // 10  # 10% of v2's 300 runs (each a different input)
    samples = [json.loads(line) for line in lines]
    assert all(s["input"]["data"]["order_id"].startswith("B") for s in samples)
    assert all(s["tags"] == ["prod"] and s["source_trace"] for s in samples)
    again = cli(root, "dataset", "add", "prod2", "--from-runs", "--version", V2, "--sample",
                "10%", "--seed", "7")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert {json.loads(x)["id"] for x in (root / "datasets/prod2.jsonl").read_text().split()} == {
        s["id"] for s in samples
    }
    other = we.Dataset.from_runs("x", regressed.app(), version=V2, sample="10%", seed=8)
    assert len(other) == 30 and {s.id for s in other} != {s["id"] for s in samples}
    counted = we.Dataset.from_runs("y", regressed.app(), version="bbbb", sample=12, limit=5)
    assert len(counted) == 5

    ds = we.Dataset.load("prod", root)
    bad = {s.id for s in ds if int(s.data["order_id"][1:]) % 10 < 3}
    assert bad and len(bad) < len(ds)
    scorers = [we.scorers.error_free()]
    on_v1 = asyncio.run(we.run(ds, None, scorers, root=root, progress=False))
    on_v2 = asyncio.run(we.run(ds, str(regressed.v2), scorers, root=root, progress=False))
    assert not any(r.failed for r in on_v1)
    assert {r.sample_id for r in on_v2 if r.failed} == bad
    cmp = we.compare(on_v1, on_v2)
    assert set(cmp.regressions["sample_id"]) == bad


# ---------------------------------------------------------------- parsing and statistics
def test_durations_and_sample_sizes() -> None:
    assert [parse_duration(x) for x in ("90s", "30m", "1h", "2d", "1h30m", "45")] == [
        90,
        1800,
        3600,
        172800,
        5400,
        45,
    ]
    for bad in ("banana", "", "-1h", "0", "1x", "h1"):
        with pytest.raises(WistroError, match="not a duration"):
            parse_duration(bad)
    assert parse_sample("5%") == ("fraction", 0.05) and parse_sample(40) == ("count", 40)
    assert parse_sample(0.25) == ("fraction", 0.25) and parse_sample("12") == ("count", 12)
    for bad_sample in ("150%", "0%", "abc", 0, 1.5):
        with pytest.raises(WistroError):
            parse_sample(bad_sample)


def test_unpaired_test() -> None:
    a = np.array([1.0] * 95 + [0.0] * 5)
    b = np.array([1.0] * 70 + [0.0] * 30)
    t = unpaired_test(a, b)
    assert t.test == "fisher" and t.verdict == "regressed" and t.diff == pytest.approx(-0.25)
    assert t.p_value == pytest.approx(fisher_exact([[95, 5], [70, 30]]).pvalue)
    assert t.ci_low < -0.25 < t.ci_high < 0
    assert unpaired_test(a, b) == t  # seeded
    rng = np.random.default_rng(1)
    x, y = rng.normal(10, 1, 200), rng.normal(11, 1, 150)
    slow = unpaired_test(x, y, higher_is_better=False)
    assert slow.test == "mannwhitney" and slow.verdict == "regressed"
    assert slow.p_value == pytest.approx(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    assert unpaired_test(x, y).verdict == "improved"
    assert unpaired_test(x, x.copy()).verdict == "no significant change"
    assert unpaired_test(np.array([]), y).verdict == "no significant change"
