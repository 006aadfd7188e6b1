"""File state: one JSON file per key, ``<folder>/<group>/<key>.json``, replaced atomically."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote, unquote

from wistro.errors import StateError
from wistro.files import write_atomic
from wistro.state.base import StateAdapter, check_name

_SUFFIX = ".json"
_TMP_PREFIX, _TMP_SUFFIX = ".tmp-", ".part"  # never ends in .json: not mistaken for a value
_MAX_FILE_NAME = 250  # bytes; most file systems stop at 255


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


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _write(path: Path, value_json: str) -> None:
    write_atomic(path, value_json, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX)


def _values(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.name.endswith(_SUFFIX)]
    except FileNotFoundError:
        return []


def _read_group(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(_values(folder)):
        value = _read(path)  # None when deleted since the listing
        if value is not None:
            out[unquote(path.name[: -len(_SUFFIX)])] = value
    return out


def _clear(folder: Path) -> None:
    # The folder itself stays: removing it could race with a concurrent ``set``.
    for path in _values(folder):
        path.unlink(missing_ok=True)


def _groups(root: Path) -> list[str]:
    return sorted(unquote(p.name) for p in root.iterdir() if p.is_dir() and _values(p))


class FileState(StateAdapter):
    """Durable state in plain files; survives restarts and is easy to inspect or diff."""

    name = "file"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)

    def _inside(self, path: Path, kind: str, name: str) -> Path:
        """``path``, once checked that it resolves (symlinks included) inside the folder."""
        if not path.resolve().is_relative_to(self.folder):
            raise StateError(f"state {kind} {name!r} leads outside {self.folder}", field=kind)
        return path

    def _group_dir(self, group: str) -> Path:
        return self._inside(self.folder / _encode("group", group), "group", group)

    def _key_path(self, group: str, key: str) -> Path:
        path = self._group_dir(group) / (_encode("key", key) + _SUFFIX)
        return self._inside(path, "key", key)

    async def get(self, group: str, key: str) -> str | None:
        return await asyncio.to_thread(_read, self._key_path(group, key))

    async def set(self, group: str, key: str, value_json: str) -> None:
        await asyncio.to_thread(_write, self._key_path(group, key), value_json)

    async def delete(self, group: str, key: str) -> None:
        await asyncio.to_thread(self._key_path(group, key).unlink, missing_ok=True)

    async def get_group(self, group: str) -> dict[str, str]:
        return await asyncio.to_thread(_read_group, self._group_dir(group))

    async def clear(self, group: str) -> None:
        await asyncio.to_thread(_clear, self._group_dir(group))

    async def groups(self) -> list[str]:
        return await asyncio.to_thread(_groups, self.folder)
