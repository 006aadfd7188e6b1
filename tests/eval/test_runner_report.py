"""What an eval run reports: an empty dataset is refused in one line, `.frame` shows every error
of a sample's run, and nothing prints `nan`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from eval_support import ORDERS, write

from wistro import eval as we
from wistro.cli.eval import dataset as dataset_group
from wistro.cli.eval import eval_group
from wistro.cli.main import Obj, WistroGroup
from wistro.config import DEFAULT_ENV
from wistro.eval import scorers as sc
from wistro.eval.errors import DatasetError

# Price fails for A1 every time, and for A2 on its first attempt only (then a retry succeeds)
FLAKY_PRICE = """
config = {"name": "Price", "subscribes": ["order.validated"], "emits": ["order.priced"],
          "flows": ["orders"], "retries": 1, "retry_backoff_s": 0}

attempts = {}

async def handler(data, ctx):
    oid = data["order_id"]
    attempts[(ctx.trace_id, oid)] = attempts.get((ctx.trace_id, oid), 0) + 1
    if oid == "A1":
        raise RuntimeError("no price for A1")
    if oid == "A2" and attempts[(ctx.trace_id, oid)] == 1:
        raise ConnectionError("price service blinked")
    await ctx.emit("order.priced", {"order_id": oid, "total": 1})
"""


def cli(root: Path, *args: str):
    group = WistroGroup("wistro")
    group.add_command(dataset_group)
    group.add_command(eval_group)
    return CliRunner().invoke(group, list(args), obj=Obj(str(root), DEFAULT_ENV))


async def test_an_empty_dataset_is_refused_in_one_line(project: Path) -> None:
    empty = we.Dataset("empty", root=project, autosave=False)
    with pytest.raises(DatasetError) as info:
        await we.run(empty, progress=False)
    line = info.value.format()
    assert (
        line.startswith("dataset 'empty' has no samples: nothing to evaluate") and "\n" not in line
    )
    assert not (project / ".wistro" / "evals").exists()  # nothing was stored

    ds = we.Dataset("orders", root=project)
    ds.add({"topic": "order.placed", "data": ORDERS[0]}, tags=["smoke"])
    with pytest.raises(DatasetError, match=r"dataset 'orders' \(tag nightly\) has no samples"):
        await we.run(ds.filter("nightly"), progress=False)


def test_an_empty_dataset_on_the_command_line(project: Path) -> None:
    write(project, {"datasets/empty.jsonl": ""})
    out = cli(project, "eval", "run", "empty")
    assert out.exit_code == 1
    [line] = out.output.strip().splitlines()
    assert line.startswith("error: dataset 'empty' has no samples: nothing to evaluate")
    assert "nan" not in out.output


def test_a_dataset_nothing_scores_prints_no_nan(project: Path) -> None:
    write(
        project,
        {"datasets/d.jsonl": json.dumps({"topic": "order.placed", "data": ORDERS[0]}) + "\n"},
    )
    out = cli(
        project, "eval", "run", "d", "--scorer", "payload_equals", "--scorer", "step_latency:Gone:5"
    )
    assert out.exit_code == 0, out.output
    assert "payload_equals: mean —, pass rate — (n=0, 1 not scored)" in out.output
    assert "step_latency(Gone,5ms): mean —, pass rate — (n=0, 1 not scored)" in out.output
    assert "nan" not in out.output.lower()


async def test_the_frame_shows_run_errors_and_step_errors(make_project) -> None:
    root = make_project("flaky", extra={"src/price.step.py": FLAKY_PRICE})
    ds = we.Dataset("orders", root=root)
    for o in ORDERS[:4]:
        ds.add({"topic": "order.placed", "data": o}, id=o["order_id"])
    ds.add({"topic": "order.renamed", "data": {}}, id="gone")
    r = await we.run(ds, scorers=[sc.error_free()], progress=False)
    frame = r.frame.set_index("sample_id")
    assert {"error", "step_errors"} <= set(frame.columns)
    # A0 ran cleanly
    assert pd.isna(frame.loc["A0", "error"]) and pd.isna(frame.loc["A0", "step_errors"])
    # A1: the run failed; both attempts of Price are step errors
    assert frame.loc["A1", "status"] == "error"
    assert "no price for A1" in frame.loc["A1", "error"]
    assert frame.loc["A1", "step_errors"].count("Price: RuntimeError: no price for A1") == 2
    # A2: a retry succeeded: the run is ok, yet the failed attempt is there
    assert frame.loc["A2", "status"] == "ok" and pd.isna(frame.loc["A2", "error"])
    assert "Price: ConnectionError: price service blinked" in frame.loc["A2", "step_errors"]
    # gone: the sample could not run
    assert "order.renamed" in frame.loc["gone", "error"]
    assert pd.isna(frame.loc["gone", "step_errors"])
    assert frame.loc["A1", "error_free:passed"] == False  # noqa: E712 (a numpy bool)
