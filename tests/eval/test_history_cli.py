"""`wistro eval history` through click's CliRunner, over real evals of two versions."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from eval_support import ORDERS, write

from wistro import eval as we
from wistro.cli.eval import eval_group
from wistro.cli.main import Obj, WistroGroup
from wistro.config import DEFAULT_ENV
from wistro.eval import scorers as sc

PAYLOAD = "payload_equals(order.priced)"


def cli(root: Path, *args: str) -> Result:
    group = WistroGroup("wistro")
    group.add_command(eval_group)
    return CliRunner().invoke(group, ["eval", *args], obj=Obj(str(root), DEFAULT_ENV))


def strict_json(text: str) -> object:
    def no_constants(token: str) -> object:
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=no_constants)


def dataset(root: Path, name: str = "orders") -> we.Dataset:
    ds = we.Dataset(name, root=root)
    for o in ORDERS:
        ds.add(
            {"topic": "order.placed", "data": o},
            id=o["order_id"],
            expected={"order.priced": {"order_id": o["order_id"],
                                       "total": round(o["amount_cents"] * 1.2)}},
        )  # fmt: skip
    ds.save()
    return ds


@pytest.fixture
async def history_project(make_project: Callable[..., Path]) -> Path:
    """Three evals of `orders`: v1 (right totals), v2 (tax 0.25: wrong), v3 (right again),
    the last two with a latency budget too; and one eval of another dataset."""
    root = make_project("orders")
    ds = dataset(root)
    base = [sc.payload_equals("order.priced"), sc.error_free()]
    await we.run(ds, scorers=base, label="v1", progress=False)
    await we.run(ds, version=str(make_project("v2", tax=0.25)), label="v2", progress=False,
                 scorers=[*base, sc.latency_budget(60_000)])  # fmt: skip
    await we.run(ds, label="v3", progress=False, scorers=[*base, sc.latency_budget(60_000)])
    await we.run(dataset(root, "smoke"), scorers=[sc.error_free()], label="s1", progress=False)
    return root


def test_history_table_oldest_first_with_pass_rates_and_sparklines(history_project: Path) -> None:
    out = cli(history_project, "history", "orders")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "dataset orders: 3 evals, oldest first"
    head = lines[1].split()
    assert head == [
        "time",
        "version",
        "commit",
        "n",
        PAYLOAD,
        "error_free",
        "latency_budget(60000ms)",
    ]
    rows = lines[2:5]
    assert [r.split()[2] for r in rows] == ["v1", "v2", "v3"]  # after the date and time
    assert rows[0].split()[3:] == ["-", "6", "100.0%", "100.0%", "-"]  # commit: not in git
    assert rows[1].split()[3:] == ["-", "6", "0.0%", "100.0%", "100.0%"]
    assert rows[2].split()[3:] == ["-", "6", "100.0%", "100.0%", "100.0%"]
    assert lines[5] == "trend:"
    trend = {ln.split()[0]: ln.split()[1:] for ln in lines[6:]}
    assert trend[PAYLOAD] == ["█▁█", "100.0%", "->", "100.0%"]
    assert trend["error_free"] == ["███", "100.0%", "->", "100.0%"]
    assert trend["latency_budget(60000ms)"][0] == "·██"  # not used by v1
    assert "smoke" not in out.output

    one = cli(history_project, "history", "orders", "--scorer", PAYLOAD)
    assert one.exit_code == 0, one.output
    assert one.output.splitlines()[1].split() == ["time", "version", "commit", "n", PAYLOAD]


def test_history_of_every_dataset_and_json(history_project: Path) -> None:
    out = cli(history_project, "history")
    assert out.exit_code == 0, out.output
    assert "dataset orders: 3 evals, oldest first" in out.output
    assert "dataset smoke: 1 eval, oldest first" in out.output

    out = cli(history_project, "history", "orders", "--json")
    assert out.exit_code == 0, out.output
    rows = strict_json(out.stdout)
    assert isinstance(rows, list)
    assert [r["label"] for r in rows] == ["v1", "v2", "v3"]
    assert [r["scorers"][PAYLOAD]["pass_rate"] for r in rows] == [1.0, 0.0, 1.0]
    budget = rows[0]["scorers"]["latency_budget(60000ms)"]
    assert budget == {"pass_rate": None, "mean": None, "n": None, "errors": None}  # NaN -> null
    assert rows[0]["git_commit"] is None and rows[0]["complete"] is True
    assert rows[0]["started"].endswith("+00:00") and rows[0]["n_samples"] == 6
    assert rows[0]["version"] == rows[2]["version"] != rows[1]["version"]
    every = strict_json(cli(history_project, "history", "--json").stdout)
    assert isinstance(every, list) and [r["dataset"] for r in every] == ["orders"] * 3 + ["smoke"]


def test_history_svg(history_project: Path, tmp_path: Path) -> None:
    target = tmp_path / "trend.svg"
    out = cli(history_project, "history", "orders", "--svg", str(target))
    assert out.exit_code == 0, out.output
    svg = target.read_text(encoding="utf-8")
    ET.fromstring(svg)
    assert svg.startswith("<svg") and svg.count("<polyline") == 3 and ">v2<" in svg
    assert f"trend chart written to {target}" in out.output
    out = cli(history_project, "history", "--svg", str(target))
    assert out.exit_code == 1 and "give DATASET" in out.output and "orders, smoke" in out.output


def test_an_empty_history_is_one_line(project: Path) -> None:
    out = cli(project, "history")
    assert out.exit_code == 0, out.output
    assert out.output == "no evals of any dataset yet (run one: wistro eval run DATASET)\n"
    assert cli(project, "history", "--json").stdout.strip() == "[]"

    dataset(project, "fresh")  # a dataset with no evals yet
    out = cli(project, "history", "fresh")
    assert out.exit_code == 0 and out.output.strip() == (
        "no evals of dataset 'fresh' yet (run one: wistro eval run fresh)"
    )


def test_unknown_dataset_and_scorer(history_project: Path) -> None:
    out = cli(history_project, "history", "nope")
    assert out.exit_code == 1
    assert out.output.strip() == "error: no dataset 'nope' (known: orders, smoke)"
    out = cli(history_project, "history", "orders", "--scorer", "bogus")
    assert out.exit_code == 1 and "no scorer 'bogus'" in out.output and "error_free" in out.output


def test_a_second_dataset_file_without_evals_is_known(history_project: Path) -> None:
    write(history_project, {"datasets/later.jsonl": ""})
    out = cli(history_project, "history", "nope")
    assert "known: later, orders, smoke" in out.output
