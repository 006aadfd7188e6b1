"""The Workbench protocol: one request (``{"op", "args"}``) in, one reply (``{"ok": true,
"result"}`` or ``{"ok": false, "error": "<one line>"}``) out, plain JSON values both ways.

The same :class:`Workbench` answers in a Jupyter kernel (over the ``wistro.workbench`` comm, on the
session's app) and in a running ``wistro dev`` / ``wistro start`` (``POST /_wistro/workbench``, on
the server's app). ``docs/workbench.md`` lists the ops. Reads of the trace store and the state run
off the event loop (``asyncio.to_thread``); nothing waits without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from wistro.errors import PayloadError, WistroError
from wistro.workbench.graph import graph_data

if TYPE_CHECKING:
    from wistro.app import App
    from wistro.tracing.store import TraceStore

Source = Literal["kernel", "server"]
Reply = dict[str, Any]
Handler = Callable[["Workbench", "App", dict[str, Any]], Awaitable[Any]]

DEFAULT_RUNS = 100
MAX_RUNS = 1000
FLOW_SCAN = 2000  # runs looked at, newest first, to find `limit` of one flow
DEFAULT_LOGS = 200
MAX_LOGS = 5000
MAX_STATE_ITEMS = 500
DEFAULT_DEAD = 100
EMIT_WAIT_S = 30.0  # an emit that waits replies with the status it has by then
REPLAY_WAIT_S = 60.0
CACHE_RUNS = 20_000  # steps of finished runs, remembered between `runs` polls
LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}
NO_APP = "no Wistro project is loaded"


class BadRequest(Exception):
    """A request the Workbench refuses; ``str()`` is the one line sent back."""


_MISSING: Any = object()


def _arg(
    op: str,
    args: dict[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    default: Any = _MISSING,
) -> Any:
    """``args[name]`` checked against ``kind`` (None stands for a missing optional argument)."""
    value = args.get(name, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise BadRequest(f"{op}: args.{name} is required")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        names = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        raise BadRequest(f"{op}: args.{name}: expected {names}, got {_json_type(value)}")
    return value


_KIND_NAMES: dict[type, str] = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    dict: "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _limit(op: str, args: dict[str, Any], default: int, most: int) -> int:
    limit = int(_arg(op, args, "limit", int, default))
    if not 1 <= limit <= most:
        raise BadRequest(f"{op}: args.limit: must be between 1 and {most}, got {limit}")
    return limit


def one_line(text: str) -> str:
    """An error as one line (a traceback or a multi-line message never reaches the UI)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) or "error"


def error_line(e: BaseException) -> str:
    """The reply's ``error``: ``<topic>: <field>: <message>`` for an invalid payload, the error's
    own one line for other Wistro errors, ``<Type>: <message>`` for anything else."""
    if isinstance(e, PayloadError) and e.topic:
        return one_line(f"{e.topic}: {e.field or '(payload)'}: {e.message}")
    if isinstance(e, WistroError | BadRequest):
        return one_line(str(e))
    return one_line(f"{type(e).__name__}: {e}")


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class Workbench:
    """Answers Workbench requests on the app ``app()`` gives (None: none is loaded yet).

    ``source`` and ``mode`` are what the ``project`` op reports; ``no_app`` is the error when no
    app is loaded (the kernel says to run ``%wistro load``); ``on_change`` runs after a toggle
    changed the registry (the kernel refreshes its graphs)."""

    def __init__(
        self,
        app: Callable[[], App | None],
        *,
        source: Source,
        mode: str | None = None,
        no_app: str = NO_APP,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._app = app
        self.source = source
        self.mode = mode
        self.no_app = no_app
        self.on_change = on_change
        self._run_steps: OrderedDict[str, list[str]] = OrderedDict()
        self._versions: dict[int, str | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, request: Any) -> Reply:
        """One request, one reply; never raises (a bug is an ``ok: false`` line too)."""
        try:
            op, args = parse_request(request)
            app = self._app()
            if app is None:
                raise BadRequest(self.no_app)
            result = await OPS[op](self, app, args)
        except Exception as e:
            return {"ok": False, "error": error_line(e)}
        return {"ok": True, "result": result}

    # ------------------------------------------------------------ helpers
    def _store(self, app: App) -> TraceStore:
        store = app.engine.store
        if store is None:
            raise BadRequest("this app keeps no trace store")
        return store

    async def _flush(self, app: App) -> None:
        """Write what the engine recorded so far, so that the store has it."""
        if app.engine.started:
            await app.engine.recorder.flush()

    def _version(self, app: App) -> str | None:
        version = app.engine.version
        if version is not None:
            return version
        key = id(app.registry)
        if key not in self._versions:
            from wistro.project.lock import build_lock, short_version

            try:
                self._versions = {
                    key: short_version(build_lock(app.project, app.registry)["version"])
                }
            except Exception:  # a project whose lock cannot be built has no version yet
                self._versions = {key: None}
        return self._versions[key]

    def _steps_of(self, store: TraceStore, row: dict[str, Any]) -> list[str]:
        """The steps a run ran, in order (finished runs remembered). In a worker thread."""
        trace_id = str(row["trace_id"])
        cached = self._run_steps.get(trace_id)
        if cached is not None:
            return cached
        try:
            spans = store.get_run(trace_id)["spans"]
        except WistroError:  # pruned meanwhile
            return []
        steps = list(dict.fromkeys(str(s["step"]) for s in spans))
        if row.get("status") != "running":
            self._run_steps[trace_id] = steps
            while len(self._run_steps) > CACHE_RUNS:
                self._run_steps.popitem(last=False)
        return steps

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def parse_request(request: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise BadRequest('request: expected {"op": str, "args": {...}}')
    op = request["op"]
    if op not in OPS:
        raise BadRequest(f"op {op!r}: unknown (known ops: {', '.join(OPS)})")
    args = request.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest(f"{op}: args: expected an object, got {_json_type(args)}")
    return op, args


# ---------------------------------------------------------------- the ops


async def op_project(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": app.project.name,
        "root": str(app.project.root),
        "version": wb._version(app),
        "source": wb.source,
        "bus": app.engine.bus.name,
        "n_steps": len(app.registry),
        "n_flows": len(app.registry.flows()),
    }
    if wb.mode is not None:
        out["mode"] = wb.mode
    return out


async def op_graph(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    flow = _arg("graph", args, "flow", str, None)
    return graph_data(app, flow or None)


async def op_flows(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "flows": [
            {
                "id": row["flow"],
                "name": row["name"],
                "description": row["description"],
                "steps": list(row["steps"]),
            }
            for row in app.flow_rows()
        ]
    }


async def op_steps(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "steps": [
            {
                "name": r.name,
                "type": r.type,
                "language": r.language,
                "file": r.rel_file,
                "line": r.line,
                "flows": list(r.flows),
                "subscribes": list(r.subscribes),
                "emits": [e.topic for e in r.emits],
                "active": r.active,
                "description": r.description,
            }
            for r in sorted(app.registry, key=lambda r: r.name)
        ]
    }


async def op_toggle(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    step = _arg("toggle", args, "step", str)
    active = _arg("toggle", args, "active", bool)
    record = app.activate(step) if active else app.deactivate(step)  # persisted, others told
    if wb.on_change is not None:
        wb.on_change()
    return {"step": record.name, "active": record.active}


async def op_topics(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    topics = app.registry.topics.topics
    return {
        "topics": [
            {
                "name": name,
                "schema": t.schema,
                "publishers": sorted(set(t.producers) | set(t.virtual_producers)),
                "subscribers": sorted(set(t.subscribers) | set(t.virtual_subscribers)),
            }
            for name, t in sorted(topics.items())
        ]
    }


async def op_emit(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    topic = _arg("emit", args, "topic", str)
    data = args.get("data")
    wait = _arg("emit", args, "wait", bool, True)
    timeout = float(_arg("emit", args, "timeout_s", (int, float), EMIT_WAIT_S))
    run = await app.emit(topic, data, wait=False, trigger="workbench")
    if wait and not run.done:
        # past the timeout the reply says "running": the UI follows it in `runs` / `trace`
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run.wait()), max(0.0, timeout))
    return {"trace_id": run.trace_id, "status": run.status}


async def op_runs(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    status = _arg("runs", args, "status", str, None)
    flow = _arg("runs", args, "flow", str, None)
    topic = _arg("runs", args, "topic", str, None)
    limit = _limit("runs", args, DEFAULT_RUNS, MAX_RUNS)
    after = _arg("runs", args, "after", (int, float), None)
    if flow is not None and flow not in app.registry.flows():
        known = ", ".join(app.registry.flows()) or "none"
        raise BadRequest(f"runs: flow {flow!r}: no such flow (known flows: {known})")
    store = wb._store(app)
    registry = app.registry
    await wb._flush(app)

    def read() -> list[dict[str, Any]]:
        fetch = limit if flow is None else min(FLOW_SCAN, max(limit * 4, 200))
        rows = store.list_runs(limit=fetch, status=status, topic=topic)
        out: list[dict[str, Any]] = []
        for row in rows:
            start = row["start"]
            if after is not None and start <= after:
                break  # newest first: the rest is older
            steps = wb._steps_of(store, row)
            flows = sorted({f for s in steps if s in registry for f in registry.get(s).flows})
            if flow is not None and flow not in flows:
                continue
            end = row.get("end")
            out.append(
                {
                    "trace_id": row["trace_id"],
                    "topic": row["topic"],
                    "trigger": row.get("trigger"),
                    "status": row["status"],
                    "start": start,
                    "end": end,
                    "duration_ms": (end - start) * 1000 if end is not None else None,
                    "n_events": row.get("n_events"),
                    "n_errors": row.get("n_errors"),
                    "flows": flows,
                    "steps": steps,
                }
            )
            if len(out) >= limit:
                break
        return out

    return {"runs": await asyncio.to_thread(read)}


async def op_trace(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    trace_id = _arg("trace", args, "trace_id", str)
    store = wb._store(app)
    await wb._flush(app)
    raw = await asyncio.to_thread(store.get_run, trace_id)
    languages = {r.name: r.language for r in app.registry}
    run = raw["run"]
    return {
        "trace_id": run["trace_id"],
        "status": run["status"],
        "topic": run["topic"],
        "trigger": run.get("trigger"),
        "start": run["start"],
        "end": run.get("end"),
        "spans": [
            {
                "id": s["id"],
                "parent_id": s.get("parent_span_id"),
                "step": s["step"],
                "topic": s["topic"],
                "event_id": s.get("event_id"),
                "attempt": s.get("attempt"),
                "status": s["status"],
                "start": s["start"],
                "end": s.get("end"),
                "error": s.get("error"),
                "language": languages.get(s["step"]),
            }
            for s in raw["spans"]
        ],
        "events": [
            {
                "id": e["id"],
                "topic": e["topic"],
                "data": _loads(e.get("data_json")),
                "source": e.get("source"),
                "parent_span_id": e.get("parent_span_id"),
                "ts": e["ts"],
                "error": e.get("error"),
            }
            for e in raw["events"]
        ],
        "logs": [_log(row) for row in raw["logs"]],
        "state_ops": [
            {
                "span_id": o.get("span_id"),
                "step": o.get("step"),
                "op": o["op"],
                "group": o["group"],
                "key": o.get("key"),
                "value": _loads(o.get("value_json")),
                "ts": o["ts"],
            }
            for o in raw["state_ops"]
        ],
    }


def _log(row: dict[str, Any]) -> dict[str, Any]:
    fields = _loads(row.get("fields_json")) or {}
    return {
        "time": row["ts"],
        "level": row["level"],
        "step": row.get("step"),
        "trace_id": row.get("trace_id"),
        "span_id": row.get("span_id"),
        "message": row["message"],
        "fields": fields if isinstance(fields, dict) else {"value": fields},
    }


def _dead(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "step": row["step"],
        "topic": row["topic"],
        "error": row["error"],
        "attempts": row["attempts"],
        "at": row["ts"],
        "trace_id": row["trace_id"],
        "data": _loads(row.get("data_json")),
    }


async def op_dead_letters(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    limit = _limit("dead_letters", args, DEFAULT_DEAD, MAX_RUNS)
    store = wb._store(app)
    await wb._flush(app)
    rows = await asyncio.to_thread(store.dead_letters)
    return {"dead_letters": [_dead(row) for row in rows[:limit]]}


async def op_replay(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    dead_id = _arg("replay", args, "id", str)
    timeout = float(_arg("replay", args, "timeout_s", (int, float), REPLAY_WAIT_S))
    store = wb._store(app)
    await wb._flush(app)
    dead = await asyncio.to_thread(store.get_dead_letter, dead_id)
    run = await app.engine.replay(dead, wait=False)

    async def settle() -> None:  # as `wistro replay`: a success marks it replayed
        await run.wait()
        if run.status == "ok":
            await asyncio.to_thread(store.mark_replayed, dead["id"])

    try:
        await asyncio.wait_for(asyncio.shield(settle()), max(0.0, timeout))
    except TimeoutError:
        wb._spawn(settle())  # still running: marked when it ends
    return {"id": dead["id"], "trace_id": run.trace_id, "status": run.status}


async def op_logs(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    after = _arg("logs", args, "after", int, None)
    limit = _limit("logs", args, DEFAULT_LOGS, MAX_LOGS)
    level = _arg("logs", args, "level", str, None)
    least = 0
    if level is not None:
        if level.lower() not in LEVELS:
            raise BadRequest(
                f"logs: args.level: {level!r} is not a level (debug, info, warning, error)"
            )
        least = LEVELS[level.lower()]
    store = wb._store(app)
    await wb._flush(app)

    def read() -> tuple[list[dict[str, Any]], int]:
        if after is None:  # the newest `limit`, and the cursor to follow from
            cursor = _last_seq(store)
            start = max(0, cursor - 4 * limit)
            rows = [r for r in _read_logs(store, start, cursor) if _level(r) >= least]
            while len(rows) < limit and start > 0:  # sparse seqs or a level filter: look further
                older, start = start, max(0, start - 16 * limit)
                rows = [
                    *(r for r in _read_logs(store, start, older) if _level(r) >= least),
                    *rows,
                ]
            return rows[-limit:], cursor
        rows = store.logs(after=after, limit=limit)
        cursor = int(rows[-1]["seq"]) if rows else after
        return [r for r in rows if _level(r) >= least], cursor

    def _level(row: dict[str, Any]) -> int:
        return LEVELS.get(str(row.get("level", "")).lower(), 20)

    rows, cursor = await asyncio.to_thread(read)
    return {"logs": [_log(r) for r in rows], "cursor": cursor}


def _read_logs(store: TraceStore, after: int, upto: int) -> list[dict[str, Any]]:
    """Log rows with ``after < seq <= upto``."""
    out: list[dict[str, Any]] = []
    while after < upto:
        page = store.logs(after=after, limit=1000)
        if not page:
            break
        for row in page:
            if int(row["seq"]) > upto:
                return out
            out.append(row)
        after = int(page[-1]["seq"])
    return out


def _last_seq(store: TraceStore) -> int:
    """The highest log ``seq`` (0: none), in O(log n) probes of ``store.logs``."""
    first = store.logs(after=0, limit=1)
    if not first:
        return 0
    low = int(first[0]["seq"])  # a seq that exists
    step = 1024
    high = low + step
    while store.logs(after=high, limit=1):  # gallop to a bound past the last one
        low, step = high, step * 2
        high = low + step
    while high - low > 1:  # low exists or precedes rows; nothing is after high
        mid = (low + high) // 2
        if store.logs(after=mid, limit=1):
            low = mid
        else:
            high = mid
    last = store.logs(after=low, limit=1)
    return int(last[0]["seq"]) if last else low


async def op_state(wb: Workbench, app: App, args: dict[str, Any]) -> dict[str, Any]:
    group = _arg("state", args, "group", str, None)
    adapter = app.engine.state
    if group is None:
        groups = []
        for g in sorted(await adapter.groups()):
            groups.append({"group": g, "n_keys": len(await adapter.get_group(g))})
        return {"groups": groups}
    items = await adapter.get_group(group)
    keys = sorted(items)
    shown = keys[:MAX_STATE_ITEMS]
    out: dict[str, Any] = {
        "group": group,
        "items": {k: _loads(items[k]) for k in shown},
        "n_keys": len(keys),
        "capped": len(keys) > len(shown),
    }
    if out["capped"]:
        out["note"] = f"showing the first {len(shown)} of {len(keys)} keys (sorted)"
    return out


OPS: dict[str, Handler] = {
    "project": op_project,
    "graph": op_graph,
    "flows": op_flows,
    "steps": op_steps,
    "toggle": op_toggle,
    "topics": op_topics,
    "emit": op_emit,
    "runs": op_runs,
    "trace": op_trace,
    "dead_letters": op_dead_letters,
    "replay": op_replay,
    "logs": op_logs,
    "state": op_state,
}

__all__ = ["OPS", "BadRequest", "Workbench", "error_line", "parse_request"]
