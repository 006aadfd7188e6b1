"""After a crash: runs the trace store shows ``running`` that nothing will ever finish.

On a shared bus, every accepted run is owed by the bus until its last delivery settles, and
whichever process settles it records its end, so accepted runs finish after any crash. What can
be left is a run whose process died after recording its start but before the bus accepted it
(the HTTP caller got no 202). Such a run is found by its process being gone (same machine, pid
not alive) while the bus owes it nothing; it is marked ``interrupted``, with a log line saying how
to send its event again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from wistro.processes import gone_here
from wistro.tracing.records import LogRecord, RunRecord

if TYPE_CHECKING:
    from wistro.core.engine import Engine

logger = logging.getLogger("wistro.engine")


def _resend(topic: str, root: dict[str, Any] | None) -> str:
    payload = root["data_json"] if root and root.get("data_json") else "{}"
    return f"wistro emit {topic} '{payload}'"


async def mark_interrupted(engine: Engine, limit: int = 100_000) -> list[str]:
    """Mark the runs described above ``interrupted``; returns their trace ids."""
    store = engine.store
    if store is None:
        return []
    rows = await asyncio.to_thread(store.list_runs, limit, "running")
    stale = [r for r in rows if r["trace_id"] not in engine.runs and gone_here(r.get("worker"))]
    if not stale:
        return []
    owed = await engine.bus.owed([r["trace_id"] for r in stale])
    # A run this process finished since the list was read has left the bus, and its end may
    # still be in this process's recorder: write it, so that the store says it ended.
    await engine.recorder.flush()
    marked = []
    now = time.time()
    for row in stale:
        trace_id = row["trace_id"]
        if trace_id in owed:
            continue  # accepted: it runs again and ends
        # It may have ended since the list was read (this process runs what the dead one left,
        # and another may too): its end is in the store before the bus forgets it (written by
        # the flush above when it was this process's), so read it again.
        try:
            current = (await asyncio.to_thread(store.get_run, trace_id))["run"]["status"]
        except Exception:
            current = "running"
        if current != "running":
            continue
        try:
            events = (await asyncio.to_thread(store.get_run, trace_id))["events"]
        except Exception:
            events = []
        root = next((e for e in events if not e.get("parent_span_id")), None)
        message = (
            f"interrupted: the process {row['worker']} stopped before the bus accepted the run, "
            f"so nothing of it is pending; send it again with: {_resend(row['topic'], root)}"
        )
        engine.recorder.log(LogRecord(trace_id, None, None, "error", message, json.dumps({}), now))
        engine.recorder.run_ended(
            RunRecord(
                trace_id,
                row["trigger"],
                row["topic"],
                "interrupted",
                row["start"],
                now,
                int(row.get("n_events") or 0),
                1,
                row.get("worker"),
            )
        )
        marked.append(trace_id)
    if marked:
        logger.warning("marked %d run(s) interrupted (their process died)", len(marked))
        await engine.recorder.flush()
    return marked
