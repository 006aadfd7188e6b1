"""Topics: one schema per topic from its declarations, conflicts named, payloads validated with
the field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from wistro.core.step import Emit, StepRecord
from wistro.core.topics import TopicCatalog
from wistro.errors import PayloadError

ORDER = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"qty": {"type": "integer"}},
                "required": ["qty"],
            },
        },
    },
    "required": ["order_id"],
}


def record(name: str, **kw: object) -> StepRecord:
    return StepRecord(
        name=name,
        file=Path(f"/p/{name}.step.py"),
        rel_file=f"{name}.step.py",
        language="python",
        type="event",
        hash="h",
        **kw,  # type: ignore[arg-type]
    )


def test_a_topic_gets_its_schema_producers_and_subscribers() -> None:
    cat = TopicCatalog(
        [
            record("Pay", subscribes=("order",), input_schema=ORDER),
            record("Shop", emits=(Emit("order"),)),
        ]
    )
    topic = cat.topics["order"]
    assert topic.schema == ORDER and topic.subscribers == ["Pay"] and topic.producers == ["Shop"]
    assert cat.conflicts == []


def test_payloads_are_validated_with_the_field_path() -> None:
    cat = TopicCatalog([record("Pay", subscribes=("order",), input_schema=ORDER)])
    check = cat.validator("order")
    assert check({"order_id": "A1", "lines": [{"qty": 2}]}) == {
        "order_id": "A1",
        "lines": [{"qty": 2}],
    }
    with pytest.raises(PayloadError) as e:
        check({"order_id": "A1", "lines": [{"qty": "two"}]})
    assert e.value.topic == "order" and e.value.field == "lines.0.qty"
    with pytest.raises(PayloadError, match="order_id"):
        check({})


def test_disagreeing_schemas_are_a_conflict_naming_both_sides() -> None:
    other = {"type": "object", "properties": {"order_id": {"type": "integer"}}}
    cat = TopicCatalog(
        [
            record("Pay", subscribes=("order",), input_schema=ORDER),
            record("Ship", subscribes=("order",), input_schema=other),
        ]
    )
    [conflict] = cat.conflicts
    text = str(conflict)
    assert "order" in text and "Pay" in text and "Ship" in text


def test_descriptions_do_not_make_a_conflict() -> None:
    described = {**ORDER, "title": "Order", "description": "an order"}
    cat = TopicCatalog(
        [
            record("Pay", subscribes=("order",), input_schema=ORDER),
            record("Ship", subscribes=("order",), input_schema=described),
        ]
    )
    assert cat.conflicts == []
