"""Event buses: the port (``base``) and its implementations, one module each."""

from wistro.bus.base import BusHooks, Deliver, Delivery, EventBus, RunEnded, RunOpened
from wistro.bus.lanes import FAIR_SHARE
from wistro.bus.memory import InMemoryBus

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
