"""Files Wistro writes: atomic replacement (a reader sees the old content or the new, whole, even
after a crash), and private modes (0600 files, 0700 folders, whatever the umask) for what may hold
payloads, tokens or state."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
DATA_DIR_NAME = ".wistro"
"""A project's own data folder (traces, state, evals, server.json): always 0700."""


def _tighten(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` when it allows more (and it is ours to change)."""
    with contextlib.suppress(OSError):
        current = stat.S_IMODE(path.lstat().st_mode)
        if current & ~mode:
            os.chmod(path, current & mode)


def make_private_dirs(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 folders; existing ones are left alone."""
    missing: list[Path] = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=PRIVATE_DIR)
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is cut by the umask; this is not
    if not path.is_dir():
        path.mkdir()  # raises the error that says why (a file is in the way)
    return path


def make_private_dir(path: str | Path, *, within: str | Path | None = None) -> Path:
    """Make ``path`` a folder only its owner can read: created (with missing parents) as 0700,
    an existing one tightened to 0700; with ``within``, every folder below ``within`` on the way
    to ``path`` too. For Wistro's own folders (``.wistro/``, state, evals)."""
    folder = make_private_dirs(Path(path))
    _tighten(folder, PRIVATE_DIR)
    if within is not None:
        top = Path(within).resolve()
        for parent in folder.resolve().parents:
            if parent == top or top not in parent.parents:
                break
            _tighten(parent, PRIVATE_DIR)
    return folder


def make_private_file(path: str | Path) -> Path:
    """Make sure ``path`` exists as a file only its owner can read or write (0600): created empty
    when missing (its folder with :func:`make_private_dirs`), tightened when it is wider."""
    file = Path(path)
    make_private_dirs(file.parent)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        if file.is_file():  # anything else is for the caller to refuse
            _tighten(file, PRIVATE_FILE)
    else:
        os.close(fd)
        os.chmod(file, PRIVATE_FILE)
    return file


def write_atomic(
    path: Path,
    text: str,
    *,
    prefix: str | None = None,
    suffix: str = ".tmp",
    tmp: Path | None = None,
) -> None:
    """Write to a temp file beside ``path`` (mode 0600), fsync it, then rename it over ``path``.
    Missing folders are created 0700. The temp file gets a fresh random name, or ``tmp`` from a
    caller whose lock makes that name its own (one left by a killed writer is overwritten): no
    random names to try, which file state's writes measured as a third of their time."""
    data = text.encode("utf-8")
    try:
        fd, name = _open_temp(path, prefix, suffix, tmp)
    except FileNotFoundError:  # its folder is missing (made only then: no check per write)
        make_private_dirs(path.parent)
        fd, name = _open_temp(path, prefix, suffix, tmp)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def _open_temp(
    path: Path, prefix: str | None, suffix: str, tmp: Path | None
) -> tuple[int, str | Path]:
    if tmp is not None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        return os.open(tmp, flags, PRIVATE_FILE), tmp
    return tempfile.mkstemp(
        prefix=prefix if prefix is not None else f".{path.name}.", suffix=suffix, dir=path.parent
    )
