"""wistro.yml / wistro.json: pydantic models, line-aware parsing, ${VAR} interpolation, env files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from wistro.errors import ConfigError
from wistro.versions.split import Split

CONFIG_NAMES = ("wistro.yml", "wistro.yaml", "wistro.json")
DEFAULT_ENV = "dev"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FlowConfig(_Strict):
    name: str | None = None
    description: str | None = None


class StateConfig(_Strict):
    adapter: Literal["memory", "file", "redis"] = "file"
    path: str | None = None  # folder of the file adapter, default .wistro/state
    url: str | None = None  # redis


class BusConfig(_Strict):
    # memory: this process only (the default of wistro.load, notebooks, tests); local: a durable
    # journal under .wistro/ (the default of dev/start/worker); redis: Redis Streams.
    adapter: Literal["memory", "local", "redis"] | None = None
    path: str | None = None  # the local journal, default .wistro/bus.db
    url: str | None = None  # redis, default redis.url
    visibility_timeout_s: float = Field(default=30.0, gt=0)  # a dead worker's deliveries return
    max_deliveries: int = Field(default=10, ge=1)  # redeliveries of a crashing delivery, then dead


class RedisConfig(_Strict):
    url: str | None = None  # shared by the redis bus, state and traces; default $REDIS_URL
    prefix: str | None = None  # key prefix, default wistro:<project name>:<environment>


class OtlpConfig(_Strict):
    """``traces.otlp``: export spans and logs to an OpenTelemetry collector (OTLP/HTTP)."""

    endpoint: str  # the base URL, e.g. http://collector:4318 (spans: /v1/traces, logs: /v1/logs)
    headers: dict[str, str] = {}  # sent with every export (an API key)
    service_name: str | None = None  # resource service.name, default the project's name
    timeout_s: float = Field(default=10.0, gt=0)  # per export request, retries included


class TracesConfig(_Strict):
    # sqlite: a file per machine; memory: this process only; redis: shared by every process on
    # the Redis (the default when bus.adapter is redis, else sqlite).
    adapter: Literal["sqlite", "memory", "redis"] | None = None
    path: str | None = None  # sqlite, default .wistro/traces.db
    url: str | None = None  # redis, default redis.url
    retention_runs: int = Field(default=10_000, ge=1)
    # Who writes sqlite/redis traces: a writer process once this one is busy (auto), from the
    # start (process), or always a thread of this process (thread).
    writer: Literal["auto", "process", "thread"] = "auto"
    otlp: OtlpConfig | None = None  # OpenTelemetry export (the `otel` extra), off by default


class EngineConfig(_Strict):
    max_in_flight: int = Field(default=10_000, ge=1)
    default_concurrency: int = Field(default=16, ge=1)
    default_timeout_s: float | None = Field(default=None, gt=0)
    default_retries: int = Field(default=0, ge=0)
    # A plain ``def`` handler's ctx.state / ctx.emit call gives up after this long.
    sync_call_timeout_s: float = Field(default=30.0, gt=0)
    # Report an event loop blocked this long by a step (0: off).
    block_warn_ms: float = Field(default=100.0, ge=0)
    # Freeze what is loaded and collect garbage less often (wistro.collector).
    tune_gc: bool = True


class WorkerPoolConfig(_Strict):
    """``runtimes.node`` / ``runtimes.go``: the language's worker processes."""

    workers: int = Field(default=1, ge=1, le=64)  # processes; a stuck step stalls only its own
    kill_grace_s: float = Field(default=2.0, gt=0)  # past a handler's timeout: its worker killed


class PythonPoolConfig(WorkerPoolConfig):
    """``runtimes.python``: the worker processes of ``runtime: process`` Python steps, and
    ``mode``, the project's default for the steps that do not say (docs/steps.md)."""

    mode: Literal["inline", "process"] = "inline"


class RuntimesConfig(_Strict):
    """``runtimes:``: the worker languages (docs/worker-protocol.md)."""

    node: WorkerPoolConfig = WorkerPoolConfig()
    go: WorkerPoolConfig = WorkerPoolConfig()
    python: PythonPoolConfig = PythonPoolConfig()


class ApiEndpointConfig(_Strict):
    path: str
    method: str = "POST"
    emits: str
    flows: list[str] = []
    description: str | None = None
    body: dict[str, Any] | None = None
    auth: dict[str, Any] | None = None
    strict: bool = False  # no lax coercion of the body ("1" is not an integer)


def _host_pattern(pattern: str) -> str:
    from wistro.triggers.hosts import check_host_pattern

    if problem := check_host_pattern(pattern):
        raise PydanticCustomError("host_pattern", "{problem}", {"problem": problem})
    return pattern


class HttpConfig(_Strict):
    """``http:``: limits and trusted hosts of the HTTP trigger (docs/triggers.md)."""

    # Host header values accepted besides loopback names and the bound address; "*": any.
    trusted_hosts: list[Annotated[str, AfterValidator(_host_pattern)]] = []
    body_timeout_s: float = Field(default=10.0, gt=0)  # whole body, from the end of the headers
    header_timeout_s: float = Field(default=10.0, gt=0)  # request headers, per request
    # An idle connection between requests: longer than the clients' pools keep one (httpx 5 s,
    # aiohttp 15 s), so a client never reuses a connection the server is closing.
    keep_alive_s: float = Field(default=75.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)  # open connections; beyond: 503


class CronJobConfig(_Strict):
    cron: str
    emits: str
    payload: dict[str, Any] = {}
    flows: list[str] = []
    timezone: str | None = None
    description: str | None = None
    allow_overlap: bool = False  # start a run even while the previous one is still running


def _split(value: dict[str, Any]) -> dict[str, Any]:
    if value:
        Split.parse(value)  # a ConfigError (a ValueError) names the bad version or weight
    return value


class ProjectConfig(_Strict):
    name: str | None = None
    src: str = "src"
    flows: dict[str, FlowConfig] = {}
    api: list[ApiEndpointConfig] = []
    cron: dict[str, CronJobConfig] = {}
    state: StateConfig = StateConfig()
    bus: BusConfig = BusConfig()
    redis: RedisConfig = RedisConfig()
    traces: TracesConfig = TracesConfig()
    engine: EngineConfig = EngineConfig()
    http: HttpConfig = HttpConfig()
    runtimes: RuntimesConfig = RuntimesConfig()
    inactive: list[str] = []
    # The default traffic split between live versions ({v1: 25, v2: 75, sticky: field}).
    traffic: Annotated[dict[str, Any], AfterValidator(_split)] = {}
    env_file: str | None = None
    environments: dict[str, dict[str, Any]] = {}


# ---------------------------------------------------------------- reading


def _yaml_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _yaml_lines(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _yaml_lines(item, (*path, i), out)


# libyaml's parser when PyYAML was built with it (its wheels are): 15x faster on a big file.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_and_construct(text: str) -> tuple[Any, Any]:
    """The document's node (for line numbers) and its data, from one parse (``safe_load`` and
    ``compose`` parsed it twice)."""
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def read_raw(file: Path) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    """Parse a config file into plain data and a map from key path to line number."""
    text = file.read_text(encoding="utf-8")
    lines: dict[tuple[Any, ...], int] = {}
    if file.suffix == ".json":
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"invalid JSON: {e.msg}", file=file, line=e.lineno) from None
    else:
        try:
            node, data = _compose_and_construct(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark else None
            raise ConfigError(f"YAML syntax error: {e.problem}", file=file, line=line) from None
        if node is not None:
            _yaml_lines(node, (), lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", file=file, line=1)
    return data, lines


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str], where: tuple[Any, ...], on_missing: Any) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``value``."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            on_missing(name, where)
            return ""

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, (*where, k), on_missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, (*where, i), on_missing) for i, v in enumerate(value)]
    return value


def read_env_file(file: Path) -> dict[str, str]:
    """A small dotenv reader: KEY=VALUE lines, ``export`` prefix, quotes, ``#`` comments."""
    values: dict[str, str] = {}
    for n, raw in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError("expected KEY=VALUE", file=file, line=n)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    file: Path | None, root: Path, env_name: str = DEFAULT_ENV
) -> tuple[ProjectConfig, dict[str, str]]:
    """Read, overlay the environment, interpolate and validate. Returns the config and the
    variables read from env files (also exported to ``os.environ`` where not already set)."""
    if file is None:
        if env_name != DEFAULT_ENV:
            raise ConfigError(f"unknown environment {env_name!r}: the project has no wistro.yml")
        return ProjectConfig(), {}
    raw, lines = read_raw(file)
    return resolve_config(raw, lines, file, root, env_name)


def resolve_config(
    raw: dict[str, Any],
    lines: dict[tuple[Any, ...], int],
    file: Path | None,
    root: Path,
    env_name: str = DEFAULT_ENV,
) -> tuple[ProjectConfig, dict[str, str]]:
    """Overlay the environment on raw config data, interpolate, validate."""
    if not raw and env_name == DEFAULT_ENV:
        return ProjectConfig(), {}
    envs = raw.get("environments") or {}
    if not isinstance(envs, dict):
        raise ConfigError(
            "'environments' must be a mapping", file=file, line=lines.get(("environments",))
        )
    overlay: dict[str, Any] = {}
    if env_name in envs:
        overlay = envs[env_name] or {}
        if not isinstance(overlay, dict):
            raise ConfigError(
                f"environment {env_name!r} must be a mapping",
                file=file,
                line=lines.get(("environments", env_name)),
            )
        for path, line in list(lines.items()):
            if path[:2] == ("environments", env_name) and len(path) > 2:
                lines[path[2:]] = line
    elif env_name != DEFAULT_ENV:
        known = ", ".join(sorted(envs)) or "none"
        raise ConfigError(
            f"unknown environment {env_name!r} (known: {known})",
            file=file,
            line=lines.get(("environments",)),
        )
    merged = _deep_merge({k: v for k, v in raw.items() if k != "environments"}, overlay)

    env_vars: dict[str, str] = {}
    for env_file in (raw.get("env_file"), overlay.get("env_file")):
        if env_file:
            env_path = root / str(env_file)
            if not env_path.is_file():
                raise ConfigError(
                    f"env_file {env_file!r} does not exist",
                    file=file,
                    line=lines.get(("env_file",)),
                )
            env_vars.update(read_env_file(env_path))
    for key, value in env_vars.items():
        os.environ.setdefault(key, value)
    lookup = {**env_vars, **os.environ}

    def missing(name: str, where: tuple[Any, ...]) -> None:
        raise ConfigError(
            f"environment variable ${{{name}}} is not set",
            file=file,
            line=lines.get(where),
            field=".".join(map(str, where)),
            hint=f"export {name}=… or add it to an env_file",
        )

    merged = interpolate(merged, lookup, (), missing)
    merged["environments"] = envs
    try:
        config = ProjectConfig.model_validate(merged)
    except PydanticValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        field = ".".join(map(str, loc))
        where: int | None = None
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                where = lines[loc[:n]]
                break
        problem = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{problem}{more}", file=file, line=where, field=field) from None
    return config, env_vars
