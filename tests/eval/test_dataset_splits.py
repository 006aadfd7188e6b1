"""Splits: a sample's ``split`` ("train", "test", None), ds.split(name) and ds.splits, stored in
the JSONL line and carried by from_frame / to_frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from eval_support import ORDERS

from wistro import eval as we
from wistro.errors import DatasetError
from wistro.eval.errors import DuplicateSampleWarning

PLACED = "order.placed"


def three_ways(root: Path) -> we.Dataset:
    ds = we.Dataset("orders", root=root)
    with ds.batch():
        for i, o in enumerate(ORDERS):
            ds.add({"topic": PLACED, "data": o}, split=["train", "train", "test"][i % 3])
        ds.add({"topic": PLACED, "data": {"order_id": "X", "amount_cents": 1}})
    return ds


def test_split_returns_the_sub_dataset(project: Path) -> None:
    ds = three_ways(project)
    assert ds.splits == {"test": 2, "train": 4}
    test = ds.split("test")
    assert [s.data["order_id"] for s in test] == ["A2", "A5"]
    assert test.name == "orders" and test.subset == "split test" and not test.autosave
    assert len(ds.split("train")) == 4 and len(ds) == 7
    assert test.version != ds.version  # what an eval of the split records

    again = we.Dataset.load("orders", project)
    assert again.splits == ds.splits and again.split("test").version == test.version
    line = (project / "datasets" / "orders.jsonl").read_text().splitlines()[2]
    assert '"split":"test"' in line


def test_an_unknown_split_lists_the_known_ones(project: Path) -> None:
    ds = three_ways(project)
    with pytest.raises(
        DatasetError, match=r"dataset 'orders' has no split 'tset' \(splits: test, train\)"
    ):
        ds.split("tset")
    with pytest.raises(DatasetError, match="invalid split 'a b'"):
        ds.add({"topic": PLACED, "data": 1}, split="a b")


def test_frames_carry_a_split_column(project: Path) -> None:
    ds = three_ways(project)
    df = ds.to_frame()
    assert list(df.columns) == [
        "id",
        "topic",
        "data",
        "expected",
        "tags",
        "split",
        "n_events",
        "source_trace",
    ]
    assert df["split"].isna().sum() == 1
    back = we.Dataset.from_frame("copy", df, root=project)
    assert [s.to_dict() for s in back] == [s.to_dict() for s in ds]

    hand = pd.DataFrame(
        {
            "topic": [PLACED, PLACED],
            "data": [ORDERS[0], ORDERS[1]],
            "split": ["test", None],
        }
    )
    made = we.Dataset.from_frame("hand", hand, root=project)
    assert [s.split for s in made] == ["test", None]


def test_the_split_is_not_part_of_the_id(project: Path) -> None:
    """The same input and expected in two splits is one sample (a leak between them is
    reported, not kept twice)."""
    ds = we.Dataset("x", root=project)
    ds.add({"topic": PLACED, "data": ORDERS[0]}, split="train")
    with pytest.warns(DuplicateSampleWarning, match="kept once"):
        ds.add({"topic": PLACED, "data": ORDERS[0]}, split="test")
    assert ds.splits == {"train": 1}
