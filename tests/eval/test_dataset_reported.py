"""What was reported, written against the API that existed before the fix (so that each fails on
the old code by assertion, not by import): duplicate ids collapsed silently, samples of one input
and no id merged whatever their expectations, and one corrupt file broke `wistro dataset list`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from eval_support import ORDERS

from wistro import eval as we
from wistro.cli.eval import dataset
from wistro.cli.main import Obj, WistroGroup
from wistro.config import DEFAULT_ENV

PLACED = "order.placed"


def test_a_duplicate_id_is_an_error_not_last_one_wins(project: Path) -> None:
    ds = we.Dataset("x", root=project)
    ds.add({"topic": PLACED, "data": ORDERS[0]}, id="a1")
    with pytest.raises(we.DatasetError, match="dataset 'x': duplicate sample id 'a1'"):
        ds.add({"topic": PLACED, "data": ORDERS[1]}, id="a1")
    assert ds["a1"].data == ORDERS[0]

    records = [
        {"id": "a1", "topic": PLACED, "data": ORDERS[0]},
        {"id": "a1", "topic": PLACED, "data": ORDERS[1]},
    ]
    with pytest.raises(
        we.DatasetError, match=r"record 2: duplicate sample id 'a1' \(first at record 1\)"
    ):
        we.Dataset.from_records("recs", records, root=project)

    path = project / "datasets" / "dup.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(we.DatasetError, match=r"^datasets/dup.jsonl:2: duplicate sample id 'a1'"):
        we.Dataset.load("dup", project)


def test_one_input_with_two_expectations_is_two_samples(project: Path) -> None:
    records = [
        {"topic": PLACED, "data": ORDERS[0], "expected": {"order.priced": {"total": 120}}},
        {"topic": PLACED, "data": ORDERS[0], "expected": {"order.rejected": {"order_id": "A0"}}},
    ]
    ds = we.Dataset.from_records("recs", records, root=project)
    assert len(ds) == 2
    assert sorted(next(iter(s.expected)) for s in ds) == ["order.priced", "order.rejected"]


def test_one_corrupt_file_does_not_break_the_listing(project: Path) -> None:
    we.Dataset("good", root=project).add({"topic": PLACED, "data": ORDERS[0]})
    (project / "datasets" / "bad.jsonl").write_text('{"topic": "order.placed"}\n{oops\n')
    group = WistroGroup("wistro")
    group.add_command(dataset)
    out = CliRunner().invoke(
        group, ["dataset", "list"], obj=Obj(str(project), DEFAULT_ENV), catch_exceptions=False
    )
    assert out.exit_code == 0
    assert out.stdout.startswith("good  1 samples  ")
    assert out.stderr.startswith("datasets/bad.jsonl:2: invalid JSON: ")
    assert we.list_datasets(project) == ["bad", "good"]
    with pytest.raises(we.DatasetError, match=r"^datasets/bad.jsonl:2: invalid JSON"):
        we.Dataset.load("bad", project)
