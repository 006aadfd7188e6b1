"""The event-bus port: what the engine hands a bus, and what a bus does with it.

A ``Delivery`` is a plain value — the step's name, the event (ids, topic, JSON payload, trace id,
parent span), the attempt, a caller's ``traceparent``, when it may run, the project version — so that a bus can keep it
anywhere: a deque in this process, a Redis stream across machines. It round-trips through JSON
unchanged (``to_json`` / ``from_json``). In this process the engine also attaches the already
validated payload (``payload``) so a hop does not decode its JSON again; it is never serialised.

A bus runs ``deliver(delivery)`` for each published delivery, at most ``concurrency_of(step)`` at
a time per step, once its ``not_before`` time has come (``publish(d, delay=...)``: retries with
backoff are scheduled by the bus, not by engine timers).
"""

from __future__ import annotations

import asyncio
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson

from wistro.tracing.records import EventRecord

log = logging.getLogger("wistro.bus")

NO_PAYLOAD: Any = object()  # ``Delivery.payload`` when none is attached


@dataclass(slots=True)
class Delivery:
    step: str  # the subscribing step's name
    event: EventRecord
    attempt: int = 1
    not_before: float = 0.0  # wall-clock time before which it must not run (0: at once)
    version: str | None = None  # the project version (lock hash) the trace runs on
    dead_letter_id: str | None = None  # the dead letter this delivery replays
    traceparent: str | None = None  # the W3C trace context of the run's caller, if any
    payload: Any = field(default=NO_PAYLOAD, compare=False, repr=False)  # in-process cache

    @property
    def has_payload(self) -> bool:
        return self.payload is not NO_PAYLOAD

    def again(self, not_before: float) -> Delivery:
        """The next attempt of this delivery."""
        return replace(self, attempt=self.attempt + 1, not_before=not_before)

    def to_dict(self) -> dict[str, Any]:
        event = {name: getattr(self.event, name) for name in _EVENT_FIELDS}
        return {
            "step": self.step,
            "event": event,
            "attempt": self.attempt,
            "not_before": self.not_before,
            "version": self.version,
            "dead_letter_id": self.dead_letter_id,
            "traceparent": self.traceparent,
        }

    def to_json(self) -> str:
        value = self.to_dict()
        try:  # orjson: a fifth of the stdlib's time, on every delivery a journal or Redis keeps
            return orjson.dumps(value).decode()
        except TypeError:  # what orjson refuses (a lone surrogate, an int over 64 bits)
            return json.dumps(value, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delivery:
        return cls(
            step=data["step"],
            event=EventRecord(**data["event"]),
            attempt=int(data.get("attempt", 1)),
            not_before=float(data.get("not_before", 0.0)),
            version=data.get("version"),
            dead_letter_id=data.get("dead_letter_id"),
            traceparent=data.get("traceparent"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Delivery:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A process that runs deliveries, as it registers on the bus (``wistro versions``)."""

    worker: str  # host:pid
    version: str  # the short lock hash of what it runs
    label: str | None  # the lock's label (``wistro lock --label``), if any
    started: float
    steps: int  # how many steps it takes deliveries for
    seen: float = 0.0  # its last heartbeat (set by the bus)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerInfo:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


_EVENT_FIELDS = tuple(f.name for f in fields(EventRecord))
Deliver = Callable[[Delivery], Awaitable[None]]
ConcurrencyOf = Callable[[str], int]


@dataclass(slots=True)
class RunOpened:
    """What a shared bus keeps of a run, so that whichever process ends it can record its end."""

    trace_id: str
    trigger: str
    topic: str
    start: float
    origin: str  # the worker ("host:pid") that started it: it waits for the end
    version: str | None = None  # the version it was routed to (whoever ends it records it)


@dataclass(slots=True)
class RunEnded:
    trace_id: str
    trigger: str
    topic: str
    start: float
    end: float
    n_events: int
    n_errors: int
    origin: str
    version: str | None = None


@dataclass(slots=True)
class BusHooks:
    """What a shared bus calls back into the engine (on the engine's event loop)."""

    # This process settled these runs' last deliveries: record their ends, at the call; the
    # awaitable returned resolves when they are in the trace store, and only then does the bus
    # announce the runs and forget them (so a crash in between leaves them to be ended again).
    ended: Callable[[list[RunEnded]], Awaitable[None]]
    # A run that started in this process ended (here or elsewhere): wake what waits for it.
    finished: Callable[[RunEnded], None]
    # Delivered ``tries`` times and never settled (each worker died on it): dead-letter it.
    poisoned: Callable[[Delivery, int], Awaitable[None]]
    # A message ``broadcast`` by some process (this one too): activate/deactivate a step...
    control: Callable[[dict[str, Any]], None] | None = None


async def recorded(durable: Awaitable[None] | None, bus: str, n: int) -> None:
    """Wait for what ``BusHooks.ended`` returned: the ends are in the trace store. A failure to
    write them is logged, never raised: they are as stored as they will be, and the bus goes on
    to announce the runs."""
    if durable is None:
        return
    try:
        await asyncio.shield(durable)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s: recording the end of %d runs failed", bus, n)


class EventBus(ABC):
    """The port. ``shared`` buses (local, redis) keep deliveries where other processes see them,
    and keep the run ledger too: how many deliveries each run still owes, settled in the same
    commit that acknowledges a delivery, so whichever process settles the last one ends the run.
    """

    name = "memory"  # what wistro.yml's bus.adapter calls it
    shared = False  # deliveries may run in other processes; the bus keeps the run ledger
    durable = False  # what ``flush`` returned for survives this process
    consume = True  # this process runs deliveries (False: it only publishes, `start --no-workers`)
    version: str | None = None  # the version this process runs: it takes that version's deliveries
    _worker_info: WorkerInfo | None = None
    _traffic: dict[str, Any] | None = None

    @abstractmethod
    def start(
        self, deliver: Deliver, concurrency_of: ConcurrencyOf, hooks: BusHooks | None = None
    ) -> None:
        """Begin running ``deliver`` for published deliveries (on the running event loop).
        A delivery is acknowledged when ``deliver`` returns, after what it published."""

    @abstractmethod
    def publish(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Queue a delivery, to run after ``delay`` seconds. Never blocks: back-pressure is
        applied where work enters."""

    async def flush(self) -> None:  # noqa: B027 - nothing to wait for in memory
        """Return once everything published so far is durable (accepted)."""

    async def flush_run(self, trace_id: str) -> None:
        """Return once what was published for the run ``trace_id`` so far is durable (what an
        emit waits for before it counts as accepted). A bus may commit the other runs' work
        later, in a larger batch; by default this is ``flush``."""
        await self.flush()

    # -- the run ledger of a shared bus (no-ops in memory, where the engine counts) ------------
    def open_run(self, run: RunOpened, holds: int = 0) -> None:  # noqa: B027
        """A run starts; ``holds`` units of work outside deliveries (an api call) are pending."""

    def release(self, trace_id: str) -> None:  # noqa: B027
        """One hold of ``open_run`` is done."""

    def note(self, trace_id: str, events: int = 0, errors: int = 0) -> None:  # noqa: B027
        """Count events and errors of a run (for its end record), in the next commit."""

    async def claim(self, key: str, ttl_s: float) -> bool:
        """True for the one process that claims ``key`` first (within ``ttl_s``): a cron tick
        fires once across every process sharing the bus. In memory: always True."""
        return True

    async def broadcast(self, message: dict[str, Any]) -> None:
        """Deliver ``message`` to ``hooks.control`` of every process on the bus (this one too),
        live. In memory: this process only."""
        hooks = getattr(self, "_hooks", None)
        if hooks is not None and hooks.control is not None:
            hooks.control(message)

    # -- versions: the workers that run deliveries, and the traffic split ----------------------
    async def register(self, info: WorkerInfo | None) -> None:
        """This process runs deliveries as ``info`` (kept alive by the bus while it runs;
        ``None``: it stops). A bus in one process keeps it in memory."""
        self._worker_info = info

    async def workers(self) -> list[WorkerInfo]:
        """The live workers of every version on this bus."""
        return [self._worker_info] if self._worker_info is not None else []

    async def set_traffic(self, split: dict[str, Any] | None) -> None:
        """Store the traffic split (``Split.to_dict()``; ``None`` clears it) for every process."""
        self._traffic = split

    async def traffic(self) -> dict[str, Any] | None:
        return self._traffic

    async def owed(self, trace_ids: list[str]) -> set[str]:
        """Which of these runs the bus still owes deliveries (a shared bus's ledger)."""
        return set()

    @abstractmethod
    def pending(self) -> int:
        """Deliveries queued or waiting for their time (not those running)."""

    @abstractmethod
    def abandon(self) -> None:
        """Stop at once: drop what is queued, cancel what runs (an engine given up on)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop the workers; what is queued or scheduled is dropped."""
