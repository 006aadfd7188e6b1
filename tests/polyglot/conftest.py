"""Fixtures of the language-worker tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import wistro
from tests.projects import close_apps
from wistro.errors import StepLoadError
from wistro.runtimes.node import ESBUILD_VERSION, cache_dir, ensure_esbuild


@pytest.fixture
async def apps() -> AsyncIterator[list[wistro.App]]:
    """Apps a test loads (``tests.projects.load_app``), closed after it."""
    made: list[wistro.App] = []
    yield made
    await close_apps(made)


@pytest.fixture(scope="session")
def esbuild_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """esbuild, the pinned version, installed machine-wide into wistro's cache as a user would
    (``npm install --prefix ~/.cache/wistro/esbuild esbuild@<pin>``; once, on the first run):
    the projects of these tests have no node_modules of their own."""
    with_no_project = tmp_path_factory.mktemp("no-project")
    try:
        return ensure_esbuild(with_no_project)
    except StepLoadError:
        pass
    npm = shutil.which("npm")
    if npm is None:  # pragma: no cover - this machine has npm (scripts/setup.sh)
        pytest.fail("the TypeScript tests need npm")
    prefix = cache_dir() / "esbuild"
    proc = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--loglevel=error",
            f"esbuild@{ESBUILD_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return ensure_esbuild(with_no_project)
