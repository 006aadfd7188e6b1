"""Event buses: the port (``base``) and its implementations, one module each."""

from wistro.bus.base import BusHooks, Deliver, Delivery, EventBus, RunEnded, RunOpened
from wistro.bus.memory import FAIR_SHARE, InMemoryBus

__all__ = [
    "FAIR_SHARE",
    "BusHooks",
    "Deliver",
    "Delivery",
    "EventBus",
    "InMemoryBus",
    "RunEnded",
    "RunOpened",
]
