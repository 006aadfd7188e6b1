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

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from wistro.tracing.records import EventRecord

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
        event = {f.name: getattr(self.event, f.name) for f in fields(EventRecord)}
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
        return json.dumps(self.to_dict(), separators=(",", ":"))

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


Deliver = Callable[[Delivery], Awaitable[None]]
ConcurrencyOf = Callable[[str], int]


class EventBus(ABC):
    @abstractmethod
    def start(self, deliver: Deliver, concurrency_of: ConcurrencyOf) -> None:
        """Begin running ``deliver`` for published deliveries (on the running event loop)."""

    @abstractmethod
    def publish(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Queue a delivery, to run after ``delay`` seconds. Never blocks: back-pressure is
        applied where work enters."""

    @abstractmethod
    def pending(self) -> int:
        """Deliveries queued or waiting for their time (not those running)."""

    @abstractmethod
    def abandon(self) -> None:
        """Stop at once: drop what is queued, cancel what runs (an engine given up on)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop the workers; what is queued or scheduled is dropped."""
