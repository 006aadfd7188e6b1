"""Dataset versions: every save that changes a project's dataset is one line of
datasets/.history/NAME.jsonl (content hash, time, counts, git commit); ds.versions() lists them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from eval_support import ORDERS, git

from wistro import eval as we
from wistro.errors import DatasetError

PLACED = "order.placed"


def history(root: Path, name: str) -> list[dict]:
    text = (root / "datasets" / ".history" / f"{name}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_each_change_is_a_version(project: Path) -> None:
    ds = we.Dataset("smoke", root=project)
    ds.add({"topic": PLACED, "data": ORDERS[0]}, id="a")
    v1 = ds.version
    ds.add({"topic": PLACED, "data": ORDERS[1]}, id="b")
    ds.add({"topic": PLACED, "data": ORDERS[2]}, id="a", upsert=True)
    ds.remove("b")
    ds.add({"topic": PLACED, "data": ORDERS[2]}, id="a", upsert=True)  # same content: no change

    rows = history(project, "smoke")
    assert [(r["n_samples"], r["added"], r["removed"], r["changed"]) for r in rows] == [
        (1, 1, 0, 0),
        (2, 1, 0, 0),
        (2, 0, 0, 1),
        (1, 0, 1, 0),
    ]
    assert rows[0]["version"] == v1 and rows[-1]["version"] == ds.version
    assert [r["parent"] for r in rows] == [None, *[r["version"] for r in rows[:-1]]]
    assert all(r["git_commit"] is None and r["source"] == "wistro" for r in rows)

    df = ds.versions()
    assert list(df.columns) == [
        "version",
        "time",
        "n_samples",
        "added",
        "removed",
        "changed",
        "git_commit",
        "parent",
        "source",
    ]
    assert list(df["version"]) == [r["version"] for r in rows]
    assert isinstance(df["time"].dtype, pd.DatetimeTZDtype) and df["time"].is_monotonic_increasing
    assert df["n_samples"].tolist() == [1, 2, 2, 1]
    assert we.Dataset.load("smoke", project).versions().equals(df)


def test_a_batch_is_one_version(project: Path) -> None:
    ds = we.Dataset("smoke", root=project)
    with ds.batch():
        for o in ORDERS:
            ds.add({"topic": PLACED, "data": o})
    [row] = history(project, "smoke")
    assert row["n_samples"] == len(ORDERS) == row["added"]


def test_the_git_commit_is_recorded_in_a_repository(git_project: Path) -> None:
    ds = we.Dataset("golden", root=git_project)
    ds.add({"topic": PLACED, "data": ORDERS[0]})
    head = git(git_project, "rev-parse", "HEAD")
    assert ds.versions()["git_commit"].tolist() == [head]
    # the history sits next to the dataset and is committed with it (.wistro/ is ignored)
    git(git_project, "add", "datasets")
    assert git(git_project, "status", "--porcelain", "datasets") == (
        "A  datasets/.history/golden.jsonl\nA  datasets/golden.jsonl"
    )


def test_a_state_the_history_has_not_seen_is_recorded_as_found(project: Path) -> None:
    path = project / "datasets" / "hand.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"topic": PLACED, "data": ORDERS[0]}) + "\n")  # before any history
    ds = we.Dataset.load("hand", project)
    found = ds.version
    assert ds.versions().empty
    ds.add({"topic": PLACED, "data": ORDERS[1]})
    rows = history(project, "hand")
    assert [r["source"] for r in rows] == ["found", "wistro"]
    assert rows[0]["version"] == found and rows[0]["n_samples"] == 1 and rows[0]["added"] is None
    assert rows[1]["parent"] == found and rows[1]["added"] == 1

    # edited by hand afterwards: the next save records that state first
    with path.open("a") as f:
        f.write(json.dumps({"topic": PLACED, "data": ORDERS[2]}) + "\n")
    edited = we.Dataset.load("hand", project)
    by_hand = edited.version
    edited.add({"topic": PLACED, "data": ORDERS[3]})
    rows = history(project, "hand")
    assert [r["source"] for r in rows] == ["found", "wistro", "found", "wistro"]
    assert rows[2]["version"] == by_hand and rows[2]["n_samples"] == 3
    assert rows[3]["added"] == 1 and rows[3]["n_samples"] == 4


def test_a_damaged_history_names_its_line_and_never_blocks_a_save(project: Path) -> None:
    ds = we.Dataset("smoke", root=project)
    ds.add({"topic": PLACED, "data": ORDERS[0]})
    hist = project / "datasets" / ".history" / "smoke.jsonl"
    with hist.open("a") as f:
        f.write('{"version": "cut sho')  # a line a crash cut short
    with pytest.raises(DatasetError, match=r"^datasets/.history/smoke.jsonl:2: invalid JSON"):
        ds.versions()
    ds.add({"topic": PLACED, "data": ORDERS[1]})  # still saves, on a line of its own
    lines = hist.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["n_samples"] == 2


def test_copies_and_parts_are_not_versions_of_the_dataset(project: Path, tmp_path: Path) -> None:
    ds = we.Dataset("smoke", root=project)
    ds.add({"topic": PLACED, "data": ORDERS[0]}, split="test", tags=["t"])
    ds.add({"topic": PLACED, "data": ORDERS[1]}, split="train")
    ds.save(tmp_path / "copy.jsonl")  # a copy elsewhere: no history line
    assert len(ds.history()) == 2
    test = ds.split("test")
    with pytest.raises(DatasetError, match="only its split test: saving it would replace"):
        test.save()
    with pytest.raises(DatasetError, match="only its tag t"):
        ds.filter("t").save()
    assert test.save(tmp_path / "test.jsonl").is_file()
    assert len(we.Dataset.load("smoke", project)) == 2


def test_in_memory_datasets_have_no_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no wistro.yml here or above
    ds = we.Dataset.from_records("mem", [{"topic": PLACED, "data": ORDERS[0]}])
    assert ds.root is None and ds.history() == [] and ds.versions().empty
    ds.save(tmp_path / "mem.jsonl")
    assert not (tmp_path / ".history").exists()
