"""The widgets' JavaScript: its own unit tests (vitest + jsdom) and type check, run from pytest so
that the project's one test command covers them, and the bundles the Python widgets load."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LABEXT = Path(__file__).resolve().parents[1] / "labextension"
STATIC = Path(__file__).resolve().parents[1] / "wistro_jupyter" / "static"


def npm(*args: str) -> subprocess.CompletedProcess[str]:
    npm_bin = shutil.which("npm")
    assert npm_bin, "npm is needed to test the widget bundle (scripts/setup.sh installs it)"
    return subprocess.run([npm_bin, *args], cwd=LABEXT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed() -> None:
    if not (LABEXT / "node_modules").is_dir():
        result = npm("ci", "--no-audit", "--no-fund")
        assert result.returncode == 0, result.stdout + result.stderr


def test_bundles_are_built_for_the_python_widgets() -> None:
    assert (STATIC / "widgets.js").stat().st_size > 100_000  # Graphviz inlined: no CDN
    trace_view = (STATIC / "trace_view.js").read_text(encoding="utf-8")
    assert len(trace_view) < 200_000 and "export" in trace_view


def test_vitest_suite_passes(installed: None) -> None:
    result = npm("test", "--silent")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "passed" in result.stdout and "failed" not in result.stdout


def test_typescript_typechecks(installed: None) -> None:
    result = npm("run", "--silent", "typecheck")
    assert result.returncode == 0, result.stdout + result.stderr
