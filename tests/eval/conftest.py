"""Fixtures of the eval tests; shared helpers live in eval_support.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from eval_support import PRICE, git, order_files, write


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The order flow in a plain folder."""
    return write(tmp_path / "orders", order_files())


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, tax: float = 0.2, extra: dict[str, str] | None = None) -> Path:
        return write(tmp_path / name, {**order_files(tax), **(extra or {})})

    return make


@pytest.fixture
def git_project(tmp_path: Path) -> Path:
    """The order flow in a git repo with two commits: tax 0.2, then tax 0.25 (a regression)."""
    root = write(tmp_path / "repo", order_files(0.2))
    (root / ".gitignore").write_text(".wistro/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "tax 0.2")
    write(root, {"src/price.step.py": PRICE.replace("__TAX__", "0.25")})
    git(root, "commit", "-q", "-am", "tax 0.25")
    return root
