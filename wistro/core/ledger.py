"""The run ledger port: what each run still owes.

A run is finished when every delivery it caused has settled (ran, failed for good, or was
dropped). The engine counts them here: ``add`` when deliveries are published, ``settle`` when
one is done. In one process that is a dict (``LocalLedger``); a bus shared by several processes
keeps the counts where every process sees them (a Redis hash), so whichever process settles the
last delivery of a run finishes it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class RunLedger(ABC):
    __slots__ = ()

    @abstractmethod
    def open(self, trace_id: str) -> None:
        """A run starts (with nothing pending yet)."""

    @abstractmethod
    def add(self, trace_id: str, n: int = 1) -> None:
        """``n`` more deliveries of the run are pending."""

    @abstractmethod
    def settle(self, trace_id: str) -> bool:
        """One delivery of the run is done; True when it was the run's last."""

    @abstractmethod
    def pending(self, trace_id: str) -> int:
        """Deliveries of the run not settled yet (0 for an unknown run)."""

    @abstractmethod
    def close(self, trace_id: str) -> None:
        """Forget the run (finished or abandoned)."""

    in_flight: int
    """Deliveries not settled yet, over every run this ledger tracks (an attribute or a
    property: the engine reads it on every settle)."""

    @abstractmethod
    def clear(self) -> None:
        """Forget everything (an engine abandoned or started afresh)."""


class LocalLedger(RunLedger):
    """The ledger of one process."""

    __slots__ = ("_pending", "in_flight")

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}
        self.in_flight = 0  # a plain attribute: read on every settle

    def open(self, trace_id: str) -> None:
        self._pending.setdefault(trace_id, 0)

    def add(self, trace_id: str, n: int = 1) -> None:
        self._pending[trace_id] = self._pending.get(trace_id, 0) + n
        self.in_flight += n

    def settle(self, trace_id: str) -> bool:
        left = self._pending.get(trace_id, 0) - 1
        self.in_flight -= 1
        if left <= 0:
            self._pending[trace_id] = 0
            return True
        self._pending[trace_id] = left
        return False

    def pending(self, trace_id: str) -> int:
        return self._pending.get(trace_id, 0)

    def close(self, trace_id: str) -> None:
        self._pending.pop(trace_id, None)

    def clear(self) -> None:
        self._pending.clear()
        self.in_flight = 0
