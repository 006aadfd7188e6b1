"""Inline SVG for the static views of the widgets (what an exported notebook shows, with no
JavaScript): the flow graph and a run's waterfall.

``graph_svg(graph)`` draws the ``FlowGraph`` data (``wistro.workbench.graph.graph_data``) with
Graphviz's ``dot -Tsvg`` when ``dot`` is on PATH, else (or when ``dot`` fails) with
``layered_svg``, a small deterministic layered layout in pure Python, left to right like
``wistro graph``. ``trace_svg(trace)`` draws the spans of a trace (``wistro_jupyter.traces``
format) as a waterfall, each span under the span that caused it. Every label is escaped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["graph_dot", "graph_svg", "layered_svg", "trace_svg"]

FONT = "-apple-system,BlinkMacSystemFont,Segoe UI,Helvetica,Arial,sans-serif"
STATUS_FILL = {
    "ok": "#16a34a",
    "error": "#dc2626",
    "timeout": "#dc2626",
    "invalid": "#dc2626",
    "running": "#ca8a04",
    "pending": "#9ca3af",
}
DOT_TIMEOUT_S = 10.0
DOT_MAX_NODES = 400  # larger graphs: the pure-Python layout (dot may take seconds)


def _x(value: Any) -> str:
    """Text or an attribute value, escaped for SVG/HTML."""
    return escape("" if value is None else str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- the graph: DOT and Graphviz

_DOT_NODE = {
    "step": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
    "api": 'shape=hexagon, style="filled", fillcolor="#dbeafe"',
    "cron": 'shape=octagon, style="filled", fillcolor="#fef3c7"',
    "noop": 'shape=box, style="dashed,rounded", color="grey50", fontcolor="grey40"',
    "trigger": 'shape=cds, style="filled", fillcolor="#e0f2fe"',
    "topic": 'shape=doublecircle, label="", width=0.15, height=0.15, style="filled", '
    'fillcolor="black"',
}


def _dot_str(text: Any) -> str:
    raw = "" if text is None else str(text)
    escaped = raw.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def graph_dot(graph: Mapping[str, Any], counts: Mapping[str, Any] | None = None) -> str:
    """The graph data as Graphviz DOT (the same shapes as ``wistro graph --format dot``), with
    each node's live counts, when given, under its label."""
    counts = counts or {}
    lines = [
        "digraph wistro {",
        "  rankdir=LR;",
        '  bgcolor="transparent";',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for n in graph.get("nodes") or []:
        attrs = _DOT_NODE.get(str(n.get("kind")), _DOT_NODE["step"])
        if n.get("kind") == "topic":
            attrs += f", tooltip={_dot_str(n.get('label'))}"
        else:
            label = str(n.get("label") or "")
            c = counts.get(str(n["id"]))
            if c:
                label += f"\n{c.get('deliveries', 0)} runs · {c.get('errors', 0)} err"
            attrs = f"label={_dot_str(label)}, {attrs}"
        lines.append(f"  {_dot_str(n['id'])} [{attrs}];")
    for e in graph.get("edges") or []:
        edge = [f"label={_dot_str(e.get('label'))}"]
        if e.get("virtual"):
            edge.append('style="dashed", color="grey50"')
        if e.get("conditional"):
            edge.append('arrowhead="onormal"')
        lines.append(f"  {_dot_str(e['source'])} -> {_dot_str(e['target'])} [{', '.join(edge)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


_dot_cache: dict[tuple[str, str], str | None] = {}
_SVG_START = re.compile(r"<svg\b[^>]*>", re.S)


def _dot_svg(source: str) -> str | None:
    """``dot -Tsvg`` of ``source`` as one ``<svg>`` element, or None (no dot, or it failed)."""
    dot = shutil.which("dot")
    if dot is None:
        return None
    if (dot, source) in _dot_cache:
        return _dot_cache[dot, source]
    try:
        done = subprocess.run(
            [dot, "-Tsvg"],
            input=source,
            capture_output=True,
            text=True,
            timeout=DOT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout
    start = _SVG_START.search(out)
    if done.returncode != 0 or start is None or "</svg>" not in out:
        result = None
    else:
        body = out[start.end() : out.rindex("</svg>")]
        body = re.sub(r"<!--.*?-->", "", body, flags=re.S)  # node ids in comments: not needed
        tag = start.group(0)
        tag = tag[:-1] + ' class="wistro-graph-svg" data-layout="graphviz" role="img" '
        tag += 'style="max-width:100%;height:auto">'
        result = tag + body + "</svg>"
    if len(_dot_cache) > 64:
        _dot_cache.clear()
    _dot_cache[dot, source] = result
    return result


def graph_svg(
    graph: Mapping[str, Any],
    counts: Mapping[str, Any] | None = None,
    *,
    graphviz: bool | None = None,
) -> str:
    """The graph as one inline ``<svg>``: Graphviz where ``dot`` is installed (``graphviz``:
    None = when available, False = never), else ``layered_svg``; live counts under the labels."""
    nodes = graph.get("nodes") or []
    if graphviz is not False and 0 < len(nodes) <= DOT_MAX_NODES:
        drawn = _dot_svg(graph_dot(graph, counts))
        if drawn is not None:
            return drawn
    return layered_svg(graph, counts)


# ---------------------------------------------------------------- the graph: a layered layout

NODE_H = 30
COL_GAP = 90
ROW_GAP = 22
PAD = 12
CHAR_W = 6.6  # an average glyph of 11px sans-serif


def _ranks(ids: Sequence[str], succ: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Longest path from the sources, over the edges that are not back edges of a DFS in the
    nodes' order (cycles are cut there)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    order: list[str] = []
    back: set[tuple[str, str]] = set()
    for root in ids:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            nexts = succ.get(node, ())
            if i < len(nexts):
                stack[-1] = (node, i + 1)
                child = nexts[i]
                if state.get(child) == 1:
                    back.add((node, child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, 0))
            else:
                state[node] = 2
                order.append(node)
                stack.pop()
    rank = dict.fromkeys(ids, 0)
    for node in reversed(order):  # a topological order of the forward edges
        for child in succ.get(node, ()):
            if (node, child) not in back:
                rank[child] = max(rank[child], rank[node] + 1)
    return rank


def _order_columns(
    columns: list[list[str]], preds: Mapping[str, Sequence[str]], succ: Mapping[str, Sequence[str]]
) -> None:
    """A few barycenter sweeps (down, then up), stable: fewer crossings, same result every time."""

    def sweep(col: list[str], neighbours: Mapping[str, Sequence[str]], pos: dict[str, int]) -> None:
        def key(item: tuple[int, str]) -> tuple[float, int]:
            i, node = item
            near = [pos[n] for n in neighbours.get(node, ()) if n in pos]
            return (sum(near) / len(near) if near else float(i), i)

        col[:] = [n for _, n in sorted(enumerate(col), key=key)]

    for _ in range(4):
        for k in range(1, len(columns)):
            sweep(columns[k], preds, {n: i for i, n in enumerate(columns[k - 1])})
        for k in range(len(columns) - 2, -1, -1):
            sweep(columns[k], succ, {n: i for i, n in enumerate(columns[k + 1])})


def _node_shape(kind: str, x: float, y: float, w: float, h: float) -> str:
    stroke, fill, extra = "#374151", "#ffffff", ""
    if kind == "api":
        fill = "#dbeafe"
    elif kind == "cron":
        fill = "#fef3c7"
    elif kind == "trigger":
        fill = "#e0f2fe"
    elif kind == "noop":
        stroke, fill, extra = "#9ca3af", "#f9fafb", ' stroke-dasharray="4 3"'
    style = f'fill="{fill}" stroke="{stroke}"{extra}'
    if kind in ("api", "trigger"):  # a hexagon / an arrow-ish box, like dot's shapes
        d = 8.0
        if kind == "api":
            pts = [(x + d, y), (x + w - d, y), (x + w, y + h / 2), (x + w - d, y + h)]
            pts += [(x + d, y + h), (x, y + h / 2)]
        else:
            pts = [(x, y), (x + w - d, y), (x + w, y + h / 2), (x + w - d, y + h), (x, y + h)]
        points = " ".join(f"{_num(a)},{_num(b)}" for a, b in pts)
        return f'<polygon points="{points}" {style}/>'
    r = 2 if kind == "cron" else 6
    return (
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" rx="{r}" {style}/>'
    )


def layered_svg(graph: Mapping[str, Any], counts: Mapping[str, Any] | None = None) -> str:
    """The graph drawn with no Graphviz: nodes in columns by their longest path from a source,
    ordered to cut crossings, edges as curves labelled with their topic."""
    nodes = [n for n in graph.get("nodes") or [] if n.get("id") is not None]
    by_id = {str(n["id"]): n for n in nodes}
    ids = list(by_id)
    edges = [
        e
        for e in graph.get("edges") or []
        if str(e["source"]) in by_id and str(e["target"]) in by_id
    ]
    succ: dict[str, list[str]] = {}
    preds: dict[str, list[str]] = {}
    for e in edges:
        s, t = str(e["source"]), str(e["target"])
        if t not in succ.setdefault(s, []):
            succ[s].append(t)
        if s not in preds.setdefault(t, []):
            preds[t].append(s)
    rank = _ranks(ids, succ)
    n_cols = max(rank.values(), default=-1) + 1
    columns: list[list[str]] = [[] for _ in range(n_cols)]
    for node in ids:
        columns[rank[node]].append(node)
    _order_columns(columns, preds, succ)
    counts = counts or {}

    def lines_of(node: Mapping[str, Any]) -> list[str]:
        label = str(node.get("label") or "")
        lines = label.split("\n")[:3] if node.get("kind") != "topic" else []
        c = counts.get(str(node["id"]))
        if c:
            lines.append(f"{c.get('deliveries', 0)} runs · {c.get('errors', 0)} err")
        return lines

    size: dict[str, tuple[float, float]] = {}
    for node_id, node in by_id.items():
        if node.get("kind") == "topic":
            size[node_id] = (14.0, 14.0)
            continue
        lines = lines_of(node)
        width = max([len(line) for line in lines] or [4]) * CHAR_W + 20
        size[node_id] = (min(max(width, 60.0), 260.0), max(NODE_H, 14.0 * len(lines) + 10))
    col_w = [max((size[n][0] for n in col), default=0.0) for col in columns]
    col_h = [sum(size[n][1] for n in col) + ROW_GAP * max(len(col) - 1, 0) for col in columns]
    height = max(col_h, default=0.0) + 2 * PAD + 14
    pos: dict[str, tuple[float, float]] = {}  # node id -> its top-left corner
    x = float(PAD)
    for k, col in enumerate(columns):
        y = PAD + (height - 2 * PAD - 14 - col_h[k]) / 2
        for node in col:
            w, h = size[node]
            pos[node] = (x + (col_w[k] - w) / 2, y)
            y += h + ROW_GAP
        x += col_w[k] + COL_GAP
    width = max(x - COL_GAP + PAD, 2 * PAD + 60)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="wistro-graph-svg" data-layout="layered" '
        f'role="img" viewBox="0 0 {_num(width)} {_num(height)}" width="{_num(width)}" '
        f'height="{_num(height)}" style="max-width:100%;height:auto" font-family="{FONT}">',
        "<defs>"
        '<marker id="wistro-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#6b7280"/>'
        "</marker></defs>",
    ]
    for e in edges:
        s, t = str(e["source"]), str(e["target"])
        (sx, sy), (sw, sh) = pos[s], size[s]
        (tx, ty), (tw, th) = pos[t], size[t]
        x1, y1 = sx + sw, sy + sh / 2
        x2, y2 = tx, ty + th / 2
        if x2 > x1:  # forward: a smooth curve between the columns
            bend = (x2 - x1) / 2
            d = f"M{_num(x1)},{_num(y1)} C{_num(x1 + bend)},{_num(y1)} {_num(x2 - bend)},{_num(y2)} "
            d += f"{_num(x2)},{_num(y2)}"
            lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 4
        else:  # back (a cycle) or within a column: around, under both nodes
            low = max(sy + sh, ty + th) + ROW_GAP
            x1, y1, x2, y2 = sx + sw / 2, sy + sh, tx + tw / 2, ty + th
            d = f"M{_num(x1)},{_num(y1)} C{_num(x1)},{_num(low)} {_num(x2)},{_num(low)} "
            d += f"{_num(x2)},{_num(y2)}"
            lx, ly = (x1 + x2) / 2, low - 2
        dash = ' stroke-dasharray="5 4"' if e.get("virtual") else ""
        color = "#9ca3af" if e.get("virtual") else "#6b7280"
        cls = "wistro-edge" + (" conditional" if e.get("conditional") else "")
        label = str(e.get("label") or e.get("topic") or "")
        mark = "? " if e.get("conditional") else ""
        out.append(
            f'<g class="{cls}"><title>{_x(label)}</title>'
            f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.2"{dash} '
            f'marker-end="url(#wistro-arrow)"/>'
            f'<text x="{_num(lx)}" y="{_num(ly)}" font-size="9" fill="#4b5563" '
            f'text-anchor="middle">{_x(mark + label)}</text></g>'
        )
    for node_id in ids:
        node = by_id[node_id]
        (nx, ny), (w, h) = pos[node_id], size[node_id]
        kind = str(node.get("kind") or "step")
        title = f"<title>{_x(node.get('label'))}</title>"
        if kind == "topic":
            cx, cy = nx + w / 2, ny + h / 2
            out.append(
                f'<g class="wistro-node topic" data-id="{_x(node_id)}">{title}'
                f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="7" fill="none" stroke="#111827"/>'
                f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="4.5" fill="#111827"/></g>'
            )
            continue
        lines = lines_of(node)
        c = counts.get(node_id) or {}
        text_color = "#6b7280" if kind == "noop" else "#111827"
        if node.get("active") is False:
            text_color = "#9ca3af"
        texts = []
        top = ny + h / 2 - 14 * (len(lines) - 1) / 2 + 4
        for i, line in enumerate(lines):
            is_count = bool(c) and i == len(lines) - 1
            fill = "#b91c1c" if is_count and c.get("errors") else text_color
            size_px = 9 if is_count else 11
            texts.append(
                f'<text x="{_num(nx + w / 2)}" y="{_num(top + 14 * i)}" font-size="{size_px}" '
                f'fill="{fill}" text-anchor="middle">{_x(line)}</text>'
            )
        out.append(
            f'<g class="wistro-node {_x(kind)}" data-id="{_x(node_id)}">{title}'
            + _node_shape(kind, nx, ny, w, h)
            + "".join(texts)
            + "</g>"
        )
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- a run's waterfall

ROW_H = 20
LABEL_W = 220
BAR_W = 440
MAX_SPANS = 500


def _span_rows(spans: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
    """The spans in causal order, each with its depth: a span under the span whose event it
    received (``parent_span_id``), siblings by start time; spans whose parent is not in the
    trace are roots."""
    ids = {str(s.get("id")) for s in spans if s.get("id") is not None}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for s in spans:
        parent = s.get("parent_span_id")
        key = str(parent) if parent is not None and str(parent) in ids else None
        children.setdefault(key, []).append(s)
    for group in children.values():
        group.sort(key=lambda s: (s.get("start") or 0.0, str(s.get("id") or "")))
    rows: list[tuple[Mapping[str, Any], int]] = []
    seen: set[str] = set()
    stack: list[tuple[Mapping[str, Any], int]] = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        sid = str(span.get("id"))
        if sid in seen:
            continue
        seen.add(sid)
        rows.append((span, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(sid, [])))
    rows += [(s, 0) for s in spans if str(s.get("id")) not in seen]  # a cycle of parents
    return rows


def trace_svg(trace: Mapping[str, Any], *, max_spans: int = MAX_SPANS) -> str:
    """The spans of a trace as a waterfall ``<svg>`` (empty string when there are none): one row
    per span, nested by cause, its bar from start to end on the run's time axis, coloured by
    status; a running span's bar reaches the latest time known."""
    spans = [s for s in trace.get("spans") or [] if isinstance(s, Mapping)]
    if not spans:
        return ""
    rows = _span_rows(spans)
    hidden = max(len(rows) - max_spans, 0)
    rows = rows[:max_spans]
    run = trace.get("run") or {}
    starts = [float(s["start"]) for s in spans if isinstance(s.get("start"), int | float)]
    ends = [float(s["end"]) for s in spans if isinstance(s.get("end"), int | float)]
    t0 = (
        float(run["start"]) if isinstance(run.get("start"), int | float) else min(starts, default=0)
    )
    if starts:
        t0 = min(t0, *starts)
    t1 = max([*ends, *starts, t0])
    if isinstance(run.get("end"), int | float):
        t1 = max(t1, float(run["end"]))
    span_s = max(t1 - t0, 1e-6)
    axis_y = 16
    height = axis_y + 6 + ROW_H * len(rows) + (16 if hidden else 4)
    width = LABEL_W + BAR_W + 80
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="wistro-trace-svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'style="max-width:100%;height:auto" font-family="{FONT}" font-size="11">',
    ]
    for i in range(5):  # the time axis: 0, 25, 50, 75, 100 %
        gx = LABEL_W + BAR_W * i / 4
        ms = span_s * 1000 * i / 4
        out.append(
            f'<line x1="{_num(gx)}" y1="{axis_y + 2}" x2="{_num(gx)}" y2="{height - 4}" '
            f'stroke="#e5e7eb"/><text x="{_num(gx)}" y="{axis_y - 4}" font-size="9" '
            f'fill="#6b7280" text-anchor="middle">{_num(ms)} ms</text>'
        )
    for i, (span, depth) in enumerate(rows):
        y = axis_y + 6 + ROW_H * i
        status = str(span.get("status") or "")
        start = span.get("start")
        end = span.get("end")
        s0 = float(start) if isinstance(start, int | float) else t0
        s1 = float(end) if isinstance(end, int | float) else t1
        bx = LABEL_W + BAR_W * (s0 - t0) / span_s
        bw = max(BAR_W * (s1 - s0) / span_s, 2.0)
        fill = STATUS_FILL.get(status, "#6b7280")
        step = str(span.get("step") or "")
        attempt = span.get("attempt")
        label = step + (f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else "")
        duration = span.get("duration_ms")
        right = f"{duration:.1f} ms" if isinstance(duration, int | float) else status
        tip = f"{step} · {span.get('topic') or ''} · {status} · {right}"
        if span.get("error"):
            tip += f" · {span['error']}"
        indent = 6 + 12 * min(depth, 10)
        if len(label) > 30:
            label = label[:29] + "…"
        out.append(
            f'<g class="wistro-span status-{_x(status)}" data-step="{_x(step)}"><title>{_x(tip)}'
            f'</title><text x="{indent}" y="{y + 14}" fill="#111827">{_x(label)}</text>'
            f'<rect x="{_num(bx)}" y="{y + 4}" width="{_num(bw)}" height="{ROW_H - 8}" rx="2" '
            f'fill="{fill}"/><text x="{_num(min(bx + bw + 4, LABEL_W + BAR_W + 4))}" '
            f'y="{y + 14}" font-size="10" fill="#4b5563">{_x(right)}</text></g>'
        )
    if hidden:
        out.append(
            f'<text x="6" y="{height - 4}" font-size="10" fill="#6b7280">… {hidden} more spans '
            "in the table below</text>"
        )
    out.append("</svg>")
    return "".join(out)
