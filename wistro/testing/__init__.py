"""Test kit: unit-test one handler with ``mock_context``, or a whole flow with the pytest plugin.

step = load_step("src/checkout/charge_card.step.py")
ctx = mock_context(step)
await step.run({"order_id": "A1", "amount_cents": 1200}, ctx)
assert ctx.emitted("payment.captured", order_id="A1")
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from wistro.app import App
from wistro.core.context import Context
from wistro.core.engine import Engine
from wistro.core.registry import Registry
from wistro.core.run import Run
from wistro.core.step import Emit, StepRecord
from wistro.core.topics import TopicCatalog
from wistro.errors import StepLoadError
from wistro.eval.testing import assert_no_regression
from wistro.project.discovery import file_hash, validate_config
from wistro.project.paths import find_root
from wistro.runtimes.python import PythonRuntime
from wistro.state.memory import MemoryState
from wistro.tracing.records import new_id, new_trace_id

__all__ = [
    "LoadedStep",
    "MockContext",
    "assert_no_regression",
    "load_app",
    "load_step",
    "mock_context",
]


class LoadedStep:
    """One step file, loaded alone: its record (config) and its handler."""

    def __init__(self, record: StepRecord, module: Any) -> None:
        self.record = record
        self.module = module

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.module.config)

    async def run(self, data: Any, ctx: MockContext) -> Any:
        """Call the handler the way the engine does: input validated into the step's model,
        plain ``def`` handlers in a worker thread."""
        ctx.engine.start()
        if self.record.input_model is not None:
            data = self.record.input_model.model_validate(data)
        assert self.record.invoke is not None
        return await self.record.invoke(data, ctx)


def load_step(path: str | Path) -> LoadedStep:
    """Load one step file (relative paths are from the project root, found from the cwd)."""
    file = Path(path)
    if not file.is_absolute():
        file = (find_root() / file) if not file.exists() else file.resolve()
    file = file.resolve()
    root = find_root(file.parent)
    from wistro.project.paths import load_project

    src = load_project(root).src
    runtime = PythonRuntime()
    [source] = runtime.read([file], root, src)
    if isinstance(source, StepLoadError):
        raise source
    record = validate_config(source, root, runtime.language, file_hash(file))
    runtime.bind(record, source, src)
    return LoadedStep(record, source.handle)


class MockContext(Context):
    """A real ``Context`` on a private engine with memory state and no trace store. Emits are
    validated (declared topic, payload schema) and captured instead of delivered."""

    def __init__(self, engine: Engine, record: StepRecord, run: Run, span_id: str) -> None:
        super().__init__(engine, record, run, span_id)
        self.engine = engine  # the private engine

    @property
    def run(self) -> Run:
        return self._run

    @property
    def emits(self) -> list[tuple[str, Any]]:
        return [(e.topic, json.loads(e.data_json)) for e in self._run.event_records if not e.error]

    def emitted(self, topic: str, **fields: Any) -> bool:
        return self._run.emitted(topic, **fields)

    def payloads(self, topic: str) -> list[Any]:
        return self._run.payloads(topic)

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [
            {"level": r.level, "message": r.message, **json.loads(r.fields_json)}
            for r in self._run.log_records
        ]


def mock_context(
    step: LoadedStep | None = None,
    *,
    emits: list[str] | None = None,
    state: dict[str, dict[str, Any]] | None = None,
    trace_id: str | None = None,
) -> MockContext:
    """A context for calling one handler in a unit test.

    With ``step``, emits are checked against the step's declared topics and schemas; without
    one, ``emits`` lists the allowed topics (None: any topic). ``state`` pre-fills groups."""
    if step is not None:
        record = step.record
        topics = TopicCatalog([record])
    else:
        cls = StepRecord if emits is not None else _AnyEmitRecord
        record = cls(
            name="test",
            file=Path("test"),
            rel_file="test",
            language="python",
            type="event",
            hash="",
            emits=tuple(Emit(t) for t in emits or ()),
        )
        topics = TopicCatalog(())
    memory = MemoryState()
    for group, items in (state or {}).items():
        memory._data[group] = {k: json.dumps(v) for k, v in items.items()}
    engine = Engine(Registry([], topics), memory, None)
    run = Run(trace_id or new_trace_id(), "test", "test", 0.0)
    return MockContext(engine, record, run, new_id())


class _Everything(frozenset[str]):
    def __contains__(self, item: object) -> bool:
        return True


class _AnyEmitRecord(StepRecord):
    """The step of a mock context with no step and no ``emits`` list: any topic may be emitted."""

    def __post_init__(self) -> None:
        self.emit_topics = _Everything()


def load_app(path: str | Path | None = None, **kwargs: Any) -> App:
    """A project loaded for tests: memory state and an in-memory trace store; every step file
    must load (a broken one raises)."""
    kwargs.setdefault("state", "memory")
    kwargs.setdefault("traces", "memory")
    kwargs.setdefault("strict", True)
    return App.load(path, **kwargs)


def run_sync(coro: Any) -> Any:
    return asyncio.run(coro)
