"""The user-facing application object: ``wistro.load()`` returns one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from wistro.bus import EventBus
from wistro.config import DEFAULT_ENV
from wistro.core.context import StateView
from wistro.core.engine import Engine, add_observer
from wistro.core.registry import Registry
from wistro.core.run import Run, frame
from wistro.core.step import StepRecord
from wistro.core.topics import TopicCatalog
from wistro.errors import ConfigError, StepLoadError, StepLoadErrors, WistroError
from wistro.project import activation
from wistro.project.discovery import discover
from wistro.project.lock import read_lock, records_from_lock, short_version, verify_hashes
from wistro.project.paths import Project, load_project
from wistro.runtimes import LanguageRuntime, default_runtimes
from wistro.state.base import StateAdapter
from wistro.tracing.records import StoredTrace
from wistro.tracing.store import TraceStore
from wistro.versions.live import live_versions
from wistro.versions.report import traffic_rows, version_rows
from wistro.versions.split import Split

if TYPE_CHECKING:
    import pandas as pd

    from wistro.tracing.otel import OtlpExporter

StateChoice = Literal["memory", "file", "redis"] | StateAdapter | None
BusChoice = Literal["memory", "local", "redis"] | EventBus | None
TracesChoice = Literal["memory"] | str | Path | TraceStore | None


def make_state(project: Project, choice: StateChoice) -> StateAdapter:
    if isinstance(choice, StateAdapter):
        return choice
    adapter = choice or project.config.state.adapter
    if adapter == "memory":
        from wistro.state.memory import MemoryState

        return MemoryState()
    if adapter == "file":
        from wistro.state.file import FileState

        return FileState(project.state_dir)
    if adapter == "redis":
        from wistro.state.redis import RedisState

        return RedisState(project.config.state.url or project.redis_url, project.redis_prefix)
    raise ConfigError(
        f"state adapter {adapter!r} is not available in this version",
        file=project.config_file.name if project.config_file else None,
        field="state.adapter",
        hint="use 'memory', 'file' or 'redis'",
    )


def make_bus(
    project: Project,
    choice: BusChoice,
    steps: Callable[[], list[str] | None] | None = None,
    consume: bool = True,
    default: str = "memory",
) -> EventBus:
    """The bus ``choice`` names, else wistro.yml's ``bus.adapter``, else ``default`` (memory for
    ``wistro.load``; ``dev``, ``start`` and ``worker`` pass ``local``). ``steps`` are the steps this
    process takes deliveries for (None: any); ``consume=False`` publishes only."""
    if isinstance(choice, EventBus):
        return choice
    config = project.config.bus
    adapter = choice or config.adapter or default
    if adapter == "memory":
        from wistro.bus import InMemoryBus

        return InMemoryBus()
    if adapter == "local":
        from wistro.bus.local import LocalBus

        return LocalBus(
            project.bus_path,
            steps,
            consume=consume,
            lease_s=config.visibility_timeout_s,
            max_deliveries=config.max_deliveries,
        )
    if adapter == "redis":
        from wistro.bus.redis import RedisBus

        return RedisBus(
            config.url or project.redis_url,
            project.redis_prefix,
            steps=steps if consume else None,
            visibility_timeout_s=config.visibility_timeout_s,
            max_deliveries=config.max_deliveries,
        )
    raise ConfigError(
        f"bus adapter {adapter!r} is not available",
        file=project.config_file.name if project.config_file else None,
        field="bus.adapter",
        hint="use 'memory', 'local' or 'redis'",
    )


def make_store(project: Project, choice: TracesChoice) -> TraceStore:
    """The store ``choice`` names ("memory", "redis", a SQLite file), else wistro.yml's
    ``traces.adapter``, else redis when the bus is redis (one trace across machines), else the
    project's SQLite file; written as ``traces.writer`` says."""
    if isinstance(choice, TraceStore):
        return choice
    store = _make_store(project, choice)
    store.writer = project.config.traces.writer
    return store


def _make_store(project: Project, choice: str | Path | None) -> TraceStore:
    config = project.config.traces
    if choice is None:  # wistro.yml's adapter, else redis with the redis bus, else the file
        choice = config.adapter or ("redis" if project.config.bus.adapter == "redis" else None)
        if choice == "sqlite":
            choice = None
    if choice == "memory":
        from wistro.tracing.memory import MemoryTraceStore

        return MemoryTraceStore(project.config.traces.retention_runs)
    if choice == "redis":
        from wistro.tracing.redis import RedisTraceStore

        return RedisTraceStore(
            config.url or project.redis_url, project.redis_prefix, config.retention_runs
        )
    from wistro.tracing.sqlite import SQLiteTraceStore

    path = Path(choice) if choice else project.traces_path
    return SQLiteTraceStore(path, project.config.traces.retention_runs)


def attach_otel(engine: Engine, project: Project) -> OtlpExporter | None:
    """With ``traces.otlp`` in wistro.yml: an OpenTelemetry exporter observing ``engine``."""
    otlp = project.config.traces.otlp
    if otlp is None:
        return None
    from wistro.tracing.otel import OtlpExporter

    exporter = OtlpExporter(
        otlp,
        otlp.service_name or project.name,
        lambda t: r.traceparent if (r := engine.runs.get(t)) else None,
    )
    add_observer(engine, exporter)
    return exporter


STEP_COLUMNS = [
    "name",
    "type",
    "language",
    "file",
    "subscribes",
    "emits",
    "flows",
    "active",
    "description",
]


class App:
    """A loaded project: its registry, engine, state and traces."""

    def __init__(
        self,
        project: Project,
        registry: Registry,
        errors: list[WistroError],
        *,
        state: StateChoice = None,
        traces: TracesChoice = None,
        runtimes: list[LanguageRuntime] | None = None,
        from_lock: bool = False,
        bus: BusChoice = None,
        bus_default: str = "memory",
        steps: list[str] | None = None,
        consume: bool = True,
        version: tuple[str, str | None] | None = None,
    ) -> None:
        self.project = project
        self.registry = registry
        self.errors = errors
        self.locked = from_lock
        self.runtimes = runtimes or []
        for runtime in self.runtimes:  # the worker pools of wistro.yml's runtimes: (env applied)
            configure = getattr(runtime, "configure", None)
            if configure is not None:
                configure(project.config.runtimes)
        self._state_choice = state
        self._traces_choice = traces
        self.engine = Engine(
            registry,
            make_state(project, state),
            make_store(project, traces),
            project.config.engine,
            bus=make_bus(project, bus, self._hosted(steps), consume, bus_default),
        )
        self.otel = attach_otel(self.engine, project)
        if version is None and self.engine.bus.shared:  # workers register their version
            from wistro.project.lock import build_lock

            version = (build_lock(project, registry)["version"], None)
        if version is not None:
            self.engine.set_version(short_version(version[0]), version[1])
        if project.config.traffic:
            self.engine.router.default = Split.parse(project.config.traffic)

    def _hosted(self, only: list[str] | None) -> Callable[[], list[str] | None]:
        """The steps this process takes deliveries for: ``only`` (``wistro worker --steps``), else
        every step of the current registry that subscribes to a topic."""
        if only is not None:
            return lambda: only
        cache: dict[int, list[str]] = {}

        def hosted() -> list[str] | None:
            registry = self.engine.registry
            key = id(registry)
            if key not in cache:
                cache.clear()
                cache[key] = [r.name for r in registry if r.subscribes]
            return cache[key]

        return hosted

    # ------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        env: str = DEFAULT_ENV,
        state: StateChoice = None,
        traces: TracesChoice = None,
        strict: bool = False,
        bus: BusChoice = None,
        bus_default: str = "memory",
        steps: list[str] | None = None,
        consume: bool = True,
    ) -> App:
        """Scan the project's step files. Broken files are in ``app.errors`` (``strict`` raises)."""
        project = load_project(path, env)
        runtimes = default_runtimes()
        found = discover(project, runtimes)
        if strict and found.errors:
            raise StepLoadErrors(found.errors)
        records = found.records + _stand_ins(project, found.errors, found.records, runtimes)
        topics = TopicCatalog(records, project.config)
        registry = Registry(records, topics)
        return cls(
            project,
            registry,
            found.errors,
            state=state,
            traces=traces,
            runtimes=runtimes,
            bus=bus,
            bus_default=bus_default,
            steps=steps,
            consume=consume,
        )

    @classmethod
    def from_lock(
        cls,
        path: str | Path | None = None,
        *,
        env: str = DEFAULT_ENV,
        state: StateChoice = None,
        traces: TracesChoice = None,
        verify: bool = True,
        bus: BusChoice = None,
        bus_default: str = "memory",
        steps: list[str] | None = None,
        consume: bool = True,
    ) -> App:
        """Start from wistro.yml.lock alone: no scanning; step code is imported on first use."""
        from wistro.config import resolve_config
        from wistro.project.paths import LOCK_NAME, config_file_in, find_root

        root = find_root(path)  # wistro.yml is not read: the lock holds its content
        lock = read_lock(root / LOCK_NAME)
        raw = lock.get("config") or {}
        config, env_vars = resolve_config(raw, {}, root / LOCK_NAME, root, env)
        project = Project(root, config, config_file_in(root), env, env_vars, raw)
        if verify:
            verify_hashes(project, lock)
        records = records_from_lock(project, lock)
        topics = TopicCatalog(records, project.config)
        for name, topic in lock["topics"].items():
            if name in topics.topics:
                topics.topics[name].schema = topic["schema"]
        runtimes: dict[str, LanguageRuntime] = {}
        for rt in default_runtimes():  # a worker runtime may serve several languages (js + ts)
            for language in getattr(rt, "languages", ()) or (rt.language,):
                runtimes[language] = rt
        src = project.src
        for r in records:
            runtime = runtimes.get(r.language)
            if runtime is None:
                raise WistroError(
                    f"no runtime for language {r.language!r}", step=r.name, file=r.rel_file
                )
            runtime.bind(r, None, src)
            if r.type in ("api", "cron") and r.load is not None:
                r.load()  # entry points: their request/body models are needed before a delivery
        for runtime in dict.fromkeys(runtimes.values()):
            runtime.bound_from_lock()  # a step that cannot run fails the start, not a delivery
        app = cls(
            project,
            Registry(records, topics),
            [],
            state=state,
            traces=traces,
            runtimes=list(dict.fromkeys(runtimes.values())),
            from_lock=True,
            bus=bus,
            bus_default=bus_default,
            steps=steps,
            consume=consume,
            version=(lock["version"], lock.get("label")),
        )
        app.lock = lock
        return app

    lock: dict[str, Any] | None = None

    def reload(self) -> App:
        """Scan the step files again, keeping the engine's traces and state.

        A step whose file no longer loads keeps its last good version (its error stays in
        ``app.errors``, with ``kept`` naming the steps still running from before)."""
        fresh = App.load(
            self.project.root,
            env=self.project.env,
            state=self.engine.state,
            traces=self.engine.store,
            bus=self.engine.bus,
        )
        # Loading set the shared bus's version from the new sources (an edit of wistro.yml or a
        # step changes the lock's). This process keeps running as the version it started as:
        # its deliveries are queued, and its worker registered, under that one.
        self.engine.set_version(self.engine.version, self.engine.version_label)
        kept = _last_good(self.registry, fresh.registry, fresh.errors)
        registry = fresh.registry
        if kept:
            records = [r for r in fresh.registry if r.load_error is None or r.name not in kept]
            records += [
                r
                for r in kept.values()
                if r.name not in fresh.registry.steps
                or fresh.registry.steps[r.name].load_error is not None
            ]
            registry = Registry(records, TopicCatalog(records, fresh.project.config))
        old_runtimes, in_use = self.runtimes, {r.language for r in kept.values()}
        self.registry = registry
        self.errors = fresh.errors
        self.project = fresh.project
        self.runtimes = list(fresh.runtimes)
        for runtime in old_runtimes:  # stop the old language workers; the new runtimes start theirs
            if in_use & set(getattr(runtime, "languages", ()) or (runtime.language,)):
                self.runtimes.append(runtime)  # it still runs a kept step
                continue
            discard = getattr(runtime, "discard", None)
            if discard is not None:
                discard()
        self.engine.registry = registry
        return self

    # ------------------------------------------------------------ running
    async def emit(
        self, topic: str, data: Any = None, *, wait: bool = True, trigger: str = "emit"
    ) -> Run:
        """Emit an event. Returns the finished ``Run`` (``wait=False``: once accepted)."""
        return await self.engine.emit(topic, data, wait=wait, trigger=trigger)

    def emit_sync(self, topic: str, data: Any = None) -> Run:
        """For scripts with no event loop: run the emit to completion."""

        async def go() -> Run:
            try:
                return await self.emit(topic, data)
            finally:
                await self.engine.aclose()

        return asyncio.run(go())

    async def drain(self) -> None:
        await self.engine.drain()

    async def aclose(self, timeout: float | None = None) -> list[str]:
        """Finish in-flight work (at most ``timeout`` seconds), then stop. Returns one line per
        run abandoned at the timeout."""
        abandoned = await self.engine.aclose(timeout)
        for runtime in self.runtimes:
            await runtime.aclose()
        await self.engine.state.close()
        if self.otel is not None:
            await asyncio.to_thread(self.otel.close)  # flushes; bounded if the collector is down
        return abandoned

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def state(self) -> StateView:
        """The project's state outside any run (notebooks, tests)."""
        return StateView(self.engine, None, None, None)

    # ------------------------------------------------------------ the registry
    def step(self, name: str) -> StepRecord:
        return self.registry.get(name)

    def step_rows(self) -> list[dict[str, Any]]:
        """The registry, one plain dict per step (``steps()`` and ``wistro steps`` show it)."""
        return [
            {
                "name": r.name,
                "type": r.type,
                "language": r.language,
                "file": r.rel_file,
                "subscribes": list(r.subscribes),
                "emits": [e.topic for e in r.emits],
                "flows": list(r.flows),
                "active": r.active,
                "description": r.description,
            }
            for r in self.registry
        ]

    def flow_rows(self) -> list[dict[str, Any]]:
        """One plain dict per flow: its name, description and steps."""
        rows = []
        for flow, names in self.registry.flows().items():
            meta = self.project.config.flows.get(flow)
            rows.append(
                {
                    "flow": flow,
                    "name": (meta.name if meta else None) or flow,
                    "description": meta.description if meta else None,
                    "steps": names,
                    "n_steps": len(names),
                }
            )
        return rows

    def steps(self) -> pd.DataFrame:
        return frame(self.step_rows(), STEP_COLUMNS)

    def flows(self) -> pd.DataFrame:
        return frame(self.flow_rows(), ["flow", "name", "description", "n_steps", "steps"])

    def activate(self, name: str) -> StepRecord:
        """Let ``name`` receive events again: now, in wistro.yml and the lock, and (on a shared
        bus) in every process of the project."""
        record = activation.set_active(self.project, self.registry, name, True)
        self._tell_others("activate", record.name)
        return record

    def deactivate(self, name: str) -> StepRecord:
        record = activation.set_active(self.project, self.registry, name, False)
        self._tell_others("deactivate", record.name)
        return record

    def _tell_others(self, op: str, step: str) -> None:
        engine = self.engine
        if engine.bus.shared and engine.loop is not None and engine.loop.is_running():
            message = {"op": op, "step": step, "from": engine.worker}
            asyncio.run_coroutine_threadsafe(engine.bus.broadcast(message), engine.loop)

    async def broadcast_active(self, step: str, active: bool) -> None:
        """From a process that runs nothing (the CLI): tell every process on the project's
        shared bus that ``step`` is now active or not."""
        bus = self.engine.bus
        if bus.shared:
            op = "activate" if active else "deactivate"
            await bus.broadcast({"op": op, "step": step, "from": self.engine.worker})
            await bus.aclose()

    # ------------------------------------------------------------ traces
    def runs(self, limit: int = 50, status: str | None = None) -> pd.DataFrame:
        rows = self.engine.store.list_runs(limit=limit, status=status) if self.engine.store else []
        return frame(
            rows,
            [
                *("trace_id", "topic", "trigger", "status", "start", "end"),
                *("n_events", "n_errors", "version"),
            ],
        )

    # ------------------------------------------------------------ versions and traffic
    async def version_rows(self, since: float | None = None) -> list[dict[str, Any]]:
        """The live versions and those that ran since ``since``: label, id, workers, when it
        started, runs, error rate, p50/p95 latency (``wistro versions``)."""
        self.engine.start()
        live = live_versions(await self.engine.bus.workers())
        return version_rows(live, self._recent_runs(), since)

    async def versions(self, since: float | None = None) -> pd.DataFrame:
        """``version_rows`` as a DataFrame (``started`` as a UTC timestamp)."""
        import pandas as pd

        columns = ["label", "version", "live", "workers", "started", "runs"]
        df = frame(await self.version_rows(since), [*columns, "error_rate", "p50_ms", "p95_ms"])
        df["started"] = pd.to_datetime(df["started"], unit="s", utc=True)
        return df

    async def set_traffic(
        self, weights: dict[str, Any] | None, sticky: str | None = None
    ) -> Split | None:
        """Store the split on the bus (``None``: clear it, wistro.yml's ``traffic:`` applies) and
        tell every process, which applies it to the next trace roots."""
        split = (
            Split.parse({**weights, **({"sticky": sticky} if sticky else {})}) if weights else None
        )
        self.engine.start()
        stored = {"split": split.to_dict(), "set_at": time.time()} if split else None
        await self.engine.bus.set_traffic(stored)
        await self.engine.bus.broadcast({"op": "traffic", "from": self.engine.worker})
        await self.engine.refresh_versions()
        return split

    async def traffic_rows(
        self, since: float | None = None
    ) -> tuple[Split | None, str, list[dict[str, Any]]]:
        """The split in force (and where it comes from: ``bus``, ``wistro.yml`` or ``none``), and
        per version its weight, its effective share now and the share of runs it got since the
        split was set (or ``since``)."""
        self.engine.start()
        await self.engine.refresh_versions()
        router = self.engine.router
        stored = await self.engine.bus.traffic()
        source = "bus" if router.stored else "wistro.yml" if router.default else "none"
        if since is None and stored:
            since = float(stored.get("set_at") or 0.0) or None
        rows = traffic_rows(
            router.split, router.names, router.live.values(), self._recent_runs(), since
        )
        return router.split, source, rows

    def _recent_runs(self, limit: int = 100_000) -> list[dict[str, Any]]:
        store = self.engine.store
        return store.list_runs(limit=limit) if store is not None else []

    def trace(self, trace_id: str) -> dict[str, Any]:
        assert self.engine.store is not None
        return StoredTrace(self.engine.store.get_run(trace_id))

    def __repr__(self) -> str:
        broken = f", {len(self.errors)} broken step file(s)" if self.errors else ""
        return (
            f"<wistro.App {self.project.name!r}: {len(self.registry)} steps, "
            f"{len(self.registry.topics.topics)} topics{broken}>"
        )


def _stand_ins(
    project: Project,
    errors: list[WistroError],
    records: list[StepRecord],
    runtimes: list[LanguageRuntime],
) -> list[StepRecord]:
    if not errors:
        return []
    from wistro.project.standins import stand_ins

    language_of = {suffix: rt.language for rt in runtimes for suffix in rt.suffixes}
    if language_of.get(".ts") == "javascript":  # the node runtime serves both
        language_of[".ts"] = "typescript"
    return stand_ins(project, errors, {r.name for r in records}, language_of)


def _last_good(old: Registry, fresh: Registry, errors: list[WistroError]) -> dict[str, StepRecord]:
    """The steps of ``old`` to keep: those of files that no longer load. Each error is marked
    with the names it kept (``err.kept``)."""
    broken = {Path(e.file).as_posix() for e in errors if isinstance(e, StepLoadError) and e.file}
    if not broken:
        return {}
    kept: dict[str, StepRecord] = {}
    for record in old:
        if record.rel_file in broken and record.load_error is None and record.invoke is not None:
            fresh_record = fresh.steps.get(record.name)
            if fresh_record is None or fresh_record.load_error is not None:
                kept[record.name] = record
    for err in errors:
        if err.file:
            names = [n for n, r in kept.items() if r.rel_file == Path(err.file).as_posix()]
            err.kept = names  # type: ignore[attr-defined]
    return kept


def load(path: str | Path | None = None, **kwargs: Any) -> App:
    """Load the project of ``path`` (default: the current folder or its parents)."""
    return App.load(path, **kwargs)
