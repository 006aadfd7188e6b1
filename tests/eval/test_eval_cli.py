"""`wistro dataset ...` and `wistro eval ...` through click's CliRunner on the command groups."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result
from eval_support import ORDERS, PRICE, write

import wistro
from wistro.cli.eval import dataset, eval_group
from wistro.cli.main import Obj, WistroGroup
from wistro.config import DEFAULT_ENV


def cli(root: Path, *args: str) -> Result:
    group = WistroGroup("wistro")
    group.add_command(dataset)
    group.add_command(eval_group)
    return CliRunner().invoke(group, list(args), obj=Obj(str(root), DEFAULT_ENV))


def record_traces(root: Path) -> list[str]:
    app = wistro.load(root, state="memory")  # the default SQLite trace store in .wistro/
    return [app.emit_sync("order.placed", o).trace_id for o in ORDERS[:3]]


def test_dataset_add_list_show(project: Path) -> None:
    ids = record_traces(project)
    out = cli(
        project, "dataset", "add", "smoke", "--trace", ids[0][:8], "--trace", ids[1], "--tag", "ci"
    )
    assert out.exit_code == 0, out.output
    assert out.output.count("added ") == 2 and "3 expectation(s)" in out.output
    out = cli(
        project,
        "dataset",
        "add",
        "smoke",
        "--topic",
        "order.placed",
        "--data",
        json.dumps(ORDERS[4]),
        "--id",
        "manual",
    )
    assert out.exit_code == 0, out.output

    listed = cli(project, "dataset", "list", "--json")
    [row] = json.loads(listed.output)
    assert row["name"] == "smoke" and row["samples"] == 3 and row["topics"] == ["order.placed"]
    shown = cli(project, "dataset", "show", "smoke")
    assert "manual  order.placed" in shown.output and "[ci]" in shown.output
    data = json.loads(cli(project, "dataset", "show", "smoke", "--json").output)
    assert data["samples"][0]["source_trace"] == ids[0]


def test_dataset_errors(project: Path) -> None:
    out = cli(project, "dataset", "show", "nope")
    assert out.exit_code == 1 and "no dataset 'nope'" in out.output
    out = cli(project, "dataset", "add", "x")
    assert out.exit_code == 1 and "--trace" in out.output
    out = cli(project, "dataset", "add", "x", "--trace", "ffffffffff")
    assert out.exit_code == 1 and "ffffffffff" in out.output


def test_eval_run_and_compare_with_fail_on_regression(project: Path) -> None:
    ids = record_traces(project)
    for tid in ids:
        assert cli(project, "dataset", "add", "smoke", "--trace", tid).exit_code == 0
    out = cli(project, "eval", "run", "smoke", "--label", "before")
    assert out.exit_code == 0, out.output
    assert "eval id: " in out.output and "payload_equals: mean 1.000" in out.output
    first = out.output.split("eval id: ")[1].strip()

    write(project, {"src/price.step.py": PRICE.replace("__TAX__", "0.5")})
    out = cli(
        project,
        "eval",
        "run",
        "smoke",
        "--scorer",
        "payload_equals",
        "--scorer",
        "error_free",
        "--scorer",
        "emitted:order.notified",
        "--json",
    )
    assert out.exit_code == 0, out.output
    second = json.loads(out.output)["eval_id"]

    listed = json.loads(cli(project, "eval", "list", "--json").output)
    assert [r["eval_id"] for r in listed] == [first, second]

    out = cli(project, "eval", "compare", first, "latest")
    assert out.exit_code == 0, out.output
    assert "first divergent step: Price" in out.output
    out = cli(project, "eval", "compare", first, "latest", "--fail-on-regression")
    assert out.exit_code == 1 and "against before: gate failed: " in out.output
    assert "too few for the" in out.output and "any regression fails the gate" in out.output
    data = json.loads(cli(project, "eval", "compare", first, second, "--json").output)
    assert data["has_regression"] and data["counts"] == {"regressed": 3}
    assert {r["first_divergent_step"] for r in data["regressions"]} == {"Price"}
    same = cli(project, "eval", "compare", second, "latest", "--fail-on-regression")
    assert same.exit_code == 0, same.output


def test_eval_errors(project: Path) -> None:
    out = cli(project, "eval", "run", "missing")
    assert out.exit_code == 1 and "no dataset 'missing'" in out.output
    out = cli(project, "eval", "compare", "latest", "latest")
    assert out.exit_code == 1 and "no evals yet" in out.output
    write(
        project,
        {"datasets/d.jsonl": json.dumps({"topic": "order.placed", "data": ORDERS[0]}) + "\n"},
    )
    out = cli(project, "eval", "run", "d", "--scorer", "bogus")
    assert out.exit_code == 1 and "unknown scorer 'bogus'" in out.output
    out = cli(project, "eval", "run", "d", "--version", "main~1")
    assert out.exit_code == 1 and "git" in out.output


def test_registered_on_the_main_command(project: Path) -> None:
    """The two lines wistro/cli.py needs, in a fresh interpreter: no import cycle, errors on
    stderr with exit code 1, and `--help` does not import numpy."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from wistro.cli.main import main\n"
        "from wistro.cli.eval import dataset, eval_group\n"
        "main.add_command(dataset)\n"
        "main.add_command(eval_group)\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('numpy' in sys.modules, file=sys.stderr)\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, "-C", str(project), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    helped = run("eval", "--help")
    assert helped.returncode == 0 and "compare" in helped.stdout
    assert helped.stderr.strip().endswith("False")
    failed = run("eval", "compare", "latest", "latest")
    assert failed.returncode == 1 and "error: no evals yet" in failed.stderr
