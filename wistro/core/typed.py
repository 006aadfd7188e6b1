"""One validation per hop: a topic whose schema is its subscriber's pydantic model.

An emit is checked against the topic's JSON Schema (so a bad payload is refused where it is
emitted, naming the step), then each subscriber validates it again with its input model. When
the topic's schema *is* a subscriber's model (the usual case: the schema came from that
model), the emit is validated once, with the model in strict mode, at emit; the instance it
makes goes to that subscriber as its input, and the JSON Schema check is skipped. Strict mode
coerces nothing that JSON Schema would refuse ("1" is not an integer, 1 is not a boolean).
A payload strict mode refuses is checked with the JSON Schema as before: refused with its field
path if that fails too, else delivered as data and validated by each subscriber (lax), exactly
as without this. Other subscribers (a second one, another model) validate as before.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from wistro.core.registry import Registry
from wistro.core.topics import normalize_schema

_UNDECIDED = object()


class TypedTopics:
    """Per topic, the model whose strict validation replaces the JSON Schema check, or None."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._models: dict[str, type[BaseModel] | None] = {}

    def model(self, topic: str) -> type[BaseModel] | None:
        found = self._models.get(topic, _UNDECIDED)
        if found is _UNDECIDED:
            found = self._find(topic)
        return found  # type: ignore[return-value]

    def _find(self, topic: str) -> type[BaseModel] | None:
        entry = self.registry.topics.topics.get(topic)
        schema = entry.schema if entry is not None else None
        if schema is None:
            self._models[topic] = None
            return None
        wanted: Any = None
        waiting = False  # a subscriber started from the lock whose model is not imported yet
        for step in self.registry.subscribers(topic):
            if step.input_schema is None:
                continue
            if step.input_model is None:
                # Not imported yet (``load`` is set until it is); a step of another language,
                # or a Python step whose input is a JSON Schema dict, has no model to wait for:
                # the answer is kept (it was worked out again for every emit of their topics).
                waiting = waiting or step.load is not None
                continue
            if wanted is None:
                wanted = normalize_schema(schema)
            if normalize_schema(step.input_schema) == wanted:
                self._models[topic] = step.input_model
                return step.input_model
        if not waiting:
            self._models[topic] = None
        return None
