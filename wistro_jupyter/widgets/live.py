"""``live_observers(engine)``: how many widget observers (trace views, graphs) an engine has."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wistro_jupyter.widgets.flow_graph import FlowGraph
from wistro_jupyter.widgets.trace_hub import _hubs

if TYPE_CHECKING:
    from wistro.core.engine import Engine


def live_observers(engine: Engine) -> int:
    """How many widget observers are attached to ``engine`` (tests, diagnostics)."""
    hub = _hubs.get(engine)
    n = len(hub.views) if hub is not None else 0
    return n + sum(1 for o in engine.observers if isinstance(o, FlowGraph))
