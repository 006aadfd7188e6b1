"""The Go SDK shipped in the package: gofmt-formatted, ``go vet`` clean, no requirements, and
it builds offline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from wistro.runtimes.golang import SDK_DIR, build_env

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")


def _go() -> str:
    go = shutil.which("go")
    assert go
    return go


def test_go_mod_has_no_requirements() -> None:
    text = (SDK_DIR / "go.mod").read_text()
    assert text.startswith("module wistro.dev/sdk\n")
    assert "require" not in text


def test_sdk_is_gofmt_clean() -> None:
    gofmt = shutil.which("gofmt") or str(Path(_go()).parent / "gofmt")
    result = subprocess.run([gofmt, "-l", "."], cwd=SDK_DIR, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_sdk_is_go_vet_clean_offline() -> None:
    result = subprocess.run(
        [_go(), "vet", "./..."],
        cwd=SDK_DIR,
        env=build_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_sdk_unit_tests_pass_offline() -> None:
    result = subprocess.run(
        [_go(), "test", "./..."],
        cwd=SDK_DIR,
        env=build_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
