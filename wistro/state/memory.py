"""In-process state: a dict of dicts. Fast, gone when the process ends."""

from __future__ import annotations

from collections.abc import Callable

from wistro.state.base import StateAdapter, check_name


class MemoryState(StateAdapter):
    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, dict[str, str]] = {}

    async def get(self, group: str, key: str) -> str | None:
        check_name("group", group)
        check_name("key", key)
        return self._data.get(group, {}).get(key)

    async def set(self, group: str, key: str, value_json: str) -> None:
        check_name("group", group)
        check_name("key", key)
        self._data.setdefault(group, {})[key] = value_json

    async def update(self, group: str, key: str, fn: Callable[[str | None], str]) -> str:
        # No await between the read and the write: atomic on the event loop.
        check_name("group", group)
        check_name("key", key)
        items = self._data.setdefault(group, {})
        new = fn(items.get(key))
        items[key] = new
        return new

    async def delete(self, group: str, key: str) -> None:
        check_name("group", group)
        check_name("key", key)
        self._data.get(group, {}).pop(key, None)

    async def get_group(self, group: str) -> dict[str, str]:
        check_name("group", group)
        return dict(self._data.get(group, {}))

    async def clear(self, group: str) -> None:
        check_name("group", group)
        self._data.pop(group, None)

    async def groups(self) -> list[str]:
        return sorted(g for g, items in self._data.items() if items)
