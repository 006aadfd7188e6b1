"""The run-diff widget and the chart of an eval comparison, built from a real compare of two
evals of a small project in a git repo, where the second commit changed one step."""

from __future__ import annotations

import subprocess
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from wistro import eval as we
from wistro.eval import scorers as sc
from wistro.eval.version import open_version
from wistro_jupyter.eval_widgets import RunDiff, static_html

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

VALIDATE = """
config = {"name": "Validate", "subscribes": ["order.placed"], "emits": ["order.validated"],
          "flows": ["orders"]}

async def handler(data, ctx):
    await ctx.emit("order.validated", {"order_id": data["order_id"], "amount": data["amount"]})
"""
PRICE = """
config = {"name": "Price", "subscribes": ["order.validated"], "emits": ["order.priced"],
          "flows": ["orders"]}

TAX = __TAX__

async def handler(data, ctx):
    total = round(data["amount"] * (1 + TAX))
    await ctx.state.set("orders", data["order_id"], {"total": total})
    await ctx.emit("order.priced", {"order_id": data["order_id"], "total": total})
"""
NOTIFY = """
config = {"name": "Notify", "subscribes": ["order.priced"], "emits": ["order.notified"],
          "flows": ["orders"]}

async def handler(data, ctx):
    await ctx.emit("order.notified", {"order_id": data["order_id"], "total": data["total"]})
"""
ORDERS = [{"order_id": f"A{i}", "amount": 100 * (i + 1)} for i in range(6)]  # 6: McNemar p = 0.03
SCORERS = [sc.payload_equals("order.priced"), sc.payload_equals(), sc.error_free()]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write(
        root,
        {
            "wistro.yml": "name: orders\n",
            ".gitignore": ".wistro/\n",
            "src/validate.step.py": VALIDATE,
            "src/price.step.py": PRICE.replace("__TAX__", "0.2"),
            "src/notify.step.py": NOTIFY,
        },
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "tax 0.2")
    write(root, {"src/price.step.py": PRICE.replace("__TAX__", "0.25")})
    git(root, "commit", "-q", "-am", "tax 0.25")
    return root


@pytest.fixture
async def cmp(repo: Path) -> Any:
    ds = we.Dataset("golden", root=repo)
    with open_version("HEAD~1", repo) as (_v, app):
        try:
            for o in ORDERS:
                ds.add_run(await app.emit("order.placed", o))
        finally:
            await app.aclose()
    old = await we.run(ds, version="HEAD~1", scorers=SCORERS, label="before", progress=False)
    new = await we.run(ds, scorers=SCORERS, label="after", progress=False)
    return we.compare(old, new)


async def test_run_diff_traits_flag_the_changed_step(cmp: Any, stub_bundle: Path) -> None:
    w = RunDiff(cmp)
    assert w.kind == "run_diff"
    rows = w.comparison["rows"]
    assert len(rows) == len(ORDERS)
    assert {r["status"] for r in rows} == {"regressed"}
    assert {r["first_divergent_step"] for r in rows} == {"Price"}
    assert rows[0]["scores"]["payload_equals(order.priced)"] == {"a": 1.0, "b": 0.0}
    assert w.comparison["a"]["label"] == "before" and w.comparison["b"]["label"] == "after"
    assert [s["scorer"] for s in w.comparison["summary"]] == [s.name for s in SCORERS]

    # the first regression is selected: its diff is filled
    assert w.selected == rows[0]["sample_id"]
    d = w.diff
    assert d["status"] == "regressed" and d["first_divergent_step"] == "Price"
    steps = {s["step"]: s for s in d["steps"]}
    assert [s["step"] for s in d["steps"]] == ["Validate", "Price", "Notify"]
    assert not steps["Validate"]["differs"] and steps["Price"]["differs"]
    assert steps["Price"]["source_changed"] == "modified"
    assert steps["Price"]["a"]["emits"][0]["topic"] == "order.priced"
    # JSON diff of the payload Price emitted: the total changed, nothing added or removed
    price = [x for x in d["payload_diff"] if x["step"] == "Price"]
    assert price == [
        {
            "step": "Price",
            "topic": "order.priced",
            "path": "$.total",
            "change": "changed",
            "a": price[0]["a"],
            "b": price[0]["b"],
        }
    ]
    assert price[0]["b"] > price[0]["a"]
    assert any(x["path"].startswith("$.orders.") for x in d["state_diff"])
    # code diff of the changed step, its old source from git, the new from git HEAD
    [code] = d["code_diff"]
    assert code["step"] == "Price" and code["change"] == "modified" and code["available"]
    assert code["file"] == "src/price.step.py"
    assert "-TAX = 0.2\n" in code["diff"] and "+TAX = 0.25\n" in code["diff"]
    assert code["diff"].startswith("--- a/src/price.step.py (before)")

    # clicking another sample (JS sets `selected`) refills the diff
    other = rows[2]["sample_id"]
    w.selected = other
    assert w.diff["sample_id"] == other and w.diff["first_divergent_step"] == "Price"
    w.selected = "nope"
    assert "no sample" in w.diff["error"]
    w.selected = ""
    assert w.diff == {}


async def test_static_html_and_mimebundle(cmp: Any, stub_bundle: Path) -> None:
    w = RunDiff(cmp)
    page = w._repr_html_()
    assert page.index("Scorers") < page.index("Changed steps") < page.index("Samples (regr")
    assert w.comparison["steps"][0]["step"] == "Price"
    assert "wistro-first-divergent'>Price<" in page
    assert "+TAX = 0.25" in page and "$.total" in page
    data, _meta = w._repr_mimebundle_()
    assert WIDGET_MIME in data and data["text/html"] == page
    assert static_html({}, {}).startswith("<div")

    # the comparison itself: no kernel here, so no widget (IPython uses its HTML)
    assert cmp._repr_mimebundle_() is None
    assert isinstance(cmp.widget(), RunDiff)


async def test_source_no_longer_available(cmp: Any, repo: Path, stub_bundle: Path) -> None:
    # history rewritten: the old commit is gone, and the working tree changed since the eval
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "checkout", "-q", "--orphan", "fresh")
    git(repo, "commit", "-q", "-m", "squashed")
    git(repo, "branch", "-D", "main")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    (repo / "src/price.step.py").write_text("# rewritten\n", encoding="utf-8")
    [code] = cmp.code_diff()
    assert not code["available"] and code["diff"] == ""
    assert "no longer available" in code["note"] and "Price" in code["note"]


async def test_chart_is_an_svg_per_scorer_and_version(cmp: Any) -> None:
    chart = cmp.chart()
    svg = chart._repr_svg_()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    groups = [g for g in root.iter() if g.get("class") == "wistro-chart-scorer"]
    assert [g.get("data-scorer") for g in groups] == [s.name for s in SCORERS]
    priced = groups[0]
    assert len([c for c in priced.iter() if c.tag.endswith("circle")]) == 2  # before, after
    assert "▼" in "".join(priced.itertext())  # regressed
    assert "currentColor" in chart._repr_html_() and "currentColor" not in svg
    assert "before: 1.000" in repr(chart) and "after: 0.000" in repr(chart)


async def test_chart_of_three_versions(cmp: Any) -> None:
    again = await we.run(
        cmp.b.meta.dataset,
        root=cmp.project_root(),
        scorers=SCORERS,
        label="again",
        progress=False,
        resume=False,
    )
    multi = we.compare([cmp.a, cmp.b, again], baseline=cmp.a)
    chart = multi.chart()
    assert chart.versions == ["before", "after", "again"]
    assert all(len(points) == 3 for _, points, _ in chart.series)
    ET.fromstring(chart._repr_svg_())


async def test_code_diff_of_a_folder_version_without_git(tmp_path: Path) -> None:
    files = {
        "wistro.yml": "name: orders\n",
        "src/validate.step.py": VALIDATE,
        "src/price.step.py": PRICE.replace("__TAX__", "0.2"),
        "src/notify.step.py": NOTIFY,
    }
    old, root = tmp_path / "old", tmp_path / "new"
    write(old, files)
    write(root, {**files, "src/price.step.py": PRICE.replace("__TAX__", "0.3")})
    ds = we.Dataset("golden", root=root)
    with open_version(str(old), root) as (_v, app):
        try:
            for o in ORDERS:
                ds.add_run(await app.emit("order.placed", o))
        finally:
            await app.aclose()
    a = await we.run(ds, version=str(old), scorers=SCORERS, label="old", progress=False)
    b = await we.run(ds, scorers=SCORERS, label="new", progress=False)
    cmp = we.compare(a, b)
    assert a.version.git_commit is None
    d = cmp.run_diff(cmp.regressions["sample_id"][0])
    assert d["first_divergent_step"] == "Price"
    [code] = d["code_diff"]
    assert code["available"] and "-TAX = 0.2\n" in code["diff"] and "+TAX = 0.3\n" in code["diff"]
    src, where = cmp.step_source("Price", "a")
    assert src is not None and where == str(old / "src/price.step.py")
    # the old folder is gone: its source is no longer available, and the view says so
    (old / "src/price.step.py").unlink()
    [code] = cmp.code_diff()
    assert not code["available"] and "no longer available" in code["note"]
