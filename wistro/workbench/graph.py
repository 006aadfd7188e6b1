"""The project graph as plain data: what the notebook's ``FlowGraph`` draws (its ``graph`` trait)
and the Workbench's ``graph`` op answers, built on ``wistro.tooling.graph.build_graph``
(the one model of nodes and edges that ``wistro graph`` draws too), plus node details.

Node ids are ``wistro.tooling.graph`` keys: ``step:<name>``, ``api:<i>`` / ``cron:<name>`` (wistro.yml
triggers), ``end:<topic>`` (a topic nobody receives). Kinds for the widget: ``step`` (event
steps), ``api``, ``cron``, ``noop`` (steps), ``trigger`` (wistro.yml api/cron entries) and
``topic``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from wistro.tooling.graph import Node, build_graph

if TYPE_CHECKING:
    from wistro.app import App

GraphData = dict[str, list[dict[str, Any]]]

KIND = {
    "event": "step",
    "api": "api",
    "cron": "cron",
    "noop": "noop",
    "trigger-api": "trigger",
    "trigger-cron": "trigger",
    "end": "topic",
}


def _node(app: App, node: Node) -> dict[str, Any]:
    kind, _, rest = node.key.partition(":")
    out: dict[str, Any] = {
        "id": node.key,
        "label": node.label,
        "kind": KIND.get(node.kind, "step"),
        "language": None,
        "flows": [],
        "description": None,
        "subscribes": [],
        "emits": [],
        "active": True,
    }
    config = app.project.config
    if kind == "step" and rest in app.registry:
        r = app.registry.get(rest)
        noop = r.type == "noop"
        out.update(
            language=r.language,
            flows=list(r.flows),
            description=r.description,
            subscribes=list(r.virtual_subscribes if noop else r.subscribes),
            emits=[e.topic for e in (r.virtual_emits if noop else r.emits)],
            active=r.active,
        )
    elif kind == "api":
        with contextlib.suppress(ValueError, IndexError):
            ep = config.api[int(rest)]
            out.update(flows=list(ep.flows), description=ep.description, emits=[ep.emits])
    elif kind == "cron":
        job = config.cron.get(rest)
        if job is not None:
            out.update(flows=list(job.flows), description=job.description, emits=[job.emits])
    elif kind == "end":
        out.update(subscribes=[rest])
    return out


def graph_data(app: App, flow: str | None = None) -> GraphData:
    """Nodes and edges of the project (or of one flow) for the widget; deterministic order."""
    graph = build_graph(app, flow or None)
    return {
        "nodes": [_node(app, n) for n in graph.sorted_nodes()],
        "edges": [
            {
                "source": e.source,
                "target": e.target,
                "topic": e.topic,
                "label": e.label,
                "virtual": e.virtual,
                "conditional": e.conditional,
            }
            for e in graph.sorted_edges()
        ],
    }


def _read(path: Any) -> str | None:
    try:
        return str(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def node_details(app: App, node_id: str) -> dict[str, Any]:
    """``config``, ``schema``, ``source``, ``file`` of one node (``recent_runs`` is added by the
    widget, which also knows the runs it saw live)."""
    kind, _, rest = node_id.partition(":")
    config = app.project.config
    out: dict[str, Any] = {"config": None, "schema": None, "source": None, "file": None}
    if kind == "step" and rest in app.registry:
        r = app.registry.get(rest)
        cfg = r.config_dict()
        cfg = {"name": r.name, "language": r.language, "active": r.active, **cfg}
        schema = r.input_schema
        if r.type == "api":
            schema = r.trigger.get("body_schema")
        source = getattr(r, "source_text", None) or _read(r.file)
        out.update(config=cfg, schema=schema, source=source, file=r.rel_file)
    elif kind == "api":
        with contextlib.suppress(ValueError, IndexError):
            ep = config.api[int(rest)]
            out.update(
                config=ep.model_dump(mode="json"),
                schema=ep.body or app.registry.topics.schemas().get(ep.emits),
                file=config_file_name(app),
            )
    elif kind == "cron":
        job = config.cron.get(rest)
        if job is not None:
            out.update(
                config={"name": rest, **job.model_dump(mode="json")},
                schema=app.registry.topics.schemas().get(job.emits),
                file=config_file_name(app),
            )
    elif kind == "end":
        topic = app.registry.topics.topics.get(rest)
        out["config"] = {
            "topic": rest,
            "producers": list(topic.producers) if topic else [],
            "virtual_producers": list(topic.virtual_producers) if topic else [],
        }
        out["schema"] = topic.schema if topic else None
    return out


def config_file_name(app: App) -> str | None:
    file = app.project.config_file
    if file is None:
        return None
    try:
        return file.relative_to(app.project.root).as_posix()
    except ValueError:
        return str(file)
