"""File state: one JSON file per key, ``<folder>/<group>/<key>.json``, replaced atomically.

Writes to one key are serialised: across processes by an ``flock`` on one of ``LOCK_FILES``
lock files in ``<group>/.locks/`` (chosen by a hash of the key), in this process by an
``asyncio.Lock`` per lock file; so ``update`` is an atomic read-modify-write. Blocking file I/O
runs on this adapter's own threads, never on the threads that run plain ``def`` handlers (which
may be waiting for it). Folders are created 0700 and files 0600: state can hold payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from wistro.errors import StateError
from wistro.files import make_private_dir, make_private_dirs, write_atomic
from wistro.state.base import StateAdapter, check_name
from wistro.threads import ThreadPool

_SUFFIX = ".json"
_LOCK_SUFFIX = ".lock"
_LOCKS = ".locks"  # a group's lock files (not a key: keys end in .json)
LOCK_FILES = 256
_TMP_PREFIX, _TMP_SUFFIX = ".tmp-", ".part"  # never ends in .json: not mistaken for a value
_MAX_FILE_NAME = 250  # bytes; most file systems stop at 255
_IO = ThreadPool("wistro-file-state", max_threads=8)


def _encode(kind: str, name: str) -> str:
    """The file-system name of a group or key (percent-encoded, so any allowed name round-trips)."""
    check_name(kind, name)
    encoded = quote(name, safe="")
    if len(encoded) + len(_SUFFIX) > _MAX_FILE_NAME:
        raise StateError(
            f"state {kind} {name!r} is too long for the file state adapter once encoded",
            field=kind,
        )
    return encoded


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as e:
        raise StateError(f"{path}: the stored value is not UTF-8 text ({e.reason})") from None


def _write(path: Path, value_json: str) -> None:
    """Called with the key's lock file held, so the temp file's name (the hash that chose that
    lock file, and this process's id: as short for any key) is this writer's alone."""
    tmp = path.with_name(f"{_TMP_PREFIX}{_crc(path):08x}-{os.getpid()}{_TMP_SUFFIX}")
    write_atomic(path, value_json, tmp=tmp)


def _crc(path: Path) -> int:
    """The hash of a value file's name (its key's): picks its lock file, names its temp file."""
    return zlib.crc32(path.name.encode())


def _lock_file(path: Path) -> Path:
    """The lock file of a value file: one of ``LOCK_FILES`` in its group's ``.locks`` folder,
    chosen by a hash of the key's name (stable across processes and versions). Two keys that
    share one wait for each other's writes, nothing more; the folder never grows with the keys
    (a file per key was an inode made for each new key, and one left behind for every key)."""
    return path.parent / _LOCKS / f"{_crc(path) % LOCK_FILES:03d}{_LOCK_SUFFIX}"


def _lock(path: Path) -> int:
    """Open and ``flock`` the lock file of ``path`` (a value file); returns the descriptor."""
    lock = _lock_file(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # the group's first write
        make_private_dirs(lock.parent)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int) -> None:
    os.close(fd)  # closing the descriptor releases the flock


def _lock_and_read(path: Path) -> tuple[int, str | None]:
    fd = _lock(path)
    try:
        return fd, _read(path)
    except BaseException:
        _unlock(fd)
        raise


def _write_and_unlock(fd: int, path: Path, value_json: str) -> None:
    try:
        _write(path, value_json)
    finally:
        _unlock(fd)


def _under_lock(path: Path, fn: Callable[..., Any], *args: Any) -> Any:
    fd = _lock(path)
    try:
        return fn(*args)
    finally:
        _unlock(fd)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _release_late(fut: asyncio.Future[tuple[int, str | None]]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        _unlock(fut.result()[0])


async def _locked_read(
    fn: Callable[..., tuple[int, str | None]], *args: Any
) -> tuple[int, str | None]:
    """Lock and read (``fn(*args)``, on an I/O thread); a caller cancelled meanwhile never leaves
    the lock held."""
    fut = _IO.run(fn, *args)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        fut.add_done_callback(_release_late)
        raise


def _values(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.name.endswith(_SUFFIX)]
    except FileNotFoundError:
        return []


def _clear(folder: Path) -> None:
    # The folder itself stays: removing it could race with a concurrent ``set``.
    for path in _values(folder):
        path.unlink(missing_ok=True)


def _groups(root: Path) -> list[str]:
    return sorted(unquote(p.name) for p in root.iterdir() if p.is_dir() and _values(p))


class _KeyLocks:
    """One ``asyncio.Lock`` per lock file while anyone holds or waits for it: in this process
    one writer at a time holds a lock file's ``flock``, so no I/O thread ever waits for an
    ``flock`` this process holds (which a write waiting for an I/O thread could never release)."""

    def __init__(self) -> None:
        self._locks: dict[Path, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, path: Path) -> AsyncIterator[None]:
        lock, users = self._locks.get(path) or (asyncio.Lock(), 0)
        self._locks[path] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[path]
            if users == 1:
                del self._locks[path]
            else:
                self._locks[path] = (lock, users - 1)


class FileState(StateAdapter):
    """Durable state in plain files; survives restarts and is easy to inspect or diff."""

    name = "file"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).resolve()
        make_private_dir(self.folder)
        self._locks = _KeyLocks()

    def where(self, group: str, key: str | None = None) -> str:
        try:
            path = self._key_path(group, key) if key is not None else self._group_dir(group)
            return str(self._contained(path, group, key))
        except StateError:
            return str(self.folder)

    def _inside(self, path: Path, kind: str, name: str) -> Path:
        """``path``, once checked that it resolves (symlinks included) inside the folder."""
        if not path.resolve().is_relative_to(self.folder):
            raise StateError(f"state {kind} {name!r} leads outside {self.folder}", field=kind)
        return path

    def _contained(self, path: Path, group: str, key: str | None) -> Path:
        """``path`` (a group's folder, or a key's file when ``key`` is given), once checked that
        it resolves inside the folder, naming the group or the key that leads outside. Names are
        percent-encoded (no ``/``), and the folder itself was resolved when the adapter was
        made, so only the group's folder and the key's file can be symlinks: one ``lstat``
        each, and a full resolve only of one that is a link. Run on the I/O threads, with the
        operation."""
        folder = path if key is None else path.parent
        if _is_link(folder):
            self._inside(folder, "group", group)
        if key is not None and _is_link(path):
            self._inside(path, "key", key)
        return path

    def _checked(
        self, path: Path, group: str, key: str | None, fn: Callable[..., Any], *args: Any
    ) -> Any:
        """On an I/O thread: ``fn(*args)`` once ``path`` is known to stay inside the folder."""
        self._contained(path, group, key)
        return fn(*args)

    def _group_dir(self, group: str) -> Path:
        return self.folder / _encode("group", group)

    def _key_path(self, group: str, key: str) -> Path:
        return self._group_dir(group) / (_encode("key", key) + _SUFFIX)

    def _read_group(self, folder: Path, group: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for path in sorted(_values(folder)):
            key = unquote(path.name[: -len(_SUFFIX)])
            self._inside(path, "key", key)  # the same containment as ``get``
            value = _read(path)  # None when deleted since the listing
            if value is not None:
                out[key] = value
        return out

    async def get(self, group: str, key: str) -> str | None:
        path = self._key_path(group, key)
        return await _IO.run(self._checked, path, group, key, _read, path)

    async def set(self, group: str, key: str, value_json: str) -> None:
        path = self._key_path(group, key)
        async with self._locks.hold(_lock_file(path)):
            await _IO.run(
                self._checked, path, group, key, _under_lock, path, _write, path, value_json
            )

    async def update(self, group: str, key: str, fn: Callable[[str | None], str]) -> str:
        path = self._key_path(group, key)
        async with self._locks.hold(_lock_file(path)):
            fd, current = await _locked_read(self._checked, path, group, key, _lock_and_read, path)
            try:
                new = fn(current)
            except BaseException:
                _unlock(fd)
                raise
            await _IO.run(_write_and_unlock, fd, path, new)
            return new

    async def delete(self, group: str, key: str) -> None:
        path = self._key_path(group, key)
        async with self._locks.hold(_lock_file(path)):
            await _IO.run(self._checked, path, group, key, _under_lock, path, _unlink, path)

    async def get_group(self, group: str) -> dict[str, str]:
        folder = self._group_dir(group)
        return await _IO.run(self._checked, folder, group, None, self._read_group, folder, group)

    async def clear(self, group: str) -> None:
        folder = self._group_dir(group)
        await _IO.run(self._checked, folder, group, None, _clear, folder)

    async def groups(self) -> list[str]:
        return await _IO.run(_groups, self.folder)
