"""Datasets: built from runs, dicts, DataFrames and JSONL; stored diff-friendly; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from eval_support import ORDERS

import wistro
from wistro import eval as we
from wistro.eval.dataset import sample_id


async def test_a_recorded_run_becomes_a_sample(project: Path) -> None:
    app = wistro.load(project, state="memory", traces="memory")
    try:
        run = await app.emit("order.placed", ORDERS[0])
    finally:
        await app.aclose()
    ds = we.Dataset("smoke", root=project)
    s = ds.add_run(run)
    assert s.input == {"topic": "order.placed", "data": ORDERS[0]}
    assert s.expected == {
        "order.validated": {"order_id": "A0", "amount_cents": 100},
        "order.priced": {"order_id": "A0", "total": 120},
        "order.notified": {"order_id": "A0", "total": 120},
    }
    assert s.events[0]["topic"] == "order.placed"
    assert s.source_trace == run.trace_id
    assert s.id == sample_id(s.input, s.expected)  # a hash of the input and the expected

    # stored as one sorted-keys line per sample, loaded back identically
    path = project / "datasets" / "smoke.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0] == json.dumps(json.loads(lines[0]), sort_keys=True, separators=(",", ":"))
    again = we.Dataset.load("smoke", project)
    assert again.version == ds.version
    assert again.samples[0].to_dict() == s.to_dict()


def test_a_stored_trace_becomes_a_sample(project: Path) -> None:
    app = wistro.load(project, state="memory", traces="memory")
    run = app.emit_sync("order.placed", ORDERS[1])
    ds = we.Dataset("smoke", root=project)
    s = ds.add_run(app.trace(run.trace_id))
    assert s.source_trace == run.trace_id
    assert s.expected["order.priced"] == {"order_id": "A1", "total": 240}


def test_dicts_frames_and_jsonl(project: Path, tmp_path: Path) -> None:
    ds = we.Dataset("hand", root=project)
    s = ds.add(
        {"topic": "order.placed", "data": ORDERS[0]},
        expected={"order.priced": {"order_id": "A0", "total": 120}},
        tags=["smoke"],
    )
    ds.add({"topic": "order.placed", "data": ORDERS[1]}, id="second")
    assert [x.id for x in ds] == [s.id, "second"]
    assert len(ds.filter("smoke")) == 1
    v1 = ds.version
    # the same input with other expectations (none) is another sample
    ds.add({"topic": "order.placed", "data": ORDERS[0]}, tags=["smoke"])
    assert len(ds) == 3 and ds.version != v1
    with pytest.raises(we.DatasetError, match="duplicate sample id 'second'"):
        ds.add({"topic": "order.placed", "data": ORDERS[2]}, id="second")
    ds.add({"topic": "order.placed", "data": ORDERS[2]}, id="second", upsert=True)
    assert len(ds) == 3 and ds["second"].data == ORDERS[2]

    df = pd.DataFrame([{"topic": "order.placed", "data": o, "tags": "a,b"} for o in ORDERS])
    from_df = we.Dataset.from_frame("df", df, root=project)
    assert len(from_df) == len(ORDERS) and from_df.samples[0].tags == ["a", "b"]
    assert list(from_df.to_frame().columns)[:3] == ["id", "topic", "data"]

    from_records = we.Dataset.from_records(
        "recs", [{"input": {"topic": "order.placed", "data": ORDERS[2]}}], root=project
    )
    assert from_records.samples[0].data == ORDERS[2]

    file = ds.save(tmp_path / "copy.jsonl")
    from_file = we.Dataset.from_jsonl(file, root=project)
    assert from_file.name == "copy" and from_file.version == ds.version


def test_unknown_dataset_lists_the_known_ones(project: Path) -> None:
    we.Dataset("alpha", root=project).add({"topic": "order.placed", "data": ORDERS[0]})
    with pytest.raises(we.DatasetNotFound) as e:
        we.Dataset.load("nope", project)
    assert "no dataset 'nope'" in str(e.value) and "alpha" in str(e.value)


def test_bad_samples_and_names(project: Path, tmp_path: Path) -> None:
    with pytest.raises(we.DatasetError):
        we.Dataset("../escape", root=project)
    with pytest.raises(we.DatasetError):
        we.Dataset("x", root=project).add({"data": {}})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"topic": "order.placed", "data": {}}\nnot json\n')
    with pytest.raises(we.DatasetError) as e:
        we.Dataset.from_jsonl(bad, root=project)
    assert ":2" in str(e.value)


async def test_the_notebook_dataset_command(project: Path) -> None:
    from wistro.eval.notebook import dataset_magic

    app = wistro.load(project, state="memory", traces="memory")
    try:
        with pytest.raises(wistro.WistroError, match="no run"):
            dataset_magic(app, None, "add smoke")
        first = await app.emit("order.placed", ORDERS[0])
        second = await app.emit("order.placed", ORDERS[1])
        await app.drain()
        ds = dataset_magic(app, second, "add smoke")
        ds = dataset_magic(app, second, f"add smoke {first.trace_id[:10]}")
        assert len(ds) == 2 and {s.source_trace for s in ds} == {first.trace_id, second.trace_id}
        listed = dataset_magic(app, None, "list")
        assert listed.to_dict(orient="records") == [
            {"name": "smoke", "samples": 2, "version": ds.version}
        ]
        assert dataset_magic(app, None, "show smoke").version == ds.version
        with pytest.raises(wistro.WistroError, match="unknown"):
            dataset_magic(app, None, "frobnicate")
    finally:
        await app.aclose()
