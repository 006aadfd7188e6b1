"""The notebook widgets: ``FlowGraph`` (the project graph, live delivery counts, node details) and
``TraceView`` (one run: spans, events, logs, state changes, errors), on anywidget.

The browser side is one ESM bundle, ``static/widgets.js``, built from ``labextension/``. Python
keeps the synced traits current from an engine ``Observer``; updates are coalesced to at most
~20 messages a second and the final state is always sent. Observers are removed when a widget
is closed, and a ``TraceView`` lets go of the engine as soon as its run has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import pathlib
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as t

from wistro_jupyter import reprs
from wistro_jupyter.graph_data import GraphData, graph_data, node_details
from wistro_jupyter.traces import RunSnapshot, TraceData, empty, from_run, from_stored

if TYPE_CHECKING:
    from wistro.app import App
    from wistro.core.engine import Engine
    from wistro.core.run import Run
    from wistro.tracing.records import EventRecord, LogRecord, SpanRecord

STATIC = pathlib.Path(__file__).parent / "static"
BUNDLE = STATIC / "widgets.js"  # both widgets
# A widget's own, smaller bundle when the build makes one: every widget instance sends its ESM
# to the browser (and into the saved notebook), so a TraceView per emit must not carry Graphviz.
OWN_BUNDLES = {"flow_graph": STATIC / "flow_graph.js", "trace_view": STATIC / "trace_view.js"}
ESM_ENV = "WISTRO_WIDGETS_ESM"  # another bundle path, for every widget (development, tests)
INTERVAL_S = 0.05  # at most ~20 updates a second per widget
MAX_LIVE_TRACE_VIEWS = 32  # per engine; the oldest running view stops updating beyond this
MAX_LIVE_GRAPHS = 8  # per engine


class WidgetBundleMissing(FileNotFoundError):
    """The JavaScript bundle of the widgets is not in the package. No longer raised on display:
    a widget without its bundle shows its static HTML under ``missing_bundle_message``."""


def bundle_path(kind: str = "") -> pathlib.Path:
    override = os.environ.get(ESM_ENV)
    if override:
        return pathlib.Path(override)
    own = OWN_BUNDLES.get(kind)
    if own is not None and own.is_file():
        return own
    return BUNDLE


_esm_cache: dict[pathlib.Path, tuple[int, str]] = {}


def bundle_source(kind: str = "") -> str | None:
    """The ESM text of the widget bundle, or None when it is not there."""
    path = bundle_path(kind)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _esm_cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = _esm_cache[path] = (mtime, path.read_text(encoding="utf-8"))
    return cached[1]


def missing_bundle_message(kind: str = "") -> str:
    """The one line a widget shows above its static view when its JavaScript is not there (a
    source checkout where nobody built it)."""
    path = bundle_path(kind)
    with contextlib.suppress(ValueError):
        path = path.resolve().relative_to(STATIC.resolve().parents[1])
    return (
        f"wistro: the widget JavaScript is missing ({path.as_posix()}); showing a static view. "
        "Build it with: cd labextension && npm ci && npm run build"
    )


_MISSING_ESM = (
    "export default { render({ el }) { el.textContent = "
    "'wistro: the widget bundle (wistro_jupyter/static/widgets.js) is missing'; } };"
)


# ---------------------------------------------------------------- throttling


class Throttle:
    """Coalesces ``mark()`` calls into at most one ``send`` per ``interval`` on the engine's loop;
    ``flush()`` sends at once. ``mark()`` may be called from any thread (a plain ``def`` handler
    logs from a worker thread): it then hops to the loop first."""

    __slots__ = ("_handle", "_last", "_send", "dirty", "engine", "interval")

    def __init__(self, send: Callable[[], None], interval: float = INTERVAL_S) -> None:
        self._send = send
        self.interval = interval
        self.engine: Engine | None = None
        self._last = 0.0
        self._handle: asyncio.Handle | None = None
        self.dirty = False

    def mark(self) -> None:
        engine = self.engine
        loop = engine.loop if engine is not None else None
        if loop is None or loop.is_closed():
            self.dirty = True
            self.flush()
            return
        if engine is not None and engine.loop_thread != threading.get_ident():
            loop.call_soon_threadsafe(self.mark)
            return
        self.dirty = True
        if self._handle is not None:
            return
        delay = self._last + self.interval - time.monotonic()
        if delay <= 0:
            self._handle = loop.call_soon(self._fire)
        else:
            self._handle = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        if self.dirty:
            self.flush()

    def flush(self) -> None:
        self.cancel()
        self._last = time.monotonic()
        self._send()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.dirty = False


# ---------------------------------------------------------------- engine observers


class TraceHub:
    """One engine observer for every live ``TraceView`` of an engine: routes records by trace id
    (a dict lookup per record, whatever the number of views)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.views: dict[str, TraceView] = {}
        self.order: deque[str] = deque()

    def add(self, view: TraceView) -> None:
        trace_id = view._trace_id
        self.views[trace_id] = view
        self.order.append(trace_id)
        while len(self.views) > MAX_LIVE_TRACE_VIEWS and self.order:
            oldest = self.order.popleft()
            old = self.views.get(oldest)
            if old is not None and old is not view:
                old.detach()
        if self not in self.engine.observers:
            self.engine.observers.append(self)

    def remove(self, view: TraceView) -> None:
        if self.views.get(view._trace_id) is view:
            del self.views[view._trace_id]
            with contextlib.suppress(ValueError):
                self.order.remove(view._trace_id)
        if not self.views and self in self.engine.observers:
            self.engine.observers.remove(self)

    # Observer protocol
    def on_run_start(self, run: Run) -> None:
        pass

    def on_event(self, event: EventRecord) -> None:
        view = self.views.get(event.trace_id)
        if view is not None:
            view._throttle.mark()

    def on_span_start(self, span: SpanRecord) -> None:
        view = self.views.get(span.trace_id)
        if view is not None and view._snapshot is not None:
            view._snapshot.running[span.id] = span
            view._throttle.mark()

    def on_span_end(self, span: SpanRecord) -> None:
        view = self.views.get(span.trace_id)
        if view is not None and view._snapshot is not None:
            view._snapshot.running.pop(span.id, None)
            view._throttle.mark()

    def on_log(self, log: LogRecord) -> None:
        view = self.views.get(log.trace_id)
        if view is not None:
            view._throttle.mark()

    def on_run_end(self, run: Run) -> None:
        view = self.views.get(run.trace_id)
        if view is not None:
            view._run_ended()


_hubs: weakref.WeakKeyDictionary[Engine, TraceHub] = weakref.WeakKeyDictionary()


def trace_hub(engine: Engine) -> TraceHub:
    hub = _hubs.get(engine)
    if hub is None:
        hub = _hubs[engine] = TraceHub(engine)
    return hub


_live_graphs: weakref.WeakKeyDictionary[Engine, deque[FlowGraph]] = weakref.WeakKeyDictionary()


def live_observers(engine: Engine) -> int:
    """How many widget observers are attached to ``engine`` (tests, diagnostics)."""
    hub = _hubs.get(engine)
    n = len(hub.views) if hub is not None else 0
    return n + sum(1 for o in engine.observers if isinstance(o, FlowGraph))


# ---------------------------------------------------------------- base


class _WistroWidget(anywidget.AnyWidget):
    kind = t.Unicode("").tag(sync=True)

    @property
    def _esm(self) -> str:  # read by anywidget when the widget is created
        return bundle_source(self.kind) or _MISSING_ESM

    def _static_html(self) -> str:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self._static_html()

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if bundle_source(self.kind) is None:  # the static view, never an error in the cell
            line = missing_bundle_message(self.kind)
            warning = f'<div class="wistro-warning" style="color:#b45309">{html.escape(line)}</div>'
            text = f"{line}\n{self!r}"
            return {"text/plain": text, "text/html": warning + self._static_html()}, {}
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, meta = bundle
        data = dict(data)
        data["text/html"] = self._static_html()
        return data, meta


# ---------------------------------------------------------------- FlowGraph


class FlowGraph(_WistroWidget):
    """The project's event graph. Click a node (``selected``) for its ``details``; ``counts``
    shows deliveries, errors and running handlers per node, live."""

    kind = t.Unicode("flow_graph").tag(sync=True)
    graph = t.Dict().tag(sync=True)
    flow = t.Unicode("").tag(sync=True)
    counts = t.Dict().tag(sync=True)
    selected = t.Unicode("").tag(sync=True)
    details = t.Dict().tag(sync=True)

    def __init__(self, app: App, flow: str | None = None, *, live: bool = True, **kwargs: Any):
        self._app = app
        self._engine: Engine | None = None
        self._counts: dict[str, dict[str, int]] = {}
        self._run_nodes: dict[str, set[str]] = {}  # trace id -> nodes it touched (live)
        self._recent: dict[str, tuple[str, float | None]] = {}  # trace id -> (status, ms)
        self._throttle = Throttle(self._send_counts)
        self._ends: dict[str, str] = {}
        super().__init__(graph=graph_data(app, flow or None), flow=flow or "", counts={}, **kwargs)
        self.observe(self._on_flow, names="flow")
        self.observe(self._on_selected, names="selected")
        if live:
            self.attach()

    # ------------------------------------------------------------ live counts
    def attach(self) -> None:
        engine = self._app.engine
        if self._engine is engine:
            return
        self.detach()
        self._engine = engine
        self._throttle.engine = engine
        graphs = _live_graphs.setdefault(engine, deque())
        graphs.append(self)
        while len(graphs) > MAX_LIVE_GRAPHS:
            graphs.popleft().detach()
        engine.observers.append(self)

    def detach(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self in engine.observers:
            engine.observers.remove(self)
        graphs = _live_graphs.get(engine)
        if graphs is not None and self in graphs:
            graphs.remove(self)
        if self._throttle.dirty:
            self._throttle.flush()
        self._throttle.cancel()
        self._throttle.engine = None

    @property
    def attached(self) -> bool:
        return self._engine is not None

    def close(self) -> None:
        self.detach()
        super().close()

    def _count(self, node: str) -> dict[str, int]:
        c = self._counts.get(node)
        if c is None:
            c = self._counts[node] = {"deliveries": 0, "errors": 0, "running": 0}
        return c

    def on_run_start(self, run: Run) -> None:
        pass

    def on_event(self, event: EventRecord) -> None:
        node = self._ends.get(event.topic)
        if node is not None:
            self._count(node)["deliveries"] += 1
            self._run_nodes.setdefault(event.trace_id, set()).add(node)
            self._throttle.mark()

    @t.observe("graph")
    def _on_graph(self, change: dict[str, Any]) -> None:
        self._ends = {
            n["id"].partition(":")[2]: n["id"]
            for n in change["new"].get("nodes", ())
            if n["kind"] == "topic"
        }

    def on_span_start(self, span: SpanRecord) -> None:
        node = f"step:{span.step}"
        self._count(node)["running"] += 1
        self._run_nodes.setdefault(span.trace_id, set()).add(node)
        self._throttle.mark()

    def on_span_end(self, span: SpanRecord) -> None:
        c = self._count(f"step:{span.step}")
        c["running"] = max(0, c["running"] - 1)
        c["deliveries"] += 1
        if span.status != "ok":
            c["errors"] += 1
        self._throttle.mark()

    def on_log(self, log: LogRecord) -> None:
        pass

    def on_run_end(self, run: Run) -> None:
        if run.trace_id in self._run_nodes:
            self._recent[run.trace_id] = (run.status, run.duration_ms)
            if len(self._recent) > 1000:
                oldest = next(iter(self._recent))
                self._recent.pop(oldest)
                self._run_nodes.pop(oldest, None)
            self._throttle.flush()  # always send the final state of a run

    def _send_counts(self) -> None:
        self.counts = {k: dict(v) for k, v in self._counts.items()}

    # ------------------------------------------------------------ from the browser
    def _on_flow(self, change: dict[str, Any]) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Build the graph again (after a reload, an activation, a new step)."""
        from wistro.errors import WistroError

        try:
            self.graph = graph_data(self._app, self.flow or None)
        except WistroError:
            self.graph = graph_data(self._app, None)
        if self.selected:
            self._fill_details(self.selected)

    def _on_selected(self, change: dict[str, Any]) -> None:
        self._fill_details(change["new"])

    def _fill_details(self, node_id: str) -> None:
        if not node_id:
            self.details = {}
            return
        details = node_details(self._app, node_id)
        details["recent_runs"] = self.recent_runs(node_id)
        self.details = details

    def recent_runs(self, node_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The last runs that reached this node: seen live, then from the trace store."""
        out: dict[str, dict[str, Any]] = {}
        for trace_id in reversed(list(self._recent)):
            if node_id in self._run_nodes.get(trace_id, ()):
                status, ms = self._recent[trace_id]
                out[trace_id] = {"trace_id": trace_id, "status": status, "duration_ms": ms}
                if len(out) >= limit:
                    return list(out.values())
        store = self._app.engine.store
        if store is None:
            return list(out.values())
        kind, _, name = node_id.partition(":")
        try:
            runs = store.list_runs(limit=50)
        except Exception:
            return list(out.values())
        for row in runs:
            if len(out) >= limit:
                break
            if row["trace_id"] in out or row["status"] == "running":
                continue
            try:
                trace = store.get_run(row["trace_id"])
            except Exception:
                continue
            if kind == "step":
                hit = any(s["step"] == name for s in trace["spans"])
            elif kind == "end":
                hit = any(e["topic"] == name for e in trace["events"])
            else:
                hit = False
            if hit:
                ms = (row["end"] - row["start"]) * 1000 if row["end"] else None
                out[row["trace_id"]] = {
                    "trace_id": row["trace_id"],
                    "status": row["status"],
                    "duration_ms": ms,
                }
        return list(out.values())

    def _static_html(self) -> str:
        return reprs.graph_html(self.graph, self.counts, title=self.flow or None)


# ---------------------------------------------------------------- TraceView


class TraceView(_WistroWidget):
    """One run: spans (a waterfall), events with payloads, logs, state changes and errors with
    their traceback. Live while the run is in flight."""

    kind = t.Unicode("trace_view").tag(sync=True)
    trace = t.Dict().tag(sync=True)
    filter_step = t.Unicode("").tag(sync=True)
    filter_status = t.Unicode("").tag(sync=True)

    languages: dict[str, str] = {}  # step name -> language; kept current by the session

    @t.validate("trace")
    def _with_languages(self, proposal: Any) -> Any:
        """Each span says the language of its step (Python, Go, TypeScript, ...)."""
        trace = proposal["value"]
        langs = TraceView.languages
        spans = trace.get("spans") if isinstance(trace, dict) else None
        if langs and spans:
            trace = {
                **trace,
                "spans": [
                    {**s, "language": langs[s["step"]]} if s.get("step") in langs else s
                    for s in spans
                ],
            }
        return trace

    def __init__(self, trace: TraceData | None = None, **kwargs: Any) -> None:
        self.run: Run | None = None
        self.error: str | None = None  # the emit failed before a run started
        self._trace_id = ""
        self._snapshot: RunSnapshot | None = None
        self._hub: TraceHub | None = None
        self._throttle = Throttle(self._push)
        self._done: asyncio.Event | None = None
        super().__init__(trace=trace or empty(""), **kwargs)

    # ------------------------------------------------------------ constructors
    @classmethod
    def pending(cls, topic: str, data: Any = None) -> TraceView:
        return cls(empty(topic, data))

    @classmethod
    def from_run(cls, run: Run, engine: Engine | None = None) -> TraceView:
        view = cls(from_run(run))
        view._trace_id = run.trace_id
        view.run = run
        if engine is not None and not run.done:
            view.attach(run, engine)
        return view

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> TraceView:
        view = cls(from_stored(stored))
        view._trace_id = stored["run"]["trace_id"]
        return view

    # ------------------------------------------------------------ live
    def attach(self, run: Run, engine: Engine) -> None:
        """Follow ``run`` from now on (what it did so far is shown at once)."""
        self.detach()
        self.run = run
        self._trace_id = run.trace_id
        self._snapshot = RunSnapshot(run)
        if run.done:
            self._push()
            return
        self._throttle.engine = engine
        self._hub = trace_hub(engine)
        self._hub.add(self)
        self._throttle.flush()

    def detach(self) -> None:
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.remove(self)
        self._throttle.cancel()

    @property
    def attached(self) -> bool:
        return self._hub is not None

    def _run_ended(self) -> None:
        self._throttle.flush()
        self.detach()
        if self._done is not None:
            self._done.set()

    def fail(self, message: str) -> None:
        """The emit was refused before any run started."""
        self.error = message
        trace = dict(self.trace)
        trace["run"] = {**trace.get("run", {}), "status": "error", "error": message}
        self.trace = trace
        self.detach()
        if self._done is not None:
            self._done.set()

    def _push(self) -> None:
        if self._snapshot is not None:
            self.trace = self._snapshot.data()

    def close(self) -> None:
        self.detach()
        super().close()

    async def wait(self) -> Run | None:
        """Until the run has ended (``None`` when the emit was refused)."""
        if self.error is None and (self.run is None or not self.run.done):
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()
        if self.run is not None:
            await self.run.wait()
        return self.run

    def _static_html(self) -> str:
        return reprs.trace_html(
            self.trace, step=self.filter_step or None, status=self.filter_status or None
        )

    def __repr__(self) -> str:
        run = self.trace.get("run") or {}
        return (
            f"<TraceView {str(run.get('trace_id') or '')[:12]} {run.get('topic', '')} "
            f"{run.get('status', '')}: {len(self.trace.get('spans') or [])} spans>"
        )


def render_graph(app: App, flow: str | None = None) -> GraphData:
    return graph_data(app, flow)
