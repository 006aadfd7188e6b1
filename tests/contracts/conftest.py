"""The implementations every port's contract suite runs against. A new bus, state adapter or
trace store joins by adding a factory here; the contract tests then hold it to the same rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wistro.bus import EventBus, InMemoryBus
from wistro.bus.local import LocalBus
from wistro.bus.redis import RedisBus
from wistro.errors import TraceStoreError
from wistro.state.base import StateAdapter
from wistro.state.file import FileState
from wistro.state.memory import MemoryState
from wistro.state.redis import RedisState
from wistro.tracing.memory import MemoryTraceStore
from wistro.tracing.records import Batch
from wistro.tracing.redis import RedisTraceStore
from wistro.tracing.sqlite import SQLiteTraceStore
from wistro.tracing.store import TraceStore
from wistro.tracing.writer_process import ProcessWriter


@dataclass(frozen=True)
class BusOptions:
    """What a test asks of a shared bus (the memory bus ignores it)."""

    visibility_timeout_s: float = 30.0  # a dead worker's deliveries return after this
    max_deliveries: int = 10
    consume: bool = True  # False: publish only


# The steps the bus contract tests publish to: a bus that consumes named steps (redis) takes
# these, so a test's ``concurrency_of`` must answer for each of them.
BUS_STEPS = ["S", "S0", "S1", "S2", "S3", "S4", "A", "B", "T"]
# A bus factory gets the test's temp folder, the request (the redis one asks for the session's
# redis-server and a prefix no other test uses, only when a redis test runs) and the options.
# Every bus a test makes of a shared kind uses one place: they are processes sharing a project.
BUSES: dict[str, Callable[[Path, pytest.FixtureRequest, BusOptions], EventBus]] = {
    "memory": lambda tmp, request, o: InMemoryBus(),
    "local": lambda tmp, request, o: LocalBus(
        tmp / "bus.db",
        consume=o.consume,
        lease_s=o.visibility_timeout_s,
        max_deliveries=o.max_deliveries,
    ),
    "redis": lambda tmp, request, o: RedisBus(
        request.getfixturevalue("redis_url"),
        request.getfixturevalue("redis_prefix"),
        steps=BUS_STEPS if o.consume else None,
        visibility_timeout_s=o.visibility_timeout_s,
        max_deliveries=o.max_deliveries,
    ),
}
# Those whose deliveries other processes see (``EventBus.shared``): their own contract tests.
SHARED_BUSES = ["local", "redis"]
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


class SQLiteWrittenByProcess(SQLiteTraceStore):
    """The SQLite store with every batch written by a writer process (``traces.writer``), so
    each record type crosses the pipe and is written by the child."""

    def __init__(self, path: Path, retention_runs: int) -> None:
        super().__init__(path, retention_runs)
        self.process = ProcessWriter(self.writer_spec())
        assert self.process.poll_ready(60), "the writer process did not get ready"

    def write(self, batch: Batch) -> None:
        error = self.process.write(self.prepare(batch))
        if error is not None:
            raise TraceStoreError(error)

    def close(self) -> None:
        self.process.close()
        super().close()


# A trace store factory gets the test's temp folder, the retention and the request (the redis one
# asks for the session's redis-server and a prefix no other test uses, only when it runs).
TRACE_STORES: dict[str, Callable[[Path, int, pytest.FixtureRequest], TraceStore]] = {
    "memory": lambda tmp, retention, request: MemoryTraceStore(retention_runs=retention),
    "sqlite": lambda tmp, retention, request: SQLiteTraceStore(
        tmp / "traces.db", retention_runs=retention
    ),
    "sqlite-process": lambda tmp, retention, request: SQLiteWrittenByProcess(
        tmp / "traces.db", retention
    ),
    "redis": lambda tmp, retention, request: RedisTraceStore(
        request.getfixturevalue("redis_url"),
        request.getfixturevalue("redis_prefix"),
        retention_runs=retention,
    ),
}


@pytest.fixture(params=sorted(BUSES))
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventBus]:
    made = BUSES[request.param](tmp_path, request, BusOptions())
    yield made
    async with asyncio.timeout(30):
        await made.aclose()


@pytest.fixture(params=SHARED_BUSES)
async def make_shared_bus(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., EventBus]]:
    """``make_shared_bus(**BusOptions)``: another process's bus on the same place; every bus
    made is closed after the test."""
    made: list[EventBus] = []

    def make(**options: Any) -> EventBus:
        made_bus = BUSES[request.param](tmp_path, request, BusOptions(**options))
        assert made_bus.shared
        made.append(made_bus)
        return made_bus

    yield make
    async with asyncio.timeout(60):
        for made_bus in reversed(made):
            await made_bus.aclose()


@pytest.fixture
def shared_bus(make_shared_bus: Callable[..., EventBus]) -> EventBus:
    return make_shared_bus()


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
def make_store(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., TraceStore]]:
    made: list[TraceStore] = []

    def make(retention_runs: int = 10_000) -> TraceStore:
        store = TRACE_STORES[store_kind](tmp_path, retention_runs, request)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., TraceStore]) -> TraceStore:
    return make_store()
