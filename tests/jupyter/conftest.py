"""Fixtures: the example shop in a temp folder, and a real IPython shell with the extension."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_support import cell  # noqa: F401 - re-exported for the fixtures

STUB_ESM = "export default { render({ model, el }) { el.textContent = model.get('kind'); } };\n"


@pytest.fixture(scope="session", autouse=True)
def _ipython_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """IPython's profile and history in a temp folder, never in the user's home."""
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from wistro.tooling.scaffold import create_project

    root = tmp_path / "shop"
    create_project(root)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def stub_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny widget bundle, so these tests never depend on the real JavaScript build."""
    path = tmp_path / "widgets.js"
    path.write_text(STUB_ESM, encoding="utf-8")
    monkeypatch.setenv("WISTRO_WIDGETS_ESM", str(path))
    return path


@pytest.fixture
def shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    if not InteractiveShell.initialized():
        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        InteractiveShell.instance(config=config)
    ip = InteractiveShell.instance()
    ip.run_line_magic("colors", "nocolor")
    return ip


@pytest.fixture
def ip(shell: Any, shop: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """The shell with ``%load_ext wistro_jupyter`` run in the shop, state and traces in memory."""
    result = shell.run_cell("%load_ext wistro_jupyter")
    assert result.success, result.error_in_exec
    result = shell.run_cell("%wistro load . --memory")
    assert result.success
    capsys.readouterr()
    try:
        yield shell
    finally:
        shell.extension_manager.unload_extension("wistro_jupyter")
        for name in list(shell.user_ns):
            if name.startswith(("run", "view", "order", "payload", "graph")):
                shell.user_ns.pop(name, None)
