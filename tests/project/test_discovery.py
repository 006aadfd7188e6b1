"""Loading step files: each broken file is reported with its line, every other step loads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from projects import ORDER_MODEL, step, write_project

import wistro
from wistro.cli.main import main
from wistro.errors import DuplicateStepError, ProjectNotFound, StepLoadError, StepLoadErrors
from wistro.project.paths import find_root


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
    assert [r.name for r in app.registry if r.load_error is None] == ["Good"]
    # 'N' (its config is a literal) stands in so that its deliveries fail instead of vanishing
    [stand_in] = [r for r in app.registry if r.load_error is not None]
    assert stand_in.name == "N" and "no `handler` function" in stand_in.load_error
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


# ---------------------------------------------------------------- finding the project root
# A bare src/ of step files (no wistro.yml, wistro.json or lock) is a project only in the folder
# you start in: a folder below it (a notebook's) must not adopt it, import its code or write
# .wistro/ there.

IMPORT_MARK = (
    "from pathlib import Path\n"
    "Path(__file__).with_name('IMPORTED').touch()  # proves the code was imported\n"
)


@pytest.fixture
def bare_parent(tmp_path: Path) -> Path:
    """``tmp/parent`` with a bare ``src/`` of step files, and an empty ``notebooks/`` below it."""
    parent = write_project(
        tmp_path / "parent",
        {"src/x.step.py": step("X", ["t"], header=IMPORT_MARK), "notebooks/README.md": "notes\n"},
    )
    return parent


def assert_untouched(parent: Path) -> None:
    assert not (parent / "src" / "IMPORTED").exists(), "the parent's step code was imported"
    assert not (parent / ".wistro").exists(), "the parent got a .wistro/"
    assert not (parent / "notebooks" / ".wistro").exists()


def assert_says_how(err: ProjectNotFound, parent: Path) -> None:
    text = str(err)
    assert str(err).splitlines() == [text]
    assert f"no Wistro project in {parent / 'notebooks'} or its parents" in text
    assert err.hint is not None
    assert f"{parent} has a src/ of step files but no wistro.yml" in err.hint
    assert f"touch {parent}/wistro.yml" in err.hint


def test_a_parent_with_a_bare_src_is_not_adopted(
    bare_parent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = bare_parent / "notebooks"
    with pytest.raises(ProjectNotFound) as e:
        find_root(sub)
    assert_says_how(e.value, bare_parent)
    with pytest.raises(ProjectNotFound):
        wistro.load(sub)
    monkeypatch.chdir(sub)
    with pytest.raises(ProjectNotFound) as e:
        wistro.load()
    assert_says_how(e.value, bare_parent)
    assert_untouched(bare_parent)


def test_a_bare_src_is_a_project_from_its_own_folder_or_its_src(bare_parent: Path) -> None:
    assert find_root(bare_parent) == bare_parent
    assert find_root(bare_parent / "src") == bare_parent
    assert find_root(bare_parent / "src" / "x.step.py") == bare_parent


@pytest.mark.parametrize("marker", ["wistro.yml", "wistro.json", "wistro.yml.lock"])
def test_a_config_or_lock_file_makes_the_parent_found_from_below(
    bare_parent: Path, marker: str
) -> None:
    (bare_parent / marker).write_text("{}\n" if marker == "wistro.json" else "", encoding="utf-8")
    deep = bare_parent / "notebooks" / "a" / "b"
    deep.mkdir(parents=True)
    assert find_root(deep) == bare_parent
    assert find_root(bare_parent / "notebooks") == bare_parent


def test_no_project_anywhere_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFound) as e:
        find_root(tmp_path)
    assert e.value.hint is not None and "wistro init DIR" in e.value.hint
    assert "wistro.yml" in e.value.hint


def test_the_cli_from_below_a_bare_src_does_not_adopt_it(
    bare_parent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bare_parent / "notebooks")
    for args in (["steps"], ["emit", "t", "{}"], ["traces"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1, res.output
        [line] = res.stderr.strip().splitlines()
        assert line.startswith(f"error: no Wistro project in {bare_parent / 'notebooks'}")
        assert "has a src/ of step files but no wistro.yml" in line and "wistro -C" in line
    assert_untouched(bare_parent)
    res = CliRunner().invoke(main, ["-C", str(bare_parent), "steps"])  # the way the hint says
    assert res.exit_code == 0 and "X" in res.stdout


def test_load_ext_below_a_bare_src_does_not_adopt_it(
    bare_parent: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    if not InteractiveShell.initialized():
        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        InteractiveShell.instance(config=config)
    shell = InteractiveShell.instance()
    monkeypatch.chdir(bare_parent / "notebooks")
    result = shell.run_cell("%load_ext wistro_jupyter")
    try:
        assert result.success, result.error_in_exec
        out = capsys.readouterr().out
        assert f"wistro: no Wistro project in {bare_parent / 'notebooks'} or its parents" in out
        assert "load one with `%wistro load PATH`" in out
        assert "has a src/ of step files but no wistro.yml" in out
        assert f"touch {bare_parent}/wistro.yml" in out
        assert "wistro_app" not in shell.user_ns
        assert_untouched(bare_parent)
    finally:
        shell.extension_manager.unload_extension("wistro_jupyter")
