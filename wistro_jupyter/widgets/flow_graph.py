"""``FlowGraph``: the project's event graph, live delivery counts per node (at most
``MAX_LIVE_GRAPHS`` live per engine) and node details; ``render_graph``.

From the browser: ``{"type": "emit", "topic", "data", "node"}`` (a node's emit form) emits into
the session's live engine; the widget answers ``{"type": "emitted", "trace_id", "topic"}`` or
``{"type": "error", "topic", "message"}`` (one line naming the field), then sends
``{"type": "lit", "items": [{"trace_id", "node", "state"}]}`` while the run's steps start
(``running``) and end (``ok`` / ``error``), with the counts (at most ~20 messages a second)."""

from __future__ import annotations

import asyncio
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
MAX_LIT_TRACES = 256  # runs started from one graph whose path is lit at once

_live_graphs: weakref.WeakKeyDictionary[Engine, deque[FlowGraph]] = weakref.WeakKeyDictionary()


class FlowGraph(_WistroWidget):
    """The project's event graph. Click a node (``selected``) for its ``details``; ``counts``
    shows deliveries, errors and running handlers per node, live."""

    kind = t.Unicode("flow_graph").tag(sync=True)
    graph = t.Dict().tag(sync=True)
    flows = t.List(t.Unicode()).tag(sync=True)  # every flow of the project (the dropdown)
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
        self._lit_traces: dict[str, None] = {}  # runs emitted from this graph, oldest first
        self._lit_pending: list[dict[str, str]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        super().__init__(graph=graph_data(app, flow or None), flow=flow or "", counts={}, **kwargs)
        self.flows = self._project_flows()
        self.observe(self._on_flow, names="flow")
        self.observe(self._on_selected, names="selected")
        self.on_msg(self._on_custom_msg)
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
            self._light(event.trace_id, node, "ok")
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
        self._light(span.trace_id, node, "running")
        self._throttle.mark()

    def on_span_end(self, span: SpanRecord) -> None:
        node = f"step:{span.step}"
        c = self._count(node)
        c["running"] = max(0, c["running"] - 1)
        c["deliveries"] += 1
        if span.status != "ok":
            c["errors"] += 1
        self._light(span.trace_id, node, "ok" if span.status == "ok" else "error")
        self._throttle.mark()

    def _light(self, trace_id: str, node: str, state: str) -> None:
        if trace_id in self._lit_traces:
            self._lit_pending.append({"trace_id": trace_id, "node": node, "state": state})

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
        self._lit_traces.pop(run.trace_id, None)

    def _send_counts(self) -> None:
        self.counts = {k: dict(v) for k, v in self._counts.items()}
        if self._lit_pending:
            items, self._lit_pending = self._lit_pending, []
            self._send_msg({"type": "lit", "items": items})

    def _send_msg(self, content: dict[str, Any]) -> None:
        if self.comm is not None:
            self.send(content)

    # ------------------------------------------------------------ emit from the browser
    def _on_custom_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "emit":
            self.emit_from_browser(
                str(content.get("topic") or ""), content.get("data"), str(content.get("node") or "")
            )

    def emit_from_browser(self, topic: str, data: Any, node: str = "") -> asyncio.Task[None] | None:
        """What the emit form of a node sends: refused at once with one line (unknown topic,
        invalid payload), else emitted into the session's engine in a task of the kernel's loop;
        the reply names the run's trace id and its path lights up in the graph."""
        from wistro.errors import WistroError

        app = self._app
        try:
            if not topic:
                raise WistroError("no topic given")
            app.engine.check_topic(topic)
            app.registry.topics.validator(topic)(data)
        except WistroError as e:
            self._send_msg({"type": "error", "topic": topic, "message": _one_line(e)})
            return None
        coro = self._emit(topic, data, node)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            from wistro_jupyter.session import ipython_loop

            ipython_loop().run_until_complete(coro)
            return None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _emit(self, topic: str, data: Any, node: str) -> None:
        from wistro.errors import WistroError

        try:
            run = await self._app.emit(topic, data, wait=False, trigger="graph")
        except WistroError as e:
            self._send_msg({"type": "error", "topic": topic, "message": _one_line(e)})
            return
        except Exception as e:  # never an unretrieved task exception in the kernel
            self._send_msg({"type": "error", "topic": topic, "message": f"{type(e).__name__}: {e}"})
            return
        self._send_msg({"type": "emitted", "trace_id": run.trace_id, "topic": topic})
        self._lit_traces[run.trace_id] = None
        while len(self._lit_traces) > MAX_LIT_TRACES:
            self._lit_traces.pop(next(iter(self._lit_traces)))
        if node:
            self._light(run.trace_id, node, "ok")
        # what happened before the trace id was known (a run may even have ended already)
        for event in list(run.event_records):
            end = self._ends.get(event.topic)
            if end is not None:
                self._light(run.trace_id, end, "ok")
        for span in list(run.span_records):
            self._light(run.trace_id, f"step:{span.step}", "ok" if span.status == "ok" else "error")
        if run.done:
            self._lit_traces.pop(run.trace_id, None)
            self._throttle.flush()
        else:
            self._throttle.mark()

    def _project_flows(self) -> list[str]:
        graph = self.graph if not self.flow else graph_data(self._app, None)
        return sorted({f for n in graph.get("nodes", ()) for f in n.get("flows") or () if f})

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
        self.flows = self._project_flows()
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
        details["emit_topics"] = self.emit_topics(node_id)
        self.details = details

    def emit_topics(self, node_id: str) -> list[dict[str, Any]]:
        """The topics a node's emit form offers, each with its JSON Schema: a topic node's
        topic, what an api/cron trigger emits, what an event step receives."""
        node = next((n for n in self.graph.get("nodes", ()) if n["id"] == node_id), None)
        if node is None:
            return []
        kind = node.get("kind")
        if kind == "topic":
            topics = list(node.get("subscribes") or ())
        elif kind in ("api", "cron", "trigger"):
            topics = list(node.get("emits") or ())
        elif kind == "step":
            topics = list(node.get("subscribes") or ())
        else:
            topics = []
        schemas = self._app.registry.topics.schemas()
        return [{"topic": topic, "schema": schemas.get(topic)} for topic in dict.fromkeys(topics)]

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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def render_graph(app: App, flow: str | None = None) -> GraphData:
    return graph_data(app, flow)
