"""Loading step files: each broken file is reported with its line, every other step loads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from projects import ORDER_MODEL, step, write_project

import wistro
from wistro.errors import DuplicateStepError, StepLoadError, StepLoadErrors


def load(root: Path, **kw) -> wistro.App:
    return wistro.load(root, state="memory", traces="memory", **kw)


def errors_by_file(app: wistro.App) -> dict[str, str]:
    return {e.file: str(e) for e in app.errors}


def test_broken_files_are_reported_and_the_rest_load(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "src/good.step.py": step("Good", ["t"]),
            "src/syntax.step.py": "config = {'name': 'S', 'subscribes': ['t']}\ndef handler(:\n",
            "src/noconfig.step.py": "async def handler(data, ctx):\n    pass\n",
            "src/badconfig.step.py": "config = {\n  'name': 'B',\n  'subscribes': 'x',\n"
            "  'retries': -1,\n}\nasync def handler(d, c): pass\n",
            "src/crash.step.py": "import json\nraise RuntimeError('boom at import')\n",
            "src/nohandler.step.py": "config = {'name': 'N', 'subscribes': ['t']}\n",
        },
    )
    app = load(tmp_path)
    assert list(app.registry.steps) == ["Good"]
    errs = errors_by_file(app)
    assert "syntax error" in errs["src/syntax.step.py"]
    assert "src/syntax.step.py:2" in errs["src/syntax.step.py"]
    assert "no `config` defined" in errs["src/noconfig.step.py"]
    bad = next(e for e in app.errors if e.file == "src/badconfig.step.py")
    assert bad.field == "retries" and bad.line == 4 and bad.step == "B"
    assert "src/crash.step.py:2" in errs["src/crash.step.py"]
    assert "boom at import" in errs["src/crash.step.py"]
    assert "no `handler` function" in errs["src/nohandler.step.py"]


def test_strict_loading_raises_with_every_error(tmp_path: Path) -> None:
    write_project(tmp_path, {"src/a.step.py": "x = (", "src/b.step.py": "y = 1"})
    with pytest.raises(StepLoadErrors) as e:
        load(tmp_path, strict=True)
    assert len(e.value.errors) == 2 and "(and 1 more)" in str(e.value)


def test_duplicate_step_name_names_both_files(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "src/a/one.step.py": step("Same", ["t"]),
            "src/b/two.step.py": step("Same", ["t"]),
        },
    )
    app = load(tmp_path)
    assert len(app.registry) == 1
    [err] = app.errors
    assert isinstance(err, DuplicateStepError)
    assert err.file == "src/b/two.step.py" and "src/a/one.step.py" in str(err)


def test_event_step_without_subscribes_is_invalid(tmp_path: Path) -> None:
    write_project(
        tmp_path, {"src/a.step.py": "config = {'name': 'A'}\nasync def handler(d, c): ..."}
    )
    [err] = load(tmp_path).errors
    assert isinstance(err, StepLoadError) and "needs 'subscribes'" in str(err)


def test_unknown_language_is_reported(tmp_path: Path) -> None:
    write_project(tmp_path, {"src/a.step.rb": "", "src/b.step.py": step("B", ["t"])})
    app = load(tmp_path)
    assert list(app.registry.steps) == ["B"]
    assert "no language runtime for '.rb'" in str(app.errors[0])


async def test_relative_and_sibling_imports_work(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "src/checkout/models.py": ORDER_MODEL,
            "src/checkout/helpers.py": "def double(x):\n    return 2 * x\n",
            "src/checkout/charge.step.py": step(
                "Charge",
                ["order.placed"],
                ["done"],
                header="from .models import OrderPlaced\nimport helpers",
                extra="'input': OrderPlaced",
                body="await ctx.emit('done', {'n': helpers.double(data.amount_cents)})",
            ),
        },
    )
    app = load(tmp_path)
    assert app.errors == []
    run = await app.emit("order.placed", {"order_id": "A", "amount_cents": 21})
    assert run.payloads("done") == [{"n": 42}]
    await app.aclose()


def test_helper_modules_do_not_leak_between_projects(tmp_path: Path) -> None:
    for name, value in (("p1", 1), ("p2", 2)):
        write_project(
            tmp_path / name,
            {
                "src/helpers.py": f"VALUE = {value}\n",
                "src/a.step.py": step(
                    f"A{value}", ["t"], header="import helpers", body="return helpers.VALUE"
                ),
            },
        )
    path_before = list(sys.path)
    a1, a2 = load(tmp_path / "p1"), load(tmp_path / "p2")
    mod1 = sys.modules[a1.registry.get("A1").invoke.__module__]
    mod2 = sys.modules[a2.registry.get("A2").invoke.__module__]
    assert mod1.helpers.VALUE == 1 and mod2.helpers.VALUE == 2
    assert "helpers" not in sys.modules
    assert sys.path == path_before
