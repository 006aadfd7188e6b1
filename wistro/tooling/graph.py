"""``wistro graph``: the project's event graph as Graphviz DOT, Mermaid or SVG.

Nodes are steps (shape by type), wistro.yml api/cron entries (trigger nodes) and small end
nodes for topics nobody receives. Edges go from an emitter to a subscriber, labeled by topic;
edges drawn by no-op steps (``virtual_*``) are dashed. Output is deterministic.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wistro.errors import WistroError

if TYPE_CHECKING:
    from wistro.app import App


@dataclass(frozen=True)
class Node:
    key: str  # unique and stable: "step:<name>", "api:<i>", "cron:<name>", "end:<topic>"
    label: str
    kind: str  # event | api | cron | noop | trigger-api | trigger-cron | end


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    topic: str
    label: str
    virtual: bool = False
    conditional: bool = False


@dataclass
class Graph:
    title: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[Edge] = field(default_factory=set)

    def sorted_nodes(self) -> list[Node]:
        return sorted(self.nodes.values(), key=lambda n: (_KIND_ORDER[n.kind], n.label, n.key))

    def sorted_edges(self) -> list[Edge]:
        return sorted(self.edges, key=lambda e: (e.source, e.target, e.topic, e.label, e.virtual))


_KIND_ORDER = {
    "trigger-api": 0,
    "trigger-cron": 1,
    "api": 2,
    "cron": 3,
    "event": 4,
    "noop": 5,
    "end": 6,
}


def known_flows(app: App) -> list[str]:
    config = app.project.config
    flows = set(app.registry.flows()) | set(config.flows)
    for ep in config.api:
        flows.update(ep.flows)
    for job in config.cron.values():
        flows.update(job.flows)
    return sorted(flows)


def build_graph(app: App, flow: str | None = None) -> Graph:
    """The nodes and edges of the whole project, or of one flow."""
    config = app.project.config
    if flow is not None and flow not in known_flows(app):
        known = ", ".join(known_flows(app)) or "none"
        raise WistroError(
            f"unknown flow {flow!r} (known flows: {known})",
            hint="see `wistro flows`",
        )
    title = app.project.name if flow is None else f"{app.project.name}: {flow}"
    full = Graph(title)
    # producers: (node key, topic, label, virtual, conditional)
    producers: list[tuple[str, str, str | None, bool, bool]] = []
    subscribers: dict[str, list[tuple[str, bool]]] = {}
    for r in sorted(app.registry, key=lambda r: r.name):
        key = f"step:{r.name}"
        full.nodes[key] = Node(key, r.name, r.type if r.type in _KIND_ORDER else "event")
        for e in r.emits:
            producers.append((key, e.topic, e.label, False, e.conditional))
        for e in r.virtual_emits:
            producers.append((key, e.topic, e.label, True, e.conditional))
        for t in r.subscribes:
            subscribers.setdefault(t, []).append((key, False))
        for t in r.virtual_subscribes:
            subscribers.setdefault(t, []).append((key, True))
    triggers: dict[str, tuple[str, tuple[str, ...]]] = {}  # key -> (topic, flows)
    for i, ep in enumerate(config.api):
        key = f"api:{i}"
        full.nodes[key] = Node(key, f"{ep.method.upper()} {ep.path}", "trigger-api")
        producers.append((key, ep.emits, None, False, False))
        triggers[key] = (ep.emits, tuple(ep.flows))
    for name, job in sorted(config.cron.items()):
        key = f"cron:{name}"
        full.nodes[key] = Node(key, f"{name}\n{job.cron}", "trigger-cron")
        producers.append((key, job.emits, None, False, False))
        triggers[key] = (job.emits, tuple(job.flows))
    for source, topic, label, virtual, conditional in producers:
        text = f"{topic} ({label})" if label else topic
        targets = subscribers.get(topic)
        if not targets:
            end = f"end:{topic}"
            full.nodes[end] = Node(end, topic, "end")
            full.edges.add(Edge(source, end, topic, text, virtual, conditional))
            continue
        for target, virtual_sub in targets:
            full.edges.add(Edge(source, target, topic, text, virtual or virtual_sub, conditional))
    if flow is None:
        return full

    members = {f"step:{name}" for name in app.registry.flows().get(flow, [])}
    graph = Graph(title)
    keep = set(members)
    for key, (_, flows) in triggers.items():
        if flow in flows:
            keep.add(key)
    for edge in full.edges:
        from_member = edge.source in members
        if (from_member and (edge.target in members or edge.target.startswith("end:"))) or (
            edge.source in triggers and edge.target in members
        ):
            graph.edges.add(edge)
            keep.update((edge.source, edge.target))
    graph.nodes = {k: full.nodes[k] for k in keep}
    return graph


# ---------------------------------------------------------------- DOT


def _dot_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


_DOT_NODE = {
    "event": 'shape=box, style="rounded"',
    "api": 'shape=hexagon, style="filled", fillcolor="#dbeafe"',
    "cron": 'shape=octagon, style="filled", fillcolor="#fef3c7"',
    "noop": 'shape=box, style="dashed,rounded", color="grey50", fontcolor="grey40"',
    "trigger-api": 'shape=cds, style="filled", fillcolor="#e0f2fe"',
    "trigger-cron": 'shape=component, style="filled", fillcolor="#fef9c3"',
    "end": 'shape=doublecircle, label="", width=0.15, height=0.15, style="filled", '
    'fillcolor="black"',
}


def to_dot(app: App, flow: str | None = None) -> str:
    """The graph as Graphviz DOT source."""
    graph = build_graph(app, flow)
    lines = [
        f"digraph {_dot_str(graph.title)} {{",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for node in graph.sorted_nodes():
        attrs = _DOT_NODE[node.kind]
        if node.kind == "end":
            attrs += f", tooltip={_dot_str(node.label)}"
        else:
            attrs = f"label={_dot_str(node.label)}, {attrs}"
        lines.append(f"  {_dot_str(node.key)} [{attrs}];")
    for e in graph.sorted_edges():
        edge_attrs = [f"label={_dot_str(e.label)}"]
        if e.virtual:
            edge_attrs.append('style="dashed", color="grey50"')
        lines.append(f"  {_dot_str(e.source)} -> {_dot_str(e.target)} [{', '.join(edge_attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- Mermaid


def _mermaid_str(text: str) -> str:
    escaped = (
        text.replace("&", "#amp;")
        .replace('"', "#quot;")
        .replace("<", "#lt;")
        .replace(">", "#gt;")
        .replace("|", "#124;")
        .replace("\n", "<br/>")
    )
    return f'"{escaped}"'


_MERMAID_SHAPE = {
    "event": ("(", ")"),
    "api": ("{{", "}}"),
    "cron": ("[/", "/]"),
    "noop": ("(", ")"),
    "trigger-api": (">", "]"),
    "trigger-cron": ("[[", "]]"),
    "end": ("((", "))"),
}


def _mermaid_ids(graph: Graph) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for node in sorted(graph.nodes.values(), key=lambda n: n.key):
        kind, _, rest = node.key.partition(":")
        kind = "sink" if kind == "end" else kind  # `end` is a Mermaid keyword
        base = f"{kind}_{re.sub(r'[^A-Za-z0-9]+', '_', rest).strip('_').lower() or 'x'}"
        ident, n = base, 2
        while ident in used:
            ident, n = f"{base}_{n}", n + 1
        used.add(ident)
        ids[node.key] = ident
    return ids


def to_mermaid(app: App, flow: str | None = None) -> str:
    """The graph as a Mermaid flowchart."""
    graph = build_graph(app, flow)
    ids = _mermaid_ids(graph)
    lines = ["flowchart LR"]
    for node in graph.sorted_nodes():
        left, right = _MERMAID_SHAPE[node.kind]
        label = _mermaid_str(" " if node.kind == "end" else node.label)
        lines.append(f"  {ids[node.key]}{left}{label}{right}")
    for e in graph.sorted_edges():
        arrow = "-.->" if e.virtual else "-->"
        lines.append(f"  {ids[e.source]} {arrow}|{_mermaid_str(e.label)}| {ids[e.target]}")
    lines += [
        "  classDef api fill:#dbeafe,stroke:#1e40af",
        "  classDef cron fill:#fef3c7,stroke:#92400e",
        "  classDef noop fill:#f3f4f6,stroke:#9ca3af,stroke-dasharray:5 5,color:#6b7280",
        "  classDef trigger fill:#e0f2fe,stroke:#0369a1",
        "  classDef sink fill:#111827,stroke:#111827",
    ]
    classes: dict[str, list[str]] = {}
    for node in graph.sorted_nodes():
        cls = {"trigger-api": "trigger", "trigger-cron": "trigger", "end": "sink"}.get(
            node.kind, node.kind
        )
        if cls != "event":
            classes.setdefault(cls, []).append(ids[node.key])
    for cls, members in sorted(classes.items()):
        lines.append(f"  class {','.join(members)} {cls}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- SVG


def to_svg(app: App, flow: str | None = None) -> str:
    """The graph rendered by Graphviz (``dot -Tsvg``)."""
    dot = shutil.which("dot")
    if dot is None:
        raise WistroError(
            "Graphviz's `dot` is not installed, so the graph cannot be rendered as SVG",
            hint="install Graphviz (e.g. `apt install graphviz`, `brew install graphviz`), "
            "or use `--format dot` or `--format mermaid`",
        )
    source = to_dot(app, flow)
    try:
        done = subprocess.run(
            [dot, "-Tsvg"], input=source, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WistroError(f"running Graphviz's `dot` failed: {e}") from None
    if done.returncode != 0:
        raise WistroError(
            f"Graphviz's `dot` failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout
