"""Step configs (validated with pydantic at the edge) and the language-agnostic step record."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wistro.core.json_schema import model_schema
from wistro.errors import StepLoadError

StepType = Literal["event", "api", "cron", "noop"]
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def schema_of(obj: Any) -> dict[str, Any] | None:
    """JSON Schema of a pydantic model, or a JSON Schema given as a dict."""
    if obj is None:
        return None
    if is_model(obj):
        return model_schema(obj)
    return dict(obj)


def _schema_at(obj: Any, key: str, cfg: StepConfig, file: Path, line: int | None) -> Any:
    """``schema_of(obj)`` for the config key ``key``; a model with no JSON Schema (a field
    pydantic cannot describe, say) is a load error of the step, not a crash of the whole load."""
    try:
        return schema_of(obj)
    except Exception as e:
        raise StepLoadError(
            f"its model {getattr(obj, '__name__', obj)!r} has no JSON Schema: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": "),
            file=file,
            line=line,
            step=cfg.name,
            field=key,
        ) from e


class EmitDecl(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)

    topic: str = Field(min_length=1)
    label: str | None = None
    conditional: bool = False
    payload_schema: Any = Field(default=None, alias="schema")

    @field_validator("payload_schema")
    @classmethod
    def _schema(cls, v: Any) -> Any:
        if v is not None and not is_model(v) and not isinstance(v, dict):
            raise ValueError("must be a pydantic model class or a JSON Schema dict")
        return v


def _emit_list(v: Any) -> Any:
    if isinstance(v, str | dict):
        v = [v]
    return [{"topic": item} if isinstance(item, str) else item for item in (v or [])]


class StepConfig(BaseModel):
    """The ``config`` of a step file, in any language."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    type: StepType = "event"
    name: str = Field(min_length=1)
    description: str | None = None
    subscribes: list[str] = []
    emits: list[EmitDecl] = []
    virtual_subscribes: list[str] = []
    virtual_emits: list[EmitDecl] = []
    input: Any = None
    flows: list[str] = []
    concurrency: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0)
    retry_backoff_s: float = Field(default=0.1, ge=0)
    # api steps (served by the HTTP trigger)
    path: str | None = None
    method: str | None = None
    body: Any = None
    query: Any = None
    responses: dict[int | str, Any] | None = None
    auth: dict[str, Any] | None = None
    strict: bool = False  # no lax coercion of the body ("1" is not an integer)
    # cron steps
    cron: str | None = None
    timezone: str | None = None
    allow_overlap: bool = False  # start a run even while the previous one is still running
    # Python steps: "process" runs the handler in worker processes (docs/steps.md); None: the
    # project's default (``runtimes.python.mode``), else in-process
    runtime: Literal["inline", "process"] | None = None

    @field_validator("subscribes", "virtual_subscribes", "flows", mode="before")
    @classmethod
    def _str_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("emits", "virtual_emits", mode="before")
    @classmethod
    def _emits(cls, v: Any) -> Any:
        return _emit_list(v)

    @field_validator("input", "body", "query")
    @classmethod
    def _schema(cls, v: Any) -> Any:
        if v is not None and not is_model(v) and not isinstance(v, dict):
            raise ValueError("must be a pydantic model class or a JSON Schema dict")
        return v

    @model_validator(mode="after")
    def _by_type(self) -> StepConfig:
        if self.type == "api":
            if not self.path or not self.path.startswith("/"):
                raise ValueError("an api step needs a 'path' starting with '/'")
            self.method = (self.method or "POST").upper()
            if self.method not in HTTP_METHODS:
                raise ValueError(f"unknown HTTP method {self.method!r}")
        if self.strict and self.type != "api":
            raise ValueError("'strict' applies to api steps only")
        if self.type == "cron" and not self.cron:
            raise ValueError("a cron step needs a 'cron' expression")
        if self.type == "event" and not self.subscribes:
            raise ValueError("an event step needs 'subscribes' (the topics it receives)")
        if self.type == "noop" and (self.subscribes or self.emits):
            raise ValueError("a noop step is never run: use 'virtual_subscribes' / 'virtual_emits'")
        return self


@dataclass(slots=True, frozen=True)
class Emit:
    topic: str
    label: str | None = None
    conditional: bool = False


Invoke = Callable[[Any, Any], Awaitable[Any]]


@dataclass(eq=False)
class StepRecord:
    """One step, whatever its language. Built from a step file or from the lock."""

    name: str
    file: Path  # absolute
    rel_file: str  # posix path relative to the project root
    language: str
    type: str
    hash: str
    description: str | None = None
    subscribes: tuple[str, ...] = ()
    emits: tuple[Emit, ...] = ()
    virtual_subscribes: tuple[str, ...] = ()
    virtual_emits: tuple[Emit, ...] = ()
    flows: tuple[str, ...] = ()
    input_schema: dict[str, Any] | None = None
    emit_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    concurrency: int | None = None
    timeout_s: float | None = None
    retries: int | None = None
    retry_backoff_s: float = 0.1
    trigger: dict[str, Any] = field(default_factory=dict)  # api: path/method/...; cron: cron/tz
    line: int | None = None  # where ``config`` is defined
    active: bool = True
    runtime: str | None = None  # "inline" | "process" (Python steps); None: the project default
    # runtime side, filled by the language runtime (lazily when started from the lock)
    invoke: Invoke | None = field(default=None, repr=False)  # async (data, ctx) -> result
    input_model: builtins.type[BaseModel] | None = field(default=None, repr=False)
    body_model: builtins.type[BaseModel] | None = field(default=None, repr=False)  # api steps
    query_model: builtins.type[BaseModel] | None = field(default=None, repr=False)  # api steps
    load: Callable[[], None] | None = field(default=None, repr=False)  # lazy: None once imported
    load_error: str | None = field(default=None, repr=False)  # a stand-in for a broken file
    emit_topics: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.emit_topics = frozenset(e.topic for e in self.emits)

    def config_dict(self) -> dict[str, Any]:
        """The JSON-able config, as stored in the lock."""
        out: dict[str, Any] = {
            "type": self.type,
            "description": self.description,
            "subscribes": list(self.subscribes),
            "emits": [_emit_dict(e) for e in self.emits],
            "virtual_subscribes": list(self.virtual_subscribes),
            "virtual_emits": [_emit_dict(e) for e in self.virtual_emits],
            "flows": list(self.flows),
            "input_schema": self.input_schema,
            "emit_schemas": self.emit_schemas,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "retry_backoff_s": self.retry_backoff_s,
            "trigger": self.trigger,
            "line": self.line,
        }
        if self.runtime is not None:  # only when set: existing lock files stay byte-identical
            out["runtime"] = self.runtime
        return out

    @classmethod
    def from_config_dict(
        cls, name: str, root: Path, rel_file: str, language: str, hash: str, cfg: dict[str, Any]
    ) -> StepRecord:
        return cls(
            name=name,
            file=root / rel_file,
            rel_file=rel_file,
            language=language,
            type=cfg["type"],
            hash=hash,
            description=cfg.get("description"),
            subscribes=tuple(cfg.get("subscribes", ())),
            emits=tuple(Emit(**e) for e in cfg.get("emits", ())),
            virtual_subscribes=tuple(cfg.get("virtual_subscribes", ())),
            virtual_emits=tuple(Emit(**e) for e in cfg.get("virtual_emits", ())),
            flows=tuple(cfg.get("flows", ())),
            input_schema=cfg.get("input_schema"),
            emit_schemas=dict(cfg.get("emit_schemas") or {}),
            concurrency=cfg.get("concurrency"),
            timeout_s=cfg.get("timeout_s"),
            retries=cfg.get("retries"),
            retry_backoff_s=cfg.get("retry_backoff_s", 0.1),
            trigger=dict(cfg.get("trigger") or {}),
            line=cfg.get("line"),
            runtime=cfg.get("runtime"),
        )


def _emit_dict(e: Emit) -> dict[str, Any]:
    return {"topic": e.topic, "label": e.label, "conditional": e.conditional}


def record_from_config(
    cfg: StepConfig, file: Path, root: Path, language: str, hash: str, line: int | None
) -> StepRecord:
    trigger: dict[str, Any] = {}
    if cfg.type == "api":
        trigger = {
            "path": cfg.path,
            "method": cfg.method,
            "body_schema": _schema_at(cfg.body, "body", cfg, file, line),
            "query_schema": _schema_at(cfg.query, "query", cfg, file, line),
            "responses": {
                str(k): _schema_at(v, "responses", cfg, file, line)
                for k, v in (cfg.responses or {}).items()
            },
            "auth": cfg.auth,
        }
        if cfg.strict:  # only when set: existing lock files stay byte-identical
            trigger["strict"] = True
    elif cfg.type == "cron":
        trigger = {"cron": cfg.cron, "timezone": cfg.timezone}
        if cfg.allow_overlap:  # only when set: existing lock files stay byte-identical
            trigger["allow_overlap"] = True
    emit_schemas = {
        e.topic: schema
        for e in cfg.emits
        if (schema := _schema_at(e.payload_schema, "emits", cfg, file, line)) is not None
    }
    return StepRecord(
        name=cfg.name,
        file=file,
        rel_file=file.relative_to(root).as_posix(),
        language=language,
        type=cfg.type,
        hash=hash,
        description=cfg.description,
        subscribes=tuple(cfg.subscribes),
        emits=tuple(Emit(e.topic, e.label, e.conditional) for e in cfg.emits),
        virtual_subscribes=tuple(cfg.virtual_subscribes),
        virtual_emits=tuple(Emit(e.topic, e.label, e.conditional) for e in cfg.virtual_emits),
        flows=tuple(cfg.flows),
        input_schema=_schema_at(cfg.input, "input", cfg, file, line),
        emit_schemas=emit_schemas,
        concurrency=cfg.concurrency,
        timeout_s=cfg.timeout_s,
        retries=cfg.retries,
        retry_backoff_s=cfg.retry_backoff_s,
        trigger=trigger,
        line=line,
        runtime=cfg.runtime,
        input_model=cfg.input if is_model(cfg.input) else None,
        body_model=cfg.body if is_model(cfg.body) else None,
        query_model=cfg.query if is_model(cfg.query) else None,
    )
