"""What a handler receives as ``ctx``: emit, state, logger, trace id, step name and flows.

Every method works from an ``async def`` handler (await it) and from a plain ``def`` handler,
which runs in a worker thread (call it; the result comes back directly).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from pydantic import BaseModel

from wistro.core.fast_json import ORJSON_OPTIONS
from wistro.core.loop_call import LoopCallTimeout, call_on_loop
from wistro.core.observer import notify
from wistro.errors import EngineCallTimeout, StateError
from wistro.state.base import StateAdapter
from wistro.tracing.records import LogRecord, StateOpRecord

if TYPE_CHECKING:
    from wistro.config import EngineConfig
    from wistro.core.observer import Observer
    from wistro.core.run import Run
    from wistro.core.step import StepRecord
    from wistro.tracing.recorder import Recorder


class Engine(Protocol):
    """What ``ctx`` needs of the engine (the engine implements it; the context never imports
    the engine module, so the dependency goes one way)."""

    loop: asyncio.AbstractEventLoop | None
    loop_thread: int | None
    config: EngineConfig
    state: StateAdapter
    recorder: Recorder
    observers: list[Observer]

    def emit_from_step(
        self, step: StepRecord, run: Run, span_id: str, topic: str, data: Any
    ) -> None: ...

    def emit_from_thread(
        self, step: StepRecord, run: Run, span_id: str, topic: str, data: Any
    ) -> None: ...


class _Done:
    """An already finished awaitable: ``await ctx.emit(...)`` and ``ctx.emit(...)`` both work."""

    __slots__ = ()

    def __await__(self) -> Any:
        return
        yield  # pragma: no cover - makes this a generator


DONE = _Done()


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
# orjson first (a tenth of the stdlib's time: every log line and state write), the stdlib encoder
# where they could differ: what orjson refuses (ints over 64 bits, keys that are not str, lone
# surrogates; datetimes and dataclasses, passed on to be refused as before) and any text with a
# null in it, which orjson also writes for NaN and the infinities (the stdlib keeps those).
# orjson also writes UUIDs and enums (as their value), which the stdlib refuses.
_fast = orjson.dumps


def to_json(value: Any) -> str:
    """Compact JSON text, as ``json.dumps(value, separators=(",", ":"))`` reads back; pydantic
    models as their JSON dump."""
    try:
        out = _fast(value, default=_json_default, option=ORJSON_OPTIONS)
    except TypeError:
        return _encode(value)
    if b"null" in out:
        return _encode(value)
    return out.decode()


class _ThreadAware:
    """Runs a coroutine on the engine's loop: returned as-is on the loop thread (to be awaited),
    or run to completion from a worker thread (the value is returned)."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _call(self, coro: Coroutine[Any, Any, Any], what: str = "the call") -> Any:
        engine = self._engine
        if engine.loop_thread is None or threading.get_ident() == engine.loop_thread:
            return coro
        assert engine.loop is not None
        limit = engine.config.sync_call_timeout_s
        try:
            return call_on_loop(engine.loop, coro, limit)
        except LoopCallTimeout:
            raise self._timed_out(what, limit) from None

    def _timed_out(self, what: str, limit: float) -> Exception:
        return EngineCallTimeout(
            f"{what} from a plain `def` handler did not complete within {limit:g}s "
            "(the event loop is blocked or overloaded)",
            hint="see engine.sync_call_timeout_s in wistro.yml",
        )


class StateView(_ThreadAware):
    """``ctx.state``: JSON values in groups (usually the trace id), every operation traced."""

    __slots__ = ("_run", "_span_id", "_step")

    def __init__(self, engine: Engine, run: Run | None, span_id: str | None, step: str | None):
        super().__init__(engine)
        self._run, self._span_id, self._step = run, span_id, step

    @property
    def _adapter(self) -> StateAdapter:
        return self._engine.state

    def _record(self, op: str, group: str, key: str | None, value_json: str | None) -> None:
        run = self._run
        if run is None:
            return
        rec = StateOpRecord(
            run.trace_id, self._span_id, self._step, op, group, key, value_json, time.time()
        )
        run.state_records.append(rec)
        self._engine.recorder.state_op(rec)

    def _timed_out(self, what: str, limit: float) -> Exception:
        return StateError(
            f"{what} did not complete within {limit:g}s (the event loop is blocked or overloaded)",
            step=self._step,
            hint="see engine.sync_call_timeout_s in wistro.yml",
        )

    def _error(self, e: StateError) -> StateError:
        e.step = e.step or self._step
        e.args = (e.format(),)
        return e

    def _decode(self, raw: str, group: str, key: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError as e:
            raise StateError(
                f"group {group!r}, key {key!r}: the stored value is not valid JSON ({e})",
                file=self._adapter.where(group, key),
                step=self._step,
                hint="fix the value or delete it (`ctx.state.delete`, or remove the file)",
            ) from None

    def _encode(self, value: Any, group: str, key: str) -> str:
        try:
            return to_json(value)
        except (TypeError, ValueError) as e:
            raise StateError(
                f"value for key {key!r} in group {group!r} is not JSON: {e}",
                step=self._step,
                field=key,
                hint="store dicts, lists, str, int, float, bool, None or pydantic models",
            ) from None

    def get(self, group: str, key: str) -> Any:
        return self._call(self._get(group, key), f"state get {group!r}/{key!r}")

    async def _get(self, group: str, key: str) -> Any:
        try:
            raw = await self._adapter.get(group, key)
        except StateError as e:
            raise self._error(e) from None
        self._record("get", group, key, raw)
        return self._decode(raw, group, key) if raw is not None else None

    def set(self, group: str, key: str, value: Any) -> Any:
        return self._call(self._set(group, key, value), f"state set {group!r}/{key!r}")

    async def _set(self, group: str, key: str, value: Any) -> None:
        raw = self._encode(value, group, key)
        try:
            await self._adapter.set(group, key, raw)
        except StateError as e:
            raise self._error(e) from None
        self._record("set", group, key, raw)

    def update(self, group: str, key: str, fn: Callable[[Any], Any]) -> Any:
        """Atomic read-modify-write: ``fn(current value or None) -> new value``, with no other
        write to the key in between. Returns the new value. ``get`` then ``set`` is not atomic:
        two handlers doing it at once lose one of the writes; ``update`` never does."""
        return self._call(self._update(group, key, fn), f"state update {group!r}/{key!r}")

    async def _update(self, group: str, key: str, fn: Callable[[Any], Any]) -> Any:
        result: list[Any] = []

        def apply(raw: str | None) -> str:
            current = self._decode(raw, group, key) if raw is not None else None
            new = fn(current)
            result.append(new)
            return self._encode(new, group, key)

        try:
            raw = await self._adapter.update(group, key, apply)
        except StateError as e:
            raise self._error(e) from None
        self._record("update", group, key, raw)
        return result[-1]

    def delete(self, group: str, key: str) -> Any:
        return self._call(self._delete(group, key), f"state delete {group!r}/{key!r}")

    async def _delete(self, group: str, key: str) -> None:
        try:
            await self._adapter.delete(group, key)
        except StateError as e:
            raise self._error(e) from None
        self._record("delete", group, key, None)

    def get_group(self, group: str) -> Any:
        return self._call(self._get_group(group), f"state get_group {group!r}")

    async def _get_group(self, group: str) -> dict[str, Any]:
        try:
            items = await self._adapter.get_group(group)
        except StateError as e:
            raise self._error(e) from None
        self._record("get_group", group, None, None)
        return {k: self._decode(v, group, k) for k, v in items.items()}

    def clear(self, group: str) -> Any:
        return self._call(self._clear(group), f"state clear {group!r}")

    async def _clear(self, group: str) -> None:
        try:
            await self._adapter.clear(group)
        except StateError as e:
            raise self._error(e) from None
        self._record("clear", group, None, None)

    def groups(self) -> Any:
        return self._call(self._adapter.groups(), "state groups")


class Logger:
    """``ctx.logger``: structured logs bound to the trace, the span and the step."""

    __slots__ = ("_engine", "_run", "_span_id", "_step")

    def __init__(self, engine: Engine, run: Run | None, span_id: str | None, step: str | None):
        self._engine, self._run, self._span_id, self._step = engine, run, span_id, step

    def log(self, level: str, message: str, /, **fields: Any) -> None:
        try:
            fields_json = to_json(fields)
        except (TypeError, ValueError):
            fields_json = to_json({k: repr(v) for k, v in fields.items()})
        run = self._run
        rec = LogRecord(
            run.trace_id if run else "",
            self._span_id,
            self._step,
            level,
            str(message),
            fields_json,
            time.time(),
        )
        engine = self._engine
        if run is not None:
            run.log_records.append(rec)
        engine.recorder.log(rec)
        if engine.observers:
            notify(engine.observers, "on_log", rec)

    def debug(self, message: str, **fields: Any) -> None:
        self.log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("warning", message, **fields)

    warn = warning

    def error(self, message: str, **fields: Any) -> None:
        self.log("error", message, **fields)


class Context(_ThreadAware):
    """The handler's view of the engine."""

    __slots__ = ("_event_id", "_logger", "_record", "_run", "_span_id", "_state")

    def __init__(
        self, engine: Engine, record: StepRecord, run: Run, span_id: str, event_id: str = ""
    ) -> None:
        self._engine = engine  # _ThreadAware's, set here: one per delivery
        self._record = record
        self._run = run
        self._span_id = span_id
        self._event_id = event_id
        self._logger: Logger | None = None
        self._state: StateView | None = None

    @property
    def delivery_id(self) -> str:
        """The same for every attempt, redelivery (after a crash) and replay of this delivery of
        this event to this step: an idempotency key for side effects (delivery is at least once).
        A direct call (an api request, a cron tick) has no delivery: its span id."""
        if not self._event_id:
            return self._span_id
        return f"{self._event_id}/{self._record.name}"

    @property
    def trace_id(self) -> str:
        return self._run.trace_id

    @property
    def step(self) -> str:
        return self._record.name

    @property
    def flows(self) -> tuple[str, ...]:
        return self._record.flows

    @property
    def span_id(self) -> str:
        return self._span_id

    @property
    def logger(self) -> Logger:
        if self._logger is None:
            self._logger = Logger(self._engine, self._run, self._span_id, self._record.name)
        return self._logger

    @property
    def state(self) -> StateView:
        if self._state is None:
            self._state = StateView(self._engine, self._run, self._span_id, self._record.name)
        return self._state

    def emit(self, topic: str, data: Any = None) -> Any:
        """Emit ``data`` on ``topic``. Validated now: an undeclared topic or an invalid payload
        raises here, naming the step, topic and field."""
        engine = self._engine
        if engine.loop_thread is None or threading.get_ident() == engine.loop_thread:
            engine.emit_from_step(self._record, self._run, self._span_id, topic, data)
            return DONE
        engine.emit_from_thread(self._record, self._run, self._span_id, topic, data)
        return None

    def __repr__(self) -> str:
        return f"<Context step={self.step!r} trace={self.trace_id[:12]}>"
