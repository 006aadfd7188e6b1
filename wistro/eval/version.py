"""Project versions: what an eval ran. The id is the lock ``version`` hash of the project's
sources (step files and configs), with a hash per step so a comparison knows which steps changed,
the git commit and a dirty flag when the project is in a git repository, and an optional label.

``load_version("main~1")`` checks a git revision out into a temporary ``git worktree`` (removed
afterwards); ``load_version("path/to/folder")`` uses another folder as it is.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.errors import ProjectNotFound
from wistro.eval.errors import VersionError
from wistro.project.paths import find_root

if TYPE_CHECKING:
    from wistro.app import App


@dataclass
class ProjectVersion:
    id: str
    steps: dict[str, str] = field(default_factory=dict)  # step name -> content hash
    files: dict[str, str] = field(default_factory=dict)  # step name -> file (relative)
    git_commit: str | None = None
    dirty: bool = False
    label: str | None = None
    revision: str | None = None  # what was asked for: "main~1", a folder, None (working tree)

    @property
    def short(self) -> str:
        return self.id[:12]

    @property
    def name(self) -> str:
        """How to show it: the label, else the revision, else the short id."""
        return self.label or self.revision or self.short

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProjectVersion:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def changed_steps(self, other: ProjectVersion) -> dict[str, str]:
        """``{step: "modified" | "added" | "removed"}`` from this version to ``other``."""
        out: dict[str, str] = {}
        for name in sorted(set(self.steps) | set(other.steps)):
            a, b = self.steps.get(name), other.steps.get(name)
            if a is None:
                out[name] = "added"
            elif b is None:
                out[name] = "removed"
            elif a != b:
                out[name] = "modified"
        return out


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise VersionError("git is not installed", hint="install git or give a folder") from None


def git_toplevel(path: Path) -> Path | None:
    if shutil.which("git") is None:
        return None
    out = _git(path, "rev-parse", "--show-toplevel")
    return Path(out.stdout.strip()).resolve() if out.returncode == 0 else None


def git_info(root: Path) -> tuple[str | None, bool]:
    """``(commit, dirty)`` of the project folder, or ``(None, False)`` outside git."""
    if git_toplevel(root) is None:
        return None, False
    head = _git(root, "rev-parse", "HEAD")
    commit = head.stdout.strip() if head.returncode == 0 else None
    status = _git(root, "status", "--porcelain", "--", ".")
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else False
    return commit, dirty


def version_of_app(
    app: App, *, label: str | None = None, revision: str | None = None, git: bool = True
) -> ProjectVersion:
    """The version of a loaded project: its lock data, hashed."""
    from wistro.project.lock import build_lock

    lock = build_lock(app.project, app.registry)
    steps = {name: s["hash"] + (":" + _config_hash(s)) for name, s in sorted(lock["steps"].items())}
    files = {name: s["file"] for name, s in sorted(lock["steps"].items())}
    commit, dirty = git_info(app.project.root) if git else (None, False)
    return ProjectVersion(
        lock["version"], steps, files, commit, dirty, label=label, revision=revision
    )


def _config_hash(step: dict[str, Any]) -> str:
    from wistro.eval._json import content_hash

    return content_hash({"config": step["config"], "active": step["active"]}, 12)


def current_version(root: str | Path | None = None, label: str | None = None) -> ProjectVersion:
    """The version of the project's working tree."""
    from wistro.app import App

    app = App.load(root, state="memory", traces="memory")
    return version_of_app(app, label=label)


@contextlib.contextmanager
def checkout(revision: str, root: str | Path | None = None) -> Iterator[tuple[Path, str | None]]:
    """The project folder of ``revision``: a folder path as it is, or a git revision checked out
    into a temporary worktree (removed on exit). Yields ``(project_root, commit or None)``."""
    here = find_root(root)
    folder = Path(revision).expanduser()
    if not folder.is_absolute():
        folder = here / folder
    if folder.is_dir() and ("/" in revision or revision in (".", "..") or _is_project(folder)):
        yield find_root(folder), None
        return
    top = git_toplevel(here)
    if top is None:
        raise VersionError(
            f"{revision!r} is neither a folder nor a git revision: the project is not in a git "
            "repository",
            hint="give a folder path, or run the eval in a git checkout",
        )
    resolved = _git(top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if resolved.returncode != 0:
        raise VersionError(
            f"no git revision {revision!r} in {top}",
            hint="see `git log --oneline`; a branch, tag, commit or `HEAD~1`",
        )
    commit = resolved.stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="wistro-version-"))
    tree = tmp / "tree"
    added = _git(top, "worktree", "add", "--detach", "--force", str(tree), commit)
    if added.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise VersionError(
            f"could not check out {revision!r}: {added.stderr.strip()}", hint="git worktree add"
        )
    try:
        sub = tree / here.relative_to(top)
        if not sub.is_dir():
            raise VersionError(
                f"the project folder {here.relative_to(top)} does not exist at {revision!r}"
            )
        yield sub, commit
    finally:
        _git(top, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        _git(top, "worktree", "prune")


def _is_project(folder: Path) -> bool:
    try:
        return find_root(folder) == folder.resolve()
    except ProjectNotFound:
        return False


@contextlib.contextmanager
def open_version(
    revision: str | None = None, root: str | Path | None = None, label: str | None = None
) -> Iterator[tuple[ProjectVersion, App]]:
    """``(version, app)`` of the working tree (``revision=None``), a git revision or a folder.
    The app has memory state and an in-memory trace store; a worktree is removed on exit."""
    from wistro.app import App

    if revision is None:
        app = App.load(root, state="memory", traces="memory")
        yield version_of_app(app, label=label), app
        return
    with checkout(revision, root) as (folder, commit):
        app = App.load(folder, state="memory", traces="memory")
        version = version_of_app(app, label=label, revision=revision, git=commit is None)
        if commit is not None:
            version.git_commit, version.dirty = commit, False
        yield version, app


def load_version(
    revision: str | None = None, root: str | Path | None = None, label: str | None = None
) -> ProjectVersion:
    """The ``ProjectVersion`` of a git revision, a folder, or the working tree (``None``)."""
    with open_version(revision, root, label) as (version, _app):
        return version
