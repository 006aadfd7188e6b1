"""The project graph as the ``graph`` trait of ``FlowGraph``: the pure data lives in
``wistro.workbench.graph`` (shared with the Workbench's ``graph`` op on a running server)."""

from __future__ import annotations

from wistro.workbench.graph import KIND, GraphData, config_file_name, graph_data, node_details

__all__ = ["KIND", "GraphData", "config_file_name", "graph_data", "node_details"]
