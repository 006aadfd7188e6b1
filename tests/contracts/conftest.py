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
from wistro.tracing.memory import MemoryTraceStore
from wistro.tracing.sqlite import SQLiteTraceStore
from wistro.tracing.store import TraceStore

BUSES: dict[str, Callable[[Path], EventBus]] = {
    "memory": lambda tmp: InMemoryBus(),
}
STATE_ADAPTERS: dict[str, Callable[[Path], StateAdapter]] = {
    "memory": lambda tmp: MemoryState(),
    "file": lambda tmp: FileState(tmp / "state"),
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
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateAdapter]:
    made = STATE_ADAPTERS[request.param](tmp_path)
    yield made
    await made.close()


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
