"""Typed topics: one JSON Schema per topic, conflicts between declarations, payload validation."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
from pydantic import BaseModel

from wistro.config import ProjectConfig
from wistro.core.step import StepRecord
from wistro.errors import PayloadError, SchemaConflictError

_IGNORED_KEYS = {"title", "description", "examples"}


def normalize_schema(schema: Any) -> Any:
    """A schema without the parts that do not change what it accepts, for comparison."""
    if isinstance(schema, dict):
        return {k: normalize_schema(v) for k, v in schema.items() if k not in _IGNORED_KEYS}
    if isinstance(schema, list):
        return [normalize_schema(v) for v in schema]
    return schema


@dataclass
class SchemaSource:
    schema: dict[str, Any]
    origin: str  # "step 'Charge card' input"
    file: str | None
    line: int | None


@dataclass
class Topic:
    name: str
    schema: dict[str, Any] | None = None
    sources: list[SchemaSource] = field(default_factory=list)
    subscribers: list[str] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)  # steps, endpoints, crons
    virtual_subscribers: list[str] = field(default_factory=list)
    virtual_producers: list[str] = field(default_factory=list)


Validator = Callable[[Any], Any]


def _field_path(name: str) -> str:
    path = name.removeprefix("data").lstrip(".")
    return re.sub(r"\[(\d+)\]", r".\1", path).lstrip(".") or "(payload)"


def _compile(schema: dict[str, Any]) -> Callable[[Any], Any]:
    try:
        return fastjsonschema.compile(schema, use_default=False)
    except fastjsonschema.JsonSchemaDefinitionException:
        # Formats the validator does not know (pydantic emits several) are annotations only.
        def strip(s: Any) -> Any:
            if isinstance(s, dict):
                return {k: strip(v) for k, v in s.items() if k != "format"}
            if isinstance(s, list):
                return [strip(v) for v in s]
            return s

        return fastjsonschema.compile(strip(schema), use_default=False)


class TopicCatalog:
    """Every topic the project knows, its schema, producers and subscribers."""

    def __init__(self, records: Iterable[StepRecord], config: ProjectConfig | None = None) -> None:
        self.topics: dict[str, Topic] = {}
        self.conflicts: list[SchemaConflictError] = []
        self._validators: dict[str, Validator] = {}
        for r in records:
            for t in r.subscribes:
                topic = self._topic(t)
                topic.subscribers.append(r.name)
                if r.input_schema is not None:
                    self._add_schema(topic, r.input_schema, f"input of step {r.name!r}", r)
            for e in r.emits:
                topic = self._topic(e.topic)
                topic.producers.append(r.name)
                if (s := r.emit_schemas.get(e.topic)) is not None:
                    self._add_schema(topic, s, f"emit declaration of step {r.name!r}", r)
            for t in r.virtual_subscribes:
                self._topic(t).virtual_subscribers.append(r.name)
            for e in r.virtual_emits:
                self._topic(e.topic).virtual_producers.append(r.name)
        if config is not None:
            for ep in config.api:
                topic = self._topic(ep.emits)
                topic.producers.append(f"{ep.method.upper()} {ep.path}")
                if ep.body is not None:
                    self._add_schema(topic, ep.body, f"body of endpoint {ep.path}", None)
            for job_name, job in config.cron.items():
                self._topic(job.emits).producers.append(f"cron {job_name}")

    def _topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(name)
        return topic

    def _add_schema(
        self, topic: Topic, schema: dict[str, Any], origin: str, record: StepRecord | None
    ) -> None:
        src = SchemaSource(
            schema,
            origin,
            record.rel_file if record else None,
            record.line if record else None,
        )
        if topic.schema is None:
            topic.schema = schema
        elif normalize_schema(schema) != normalize_schema(topic.schema):
            first = topic.sources[0]
            where = f"{first.file}:{first.line}" if first.file else first.origin
            self.conflicts.append(
                SchemaConflictError(
                    f"payload type disagrees with {first.origin} ({where})",
                    file=src.file,
                    line=src.line,
                    topic=topic.name,
                    step=record.name if record else None,
                    hint=_schema_difference(first.schema, schema),
                )
            )
        topic.sources.append(src)

    # ------------------------------------------------------------ queries
    def __contains__(self, name: object) -> bool:
        return name in self.topics

    def __iter__(self) -> Any:
        return iter(self.topics.values())

    def schemas(self) -> dict[str, dict[str, Any] | None]:
        return {name: t.schema for name, t in sorted(self.topics.items())}

    @classmethod
    def from_schemas(cls, schemas: dict[str, dict[str, Any] | None]) -> TopicCatalog:
        catalog = cls(())
        for name, schema in schemas.items():
            catalog._topic(name).schema = schema
        return catalog

    # ------------------------------------------------------------ validation
    def validator(self, topic: str) -> Validator:
        """A function that returns the JSON-ready payload or raises PayloadError."""
        v = self._validators.get(topic)
        if v is None:
            v = self._validators[topic] = self._make_validator(topic)
        return v

    def _make_validator(self, topic_name: str) -> Validator:
        topic = self.topics.get(topic_name)
        schema = topic.schema if topic else None
        check = _compile(schema) if schema is not None else None

        def validate(data: Any) -> Any:
            if isinstance(data, BaseModel):
                data = data.model_dump(mode="json")
            if check is not None:
                try:
                    check(data)
                except fastjsonschema.JsonSchemaValueException as e:
                    name = e.name or "data"
                    field_path = _field_path(name)
                    problem = e.message.removeprefix(name).strip() or e.message
                    if e.rule == "required" and isinstance(e.value, dict):
                        missing = [k for k in e.rule_definition if k not in e.value]
                        if missing:
                            prefix = "" if field_path == "(payload)" else field_path + "."
                            field_path = prefix + missing[0]
                            problem = "is required" + (
                                f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
                            )
                    raise PayloadError(
                        f"invalid payload: {problem}",
                        topic=topic_name,
                        field=field_path,
                    ) from None
            return data

        return validate


def _schema_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    pa, pb = a.get("properties") or {}, b.get("properties") or {}
    diffs = []
    for key in sorted(set(pa) | set(pb)):
        if key not in pb:
            diffs.append(f"{key!r} only in the first")
        elif key not in pa:
            diffs.append(f"{key!r} only in the second")
        elif normalize_schema(pa[key]) != normalize_schema(pb[key]):
            diffs.append(
                f"{key!r}: {json.dumps(normalize_schema(pa[key]))} vs "
                f"{json.dumps(normalize_schema(pb[key]))}"
            )
    if set(a.get("required") or []) != set(b.get("required") or []):
        diffs.append(
            f"required {sorted(a.get('required') or [])} vs {sorted(b.get('required') or [])}"
        )
    return "; ".join(diffs) or "the schemas differ"
