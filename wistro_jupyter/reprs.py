"""Rich displays of the app, a run, a trace and a graph: static HTML (inline SVG pictures of the
graph and of a run's waterfall, ``wistro_jupyter.static_svg``; tables, ``<details>`` for
tracebacks; no JavaScript, so it survives nbconvert and renders on GitHub).

``wistro`` itself never imports Jupyter: these renderers are registered with IPython's display
formatter by the extension (``register(ip)``), for ``wistro.App`` and ``wistro.Run``; eval
comparisons show as the run-diff widget, registered with ``wistro.eval.compare.register_view``
(``wistro_jupyter.eval_widgets``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from html import escape
from typing import TYPE_CHECKING, Any

from wistro_jupyter.static_svg import graph_svg, trace_svg

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from wistro.app import App
    from wistro.core.run import Run

STATUS_COLORS = {
    "ok": "#15803d",
    "error": "#b91c1c",
    "timeout": "#b91c1c",
    "invalid": "#b91c1c",
    "running": "#a16207",
    "pending": "#6b7280",
}
_TABLE = 'style="border-collapse:collapse;font-size:12px;margin:4px 0"'
_CELL = 'style="border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top"'


def _e(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return escape(", ".join(map(str, value)))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return escape(str(value))


def status_badge(status: str | None) -> str:
    color = STATUS_COLORS.get(status or "", "#374151")
    return f'<b style="color:{color}">{escape(status or "")}</b>'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """Rows of already-escaped HTML cells."""
    head = "".join(f"<th {_CELL}>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<table class="{cls}" {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _short_json(value: Any, width: int = 120) -> str:
    try:
        text = json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _ms(value: Any) -> str:
    return f"{value:.1f} ms" if isinstance(value, int | float) else "…"


def _clock(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def error_block(line: str, traceback: str | None) -> str:
    """One clear red line, and the traceback folded under it."""
    head = f'<span style="color:#b91c1c">{escape(line)}</span>'
    if not traceback:
        return head
    return (
        f"<details><summary>{head}</summary>"
        f'<pre style="font-size:11px;white-space:pre-wrap">{escape(traceback)}</pre></details>'
    )


# ---------------------------------------------------------------- traces and runs


def trace_html(trace: dict[str, Any], *, step: str | None = None, status: str | None = None) -> str:
    """A trace (``wistro_jupyter.traces`` format): header, spans, events, logs, state changes."""
    run = trace.get("run") or {}
    spans = [
        s
        for s in trace.get("spans") or []
        if (step is None or s.get("step") == step) and (status is None or s.get("status") == status)
    ]
    version = f"version <code>{_e(run['version'])}</code> · " if run.get("version") else ""
    header = (
        f'<div class="wistro-trace"><b>trace</b> <code>{_e(run.get("trace_id"))}</code> '
        f"{status_badge(run.get('status'))} {_e(run.get('trigger'))} "
        f"<code>{_e(run.get('topic'))}</code> {_ms(run.get('duration_ms'))} · "
        f"{version}"
        f"{_e(run.get('n_events'))} events, {_e(run.get('n_errors'))} errors"
    )
    parts = [header]
    if run.get("error"):
        parts.append(f"<div>{error_block(str(run['error']), None)}</div>")
    failed = [s for s in trace.get("spans") or [] if s.get("status") not in ("ok", "running")]
    for s in failed:
        line = f"{s.get('step')}: {s.get('error') or s.get('status')}"
        parts.append(f"<div>{error_block(line, s.get('traceback'))}</div>")
    for e in trace.get("events") or []:
        if e.get("error"):
            line = f"{e.get('source')} -> {e.get('topic')}: {e.get('error')}"
            parts.append(f"<div>{error_block(line, None)}</div>")
    if spans:
        parts.append(f'<div class="wistro-waterfall">{trace_svg({**trace, "spans": spans})}</div>')
        parts.append(
            table(
                ["step", "topic", "status", "duration", "attempt", "error"],
                (
                    [
                        f"<b>{_e(s.get('step'))}</b>",
                        f"<code>{_e(s.get('topic'))}</code>",
                        status_badge(s.get("status")),
                        _ms(s.get("duration_ms")),
                        _e(s.get("attempt")),
                        f'<span style="color:#b91c1c">{_e(s.get("error"))}</span>',
                    ]
                    for s in spans
                ),
                "wistro-spans",
            )
        )
    events = trace.get("events") or []
    if events:
        parts.append(
            "<details><summary>events ("
            + str(len(events))
            + ")</summary>"
            + table(
                ["time", "topic", "source", "payload"],
                (
                    [
                        _clock(e.get("ts")),
                        f"<code>{_e(e.get('topic'))}</code>",
                        _e(e.get("source")),
                        f"<code>{escape(_short_json(e.get('data')))}</code>",
                    ]
                    for e in events
                ),
                "wistro-events",
            )
            + "</details>"
        )
    logs = trace.get("logs") or []
    if logs:
        parts.append(
            "<details><summary>logs ("
            + str(len(logs))
            + ")</summary>"
            + table(
                ["time", "level", "step", "message", "fields"],
                (
                    [
                        _clock(r.get("ts")),
                        _e(r.get("level")),
                        _e(r.get("step")),
                        _e(r.get("message")),
                        f"<code>{escape(_short_json(r.get('fields') or {}))}</code>",
                    ]
                    for r in logs
                ),
                "wistro-logs",
            )
            + "</details>"
        )
    ops = trace.get("state_ops") or []
    if ops:
        parts.append(
            "<details><summary>state changes ("
            + str(len(ops))
            + ")</summary>"
            + table(
                ["time", "step", "op", "group", "key", "value"],
                (
                    [
                        _clock(r.get("ts")),
                        _e(r.get("step")),
                        _e(r.get("op")),
                        _e(r.get("group")),
                        _e(r.get("key")),
                        f"<code>{escape(_short_json(r.get('value')))}</code>"
                        if r.get("op") in ("set", "update")
                        else "",
                    ]
                    for r in ops
                ),
                "wistro-state",
            )
            + "</details>"
        )
    return "".join(parts) + "</div>"


def run_html(run: Run) -> str:
    from wistro_jupyter.traces import from_run

    return trace_html(from_run(run))


def stored_trace_html(stored: dict[str, Any]) -> str:
    from wistro_jupyter.traces import from_stored

    return trace_html(from_stored(stored))


def run_text(run: Run, p: Any, cycle: bool) -> None:
    """text/plain of a run: its repr, then one line per failure."""
    p.text(repr(run))
    for line in run.errors:
        p.break_()
        p.text(f"  x {line}")
    if run.errors:
        p.break_()
        p.text(f"  (tracebacks: %wistro trace {run.trace_id[:12]})")


# ---------------------------------------------------------------- the app and graphs


def app_html(app: App) -> str:
    steps = sorted(app.registry, key=lambda r: r.rel_file)
    head = (
        f'<div class="wistro-app"><b>wistro project</b> <code>{_e(app.project.name)}</code> '
        f"({_e(app.project.root)}): {len(app.registry)} steps, "
        f"{len(app.registry.topics.topics)} topics, {len(app.registry.flows())} flows"
    )
    parts = [head]
    for err in app.errors:
        parts.append(f"<div>{error_block(str(err), None)}</div>")
    parts.append(
        table(
            ["step", "type", "subscribes", "emits", "flows", "active", "file"],
            (
                [
                    f"<b>{_e(r.name)}</b>",
                    _e(r.type),
                    _e(r.virtual_subscribes if r.type == "noop" else r.subscribes),
                    _e([e.topic for e in (r.virtual_emits if r.type == "noop" else r.emits)]),
                    _e(r.flows),
                    _e(r.active),
                    f"<code>{_e(r.rel_file)}</code>",
                ]
                for r in steps
            ),
            "wistro-steps",
        )
    )
    return "".join(parts) + "</div>"


LARGE_GRAPH_NODES = 400  # above: the static picture shows the flows, not every step
MAX_TABLE_ROWS = 200  # rows of the static node and edge tables


def flow_clusters(graph: Mapping[str, Any]) -> dict[str, Any]:
    """The graph with one node per flow (``flow:<name>``, its step count in the label) and one
    edge per pair of flows linked by an edge. A node is in its first flow (sorted); a node of
    no flow (a topic, a trigger) goes with the flow of its neighbours when they all share one,
    else into ``(no flow)``."""
    nodes = graph.get("nodes") or []
    edges = graph.get("edges") or []
    home: dict[str, str] = {}
    for n in nodes:
        flows = sorted(f for f in n.get("flows") or () if f)
        if flows:
            home[n["id"]] = flows[0]
    around: dict[str, set[str]] = {}
    for e in edges:
        for a, b in ((e["source"], e["target"]), (e["target"], e["source"])):
            if a not in home and b in home:
                around.setdefault(a, set()).add(home[b])
    for n in nodes:
        if n["id"] not in home:
            near = around.get(n["id"], set())
            home[n["id"]] = next(iter(near)) if len(near) == 1 else "(no flow)"
    sizes: dict[str, int] = {}
    for n in nodes:
        sizes[home[n["id"]]] = sizes.get(home[n["id"]], 0) + 1
    links: dict[tuple[str, str], int] = {}
    for e in edges:
        a, b = home.get(e["source"]), home.get(e["target"])
        if a and b and a != b:
            links[a, b] = links.get((a, b), 0) + 1
    return {
        "nodes": [
            {
                "id": f"flow:{f}",
                "label": f"{f} ({k} node{'' if k == 1 else 's'})",
                "kind": "step",
                "flows": [f],
            }
            for f, k in sorted(sizes.items())
        ],
        "edges": [
            {
                "source": f"flow:{a}",
                "target": f"flow:{b}",
                "label": f"{k} edge{'' if k == 1 else 's'}",
            }
            for (a, b), k in sorted(links.items())
        ],
    }


def _capped(rows: list[list[str]], total: int, columns: int) -> list[list[str]]:
    """The first ``MAX_TABLE_ROWS`` of ``total`` rows, then a row "… and N more"."""
    if total <= MAX_TABLE_ROWS:
        return rows
    more = f"<i>… and {total - MAX_TABLE_ROWS} more</i>"
    return [*rows[:MAX_TABLE_ROWS], [more] + [""] * (columns - 1)]


def graph_html(
    graph: dict[str, Any], counts: dict[str, Any] | None = None, title: str | None = None
) -> str:
    """The static view of a flow graph: a picture and the node and edge tables. A graph of more
    than ``LARGE_GRAPH_NODES`` nodes is drawn as its flows (one box each, edges between flows)
    and its tables stop at ``MAX_TABLE_ROWS`` rows: the HTML stays small (JupyterLab's table of
    contents and the browser walk all of it)."""
    counts = counts or {}
    nodes = graph.get("nodes") or []
    edges = graph.get("edges") or []
    labels = {n["id"]: n["label"] for n in nodes}
    head = f'<div class="wistro-graph"><b>flow graph</b>{": " + _e(title) if title else ""} '
    head += f"({len(nodes)} nodes, {len(edges)} edges)"

    def count(node_id: str) -> str:
        c = counts.get(node_id)
        if not c:
            return ""
        return f"{c.get('deliveries', 0)} / {c.get('errors', 0)} err"

    node_rows = [
        [
            f"<b>{_e(n['label'])}</b>",
            _e(n["kind"]),
            _e(n.get("flows")),
            _e(n.get("active")),
            count(n["id"]),
            _e(n.get("description")),
        ]
        for n in nodes[:MAX_TABLE_ROWS]
    ]
    node_table = table(
        ["node", "kind", "flows", "active", "runs / errors", "description"],
        _capped(node_rows, len(nodes), 6),
        "wistro-nodes",
    )
    edge_rows = [
        [
            _e(labels.get(e["source"], e["source"])),
            _e(labels.get(e["target"], e["target"])),
            f"<code>{_e(e['label'])}</code>",
            ("virtual " if e.get("virtual") else "")
            + ("conditional" if e.get("conditional") else ""),
        ]
        for e in edges[:MAX_TABLE_ROWS]
    ]
    edge_table = table(
        ["from", "to", "topic", ""],
        _capped(edge_rows, len(edges), 4),
        "wistro-edges",
    )
    note = ""
    if len(nodes) > LARGE_GRAPH_NODES:
        clusters = flow_clusters(graph)
        note = (
            f'<div class="wistro-graph-note">{len(nodes)} nodes: the picture shows the '
            f"{len(clusters['nodes'])} flows; the live widget shows every step.</div>"
        )
        picture = f'<div class="wistro-graph-picture">{graph_svg(clusters)}</div>'
    else:
        picture = (
            f'<div class="wistro-graph-picture">{graph_svg(graph, counts)}</div>' if nodes else ""
        )
    return (
        f"{head}{note}{picture}<details><summary>nodes and edges</summary>"
        f"{node_table}{edge_table}</details></div>"
    )


# ---------------------------------------------------------------- registration


def _types() -> list[tuple[type, Any, Any]]:
    from wistro.app import App
    from wistro.core.run import Run

    return [(App, app_html, None), (Run, run_html, run_text)]


def _formatters(ip: InteractiveShell) -> tuple[Any, Any]:
    display = ip.display_formatter
    assert display is not None
    return display.formatters["text/html"], display.formatters["text/plain"]


def register(ip: InteractiveShell) -> None:
    from wistro_jupyter import eval_widgets

    eval_widgets.register()  # comparisons: the run-diff widget (it stays after an unload)
    html, plain = _formatters(ip)
    for cls, to_html, to_text in _types():
        html.for_type(cls, to_html)
        if to_text is not None:
            plain.for_type(cls, to_text)
    # A stored trace, once ``App.trace`` returns a dict subclass of its own (see the notes).
    html.for_type_by_name("wistro.tracing.records", "StoredTrace", stored_trace_html)


def unregister(ip: InteractiveShell) -> None:
    html, plain = _formatters(ip)
    for cls, _, to_text in _types():
        html.pop(cls, None)
        if to_text is not None:
            plain.pop(cls, None)
    html.deferred_printers.pop(("wistro.tracing.records", "StoredTrace"), None)
