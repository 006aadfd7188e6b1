"""``TraceHub``: the one engine observer of every live ``TraceView`` of an engine (at most
``MAX_LIVE_TRACE_VIEWS``), and ``trace_hub(engine)``."""

from __future__ import annotations

import contextlib
import weakref
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wistro.core.engine import Engine
    from wistro.core.run import Run
    from wistro.tracing.records import EventRecord, LogRecord, SpanRecord
    from wistro_jupyter.widgets.trace_view import TraceView

MAX_LIVE_TRACE_VIEWS = 32  # per engine; the oldest running view stops updating beyond this


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
