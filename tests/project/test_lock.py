"""The lock file: deterministic bytes, a version that follows the content, stale detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from projects import step, write_project

import wistro
from wistro.errors import StaleLockError
from wistro.project.lock import (
    build_lock,
    diff_locks,
    read_lock,
    records_from_lock,
    render,
    verify_hashes,
    version_of,
    write_lock,
)

FILES = {
    "wistro.yml": "flows: {checkout: {name: Checkout}}\n",
    "src/b.step.py": step("B", ["paid"], extra="'flows': ['checkout']"),
    "src/a.step.py": step("A", ["order"], ["paid"], body="await ctx.emit('paid', {})"),
}


def locked(root: Path) -> dict:
    app = wistro.load(root, state="memory", traces="memory")
    return build_lock(app.project, app.registry)


def test_the_same_sources_give_the_same_bytes(tmp_path: Path) -> None:
    one = locked(write_project(tmp_path / "one" / "shop", FILES))
    two = locked(write_project(tmp_path / "two" / "shop", dict(reversed(list(FILES.items())))))
    assert render(one) == render(two) and one["version"] == two["version"]
    assert list(one["steps"]) == sorted(one["steps"])


def test_the_version_follows_the_content(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", FILES)
    before = locked(root)
    assert version_of(before) == before["version"]
    (root / "src/b.step.py").write_text(step("B", ["paid"], body="return None"))
    after = locked(root)
    assert after["version"] != before["version"]
    changes = diff_locks(before, after)
    assert any("B" in c for c in changes)


def test_write_is_idempotent_and_read_gives_it_back(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", FILES)
    data = locked(root)
    path = root / "wistro.yml.lock"
    assert write_lock(path, data) is True
    assert write_lock(path, data) is False  # unchanged: not rewritten
    assert read_lock(path) == data


def test_a_changed_step_file_makes_the_lock_stale(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", FILES)
    app = wistro.load(root, state="memory", traces="memory")
    data = build_lock(app.project, app.registry)
    verify_hashes(app.project, data)  # fresh: fine
    (root / "src/a.step.py").write_text("# edited\n" + (root / "src/a.step.py").read_text())
    with pytest.raises(StaleLockError, match=r"a\.step\.py"):
        verify_hashes(app.project, data)


def test_records_come_back_from_the_lock(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", FILES)
    app = wistro.load(root, state="memory", traces="memory")
    data = build_lock(app.project, app.registry)
    records = {r.name: r for r in records_from_lock(app.project, data)}
    assert set(records) == {"A", "B"}
    assert records["A"].subscribes == ("order",) and records["B"].flows == ("checkout",)
