"""Project versions: lock hash, per-step hashes, git commit and dirty flag, worktrees, folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_support import PRICE, git, write

import wistro
from wistro import eval as we
from wistro.project.lock import build_lock


def test_the_working_tree_version_is_the_lock_hash(project: Path) -> None:
    v = we.current_version(project, label="mine")
    app = wistro.load(project, state="memory", traces="memory")
    assert v.id == build_lock(app.project, app.registry)["version"]
    assert sorted(v.steps) == ["Notify", "Price", "Validate"]
    assert v.files["Price"] == "src/price.step.py"
    assert v.git_commit is None and v.dirty is False and v.name == "mine"


def test_git_commit_dirty_flag_and_changed_steps(git_project: Path) -> None:
    head = git(git_project, "rev-parse", "HEAD")
    new = we.current_version(git_project)
    assert new.git_commit == head and new.dirty is False
    old = we.load_version("HEAD~1", git_project)
    assert old.git_commit == git(git_project, "rev-parse", "HEAD~1")
    assert old.revision == "HEAD~1" and old.id != new.id
    assert old.changed_steps(new) == {"Price": "modified"}
    # the temporary worktree is gone
    assert len(git(git_project, "worktree", "list").splitlines()) == 1

    write(git_project, {"src/price.step.py": PRICE.replace("__TAX__", "0.3")})
    dirty = we.current_version(git_project)
    assert dirty.dirty is True and dirty.id not in (old.id, new.id)


def test_a_project_in_a_subfolder_of_the_repo(tmp_path: Path, make_project) -> None:
    root = make_project("mono/services/orders")
    repo = tmp_path / "mono"
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    v = we.load_version("HEAD", root)
    assert v.id == we.current_version(root).id


def test_a_revision_that_does_not_exist(git_project: Path) -> None:
    with pytest.raises(we.VersionError, match="no git revision 'nope~3'"):
        we.load_version("nope~3", git_project)
    assert len(git(git_project, "worktree", "list").splitlines()) == 1


def test_a_revision_outside_git(project: Path) -> None:
    with pytest.raises(we.VersionError, match="not in a git repository"):
        we.load_version("main~1", project)


def test_another_folder(project: Path, make_project) -> None:
    other = make_project("other", tax=0.5)
    v = we.load_version(str(other), project)
    assert v.revision == str(other)
    assert we.current_version(project).changed_steps(v) == {"Price": "modified"}
