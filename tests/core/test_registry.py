"""The registry: steps by name, active subscribers by topic, flows, activation."""

from __future__ import annotations

from pathlib import Path

import pytest

from wistro.core.registry import Registry
from wistro.core.step import Emit, StepRecord
from wistro.core.topics import TopicCatalog
from wistro.errors import UnknownStepError


def record(name: str, subscribes: tuple[str, ...] = (), **kw: object) -> StepRecord:
    return StepRecord(
        name=name,
        file=Path(f"/p/src/{name}.step.py"),
        rel_file=f"src/{name}.step.py",
        language="python",
        type=str(kw.pop("type", "event")),
        hash="h",
        subscribes=subscribes,
        **kw,  # type: ignore[arg-type]
    )


def registry(*records: StepRecord) -> Registry:
    return Registry(records, TopicCatalog(records))


def test_subscribers_are_the_active_steps_of_a_topic_in_order() -> None:
    reg = registry(
        record("A", ("t",)), record("B", ("t", "u")), record("N", type="noop", flows=("f",))
    )
    assert [r.name for r in reg.subscribers("t")] == ["A", "B"]
    assert [r.name for r in reg.subscribers("u")] == ["B"]
    assert reg.subscribers("nobody") == ()
    reg.set_active("A", False)
    assert [r.name for r in reg.subscribers("t")] == ["B"]
    assert reg.inactive == ["A"]
    reg.set_active("A", True)
    assert [r.name for r in reg.subscribers("t")] == ["A", "B"]


def test_an_unknown_step_suggests_the_closest_name() -> None:
    reg = registry(record("Charge card", ("t",)))
    with pytest.raises(UnknownStepError, match="did you mean 'Charge card'"):
        reg.get("Charge crad")
    assert "Charge card" in reg and "Nope" not in reg and len(reg) == 1


def test_flows_list_their_steps_sorted() -> None:
    reg = registry(
        record("B", ("t",), flows=("checkout",)),
        record("A", ("t",), flows=("checkout", "ops")),
        record("C", ("t",), emits=(Emit("u"),)),
    )
    assert reg.flows() == {"checkout": ["A", "B"], "ops": ["A"]}
