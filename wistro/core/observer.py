"""The engine's ``Observer``: a live view of what it does (dev console, notebook widgets)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wistro.core.run import Run
    from wistro.tracing.records import EventRecord, LogRecord, SpanRecord

logger = logging.getLogger("wistro.engine")


class Observer(Protocol):
    def on_run_start(self, run: Run) -> None: ...
    def on_event(self, event: EventRecord) -> None: ...
    def on_span_start(self, span: SpanRecord) -> None: ...
    def on_span_end(self, span: SpanRecord) -> None: ...
    def on_log(self, log: LogRecord) -> None: ...
    def on_run_end(self, run: Run) -> None: ...


def notify(observers: list[Observer], method: str, record: Any) -> None:
    """Tell every observer; one that raises (a console that cannot print) is logged, never
    allowed to fail the run."""
    for o in list(observers):
        try:
            getattr(o, method)(record)
        except Exception:
            logger.exception("observer %r failed in %s; the run goes on", o, method)
