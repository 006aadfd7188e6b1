"""``TraceView``: one run (spans, events, logs, state changes, errors), live while it is in
flight through the engine's ``TraceHub``, and through a ``RemotePoll`` of the shared trace store
when the run's steps run in other processes (a notebook attached to a shared bus)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import traitlets as t

from wistro_jupyter import reprs
from wistro_jupyter.traces import (
    RunSnapshot,
    TraceData,
    empty,
    from_run,
    from_stored,
    with_stored,
)
from wistro_jupyter.widgets.base import _WistroWidget
from wistro_jupyter.widgets.remote import RemotePoll, polls_remote
from wistro_jupyter.widgets.throttle import Throttle
from wistro_jupyter.widgets.trace_hub import TraceHub, trace_hub

if TYPE_CHECKING:
    from wistro.core.engine import Engine
    from wistro.core.run import Run


class TraceView(_WistroWidget):
    """One run: spans (a waterfall), events with payloads, logs, state changes and errors with
    their traceback. Live while the run is in flight."""

    kind = t.Unicode("trace_view").tag(sync=True)
    trace = t.Dict().tag(sync=True)
    filter_step = t.Unicode("").tag(sync=True)
    filter_status = t.Unicode("").tag(sync=True)

    languages: dict[str, str] = {}  # step name -> language; kept current by the session

    @t.validate("trace")
    def _with_languages(self, proposal: Any) -> Any:
        """Each span says the language of its step (Python, Go, TypeScript, ...) and its
        ``parent_id``: the span that emitted the event it handles (None for the run's first
        event), so the browser nests spans by cause."""
        trace = proposal["value"]
        langs = TraceView.languages
        spans = trace.get("spans") if isinstance(trace, dict) else None
        if spans and any("parent_id" not in s for s in spans):
            cause = {e.get("id"): e.get("parent_span_id") for e in trace.get("events") or ()}
            trace = {
                **trace,
                "spans": [
                    s if "parent_id" in s else {**s, "parent_id": cause.get(s.get("event_id"))}
                    for s in spans
                ],
            }
            spans = trace["spans"]
        if langs and spans:
            trace = {
                **trace,
                "spans": [
                    {**s, "language": langs[s["step"]]} if s.get("step") in langs else s
                    for s in spans
                ],
            }
        return trace

    def __init__(self, trace: TraceData | None = None, **kwargs: Any) -> None:
        self.run: Run | None = None
        self.error: str | None = None  # the emit failed before a run started
        self._trace_id = ""
        self._snapshot: RunSnapshot | None = None
        self._hub: TraceHub | None = None
        self._remote: RemotePoll | None = None  # polls the shared trace store (attached notebook)
        self._stored: TraceData | None = None  # what the last poll read of the run
        self._stored_dead = 0
        self.warning: str | None = None  # the store could not be read while the run was live
        self._warning_line: dict[str, Any] | None = None
        self._throttle = Throttle(self._push)
        self._done: asyncio.Event | None = None
        super().__init__(trace=trace or empty(""), **kwargs)

    # ------------------------------------------------------------ constructors
    @classmethod
    def pending(cls, topic: str, data: Any = None) -> TraceView:
        return cls(empty(topic, data))

    @classmethod
    def from_run(cls, run: Run, engine: Engine | None = None) -> TraceView:
        view = cls(from_run(run))
        view._trace_id = run.trace_id
        view.run = run
        if engine is not None and not run.done:
            view.attach(run, engine)
        return view

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> TraceView:
        view = cls(from_stored(stored))
        view._trace_id = stored["run"]["trace_id"]
        return view

    # ------------------------------------------------------------ live
    def attach(self, run: Run, engine: Engine) -> None:
        """Follow ``run`` from now on (what it did so far is shown at once)."""
        self.detach()
        self.run = run
        self._trace_id = run.trace_id
        self._snapshot = RunSnapshot(run)
        if run.done:
            self._push()
            return
        self._throttle.engine = engine
        self._hub = trace_hub(engine)
        self._hub.add(self)
        if polls_remote(engine):
            poll = RemotePoll(self, engine)
            self._remote = poll
            if not poll.start():
                self._remote = None
        self._throttle.flush()

    def detach(self) -> None:
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.remove(self)
        remote, self._remote = self._remote, None
        if remote is not None:
            remote.stop()
        self._throttle.cancel()

    @property
    def polling(self) -> bool:
        """Whether the view polls the shared trace store for its run now."""
        return self._remote is not None and self._remote.running

    def _remote_update(self, stored: dict[str, Any]) -> None:
        """What the shared trace store holds of the run now (``RemotePoll``)."""
        data = from_stored(stored)
        dead = len(stored.get("dead_letters") or ())
        if data == self._stored and dead == self._stored_dead:
            return
        self._stored, self._stored_dead = data, dead
        self._throttle.mark()

    def _remote_warning(self, message: str) -> None:
        """One line in the view's logs while the run is live (the final run replaces it)."""
        self.warning = message
        self._warning_line = {
            "ts": time.time(),
            "trace_id": self._trace_id,
            "level": "warning",
            "message": message,
            "step": None,
            "span_id": None,
            "fields": {},
        }
        self._throttle.mark()

    @property
    def attached(self) -> bool:
        return self._hub is not None

    def _run_ended(self) -> None:
        if self._stored is not None and self.run is not None:
            # the engine merged the stored records into the run: convert it afresh
            self._snapshot = RunSnapshot(self.run)
        self._throttle.flush()
        self.detach()
        if self._done is not None:
            self._done.set()

    def fail(self, message: str) -> None:
        """The emit was refused before any run started."""
        self.error = message
        trace = dict(self.trace)
        trace["run"] = {**trace.get("run", {}), "status": "error", "error": message}
        self.trace = trace
        self.detach()
        if self._done is not None:
            self._done.set()

    def _push(self) -> None:
        if self._snapshot is None:
            return
        data = self._snapshot.data()
        if self._stored is not None:
            data = with_stored(data, self._stored, dead_letters=self._stored_dead)
        run = self.run
        if self._warning_line is not None and run is not None and not run.done:
            data = {**data, "logs": [*data["logs"], self._warning_line]}
        self.trace = data

    def close(self) -> None:
        self.detach()
        super().close()

    async def wait(self) -> Run | None:
        """Until the run has ended (``None`` when the emit was refused)."""
        if self.error is None and (self.run is None or not self.run.done):
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()
        if self.run is not None:
            await self.run.wait()
        return self.run

    def _static_html(self) -> str:
        return reprs.trace_html(
            self.trace, step=self.filter_step or None, status=self.filter_status or None
        )

    def __repr__(self) -> str:
        run = self.trace.get("run") or {}
        return (
            f"<TraceView {str(run.get('trace_id') or '')[:12]} {run.get('topic', '')} "
            f"{run.get('status', '')}: {len(self.trace.get('spans') or [])} spans>"
        )
