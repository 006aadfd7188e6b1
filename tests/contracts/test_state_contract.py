"""Every state adapter: JSON text in groups, names that cannot escape, and an atomic update."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from wistro.errors import StateError
from wistro.state.base import StateAdapter


async def test_set_get_delete(state: StateAdapter) -> None:
    assert await state.get("g", "k") is None
    await state.set("g", "k", '{"a": [1, 2]}')
    assert json.loads(await state.get("g", "k") or "") == {"a": [1, 2]}
    await state.delete("g", "k")
    await state.delete("g", "k")  # deleting what is gone is fine
    assert await state.get("g", "k") is None


async def test_groups_get_group_and_clear(state: StateAdapter) -> None:
    await state.set("a", "x", "1")
    await state.set("a", "y", "2")
    await state.set("b", "x", "3")
    assert await state.get_group("a") == {"x": "1", "y": "2"}
    assert await state.get_group("none") == {}
    assert await state.groups() == ["a", "b"]
    await state.clear("a")
    assert await state.get_group("a") == {} and await state.groups() == ["b"]


@pytest.mark.parametrize("name", ["", "..", "a/b", "a\\b", "a\x00b", "x" * 201])
async def test_names_that_could_escape_are_refused(state: StateAdapter, name: str) -> None:
    with pytest.raises(StateError):
        await state.set(name, "k", "1")
    with pytest.raises(StateError):
        await state.get("g", name)
    with pytest.raises(StateError):
        await state.update("g", name, lambda raw: "1")


async def test_names_round_trip(state: StateAdapter) -> None:
    for name in ["order:1", "ü ñ 東京", "a.b", "%2F", " spaced "]:
        await state.set(name, name, json.dumps(name))
        assert await state.get(name, name) == json.dumps(name)
        assert await state.get_group(name) == {name: json.dumps(name)}


async def test_update_is_atomic_under_concurrency(state: StateAdapter) -> None:
    def bump(raw: str | None) -> str:
        return json.dumps(json.loads(raw or "0") + 1)

    results = await asyncio.gather(*(state.update("c", "n", bump) for _ in range(300)))
    assert await state.get("c", "n") == "300"
    assert sorted(int(r) for r in results) == list(range(1, 301))  # each saw its own value


async def test_update_that_raises_writes_nothing(state: StateAdapter) -> None:
    await state.set("g", "k", "1")

    def fail(raw: str | None) -> str:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await state.update("g", "k", fail)
    assert await state.get("g", "k") == "1"
    assert await state.update("g", "new", lambda raw: "null" if raw is None else raw) == "null"


async def test_where_names_a_place(state: StateAdapter) -> None:
    assert state.where("g", "k")


async def test_groups_lists_only_groups_with_keys(state: StateAdapter) -> None:
    assert await state.groups() == []
    await state.set("a", "x", "1")
    await state.update("b", "x", lambda raw: "2")
    assert await state.groups() == ["a", "b"]
    await state.delete("a", "x")
    assert await state.groups() == ["b"]
    await state.delete("b", "missing")  # a group keeps its other keys
    assert await state.groups() == ["b"]


async def test_update_that_raises_on_a_new_group_leaves_no_trace(state: StateAdapter) -> None:
    def fail(raw: str | None) -> str:
        assert raw is None
        raise ValueError("no")

    with pytest.raises(ValueError):
        await state.update("fresh", "k", fail)
    assert await state.get("fresh", "k") is None
    assert await state.get_group("fresh") == {} and await state.groups() == []
    assert await state.update("fresh", "k", lambda raw: "1") == "1"  # the key is not stuck


async def test_update_and_set_interleaved_lose_nothing(state: StateAdapter) -> None:
    """Updates of one key racing with sets of other keys in its group: every increment lands."""

    def bump(raw: str | None) -> str:
        return json.dumps(json.loads(raw or "0") + 1)

    await asyncio.gather(
        *(state.update("c", "n", bump) for _ in range(100)),
        *(state.set("c", f"other{i}", str(i)) for i in range(100)),
    )
    items = await state.get_group("c")
    assert items.pop("n") == "100"
    assert items == {f"other{i}": str(i) for i in range(100)}


async def test_places_are_isolated(make_state: Callable[[str], StateAdapter]) -> None:
    """Two adapters at different places (folders, key prefixes) never see each other's data."""
    one, two = make_state("one"), make_state("two")
    await one.set("g", "k", '"one"')
    await one.set("only-one", "k", "1")
    assert await two.get("g", "k") is None
    assert await two.get_group("g") == {} and await two.groups() == []
    assert await two.update("g", "k", lambda raw: '"two"' if raw is None else "null") == '"two"'
    await two.clear("only-one")
    await two.delete("g", "k")
    assert await one.get("g", "k") == '"one"'
    assert await one.groups() == ["g", "only-one"]
