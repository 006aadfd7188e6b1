"""Event buses: the port (``base``) and its implementations, one module each."""

from wistro.bus.base import Deliver, Delivery, EventBus
from wistro.bus.memory import FAIR_SHARE, InMemoryBus

__all__ = ["FAIR_SHARE", "Deliver", "Delivery", "EventBus", "InMemoryBus"]
