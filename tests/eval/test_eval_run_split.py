"""`wistro eval run NAME --split S`: only that split's samples run, as a dataset version of its
own; an unknown split is one line naming the splits there are."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from eval_support import ORDERS

from wistro import eval as we
from wistro.cli.main import main


def test_eval_run_of_one_split(project: Path) -> None:
    ds = we.Dataset("orders", root=project)
    with ds.batch():
        for i, o in enumerate(ORDERS):
            ds.add({"topic": "order.placed", "data": o}, split="test" if i < 2 else "train")
    runner = CliRunner()
    out = runner.invoke(
        main, ["-C", str(project), "eval", "run", "orders", "--split", "test", "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    result = we.EvalResult.load(data["eval_id"], project)
    assert sorted(r.sample_id for r in result.results) == sorted(s.id for s in ds.split("test"))
    assert data["dataset_version"] == ds.split("test").version != ds.version
    bad = runner.invoke(main, ["-C", str(project), "eval", "run", "orders", "--split", "dev"])
    assert bad.exit_code == 1
    assert bad.stderr.strip().splitlines() == [
        "error: dataset 'orders' has no split 'dev' (splits: test, train) (hint: give samples "
        "a split: add(..., split=NAME) or wistro dataset add --split)"
    ]
