"""The Python worker: runs ``runtime: process`` Python steps in a process of their own, over the
framed stdio protocol of docs/worker-protocol.md (the engine's side is
``wistro.runtimes.python_process``).

Step files are imported by path as the in-process runtime imports them (the same module names,
relative and sibling imports), once per worker. ``async def`` handlers run on the worker's event
loop; plain ``def`` handlers on a thread pool, so the worker keeps answering while they compute.
``ctx.emit`` / ``ctx.state.*`` / ``ctx.logger.*`` are ``call``s to the engine (awaitable from an
``async def`` handler, plain calls that return their result from a ``def`` one). An invoke is
answered only once every call it made has been answered; an emit the handler did not await that
the engine refused fails the invoke. An emit the step's check (``invoke.emits``) passes, with the
engine's own validator, is deferred: it travels with the invoke's next frame.

stdout carries frames only: ``print`` and anything written to file descriptor 1 go to stderr.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from wistro.core.topics import _compile as compile_schema
from wistro.errors import StepLoadError
from wistro.runtimes.python import PythonRuntime
from wistro.runtimes.worker.framing import MAX_FRAME, dumps, loads

SYNC_CALL_TIMEOUT_S = 30.0  # a ``def`` handler's ctx call gives up after this long
_errors: dict[str, type[EngineError]] = {}


class EngineError(Exception):
    """A ``call`` the engine refused; subclassed by the engine's error type name
    (``PayloadError``, ``UndeclaredEmitError``, ...), so the handler sees that name."""

    type_name = "EngineError"


def engine_error(error: Any) -> EngineError:
    error = error if isinstance(error, dict) else {"message": str(error)}
    name = str(error.get("type") or "EngineError")
    cls = _errors.get(name)
    if cls is None:
        cls = _errors[name] = type(name, (EngineError,), {"type_name": name})
    return cls(str(error.get("message") or name))


class _Call:
    """A call in flight: awaitable once; remembers whether the handler awaited it."""

    __slots__ = ("awaited", "fut", "op")

    def __init__(self, op: str, fut: asyncio.Future[Any]) -> None:
        self.op, self.fut, self.awaited = op, fut, False

    def __await__(self) -> Any:
        self.awaited = True
        return self.fut.__await__()


class _Done:
    """What ``ctx.emit`` returns for a deferred emit: already done (awaiting it does nothing)."""

    def __await__(self) -> Any:
        return None
        yield  # a generator: ``await`` ends at once


DONE = _Done()
_MISSING = object()


class _Invoke:
    __slots__ = ("calls", "checks", "deferred", "flushing", "rid", "task")

    def __init__(self, rid: Any, checks: dict[str, Any] | None) -> None:
        self.rid = rid
        self.calls: list[_Call] = []
        self.task: asyncio.Task[Any] | None = None
        self.checks = checks  # topic -> validator (None: no schema); None: every emit a call
        self.deferred: list[dict[str, Any]] = []  # emits not sent yet
        self.flushing = False


class State:
    def __init__(self, ctx: Ctx) -> None:
        self._ctx = ctx

    def get(self, group: str, key: str) -> Any:
        return self._ctx._op("state.get", {"group": group, "key": key})

    def set(self, group: str, key: str, value: Any) -> Any:
        return self._ctx._op("state.set", {"group": group, "key": key, "value": value})

    def delete(self, group: str, key: str) -> Any:
        return self._ctx._op("state.delete", {"group": group, "key": key})

    def get_group(self, group: str) -> Any:
        return self._ctx._op("state.get_group", {"group": group})

    def clear(self, group: str) -> Any:
        return self._ctx._op("state.clear", {"group": group})

    def update(self, group: str, key: str, fn: Any) -> Any:
        raise NotImplementedError(
            "ctx.state.update is not available to a `runtime: process` step (its function "
            "cannot run in the engine); use get and set, or run the step in-process"
        )


class Logger:
    def __init__(self, ctx: Ctx) -> None:
        self._ctx = ctx

    def log(self, level: str, message: str, **fields: Any) -> None:
        self._ctx._op("log", {"level": level, "message": str(message), "fields": fields}, False)

    def debug(self, message: str, **fields: Any) -> None:
        self.log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("warning", message, **fields)

    warn = warning

    def error(self, message: str, **fields: Any) -> None:
        self.log("error", message, **fields)


class Ctx:
    """What a handler gets as ``ctx``: the engine's ``ctx`` API as ``call``s."""

    def __init__(self, worker: Worker, inv: _Invoke, c: dict[str, Any]) -> None:
        self._worker, self._inv = worker, inv
        self.trace_id = c.get("trace_id")
        self.span_id = c.get("span_id")
        self.step = c.get("step")
        self.flows = list(c.get("flows") or ())
        self.state = State(self)
        self.logger = Logger(self)

    def emit(self, topic: str, data: Any = None) -> Any:
        checks = self._inv.checks
        check: Any = _MISSING if checks is None else checks.get(topic, _MISSING)
        if check is not _MISSING:  # the engine's own validator: valid here is valid there
            try:
                value = loads(dumps(data))  # a snapshot, as the engine will decode it
                if check is not None:
                    check(value)
            except Exception:
                pass  # invalid (or not JSON): a call, for the engine's verdict and message
            else:
                worker = self._worker
                if threading.get_ident() == worker.thread:
                    worker.defer(self._inv, topic, value)
                    return DONE
                worker.loop.call_soon_threadsafe(worker.defer, self._inv, topic, value)
                return None
        return self._op("emit", {"topic": topic, "data": data})

    def _op(self, op: str, args: dict[str, Any], wait: bool = True) -> Any:
        worker = self._worker
        if threading.get_ident() == worker.thread:  # an async def handler: an awaitable
            return worker.call(self._inv, op, args)
        if not wait:
            worker.loop.call_soon_threadsafe(worker.call, self._inv, op, args)
            return None

        async def call() -> Any:
            done = worker.call(self._inv, op, args)
            done.awaited = True
            return await done.fut

        future = asyncio.run_coroutine_threadsafe(call(), worker.loop)
        return future.result(SYNC_CALL_TIMEOUT_S)


class Worker:
    def __init__(self, loop: asyncio.AbstractEventLoop, out: Any) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.out = out
        self.next_id = 0
        self.calls: dict[int, asyncio.Future[Any]] = {}
        self.invokes: dict[Any, _Invoke] = {}
        self.runtime = PythonRuntime()
        self.steps: dict[str, Any] = {}  # file -> (handler, config) or a StepLoadError
        self.root = Path.cwd()
        src = os.environ.get("WISTRO_PY_SRC")
        self.src = Path(src) if src else self.root
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=int(os.environ.get("WISTRO_PY_THREADS") or 32),
            thread_name_prefix="wistro-handler",
        )
        self.stopping = False
        self.done = asyncio.Event()
        self.checks: dict[tuple[Any, Any], dict[str, Any]] = {}  # (file, step) -> emit checks

    # ------------------------------------------------------------ frames
    def send(self, msg: dict[str, Any]) -> None:
        try:
            body = dumps(msg)
        except (TypeError, ValueError) as e:
            if msg.get("t") != "result":
                raise
            body = dumps(_error_msg(msg["id"], e, None))
        self.out.write(len(body).to_bytes(4, "big") + body)
        self.out.flush()

    def defer(self, inv: _Invoke, topic: str, value: Any) -> None:
        """A deferred emit: sent with the invoke's next frame, or on the next turn of the loop
        when the handler goes on waiting for something else."""
        inv.deferred.append({"topic": topic, "data": value})
        if not inv.flushing:
            inv.flushing = True
            self.loop.call_soon(self.flush, inv)

    def flush(self, inv: _Invoke) -> None:
        inv.flushing = False
        if inv.deferred and inv.rid in self.invokes:
            emits, inv.deferred = inv.deferred, []
            self.send({"t": "emits", "invoke": inv.rid, "emits": emits})

    def call(self, inv: _Invoke, op: str, args: dict[str, Any]) -> _Call:
        if inv.deferred:
            self.flush(inv)  # the deferred emits precede the call: order is kept
        self.next_id += 1
        rid = self.next_id
        fut = self.loop.create_future()
        done = _Call(op, fut)
        self.calls[rid] = fut
        inv.calls.append(done)
        self.send({"t": "call", "id": rid, "invoke": inv.rid, "op": op, "args": args})
        return done

    def on_frame(self, msg: Any) -> None:
        t = msg.get("t") if isinstance(msg, dict) else None
        if t == "invoke":
            inv = _Invoke(msg.get("id"), self.emit_checks(msg))
            self.invokes[msg.get("id")] = inv
            inv.task = self.loop.create_task(self.invoke(msg, inv))
        elif t in ("result", "error"):
            fut = self.calls.pop(msg.get("id"), None)  # type: ignore[arg-type]
            if fut is not None and not fut.done():
                if t == "result":
                    fut.set_result(msg.get("value"))
                else:
                    fut.set_exception(engine_error(msg.get("error")))
        elif t == "cancel":
            running = self.invokes.get(msg.get("id"))
            if running is not None:
                running.deferred.clear()  # given up on: its emits not sent yet are dropped
                running.checks = None
                if running.task is not None:
                    running.task.cancel()
        elif t == "load":
            self.send({"t": "result", "id": msg.get("id"), "ok": True, "value": self.load(msg)})
        elif t == "shutdown":
            self.stopping = True
            if not self.invokes:
                self.done.set()

    # ------------------------------------------------------------ steps
    def emit_checks(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """The step's emit check: ``invoke.emits`` (sent with its first invoke on this worker,
        and again when the engine's topics change), compiled with the engine's validator."""
        key = (msg.get("file"), msg.get("step"))
        table = msg.get("emits")
        if isinstance(table, dict):
            checks: dict[str, Any] = {}
            for topic, schema in table.items():
                if schema is True:
                    checks[topic] = None
                elif isinstance(schema, dict):
                    try:
                        checks[topic] = compile_schema(schema)
                    except Exception:
                        continue  # not compiled: its emits are calls
            self.checks[key] = checks
        return self.checks.get(key)

    def load(self, msg: dict[str, Any]) -> dict[str, Any]:
        """``load``: the configs are read in-process by the engine; this answers as it can."""
        steps, errors = [], []
        for file in msg.get("files") or []:
            step = self.step(file)
            if isinstance(step, StepLoadError):
                errors.append({"file": file, "message": step.message, "line": step.line})
            else:
                steps.append({"file": file, "config": {"name": step[1].get("name")}})
        return {"steps": steps, "errors": errors}

    def step(self, file: str) -> Any:
        step = self.steps.get(file)
        if step is None:
            path = Path(file)
            src = self.src if path.is_relative_to(self.src) else path.parent
            (read,) = self.runtime.read([path], self.root, src)
            if isinstance(read, StepLoadError):
                step = read
            else:
                config = read.config if isinstance(read.config, dict) else {}
                handler = getattr(read.handle, "handler", None)
                if not callable(handler):
                    step = StepLoadError("no `handler` function", file=path)
                else:
                    step = (handler, config)
            self.steps[file] = step
        return step

    async def invoke(self, msg: dict[str, Any], inv: _Invoke) -> None:
        rid = msg.get("id")
        error: dict[str, Any] | None = None  # taken at once: awaiting it again changes its stack
        value: Any = None
        file = str(msg.get("file"))
        try:
            value = await self.run(msg, inv, file)
        except BaseException as e:
            error = _error_msg(rid, e, file)
        for done in inv.calls:  # answered only once every call it made is
            try:
                await asyncio.shield(done.fut)
            except BaseException as e:
                if error is None and done.op != "log" and not done.awaited:
                    error = _error_msg(rid, e, file)
        self.invokes.pop(rid, None)
        answer = error or {"t": "result", "id": rid, "ok": True, "value": value}
        if inv.deferred:
            answer["emits"], inv.deferred = inv.deferred, []
        self.send(answer)
        if self.stopping and not self.invokes:
            self.done.set()

    async def run(self, msg: dict[str, Any], inv: _Invoke, file: str) -> Any:
        step = self.step(file)
        if isinstance(step, StepLoadError):
            raise step
        handler, config = step
        ctx = Ctx(self, inv, msg.get("ctx") or {})
        data = _input(msg.get("data"), config)
        n = _positional(handler)
        args = (data, ctx) if n >= 2 else (ctx,)
        if inspect.iscoroutinefunction(handler):
            return await handler(*args)
        running = asyncio.wrap_future(self.pool.submit(handler, *args))
        try:
            value = await asyncio.shield(running)
        except asyncio.CancelledError:
            # a thread cannot be stopped: the invoke is answered once the handler ends; one
            # that never does gets this worker killed by the engine (docs/worker-protocol.md)
            await asyncio.wait([running])
            raise
        if inspect.isawaitable(value):
            value = await value
        return value


def _positional(handler: Any) -> int:
    try:
        return len(
            [
                p
                for p in inspect.signature(handler).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        )
    except (TypeError, ValueError):
        return 2


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and hasattr(value, "model_validate")


def _input(data: Any, config: dict[str, Any]) -> Any:
    """The handler's input: a model instance when the step's ``input`` is a pydantic model (api
    steps: the request, its ``body`` a model when ``body`` is one)."""
    kind = config.get("type") or "event"
    if kind == "api" and isinstance(data, dict):
        from wistro.triggers.http_endpoints import ApiRequest

        body = data.get("body")
        if _is_model(config.get("body")) and body is not None:
            body = config["body"].model_validate(body)
        query = data.get("query") or {}
        if _is_model(config.get("query")):
            query = config["query"].model_validate(query)
        raw = data.get("raw_body") or ""
        return ApiRequest(
            method=data.get("method") or "",
            path=data.get("path") or "",
            path_params=data.get("path_params") or {},
            query=query,
            headers=data.get("headers") or {},
            body=body,
            raw_body=raw.encode() if isinstance(raw, str) else b"",
            auth=data.get("auth") or {},
        )
    model: Any = config.get("input")
    if kind == "event" and _is_model(model) and data is not None:
        return model.model_validate(data)
    return data


def _error_msg(rid: Any, e: BaseException, file: str | None) -> dict[str, Any]:
    if isinstance(e, EngineError):
        kind = e.type_name
    elif isinstance(e, asyncio.CancelledError):
        kind = "Cancelled"
    else:
        kind = type(e).__name__
    message = e.message if isinstance(e, StepLoadError) else str(e)
    error: dict[str, Any] = {"type": kind, "message": message}
    error["stack"] = "".join(traceback.format_exception(e)).rstrip()
    line = None
    if file is not None:
        for frame, lineno in traceback.walk_tb(e.__traceback__):
            if frame.f_code.co_filename == file:
                line = lineno
    if isinstance(e, StepLoadError) and e.line is not None:
        line = e.line
    if file is not None and line is not None:
        error["file"], error["line"] = file, line
    return {"t": "error", "id": rid, "error": error}


async def _read_frames(worker: Worker, stdin: Any) -> None:
    """Frames from stdin, handled on the loop as they come; the engine gone (EOF): exit."""
    loop = worker.loop
    reader = asyncio.StreamReader(limit=MAX_FRAME + 4, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), stdin)
    try:
        while True:
            n = int.from_bytes(await reader.readexactly(4), "big")
            if n > MAX_FRAME:
                print(f"wistro python worker: a frame of {n} bytes", file=sys.stderr)
                break
            worker.on_frame(loads(await reader.readexactly(n)))
    except asyncio.IncompleteReadError:
        pass  # stdin closed: the engine is gone
    except Exception as e:
        print(f"wistro python worker: {type(e).__name__}: {e}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(0)


async def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever is written to fd 1 (print, C code) goes to stderr
    sys.stdout = sys.stderr
    stdin = os.fdopen(os.dup(0), "rb", buffering=0)
    worker = Worker(asyncio.get_running_loop(), out)
    reading = asyncio.create_task(_read_frames(worker, stdin))
    worker.send(
        {
            "t": "hello",
            "language": "python",
            "version": sys.version.split()[0],
            "pid": os.getpid(),
        }
    )
    await worker.done.wait()
    out.flush()
    reading.cancel()


if __name__ == "__main__":
    asyncio.run(main())
    sys.stderr.flush()
    os._exit(0)
