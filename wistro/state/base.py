"""The state-adapter interface and the rules every adapter shares (names, JSON values)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable

from wistro.errors import StateError

_BAD = re.compile(r"[\x00-\x1f/\\]")


def check_name(kind: str, name: str) -> str:
    """Groups and keys are plain names: no path separators, no ``..``, no control characters,
    so that no adapter can be steered outside its storage."""
    if not isinstance(name, str) or not name:
        raise StateError(f"state {kind} must be a non-empty string, got {name!r}", field=kind)
    if name in (".", "..") or _BAD.search(name) or len(name) > 200:
        raise StateError(
            f"invalid state {kind} {name!r}: no '/', '\\', '..', control characters, "
            "or more than 200 characters",
            field=kind,
        )
    return name


class StateAdapter(ABC):
    """Async key/value storage scoped by group. Values cross this interface as JSON text."""

    name: str = "abstract"

    @abstractmethod
    async def get(self, group: str, key: str) -> str | None: ...

    @abstractmethod
    async def set(self, group: str, key: str, value_json: str) -> None: ...

    @abstractmethod
    async def update(self, group: str, key: str, fn: Callable[[str | None], str]) -> str:
        """Atomic read-modify-write: ``fn(current_json_or_None) -> new_json`` is applied with no
        other write to the key in between (in this process and, where the adapter can, in
        others). Returns the new JSON. When ``fn`` raises, nothing is written."""

    @abstractmethod
    async def delete(self, group: str, key: str) -> None: ...

    @abstractmethod
    async def get_group(self, group: str) -> dict[str, str]: ...

    @abstractmethod
    async def clear(self, group: str) -> None: ...

    @abstractmethod
    async def groups(self) -> list[str]: ...

    def where(self, group: str, key: str | None = None) -> str:
        """Where a group or key lives, for error messages (a file, a Redis key...)."""
        return f"{self.name} state"

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass
