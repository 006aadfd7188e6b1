"""The implementations every port's contract suite runs against. A new bus, state adapter or
trace store joins by adding a factory here; the contract tests then hold it to the same rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from wistro.bus import EventBus, InMemoryBus
from wistro.state.base import StateAdapter
from wistro.state.file import FileState
from wistro.state.memory import MemoryState
from wistro.state.redis import RedisState
from wistro.tracing.memory import MemoryTraceStore
from wistro.tracing.sqlite import SQLiteTraceStore
from wistro.tracing.store import TraceStore

BUSES: dict[str, Callable[[Path], EventBus]] = {
    "memory": lambda tmp: InMemoryBus(),
}
# A state factory gets the test's temp folder and a place name (a folder, a key prefix): adapters
# made for different places never see each other's data. The redis one asks for the session's
# redis-server (and a prefix no other test uses) only when a redis test runs.
STATE_ADAPTERS: dict[str, Callable[[Path, str, pytest.FixtureRequest], StateAdapter]] = {
    "memory": lambda tmp, place, request: MemoryState(),
    "file": lambda tmp, place, request: FileState(tmp / "state" / place),
    "redis": lambda tmp, place, request: RedisState(
        request.getfixturevalue("redis_url"), f"{request.getfixturevalue('redis_prefix')}-{place}"
    ),
}
TRACE_STORES: dict[str, Callable[[Path, int], TraceStore]] = {
    "memory": lambda tmp, retention: MemoryTraceStore(retention_runs=retention),
    "sqlite": lambda tmp, retention: SQLiteTraceStore(tmp / "traces.db", retention_runs=retention),
}


@pytest.fixture(params=sorted(BUSES))
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventBus]:
    made = BUSES[request.param](tmp_path)
    yield made
    await made.aclose()


@pytest.fixture(params=sorted(STATE_ADAPTERS))
def state_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_state(
    state_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[str], StateAdapter]]:
    """``make_state(place)``: a new adapter of the kind under test, storing at ``place``."""
    made: list[StateAdapter] = []

    def make(place: str = "main") -> StateAdapter:
        adapter = STATE_ADAPTERS[state_kind](tmp_path, place, request)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


@pytest.fixture
def state(make_state: Callable[[str], StateAdapter]) -> StateAdapter:
    return make_state("main")


@pytest.fixture(params=sorted(TRACE_STORES))
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, tmp_path: Path) -> Iterator[Callable[..., TraceStore]]:
    made: list[TraceStore] = []

    def make(retention_runs: int = 10_000) -> TraceStore:
        store = TRACE_STORES[store_kind](tmp_path, retention_runs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., TraceStore]) -> TraceStore:
    return make_store()
