"""The step registry: steps by name, active subscribers by topic (O(1)), flows."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator

from wistro.core.step import StepRecord
from wistro.core.topics import TopicCatalog
from wistro.errors import UnknownStepError


class Registry:
    def __init__(self, records: Iterable[StepRecord], topics: TopicCatalog) -> None:
        self.steps: dict[str, StepRecord] = {r.name: r for r in records}
        self.topics = topics
        self._subscribers: dict[str, tuple[StepRecord, ...]] = {}
        self._index()

    def _index(self) -> None:
        index: dict[str, list[StepRecord]] = {}
        for r in self.steps.values():
            if r.active and r.type != "noop":
                for t in r.subscribes:
                    index.setdefault(t, []).append(r)
        self._subscribers = {t: tuple(rs) for t, rs in index.items()}

    def __iter__(self) -> Iterator[StepRecord]:
        return iter(self.steps.values())

    def __len__(self) -> int:
        return len(self.steps)

    def __contains__(self, name: object) -> bool:
        return name in self.steps

    def subscribers(self, topic: str) -> tuple[StepRecord, ...]:
        """Active steps that receive ``topic``."""
        return self._subscribers.get(topic, ())

    def get(self, name: str) -> StepRecord:
        record = self.steps.get(name)
        if record is None:
            close = difflib.get_close_matches(name, list(self.steps), n=1)
            raise UnknownStepError(
                "no such step",
                step=name,
                hint=f"did you mean {close[0]!r}?" if close else "see `wistro steps`",
            )
        return record

    def set_active(self, name: str, active: bool) -> StepRecord:
        record = self.get(name)
        record.active = active
        self._index()
        return record

    @property
    def inactive(self) -> list[str]:
        return sorted(r.name for r in self.steps.values() if not r.active)

    def flows(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.steps.values():
            for f in r.flows:
                out.setdefault(f, []).append(r.name)
        return {f: sorted(names) for f, names in sorted(out.items())}
