"""Sample identity: a duplicate id is an error (or, with upsert, a replacement); a sample without
an id is its content (input and expected), and identical content is kept once with a warning."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from wistro import eval as we
from wistro.errors import DatasetError, WistroError
from wistro.eval.dataset import Sample, sample_id
from wistro.eval.errors import DuplicateSampleError, DuplicateSampleWarning

PLACED = "order.placed"


def sample(i: int, **extra: object) -> dict[str, object]:
    return {"topic": PLACED, "data": {"order_id": f"A{i}", "amount_cents": i}, **extra}


def test_a_duplicate_id_is_one_line_naming_the_dataset_and_id(project: Path) -> None:
    ds = we.Dataset("x", root=project)
    ds.add(sample(1), id="a1")
    with pytest.raises(DuplicateSampleError) as e:
        ds.add(sample(2), id="a1")
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith("dataset 'x': duplicate sample id 'a1' (already in the dataset)")
    assert "upsert" in text
    assert isinstance(e.value, DatasetError) and isinstance(e.value, WistroError)
    # nothing changed, in memory or on disk
    assert ds["a1"].data == sample(1)["data"]
    assert we.Dataset.load("x", project)["a1"].data == sample(1)["data"]


def test_upsert_replaces_in_place(project: Path) -> None:
    ds = we.Dataset("x", root=project)
    ds.add(sample(1), id="a1")
    ds.add(sample(2), id="b2")
    replaced = ds.add(sample(3), id="a1", upsert=True)
    assert [s.id for s in ds] == ["a1", "b2"] and ds["a1"] is replaced
    assert we.Dataset.load("x", project)["a1"].data == sample(3)["data"]


def test_the_id_is_a_hash_of_input_and_expected(project: Path) -> None:
    ds = we.Dataset("x", root=project)
    plain = ds.add(sample(1))
    golden = ds.add(sample(1), expected={"order.priced": {"total": 1}})
    other = ds.add(sample(1), expected={"order.priced": {"total": 2}})
    assert len(ds) == 3 and len({plain.id, golden.id, other.id}) == 3
    assert golden.id == sample_id(golden.input, {"order.priced": {"total": 1}})
    assert plain.input_hash == golden.input_hash  # compare still pairs them by input


def test_identical_content_is_kept_once_with_a_warning(project: Path) -> None:
    ds = we.Dataset("x", root=project)
    first = ds.add(sample(1), tags=["a"])
    v1 = ds.version
    with pytest.warns(DuplicateSampleWarning) as caught:
        again = ds.add(sample(1))
    assert again is first and len(ds) == 1 and ds.version == v1
    [w] = caught
    assert str(w.message) == (
        f"dataset 'x': 1 duplicate sample of identical content (same input and expected) "
        f"kept once: {first.id}"
    )
    assert w.filename == __file__  # the warning points at the caller's line

    recs = [sample(1), sample(2), sample(1), sample(2), sample(3)]
    with pytest.warns(
        DuplicateSampleWarning, match=r"'recs': 2 duplicate samples .* \(records 3, 4\)"
    ):
        ds2 = we.Dataset.from_records("recs", recs, root=project)
    assert [s.data["order_id"] for s in ds2] == ["A1", "A2", "A3"]


def test_records_and_frames_name_the_duplicate_and_the_first(project: Path) -> None:
    recs = [sample(1, id="a"), sample(2, id="b"), sample(3, id="a")]
    with pytest.raises(DuplicateSampleError) as e:
        we.Dataset.from_records("recs", recs, root=project)
    assert str(e.value).startswith(
        "dataset 'recs': record 3: duplicate sample id 'a' (first at record 1)"
    )
    last_wins = we.Dataset.from_records("recs", recs, root=project, upsert=True)
    assert [s.id for s in last_wins] == ["a", "b"] and last_wins["a"].data["order_id"] == "A3"

    df = pd.DataFrame(recs, index=["r1", "r2", "r3"])
    with pytest.raises(
        DuplicateSampleError, match=r"row r3: duplicate sample id 'a' \(first at row r1\)"
    ):
        we.Dataset.from_frame("df", df, root=project)
    bad = pd.DataFrame([sample(1), {"data": 1}], index=[10, 11])
    bad["topic"] = [PLACED, None]
    with pytest.raises(DatasetError, match="dataset 'df': row 11: a sample needs 'topic'"):
        we.Dataset.from_frame("df", bad, root=project)


def test_extend_is_all_or_nothing(project: Path) -> None:
    ds = we.Dataset("x", root=project)
    ds.add(sample(0), id="keep")
    before = (project / "datasets" / "x.jsonl").read_text()
    batch = [Sample.from_dict(sample(i)) for i in range(1, 5)] + [
        Sample.from_dict(sample(9, id="keep"))
    ]
    with pytest.raises(DuplicateSampleError, match="'keep'"):
        ds.extend(batch)
    assert [s.id for s in ds] == ["keep"]
    assert (project / "datasets" / "x.jsonl").read_text() == before

    with pytest.raises(DuplicateSampleError), ds.batch():
        ds.add(sample(1))
        ds.add(sample(2), id="keep")
    assert [s.id for s in ds] == ["keep"] and len(ds.history()) == 1


def test_a_file_with_a_duplicate_id_names_the_file_and_both_lines(project: Path) -> None:
    lines = [sample(1, id="a1"), sample(2, id="b"), sample(3, id="a1")]
    path = project / "datasets" / "x.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(DuplicateSampleError) as e:
        we.Dataset.load("x", project)
    assert str(e.value).startswith(
        "datasets/x.jsonl:3: duplicate sample id 'a1' in dataset 'x' (first at line 1)"
    )
    assert e.value.file == "datasets/x.jsonl" and e.value.line == 3
    with pytest.raises(DuplicateSampleError, match=r"x.jsonl:3: duplicate sample id 'a1'"):
        we.Dataset.from_jsonl(path, root=project)
    with pytest.raises(DuplicateSampleError):  # Dataset(name) reads the file the same way
        we.Dataset("x", root=project)


def test_identical_lines_without_ids_are_read_once_with_a_warning(project: Path) -> None:
    path = project / "datasets" / "x.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(x) + "\n" for x in [sample(1), sample(2), sample(1)]))
    with pytest.warns(DuplicateSampleWarning, match=r"datasets/x.jsonl lines 3\)"):
        ds = we.Dataset.load("x", project)
    assert len(ds) == 2


def test_many_samples_nothing_lost_and_duplicates_found_in_linear_time(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 2000
    records = [
        {"topic": PLACED, "data": {"order_id": f"A{i}", "amount_cents": i}, "tags": [f"t{i % 7}"]}
        for i in range(n)
    ]
    ds = we.Dataset.from_records("big", records, root=project)
    assert len(ds) == n
    ds.save()
    lines = (project / "datasets" / "big.jsonl").read_text().splitlines()
    assert len(lines) == n
    loaded = we.Dataset.load("big", project)
    assert [s.to_dict() for s in loaded] == [s.to_dict() for s in ds]
    assert loaded.version == ds.version

    # every record again (no ids: identical content) plus n new ones, merged into the n stored
    calls = 0
    real = Sample.content_id

    def counted(self: Sample) -> str:
        nonlocal calls
        calls += 1
        return real.fget(self)  # type: ignore[attr-defined, no-any-return]

    again = [Sample.from_dict(r) for r in records]
    fresh = [
        Sample.from_dict({**r, "expected": {"order.priced": {"n": i}}})
        for i, r in enumerate(records)
    ]
    monkeypatch.setattr(Sample, "content_id", property(counted))
    start = time.perf_counter()
    with pytest.warns(DuplicateSampleWarning, match=f"{n} duplicate samples"):
        result = loaded.merge([*again, *fresh])
    elapsed = time.perf_counter() - start
    monkeypatch.undo()
    assert len(result.duplicates) == n and len(result.added) == n and len(loaded) == 2 * n
    assert calls <= 2 * n  # one look-up per sample, two hashes per collision: not n * n
    assert elapsed < 30  # the save of 4,000 lines included; quadratic would be 16M comparisons
    assert len(we.Dataset.load("big", project)) == 2 * n
