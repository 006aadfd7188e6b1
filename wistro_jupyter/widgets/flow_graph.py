"""``FlowGraph``: the project's event graph, live delivery counts per node (at most
``MAX_LIVE_GRAPHS`` live per engine) and node details; ``render_graph``."""

from __future__ import annotations

import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

import traitlets as t

from wistro_jupyter import reprs
from wistro_jupyter.graph_data import GraphData, graph_data, node_details
from wistro_jupyter.widgets.base import _WistroWidget
from wistro_jupyter.widgets.throttle import Throttle

if TYPE_CHECKING:
    from wistro.app import App
    from wistro.core.engine import Engine
    from wistro.core.run import Run
    from wistro.tracing.records import EventRecord, LogRecord, SpanRecord

MAX_LIVE_GRAPHS = 8  # per engine

_live_graphs: weakref.WeakKeyDictionary[Engine, deque[FlowGraph]] = weakref.WeakKeyDictionary()


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


def render_graph(app: App, flow: str | None = None) -> GraphData:
    return graph_data(app, flow)
