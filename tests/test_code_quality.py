"""The code base stays ruff-clean, type-checks with mypy and keeps the import rules of
``[tool.importlinter]`` in pyproject.toml (run as part of the test suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_is_clean() -> None:
    result = run("ruff", "check", "wistro", "wistro_jupyter", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = run("mypy", "wistro", "wistro_jupyter", "--exclude", "wistro/templates")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept() -> None:
    """``lint-imports``: wistro never imports the notebook side, the core no trigger/eval/CLI
    code, and the modules of wistro are layered (no import cycles)."""
    lint_imports = (
        "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    )
    result = subprocess.run(
        [sys.executable, "-c", lint_imports, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
