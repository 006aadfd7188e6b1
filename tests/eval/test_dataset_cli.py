"""`wistro dataset ...` as a user sees it (click's CliRunner, stdout and stderr apart): duplicate
ids, --upsert, --split, versions, one bad file among good ones, strict JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from eval_support import ORDERS

from wistro import eval as we
from wistro.cli.dataset_commands import dataset
from wistro.cli.main import Obj, WistroGroup
from wistro.config import DEFAULT_ENV

PLACED = "order.placed"


def cli(root: Path, *args: str) -> Result:
    group = WistroGroup("wistro")
    group.add_command(dataset)
    return CliRunner().invoke(group, list(args), obj=Obj(str(root), DEFAULT_ENV))


def add(root: Path, name: str, order: dict, *extra: str) -> Result:
    return cli(root, "dataset", "add", name, "--topic", PLACED, "--data", json.dumps(order), *extra)


def no_nan(text: str) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_a_duplicate_id_fails_in_one_line_and_upsert_replaces(project: Path) -> None:
    assert add(project, "smoke", ORDERS[0], "--id", "a1").exit_code == 0
    out = add(project, "smoke", ORDERS[1], "--id", "a1")
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert "dataset 'smoke': duplicate sample id 'a1' (already in the dataset)" in out.stderr
    assert "--upsert" in out.stderr

    out = add(project, "smoke", ORDERS[1], "--id", "a1", "--upsert")
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("replaced a1 (order.placed, 0 expectation(s))")
    assert we.Dataset.load("smoke", project)["a1"].data == ORDERS[1]

    out = cli(project, "dataset", "add", "smoke", "--trace", "x", "--trace", "y", "--id", "z")
    assert out.exit_code == 1 and "--id names one sample" in out.stderr


def test_identical_content_is_a_warning_line_and_kept_once(project: Path) -> None:
    first = add(project, "smoke", ORDERS[0])
    assert first.exit_code == 0 and first.stdout.startswith("added ")
    again = add(project, "smoke", ORDERS[0])
    assert again.exit_code == 0, again.output
    assert "added" not in again.stdout and "1 samples" in again.stdout
    assert again.stderr.startswith("warning: dataset 'smoke': 1 duplicate sample of identical")
    assert again.stderr.count("\n") == 1
    other = add(project, "smoke", ORDERS[0], "--expect", '{"order.priced": {"total": 120}}')
    assert other.exit_code == 0 and other.stdout.startswith("added ") and other.stderr == ""
    assert len(we.Dataset.load("smoke", project)) == 2


def test_add_and_show_a_split(project: Path) -> None:
    for i, o in enumerate(ORDERS[:4]):
        out = add(project, "smoke", o, "--split", "test" if i % 2 else "train")
        assert out.exit_code == 0, out.output
        assert ", split " in out.stdout
    shown = cli(project, "dataset", "show", "smoke", "--split", "test")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("dataset smoke (split test): 2 samples, version ")
    assert shown.stdout.count("  order.placed  ") == 2
    data = no_nan(cli(project, "dataset", "show", "smoke", "--split", "test", "--json").stdout)
    assert isinstance(data, dict)
    assert data["split"] == "test" and [s["split"] for s in data["samples"]] == ["test", "test"]
    assert data["samples"][0]["input"]["data"] == ORDERS[1]
    whole = cli(project, "dataset", "show", "smoke")
    assert "(train)" in whole.stdout and "(test)" in whole.stdout

    missing = cli(project, "dataset", "show", "smoke", "--split", "dev")
    assert missing.exit_code == 1
    assert "dataset 'smoke' has no split 'dev' (splits: test, train)" in missing.stderr
    bad = add(project, "smoke", ORDERS[5], "--split", "no good")
    assert bad.exit_code == 1 and "invalid split 'no good'" in bad.stderr

    listed = no_nan(cli(project, "dataset", "list", "--json").stdout)
    assert isinstance(listed, list) and listed[0]["splits"] == {"test": 2, "train": 2}
    assert "splits: test 2, train 2" in cli(project, "dataset", "list").stdout


def test_versions_are_listed(project: Path) -> None:
    add(project, "smoke", ORDERS[0], "--id", "a")
    add(project, "smoke", ORDERS[1], "--id", "b")
    add(project, "smoke", ORDERS[2], "--id", "a", "--upsert")
    out = cli(project, "dataset", "versions", "smoke")
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    current = we.Dataset.load("smoke", project).version
    assert lines[0] == f"dataset smoke: 3 version(s), current {current}"
    assert [line.split("samples  ")[1] for line in lines[1:]] == [
        "+1 -0 ~0",
        "+1 -0 ~0",
        "+0 -0 ~1",
    ]
    data = no_nan(cli(project, "dataset", "versions", "smoke", "--json").stdout)
    assert isinstance(data, dict) and data["recorded"] is True
    assert [v["n_samples"] for v in data["versions"]] == [1, 2, 2]
    assert data["versions"][-1]["version"] == current

    path = project / "datasets" / "smoke.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\n")  # edited by hand
    out = cli(project, "dataset", "versions", "smoke")
    assert "is not in the history yet: changed outside wistro" in out.stdout
    assert cli(project, "dataset", "versions", "nope").exit_code == 1


def test_one_bad_file_is_named_and_the_others_are_listed(project: Path) -> None:
    add(project, "alpha", ORDERS[0])
    add(project, "omega", ORDERS[1])
    folder = project / "datasets"
    good_line = json.dumps({"topic": PLACED, "data": ORDERS[2]})
    (folder / "bad.jsonl").write_text(f"{good_line}\n\n{{not json\n")
    (folder / "twice.jsonl").write_text(
        json.dumps({"id": "a1", "topic": PLACED}) + "\n" + json.dumps({"id": "a1", "topic": "t"})
    )

    out = cli(project, "dataset", "list")
    assert out.exit_code == 0, out.output
    assert [line.split()[0] for line in out.stdout.splitlines()] == ["alpha", "omega"]
    assert out.stderr.splitlines() == [
        "datasets/bad.jsonl:3: invalid JSON: Expecting property name enclosed in double quotes "
        "(column 2)",
        "datasets/twice.jsonl:2: duplicate sample id 'a1' in dataset 'twice' (first at line 1) "
        "(hint: delete one of the lines or give it another id)",
    ]
    strict = cli(project, "dataset", "list", "--strict")
    assert strict.exit_code == 1 and strict.stdout == out.stdout and strict.stderr == out.stderr

    as_json = cli(project, "dataset", "list", "--json")
    assert as_json.exit_code == 0
    assert [r["name"] for r in no_nan(as_json.stdout)] == ["alpha", "omega"]  # type: ignore[union-attr]
    assert as_json.stderr.count("\n") == 2

    shown = cli(project, "dataset", "show", "bad")
    assert shown.exit_code == 1
    assert shown.stderr.startswith("error: datasets/bad.jsonl:3: invalid JSON")
    assert we.list_datasets(project) == ["alpha", "bad", "omega", "twice"]


def test_json_output_is_strict(project: Path) -> None:
    ds = we.Dataset("nan", root=project)
    ds.add({"topic": PLACED, "data": {"amount": float("nan"), "big": float("inf")}}, id="n")
    shown = cli(project, "dataset", "show", "nan", "--json")
    assert shown.exit_code == 0, shown.output
    data = no_nan(shown.stdout)
    assert isinstance(data, dict)
    assert data["samples"][0]["input"]["data"] == {"amount": None, "big": None}
    listed = cli(project, "dataset", "list", "--json")
    assert listed.exit_code == 0 and no_nan(listed.stdout)
    added = add(project, "nan", {"x": 1}, "--json")
    assert added.exit_code == 0 and no_nan(added.stdout)


def test_the_real_command_line(project: Path) -> None:
    """Through `python -m wistro` in a fresh interpreter: exit codes and streams as a shell sees
    them."""
    add(project, "alpha", ORDERS[0])
    (project / "datasets" / "bad.jsonl").write_text("[1, 2]\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wistro", "-C", str(project), "dataset", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = run("list")
    assert listed.returncode == 0 and listed.stdout.startswith("alpha  1 samples")
    assert listed.stderr == "datasets/bad.jsonl:1: a sample must be a JSON object, got list\n"
    assert run("list", "--strict").returncode == 1
    versions = run("versions", "alpha", "--json")
    assert versions.returncode == 0 and json.loads(versions.stdout)["recorded"] is True
