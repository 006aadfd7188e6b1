"""The cyclic garbage collector: tuned once per process for an engine's load, and paused around
work that builds many short-lived containers at once.

Every hop allocates a handful of objects (a span, an event, a context, a payload); with
CPython's default thresholds (700, 10, 10) the collector runs every few dozen hops, and its
full passes walk every object the process holds: modules, pydantic's schemas, the runs kept in
memory. Two changes take most of that away:

* ``gc.freeze()`` when the engine first starts, after the project is loaded: what exists then
  (the step modules, their models, the libraries) lives as long as the process, so collections
  stop walking it;
* a young-generation threshold of ``GEN0`` allocations instead of 700, so collections are rarer
  (each collects the same cycles; the memory they hold meanwhile is a few MB).

A process whose thresholds are not CPython's defaults has tuned them itself: they are left as
they are. ``engine.tune_gc: false`` in wistro.yml turns this off.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

DEFAULT_THRESHOLDS = (700, 10, 10)
GEN0 = 20_000
TUNED = (GEN0, 20, 10)
_done = False

_pause_lock = threading.Lock()
_pauses = 0  # blocks inside collector_paused(), in every thread
_resume = False  # the collector was on when the first of them started


def tune_gc() -> bool:
    """Freeze what exists and raise the thresholds, once per process. True if it did."""
    global _done
    if _done:
        return False
    _done = True
    if gc.get_threshold() != DEFAULT_THRESHOLDS:
        return False
    gc.freeze()
    gc.set_threshold(*TUNED)
    return True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block. Building a large acyclic structure (reading or
    comparing many results; a trace batch turned into tuples for its store) with the collector
    on makes its passes walk that structure again and again, and promote it to the older
    generations, whose passes then walk it too: that doubled the time of a 10,000-sample
    compare, and about half the trace writer thread's CPU (6.1-7.5 against 3.4-4.1 µs a hop, a
    busy chain with SQLite traces). Reference counting still
    frees everything; cycles made inside are collected after. Blocks may nest and may run in
    several threads at once: the collector is on again once the last one ends, if it was on
    when the first began."""
    global _pauses, _resume
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()
