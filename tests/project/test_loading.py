"""How Python step files are loaded: read once, compiled on another core for a large project
(``wistro.runtimes.pycompile``), and what a user sees is the same either way."""

from __future__ import annotations

import importlib.util
import inspect
import marshal
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from projects import ORDER_MODEL, step, write_project

import wistro
from wistro.cli.main import main
from wistro.errors import PayloadError
from wistro.project.paths import load_project
from wistro.runtimes import pycompile

SCHEMA = "{'type': 'object', 'properties': {'n': {'type': 'integer'}}, 'required': ['n']}"

FILES = {
    "src/checkout/models.py": ORDER_MODEL,
    "src/checkout/helpers.py": "def double(x):\n    return 2 * x\n",
    "src/checkout/charge.step.py": step(
        "Charge",
        ["order.placed"],
        ["charged"],
        header="from .models import OrderPlaced\nimport helpers",
        extra="'input': OrderPlaced",
        body="await ctx.emit('charged', {'n': helpers.double(data.amount_cents)})",
    ),
    "src/checkout/receipt.step.py": step("Receipt", ["charged"], extra=f"'input': {SCHEMA}"),
    # config on line 7, after a docstring and imports
    "src/late.step.py": '"""A step."""\n\nimport json\n\nX = 1\n\n'
    + step("Late", ["t"]).lstrip("\n"),
    "src/boom.step.py": "import json\n\nraise RuntimeError('boom at import')\n",
    "src/syntax.step.py": "config = {'name': 'S', 'subscribes': ['t']}\ndef handler(:\n",
    "src/noconfig.step.py": "async def handler(data, ctx):\n    pass\n",
    "src/sync.step.py": step("Sync", ["t"], is_async=False),
    "src/deep/er/still.step.py": step("Deep", ["t"]),
}


def load(root: Path) -> wistro.App:
    return wistro.load(root, state="memory", traces="memory")


def summary(app: wistro.App) -> tuple[list[tuple], list[str]]:
    steps = [
        (r.name, r.rel_file, r.hash, r.line, r.input_schema, r.load_error) for r in app.registry
    ]
    return steps, sorted(str(e) for e in app.errors)


@pytest.fixture
def helper_always(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Use the helper for any number of files; counts the files it compiled."""
    monkeypatch.setattr(pycompile, "MIN_FILES", 1)
    monkeypatch.setattr(pycompile, "WAIT_S", 30.0)  # no file loaded here
    monkeypatch.delenv(pycompile.DISABLE_ENV, raising=False)
    compiled: list[int] = []
    take = pycompile.Precompiler.take

    def counting(self: pycompile.Precompiler) -> pycompile.Compiled | None:
        got = take(self)
        compiled.append(got is not None)
        return got

    monkeypatch.setattr(pycompile.Precompiler, "take", counting)
    return compiled


def test_a_project_loads_the_same_with_and_without_the_helper(
    tmp_path: Path, helper_always: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, FILES)
    with_helper = summary(load(tmp_path))
    # every file the helper can compile is compiled there; the syntax error is left to us
    assert helper_always.count(True) == 7 and helper_always.count(False) == 1
    monkeypatch.setenv(pycompile.DISABLE_ENV, "1")
    helper_always.clear()
    without = summary(load(tmp_path))
    assert helper_always == []
    assert with_helper == without
    steps, errors = with_helper
    assert [s[0] for s in steps if s[5] is None] == ["Charge", "Receipt", "Deep", "Late", "Sync"]
    assert dict((s[0], s[3]) for s in steps)["Late"] == 7
    assert any("src/syntax.step.py:2" in e and "syntax error" in e for e in errors)
    assert any("src/boom.step.py:3" in e and "boom at import" in e for e in errors)
    assert any("src/noconfig.step.py" in e and "no `config` defined" in e for e in errors)


async def test_steps_compiled_by_the_helper_run_and_keep_their_file(
    tmp_path: Path, helper_always: list[int]
) -> None:
    write_project(
        tmp_path,
        {
            **FILES,
            "src/fails.step.py": step(
                "Fails", ["f"], body="x = 1\nraise ValueError('bad ' + str(x))"
            ),
        },
    )
    app = load(tmp_path)
    assert helper_always.count(True) == 8
    run = await app.emit("order.placed", {"order_id": "A", "amount_cents": 21})
    assert run.status == "ok" and run.payloads("charged") == [{"n": 42}]
    with pytest.raises(PayloadError, match="amount_cents"):
        await app.emit("order.placed", {"order_id": "A", "amount_cents": "lots"})
    # a JSON Schema input still refuses a bad payload at emit
    with pytest.raises(PayloadError) as refused:
        await app.emit("charged", {"n": "x"})
    assert refused.value.field == "n"
    charge = tmp_path / "src/checkout/charge.step.py"
    handler = app.registry.get("Charge").invoke
    assert handler.__code__.co_filename == str(charge)
    module = sys.modules[handler.__module__]
    assert module.__file__ == str(charge) and module.__spec__.origin == str(charge)
    assert "helpers.double" in inspect.getsource(handler)
    run = await app.emit("f", {})
    assert run.status != "ok"
    assert any("bad 1" in e for e in run.errors)
    # the user's traceback names the file and line of the step, as with an import
    fails = tmp_path / "src/fails.step.py"
    [tb] = {sp.traceback for sp in run.span_records if sp.step == "Fails" and sp.traceback}
    line = fails.read_text().splitlines().index("    raise ValueError('bad ' + str(x))") + 1
    assert f'File "{fails}", line {line}, in handler' in tb and "raise ValueError" in tb
    await app.aclose()


def test_the_helper_writes_pycache_as_an_import_would(
    tmp_path: Path, helper_always: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, {"src/a.step.py": step("A", ["t"]), "src/b.step.py": step("B", ["t"])})
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    load(tmp_path)
    assert not (tmp_path / "src" / "__pycache__").exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    load(tmp_path)
    assert helper_always == [True] * 4
    for name in ("a", "b"):
        file = tmp_path / "src" / f"{name}.step.py"
        cached = Path(importlib.util.cache_from_source(str(file)))
        for _ in range(200):  # the helper writes them once it has sent every file
            if cached.exists():
                break
            time.sleep(0.05)
        pyc = cached.read_bytes()
        assert pyc[:4] == importlib.util.MAGIC_NUMBER
        source = file.read_bytes()
        assert marshal.loads(pyc[16:]) == compile(source, str(file), "exec", dont_inherit=True)


@pytest.mark.parametrize(
    "script",
    [
        # dies after its first file
        "import sys, marshal\n"
        "import importlib.util\n"
        "def send(v):\n"
        "    d = marshal.dumps(v)\n"
        "    sys.stdout.buffer.write(len(d).to_bytes(4, 'big') + d); sys.stdout.buffer.flush()\n"
        "sys.stdin.readline()\n"
        "send((importlib.util.MAGIC_NUMBER, sys.implementation.cache_tag))\n"
        "sys.stdin.readline(); send(None); sys.exit(3)\n",
        # another Python (its bytecode would not be ours)
        "import sys, marshal\n"
        "d = marshal.dumps((b'nope', 'cpython-00'))\n"
        "sys.stdout.buffer.write(len(d).to_bytes(4, 'big') + d); sys.stdout.buffer.flush()\n",
        # garbage
        "import sys\nsys.stdout.buffer.write(b'\\xff' * 64); sys.stdout.buffer.flush()\n",
    ],
    ids=["dies", "another-python", "garbage"],
)
def test_a_helper_that_fails_leaves_the_files_to_this_process(
    tmp_path: Path, helper_always: list[int], monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    write_project(tmp_path, FILES)
    monkeypatch.setenv(pycompile.DISABLE_ENV, "1")
    expected = summary(load(tmp_path))
    monkeypatch.delenv(pycompile.DISABLE_ENV)
    monkeypatch.setattr(pycompile, "_HELPER", script)
    assert summary(load(tmp_path)) == expected
    assert True not in helper_always


def test_no_helper_without_an_interpreter_or_for_few_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, FILES)
    files = load_project(tmp_path).step_files()
    assert pycompile.precompiler(files, "^config") is None  # fewer than MIN_FILES
    monkeypatch.setattr(pycompile, "MIN_FILES", 1)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    assert pycompile.precompiler(files, "^config") is None
    assert [r.name for r in load(tmp_path).registry if r.load_error is None] == [
        "Charge",
        "Receipt",
        "Deep",
        "Late",
        "Sync",
    ]


def test_step_files_skip_hidden_files_caches_and_node_modules(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "wistro.yml": "name: p\n",
            "src/a.step.py": step("A", ["t"]),
            "src/.hidden.step.py": step("H", ["t"]),
            "src/.folder/b.step.py": step("B", ["t"]),
            "src/__pycache__/c.step.py": step("C", ["t"]),
            "src/node_modules/pkg/d.step.js": "",
            "src/notes.py": "",
        },
    )
    (tmp_path / "src" / "e.step.py").mkdir()  # a folder, not a step file
    (tmp_path / "src" / "link").symlink_to(tmp_path / "src" / ".folder")  # not followed
    (tmp_path / "src" / "l.step.py").symlink_to(tmp_path / "src" / "a.step.py")  # a file
    src = tmp_path / "src"
    assert [p.relative_to(src).as_posix() for p in load_project(tmp_path).step_files()] == [
        ".folder/b.step.py",
        "a.step.py",
        "l.step.py",
    ]


def test_a_model_without_json_schema_fails_check_naming_its_file(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "wistro.yml": "name: p\n",
            "src/good.step.py": step("Good", ["t"], ["u"]),
            "src/bad.step.py": "from typing import Callable\n"
            "from pydantic import BaseModel\n\n"
            "class In(BaseModel):\n"
            "    f: Callable[[int], int]\n\n"
            "config = {\n"
            "    'name': 'Bad',\n"
            "    'subscribes': ['u'],\n"
            "    'input': In,\n"
            "}\n\n"
            "async def handler(data, ctx):\n"
            "    pass\n",
        },
    )
    result = CliRunner().invoke(main, ["-C", str(tmp_path), "check"])
    assert result.exit_code == 1, result.output
    [line] = [x for x in result.output.splitlines() if "error[load]" in x]
    assert line.startswith("src/bad.step.py:10: error[load]: field 'input': its model 'In'")
    assert "has no JSON Schema" in line and "Traceback" not in result.output


def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    import gc

    write_project(tmp_path, FILES)
    before = gc.get_threshold(), gc.get_freeze_count()  # what someone froze stays frozen
    load(tmp_path)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before and gc.isenabled()


def test_files_loaded_here_while_the_helper_starts_are_skipped_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    write_project(tmp_path, {f"src/s{i}.step.py": step(f"S{i}", ["t"]) for i in range(6)})
    files = load_project(tmp_path).step_files()
    monkeypatch.setattr(pycompile, "MIN_FILES", 1)
    monkeypatch.setattr(pycompile, "_HELPER", "import time; time.sleep(0.3)\n" + pycompile._HELPER)
    helper = pycompile.precompiler(files, "^config")
    assert helper is not None
    with helper:
        assert helper.take() is None  # not up yet: the first file is loaded here
        monkeypatch.setattr(pycompile, "WAIT_S", 30.0)
        got = [helper.take() for _ in files[1:]]
    assert [c.hash if c else None for c in got] == [
        hashlib.sha256(f.read_bytes()).hexdigest() for f in files[1:]
    ]
