"""The extension's state in one IPython shell: the loaded app, where its engine runs, step files
watched between cells, steps defined in cells, and the live widgets.

Where the engine runs: in a Jupyter kernel, cells execute inside the kernel's asyncio loop, so
``asyncio.get_running_loop()`` works in a magic and the engine binds to that loop; ``%wistro emit``
schedules the run as a task on it and returns at once. In a terminal IPython (or a plain
``InteractiveShell``) no loop runs while a magic executes: the work is run to completion on
IPython's own asyncio loop (``IPython.core.async_helpers.get_asyncio_loop``), the same loop that
runs cells with a top-level ``await`` there, so ``await app.emit(...)`` and ``%wistro emit`` always
drive one engine on one loop. No nest_asyncio, no server.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import hashlib
import itertools
import json
import linecache
import sys
import types
import weakref
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wistro.app import App
from wistro.config import DEFAULT_ENV
from wistro.core.registry import Registry
from wistro.core.run import Run, frame
from wistro.core.step import StepRecord
from wistro.core.topics import TopicCatalog
from wistro.errors import StepLoadError, WistroError
from wistro.project.paths import STEP_MARKER, load_project
from wistro.runtimes.base import StepSource
from wistro.runtimes.python import PythonRuntime
from wistro_jupyter.widgets import FlowGraph, TraceView

if TYPE_CHECKING:
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

T = TypeVar("T")
CELL_FILE = "<cell>"
_cell_ids = itertools.count(1)
MAX_VIEWS = 64  # TraceViews the session remembers (for `%wistro trace`), newest last


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def ipython_loop() -> asyncio.AbstractEventLoop:
    """IPython's own asyncio loop: the one that runs top-level ``await`` in a terminal shell."""
    from IPython.core.async_helpers import get_asyncio_loop

    loop: asyncio.AbstractEventLoop = get_asyncio_loop()
    return loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a magic. With no running loop: on IPython's loop. Inside
    a kernel's running loop that cannot block: on a private loop in a helper thread (only for work
    bound to no loop, such as reading the state adapter)."""
    if running_loop() is None:
        return ipython_loop().run_until_complete(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wistro-sync") as pool:
        return pool.submit(asyncio.run, coro).result()


def red(text: str) -> None:
    """One clear red line on stderr."""
    print(f"\x1b[31m{text}\x1b[0m", file=sys.stderr)


class Session:
    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell
        self.app: App | None = None
        self.cell_steps: dict[str, StepRecord] = {}  # defined with %%wistro step, unsaved
        self.fingerprint: dict[str, tuple[int, int]] = {}
        self.views: deque[TraceView] = deque(maxlen=MAX_VIEWS)
        self.graphs: weakref.WeakSet[FlowGraph] = weakref.WeakSet()
        self.last_run: Run | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ the app
    def require_app(self) -> App:
        if self.app is None:
            raise WistroError(
                "no Wistro project is loaded",
                hint="`%wistro load PATH`, or start the notebook inside a project folder",
            )
        from wistro_jupyter.widgets import TraceView

        TraceView.languages = {r.name: r.language for r in self.app.registry}
        return self.app

    def load(
        self,
        path: str | Path | None = None,
        *,
        memory: bool = False,
        env: str = DEFAULT_ENV,
        attach: bool = False,
    ) -> App:
        """Load a project into the kernel. ``attach``: join the project's shared bus (its
        wistro.yml ``bus:``, else the local journal) as a process that only publishes: emits go
        to the project's workers and runs come back whole, from its trace store."""
        kwargs: dict[str, Any] = {"state": "memory", "traces": "memory"} if memory else {}
        if attach:
            kwargs.update(bus_default="local", consume=False)
        app = App.load(path, env=env, **kwargs)
        self.close_app()
        self.app = app
        self.cell_steps.clear()
        self.last_run = None
        self.fingerprint = self.fingerprint_now()
        self.shell.push({"wistro_app": app}, interactive=False)
        return app

    def close_app(self) -> None:
        """Detach the widgets of the current app and stop its engine."""
        for view in list(self.views):
            view.detach()
        self.views.clear()
        for graph in list(self.graphs):
            graph.detach()
        app, self.app = self.app, None
        if app is None or not app.engine.started:
            return
        loop = app.engine.loop
        if loop is None or loop.is_closed():
            return
        if running_loop() is loop:
            task = loop.create_task(app.aclose())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif not loop.is_running():
            try:
                loop.run_until_complete(app.aclose())
            except Exception as e:  # closing must not fail a reload
                red(f"closing the previous project failed: {e}")

    # ------------------------------------------------------------ files changed between cells
    def watched_files(self) -> list[Path]:
        """Everything under the step folder (steps and the helpers they import) and wistro.yml."""
        app = self.require_app()
        project = app.project
        files: list[Path] = []
        src = project.src
        if src.is_dir():
            files += [
                p
                for p in src.rglob("*")
                if "__pycache__" not in p.parts
                and "node_modules" not in p.parts
                and not p.name.startswith(".")
                and p.suffix != ".pyc"
            ]
        if project.config_file is not None:
            files.append(project.config_file)
        return files

    def fingerprint_now(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for path in self.watched_files():
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file():
                out[str(path)] = (st.st_mtime_ns, st.st_size)
        return out

    def changed_files(self) -> list[str]:
        if self.app is None:
            return []
        now = self.fingerprint_now()
        if now == self.fingerprint:
            return []
        names = {
            Path(p).name
            for p in set(now) | set(self.fingerprint)
            if now.get(p) != self.fingerprint.get(p)
        }
        return sorted(names)

    def reload_if_changed(self) -> list[str]:
        """Before each cell: re-register the project when a file changed on disk."""
        changed = self.changed_files()
        if changed:
            self.reload()
            app = self.require_app()
            print(f"wistro: reloaded ({', '.join(changed)}): {len(app.registry)} steps")
            for err in app.errors:
                kept = getattr(err, "kept", None)
                names = ", ".join(map(repr, kept or []))
                note = f" (still running the last good version of {names})" if kept else ""
                red(f"error: {err}{note}")
        return changed

    def reload(self) -> App:
        """Scan the step files again; the engine (its runs, traces and state) stays."""
        app = self.require_app()
        app.reload()
        app.project = load_project(app.project.root, app.project.env)  # wistro.yml too
        if self.cell_steps:
            self._install_cell_steps()
        self.fingerprint = self.fingerprint_now()
        self.refresh_graphs()
        return app

    def refresh_graphs(self) -> None:
        for graph in list(self.graphs):
            graph.refresh()

    def touched(self) -> None:
        """We wrote a project file ourselves (activation, a saved step): no reload needed."""
        self.fingerprint = self.fingerprint_now()

    # ------------------------------------------------------------ steps defined in cells
    def define_step(self, body: str, save: str | None = None) -> StepRecord:
        app = self.require_app()
        if save:
            return self._save_step(app, body, save)
        module_name = f"_wistro_cell_{next(_cell_ids)}"
        filename = f"<wistro step cell {module_name.rsplit('_', 1)[-1]}>"
        module = types.ModuleType(module_name)
        module.__dict__["__builtins__"] = builtins
        module.__file__ = filename
        package = PythonRuntime()._root_package(app.project.src)
        if package in sys.modules:  # `from .checkout.models import X` resolves as in src/
            module.__package__ = package
        linecache.cache[filename] = (len(body), None, body.splitlines(keepends=True), filename)
        sys.modules[module_name] = module
        try:
            exec(compile(body, filename, "exec"), module.__dict__)
        except Exception as e:
            sys.modules.pop(module_name, None)
            raise StepLoadError(
                f"the step cell failed: {type(e).__name__}: {e}", file=CELL_FILE
            ) from e
        if "config" not in module.__dict__:
            raise StepLoadError(
                "no `config` defined",
                file=CELL_FILE,
                hint='a step cell defines `config = {"name": ..., "subscribes": [...]}` '
                "and a `handler`",
            )
        from wistro.project.discovery import validate_config

        root = app.project.root
        source = StepSource(
            file=root / CELL_FILE, config=module.__dict__["config"], line=None, handle=module
        )
        record = validate_config(source, root, "python", hashlib.sha256(body.encode()).hexdigest())
        PythonRuntime().bind(record, source, app.project.src)
        record.active = record.name not in app.project.config.inactive
        setattr(record, "source_text", body)  # noqa: B010 - shown in the graph's details
        shadowed = app.registry.steps.get(record.name)
        if shadowed is not None and shadowed.rel_file != CELL_FILE:
            print(f"wistro: step {record.name!r} from the cell replaces {shadowed.rel_file}")
        self.cell_steps[record.name] = record
        self._install_cell_steps()
        self.refresh_graphs()
        return record

    def _install_cell_steps(self) -> None:
        app = self.require_app()
        records = [r for r in app.registry if r.name not in self.cell_steps]
        records += self.cell_steps.values()
        registry = Registry(records, TopicCatalog(records, app.project.config))
        app.registry = registry
        app.engine.registry = registry

    def _save_step(self, app: App, body: str, save: str) -> StepRecord:
        root = app.project.root
        target = (root / save).resolve()
        src = app.project.src
        if not target.is_relative_to(src):
            raise WistroError(
                f"{save}: a step file must be under the step folder {src.relative_to(root)}/",
                hint=f"e.g. --save {src.relative_to(root).as_posix()}/my.step.py",
            )
        if STEP_MARKER not in target.name or target.suffix != ".py":
            raise WistroError(
                f"{save}: a Python step file's name ends in `.step.py`",
                hint=f"e.g. --save {target.with_name(target.stem + '.step.py').relative_to(root)}",
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = target.exists()
        target.write_text(body if body.endswith("\n") else body + "\n", encoding="utf-8")
        rel = target.relative_to(root).as_posix()
        app.reload()
        app.project = load_project(root, app.project.env)
        errors = [e for e in app.errors if e.file and Path(e.file).as_posix() == rel]
        record = next((r for r in app.registry if r.rel_file == rel), None)
        if record is not None:
            self.cell_steps.pop(record.name, None)
        if self.cell_steps:
            self._install_cell_steps()
        self.touched()
        self.refresh_graphs()
        if errors:
            raise errors[0]
        if record is None:  # pragma: no cover - a loaded file always has a record
            raise StepLoadError("the saved step did not load", file=rel)
        print(f"wistro: {'updated' if existed else 'wrote'} {rel} (step {record.name!r})")
        return record

    # ------------------------------------------------------------ emitting
    def check_payload(self, app: App, topic: str, data: Any) -> None:
        """Refuse an unknown topic or an invalid payload at once, in the cell."""
        app.engine.check_topic(topic)
        app.registry.topics.validator(topic)(data)

    def emit(self, topic: str, data: Any, *, wait: bool) -> Any:
        """``wait``: the finished ``Run`` (inside a running loop: a task that gives it). Else a
        ``TraceView`` that follows the run live while the cell returns at once."""
        app = self.require_app()
        self.check_payload(app, topic, data)
        loop = running_loop()
        if wait:
            coro = self._emit_wait(app, topic, data)
            if loop is None:
                return ipython_loop().run_until_complete(coro)
            return self._spawn(loop, coro)
        view = TraceView.pending(topic, data)
        self.views.append(view)
        go = self._emit_view(app, view, topic, data, flush=loop is None)
        if loop is None:
            ipython_loop().run_until_complete(go)
        else:
            self._spawn(loop, go)
        return view

    def _spawn(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]
    ) -> asyncio.Task[T]:
        task = loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _emit_wait(self, app: App, topic: str, data: Any) -> Run:
        run = await app.emit(topic, data, wait=True, trigger="notebook")
        self.last_run = run
        await app.engine.recorder.flush()
        return run

    async def _emit_view(
        self, app: App, view: TraceView, topic: str, data: Any, *, flush: bool
    ) -> None:
        try:
            run = await app.emit(topic, data, wait=False, trigger="notebook")
        except WistroError as e:
            view.fail(str(e))
            return
        except Exception as e:  # never an unretrieved task exception in the kernel
            view.fail(f"{type(e).__name__}: {e}")
            return
        self.last_run = run
        view.attach(run, app.engine)
        await run
        if view.attached:  # detached before the end (closed, too many live views)
            view.detach()
        if flush:
            await app.engine.recorder.flush()

    def flush_traces(self) -> None:
        """Write buffered trace records now, when nothing else will (no running loop)."""
        app = self.require_app()
        engine = app.engine
        loop = engine.loop
        idle = loop is not None and not loop.is_closed() and not loop.is_running()
        if running_loop() is None and idle:
            assert loop is not None
            loop.run_until_complete(engine.recorder.flush())

    # ------------------------------------------------------------ listings
    def logs(self, limit: int = 200, trace_id: str | None = None) -> pd.DataFrame:
        app = self.require_app()
        self.flush_traces()
        store = app.engine.store
        rows = store.logs(after=0, limit=1_000_000, trace_id=trace_id)[-limit:] if store else []
        for row in rows:
            text = row.pop("fields_json", None)
            row["fields"] = json.loads(text) if text else {}
        return frame(rows, ["ts", "level", "trace_id", "step", "message", "fields", "span_id"])

    def traces(self, limit: int = 50, status: str | None = None) -> pd.DataFrame:
        app = self.require_app()
        self.flush_traces()
        return app.runs(limit=limit, status=status)

    def state(self, group: str | None = None) -> pd.DataFrame:
        app = self.require_app()
        adapter = app.engine.state

        async def read() -> list[dict[str, Any]]:
            groups = [group] if group else await adapter.groups()
            rows: list[dict[str, Any]] = []
            for g in groups:
                for key, raw in sorted((await adapter.get_group(g)).items()):
                    rows.append({"group": g, "key": key, "value": json.loads(raw)})
            return rows

        return frame(run_sync(read()), ["group", "key", "value"])

    def check(self) -> pd.DataFrame:
        from wistro.diagnostics import Diagnostic
        from wistro.tooling.check import check
        from wistro.typegen.checks import polyglot_diagnostics

        app = self.require_app()  # what `wistro check` reports, JS/TS/Go checks included
        diags = sorted(check(app) + polyglot_diagnostics(app), key=Diagnostic.sort_key)
        rows = [d.to_dict() for d in diags]
        return frame(
            rows, ["severity", "code", "message", "file", "line", "step", "topic", "flow", "hint"]
        )

    def trace(self, trace_id: str | None = None) -> TraceView:
        app = self.require_app()
        engine = app.engine
        if not trace_id:
            if self.last_run is not None:
                return TraceView.from_run(self.last_run, engine)
            self.flush_traces()
            runs = engine.store.list_runs(limit=1) if engine.store else []
            if not runs:
                raise WistroError("no runs yet", hint="`%wistro emit TOPIC {...}`")
            trace_id = str(runs[0]["trace_id"])
        live = [r for r in engine.runs.values() if r.trace_id.startswith(trace_id)]
        if self.last_run is not None and self.last_run.trace_id.startswith(trace_id):
            live = [self.last_run]
        if len(live) == 1:
            return TraceView.from_run(live[0], engine)
        self.flush_traces()
        if engine.store is None:
            raise WistroError(f"no trace {trace_id!r}: this app keeps no trace store")
        return TraceView.from_stored(engine.store.get_run(trace_id))

    def graph(self, flow: str | None = None) -> FlowGraph:
        app = self.require_app()
        graph = FlowGraph(app, flow or None)
        self.graphs.add(graph)
        return graph

    # ------------------------------------------------------------ the end
    def close(self) -> None:
        self.close_app()
        for task in list(self.tasks):
            task.cancel()
