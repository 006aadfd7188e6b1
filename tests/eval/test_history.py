"""History: `wistro.evals()` across stored evals (with its summary cache), `eval_samples()`,
`list_evals()` items, and the trend chart, over real evals of the order project."""

from __future__ import annotations

import json
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from eval_support import ORDERS, git

import wistro
from wistro import eval as we
from wistro.eval import history
from wistro.eval import scorers as sc
from wistro.eval.results import EvalMeta, SampleResult
from wistro.files import write_atomic

PAYLOAD = "payload_equals(order.priced)"
# `checked` raises for one sample on purpose
pytestmark = pytest.mark.filterwarnings("ignore:scorer error")


class Interrupted(Exception):
    """Stands for the process being stopped in the middle of an eval."""


def dataset(root: Path, name: str = "orders") -> we.Dataset:
    ds = we.Dataset(name, root=root)
    for o in ORDERS:
        total = round(o["amount_cents"] * 1.2)
        ds.add(
            {"topic": "order.placed", "data": o},
            id=o["order_id"],
            expected={"order.priced": {"order_id": o["order_id"], "total": total}},
        )
    return ds


def checked(sample: we.Sample, output: we.SampleResult) -> sc.Score:
    """Fails A0, raises on A2 (a scorer error), does not score A3, passes the others."""
    order = sample.data["order_id"]
    if order == "A2":
        raise KeyError("total")
    if order == "A3":
        return sc.Score(None, None, "not scored: no total to check")
    return sc.Score(0.0 if order == "A0" else 1.0, order != "A0", "")


async def two_versions(
    make_project: Callable[..., Path],
) -> tuple[Path, we.EvalResult, we.EvalResult]:
    """v1 (tax 0.2, the expected totals) in the project; v2 (tax 0.25) from a folder."""
    root = make_project("orders")
    v2 = make_project("orders_v2", tax=0.25)
    ds = dataset(root)
    r1 = await we.run(ds, scorers=[sc.payload_equals("order.priced"), sc.error_free()],
                      label="v1", progress=False)  # fmt: skip
    r2 = await we.run(
        ds,
        version=str(v2),
        scorers=[sc.payload_equals("order.priced"), sc.error_free(), checked],
        label="v2",
        progress=False,
    )
    return root, r1, r2


async def test_evals_is_one_row_per_eval_newest_first_with_a_summary_per_scorer(
    make_project: Callable[..., Path],
) -> None:
    root, r1, r2 = await two_versions(make_project)
    frame = wistro.evals(root)
    assert list(frame["eval_id"]) == [r2.eval_id, r1.eval_id]
    assert list(frame["label"]) == ["v2", "v1"]
    assert list(frame["version"]) == [r2.version.id, r1.version.id]
    assert frame["version"][0] != frame["version"][1]
    assert list(frame["dataset"]) == ["orders", "orders"]
    assert set(frame["dataset_version"]) == {r1.meta.dataset_version}
    assert list(frame["n_samples"]) == [6, 6] and list(frame["complete"]) == [True, True]
    assert list(frame["status"]) == ["complete", "complete"]
    assert frame["git_commit"].isna().all() and not frame["dirty"].any()
    assert str(frame["started"].dtype) == "datetime64[ns, UTC]"
    assert (frame["finished"] >= frame["started"]).all()
    assert frame["started"][0] >= frame["started"][1]

    assert list(frame[f"{PAYLOAD}:pass_rate"]) == [0.0, 1.0]  # tax 0.25: every total is off
    assert list(frame["error_free:pass_rate"]) == [1.0, 1.0]
    assert list(frame[f"{PAYLOAD}:errors"]) == [0, 0]
    # checked: A0 fails, A1/A4/A5 pass, A2 is an error, A3 not scored -> 3 of 4
    v2 = frame.iloc[0]
    assert v2["checked:pass_rate"] == 0.75 and v2["checked:mean"] == 0.75
    assert v2["checked:n"] == 4 and v2["checked:errors"] == 1
    v1 = frame.iloc[1]  # v1 did not use it: NaN, not 0
    assert pd.isna(v1["checked:pass_rate"]) and pd.isna(v1["checked:errors"])
    assert frame.columns[:3].tolist() == ["eval_id", "dataset", "dataset_version"]

    assert we.evals(root, dataset="orders").equals(frame)
    assert we.evals(root, dataset="other").empty
    assert "error_free:pass_rate" not in we.evals(root, dataset="other").columns


async def test_list_evals_items_have_names_and_still_unpack_as_tuples(project: Path) -> None:
    r = await we.run(dataset(project), scorers=[sc.error_free()], label="first", progress=False)
    [info] = we.list_evals(project)
    assert isinstance(info, we.EvalInfo)
    assert info.eval_id == r.eval_id and info.label == "first"
    assert info.version.id == r.version.id and info.meta.dataset == "orders"
    assert info.dataset == "orders" and info.complete and info.name == "first"
    assert info.path == project / ".wistro" / "evals" / r.eval_id
    eval_id, meta = info  # the old (eval_id, meta) tuple
    assert eval_id == r.eval_id and meta is info.meta and info[0] == eval_id and info[-1] is meta
    with pytest.raises(AttributeError):
        info.label = "x"  # type: ignore[misc]
    assert we.EvalResult.load("latest", project).eval_id == r.eval_id


async def test_versions_from_git_revisions_show_their_commits(git_project: Path) -> None:
    head, parent = git(git_project, "rev-parse", "HEAD"), git(git_project, "rev-parse", "HEAD~1")
    ds = dataset(git_project)
    old = await we.run(ds, version="main~1", scorers=[sc.payload_equals("order.priced")],
                       progress=False)  # fmt: skip
    new = await we.run(ds, scorers=[sc.payload_equals("order.priced")], progress=False)
    frame = we.evals(git_project)
    assert list(frame["eval_id"]) == [new.eval_id, old.eval_id]
    assert list(frame["git_commit"]) == [head, parent]
    assert list(frame[f"{PAYLOAD}:pass_rate"]) == [0.0, 1.0]
    assert list(frame["label"]) == [None, None]
    chart = we.trend("orders", root=git_project)
    assert chart.labels == [old.version.short, new.version.short]  # no labels: short ids


async def test_the_summary_is_cached_and_refreshed_when_an_eval_is_resumed(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = dataset(project)
    seen: list[str] = []

    def stop_after_three(result: we.SampleResult) -> None:
        seen.append(result.sample_id)
        if len(seen) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        await we.run(ds, scorers=[sc.error_free()], concurrency=1, on_result=stop_after_three,
                     progress=False)  # fmt: skip
    parsed: list[Path] = []
    real = history.summarize_results
    monkeypatch.setattr(history, "summarize_results", lambda p: parsed.append(p) or real(p))

    frame = we.evals(project)
    [row] = frame.to_dict(orient="records")
    assert row["n_samples"] == 3 and row["status"] == "running" and not row["complete"]
    assert pd.isna(row["finished"])
    folder = project / ".wistro" / "evals" / row["eval_id"]
    cache = json.loads((folder / "summary.json").read_text())
    assert cache["n_samples"] == 3 and cache["scorers"]["error_free"]["n_passed"] == 3
    assert len(parsed) == 1
    we.evals(project)
    assert len(parsed) == 1  # unchanged results: read from summary.json

    resumed = await we.run(ds, scorers=[sc.error_free()], progress=False)
    assert resumed.eval_id == row["eval_id"]
    [row] = we.evals(project).to_dict(orient="records")
    assert row["n_samples"] == 6 and row["complete"] and row["error_free:pass_rate"] == 1.0
    assert len(parsed) == 2  # results.jsonl grew: parsed again, once
    assert json.loads((folder / "summary.json").read_text())["n_samples"] == 6
    we.evals(project)
    assert len(parsed) == 2


async def test_a_hundred_evals_list_correctly_from_the_cache(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One real eval, stored again as 100 builds (meta and results through the storage
    classes), each keeping its first k samples and failing the sample A1 every third build."""
    base = await we.run(dataset(project), scorers=[sc.error_free()], progress=False)
    assert base.path is not None
    evals_dir = base.path.parent
    rows = [SampleResult.from_dict(r.to_dict()) for r in base.results]
    t0 = time.time() - 1000
    for i in range(100):
        meta = EvalMeta.from_dict(base.meta.to_dict())
        meta.label, meta.created, meta.finished = f"build-{i}", t0 + i, t0 + i + 0.5
        folder = evals_dir / f"build-{i:03d}"
        folder.mkdir()
        shutil.copy(base.path / "dataset.jsonl", folder / "dataset.jsonl")
        write_atomic(folder / "meta.json", json.dumps(meta.to_dict()))
        out = []
        for r in rows[: 1 + i % 6]:
            d = json.loads(json.dumps(r.to_dict()))
            if i % 3 == 0 and r.sample_id == "A1":
                d["scores"]["error_free"] = {"value": 0.0, "passed": False, "rationale": "x"}
            out.append(json.dumps(d) + "\n")
        write_atomic(folder / "results.jsonl", "".join(out))

    parsed: list[Path] = []
    real = history.summarize_results
    monkeypatch.setattr(history, "summarize_results", lambda p: parsed.append(p) or real(p))
    frame = we.evals(project)
    assert len(frame) == 101 and len(parsed) == 101
    assert frame["eval_id"].iloc[0] == base.eval_id  # started last
    builds = frame.iloc[1:].iloc[::-1].reset_index(drop=True)  # build-0 .. build-99
    assert list(builds["label"]) == [f"build-{i}" for i in range(100)]
    assert list(builds["n_samples"]) == [1 + i % 6 for i in range(100)]
    expected = [(1 + i % 6 - (i % 3 == 0 and 1 + i % 6 >= 2)) / (1 + i % 6) for i in range(100)]
    assert builds["error_free:pass_rate"].tolist() == pytest.approx(expected)

    started = time.perf_counter()
    again = we.evals(project)
    assert len(parsed) == 101  # the second listing parsed no results file
    assert time.perf_counter() - started < 5
    pd.testing.assert_frame_equal(again, frame)

    svg = we.trend("orders", root=project).to_svg()
    ET.fromstring(svg)
    assert svg.count("<circle") == 101


async def test_eval_samples_spans_evals(make_project: Callable[..., Path]) -> None:
    root, r1, r2 = await two_versions(make_project)
    frame = wistro.eval_samples(root=root)
    assert len(frame) == 12
    assert frame.columns[:6].tolist() == [
        "eval_id", "dataset", "version", "label", "started", "sample_id",
    ]  # fmt: skip
    assert {"status", "error", "latency_ms", PAYLOAD, f"{PAYLOAD}:passed"} <= set(frame.columns)
    assert list(frame["eval_id"].unique()) == [r2.eval_id, r1.eval_id]  # newest first

    a0 = we.eval_samples(sample_id="A0", root=root)
    assert list(a0["label"]) == ["v2", "v1"] and list(a0["version"]) == [
        r2.version.id,
        r1.version.id,
    ]
    assert list(a0[PAYLOAD]) == [0.0, 1.0] and list(a0[f"{PAYLOAD}:passed"]) == [False, True]
    assert (a0["status"] == "ok").all() and a0["error"].isna().all()
    assert (a0["latency_ms"] > 0).all()

    v2 = we.eval_samples(r2.eval_id, root=root).set_index("sample_id")
    assert v2.loc["A3", "checked:passed"] is None  # not scored
    assert v2.loc["A2", "checked:passed"] is None and "KeyError" in v2.loc["A2", "checked:error"]
    assert v2.loc["A0", "checked:passed"] is False and v2.loc["A1", "checked:passed"] is True

    newest = we.evals(root).head(1)
    assert list(we.eval_samples(newest, root=root)["eval_id"].unique()) == [r2.eval_id]
    assert len(we.eval_samples([r1, "latest"], sample_id=["A0", "A1"], root=root)) == 4
    assert we.eval_samples(dataset="other", root=root).empty


async def test_trend_is_an_escaped_self_contained_svg(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_project("orders")
    ds = dataset(root)
    scorers = [sc.payload_equals("order.priced"), sc.error_free()]
    await we.run(ds, scorers=scorers, label="<script>alert(1)</script>", progress=False)
    await we.run(ds, version=str(make_project("v2", tax=0.25)), scorers=scorers, label="v2 & co",
                 progress=False)  # fmt: skip

    chart = we.trend("orders", root=root)
    assert isinstance(chart, we.TrendChart)
    assert chart.labels == ["<script>alert(1)</script>", "v2 & co"]  # oldest first
    assert chart.series == [(PAYLOAD, [1.0, 0.0]), ("error_free", [1.0, 1.0])]
    svg = chart._repr_svg_()
    assert "<script" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "v2 &amp; co" in svg and "javascript" not in svg.lower()
    tree = ET.fromstring(svg)  # well-formed XML
    assert tree.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.count("<polyline") == 2 and ">100%<" in svg and ">0%<" in svg
    assert "currentColor" in chart._repr_html_()
    saved = chart.save(tmp_path / "trend.svg")
    assert saved.read_text(encoding="utf-8") == svg
    assert "100.0% -> 0.0%" in repr(chart)

    piped = we.evals(root).pipe(we.trend, "error_free")
    assert [s for s, _ in piped.series] == ["error_free"]
    with pytest.raises(we.DatasetNotFound, match=r"no dataset 'nope' \(known: orders\)"):
        we.trend("nope", root=root)
    with pytest.raises(wistro.WistroError, match=r"no scorer 'bogus'.*error_free"):
        we.trend("orders", "bogus", root=root)
    with pytest.raises(we.EvalNotFound, match="no evals yet"):
        we.trend(root=make_project("empty"))


def test_pandas_is_not_imported_with_wistro() -> None:
    import subprocess
    import sys

    code = "import sys, wistro, wistro.eval; print('pandas' in sys.modules, callable(wistro.evals))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
