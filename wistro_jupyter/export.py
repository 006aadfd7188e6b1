"""Exporting executed notebooks with Wistro's widgets to HTML that shows them with no network.

``jupyter nbconvert --to html`` renders a widget output as its widget view whenever the
notebook's saved widget state holds the widget's model (``WidgetsDataTypeFilter``), and the view
is drawn only by the html-manager that the page loads from unpkg: offline, the cell is blank,
and the static fallback in the output (``text/html``) is never written to the page. Nothing a
kernel sends can keep a model out of the state nbclient saves, and ``--to html`` reads no
configuration a package could add, so Wistro ships its own exporter:

    jupyter nbconvert --to wistro-html NOTEBOOK.ipynb          # or --execute --to wistro-html

``WistroHTMLExporter`` is nbconvert's HTML exporter (lab template) plus
``StaticWidgetsPreprocessor``, which, for every output of a Wistro widget (FlowGraph, TraceView,
RunDiff), drops the widget view and keeps the static HTML, drawn afresh from the widget's saved
state when there is one (so a live trace view shows the state the run had reached, not the
pending view it started as); the Wistro models leave the saved widget state (a graph's carries
a 1.5 MiB ES module). Other widgets (ipywidgets sliders, ...) are left as they are. The
preprocessor works in any exporter: ``--HTMLExporter.preprocessors=
wistro_jupyter.export.StaticWidgetsPreprocessor`` with ``--to html``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode

__all__ = ["WISTRO_KINDS", "StaticWidgetsPreprocessor", "WistroHTMLExporter", "static_from_state"]

VIEW_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
# The ``kind`` trait of every Wistro widget (wistro_jupyter.widgets, wistro_jupyter.eval_widgets).
WISTRO_KINDS = frozenset({"flow_graph", "trace_view", "run_diff"})


def _flow_graph(state: Mapping[str, Any]) -> str | None:
    from wistro_jupyter import reprs

    graph = state.get("graph")
    if not isinstance(graph, dict):
        return None
    counts = state.get("counts")
    return reprs.graph_html(
        graph, counts if isinstance(counts, dict) else None, title=state.get("flow") or None
    )


def _trace_view(state: Mapping[str, Any]) -> str | None:
    from wistro_jupyter import reprs

    trace = state.get("trace")
    if not isinstance(trace, dict):
        return None
    return reprs.trace_html(
        trace, step=state.get("filter_step") or None, status=state.get("filter_status") or None
    )


def _run_diff(state: Mapping[str, Any]) -> str | None:
    from wistro_jupyter.eval_widgets import static_html

    comparison = state.get("comparison")
    if not isinstance(comparison, dict):
        return None
    diff = state.get("diff")
    return static_html(comparison, diff if isinstance(diff, dict) else {})


_RENDER: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "flow_graph": _flow_graph,
    "trace_view": _trace_view,
    "run_diff": _run_diff,
}


def wistro_kind(model: Any) -> str | None:
    """The widget kind of a saved model (``{"model_name", "model_module", "state"}``) when it is a
    Wistro widget, else None."""
    if not isinstance(model, Mapping) or model.get("model_module") != "anywidget":
        return None
    state = model.get("state")
    kind = state.get("kind") if isinstance(state, Mapping) else None
    return kind if kind in WISTRO_KINDS else None


def static_from_state(model: Mapping[str, Any]) -> str | None:
    """The static HTML of a saved Wistro widget model, or None (not one, or its state lacks the
    data)."""
    kind = wistro_kind(model)
    state = model.get("state")
    if kind is None or not isinstance(state, Mapping):
        return None
    try:
        return _RENDER[kind](state)
    except Exception:  # a state of another version: the output's own fallback is used
        return None


class StaticWidgetsPreprocessor(Preprocessor):
    """Wistro widget outputs become their static HTML; the Wistro models leave the saved widget
    state (unless another saved widget still refers to one: it is then kept)."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> Any:
        widgets = nb.metadata.get("widgets")
        holder = widgets.get(STATE_MIME) if isinstance(widgets, Mapping) else None
        state = holder.get("state") if isinstance(holder, Mapping) else None
        models: dict[str, Any] = dict(state) if isinstance(state, Mapping) else {}
        ours = {model_id for model_id, model in models.items() if wistro_kind(model)}
        for cell in nb.cells:
            for output in cell.get("outputs") or []:
                self._output(output, models, ours)
        if ours and state is not None:
            for model_id in _unused(models, ours, _shown(nb)):
                del state[model_id]
            if not state:
                del widgets[STATE_MIME]
                if not widgets:
                    del nb.metadata["widgets"]
        return nb, resources

    def _output(self, output: Any, models: Mapping[str, Any], ours: set[str]) -> None:
        data = output.get("data")
        if not isinstance(data, dict) or VIEW_MIME not in data:
            return
        view = data[VIEW_MIME]
        model_id = view.get("model_id") if isinstance(view, Mapping) else None
        if model_id in ours:
            fresh = static_from_state(models[model_id])
            if fresh is not None:
                data["text/html"] = fresh
        elif model_id in models or "text/html" not in data:
            return  # another library's widget: not ours to change
        elif not _looks_wistro(data["text/html"]):
            return
        if "text/html" in data:
            del data[VIEW_MIME]


_REF = re.compile(r"IPY_MODEL_([0-9A-Za-z_-]+)")


def _refs(model: Any) -> set[str]:
    return set(_REF.findall(json.dumps(model, default=str)))


def _shown(nb: NotebookNode) -> set[str]:
    """The models that outputs still show as widget views."""
    out: set[str] = set()
    for cell in nb.cells:
        for output in cell.get("outputs") or []:
            view = (output.get("data") or {}).get(VIEW_MIME)
            if isinstance(view, Mapping) and view.get("model_id"):
                out.add(str(view["model_id"]))
    return out


def _unused(models: Mapping[str, Any], ours: set[str], shown: set[str]) -> set[str]:
    """The Wistro models and what only they refer to (their layout models): those that no other
    saved model refers to and no output shows."""
    refs = {model_id: _refs(model) for model_id, model in models.items()}
    drop = {m for m in ours if m not in shown}
    while True:
        kept_refs = set().union(*(r for m, r in refs.items() if m not in drop))
        drop = {m for m in drop if m not in kept_refs}
        more = {
            r
            for m in drop
            for r in refs[m]
            if r in models and r not in drop and r not in shown and r not in kept_refs
        }
        if not more:
            return drop
        drop |= more


def _looks_wistro(html: Any) -> bool:
    """A widget output whose model is not saved, with a Wistro static view."""
    text = "".join(html) if isinstance(html, list) else str(html)
    return any(
        f'class="{c}' in text or f"class='{c}" in text
        for c in ("wistro-graph", "wistro-trace", "wistro-rundiff", "wistro-warning")
    )


class WistroHTMLExporter(HTMLExporter):
    """``jupyter nbconvert --to wistro-html``: HTML (lab template) in which every Wistro widget
    shows its static view (inline SVG graph and waterfall, tables) with no network; other
    widgets as with ``--to html``."""

    export_from_notebook = "HTML (Wistro widgets static)"

    def __init__(self, config: Any = None, **kw: Any) -> None:
        super().__init__(config=config, **kw)
        # after the default ones, so after ExecutePreprocessor with --execute
        self.register_preprocessor(StaticWidgetsPreprocessor(parent=self), enabled=True)
