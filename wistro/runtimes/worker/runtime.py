"""``WorkerRuntime``: the ``LanguageRuntime`` base of the worker languages (see
:mod:`wistro.runtimes.worker`): reading step configs (from the lock, else a short-lived worker),
the long-lived worker started on demand and restarted with a backoff, and invokes with the
worker's ``call``s served by the real ``ctx``."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

from wistro.core.context import DONE
from wistro.core.step import StepRecord
from wistro.errors import (
    StepError,
    StepLoadError,
    WistroError,
    WorkerCrashed,
    WorkerError,
    WorkerStartError,
)
from wistro.runtimes.base import LanguageRuntime, StepSource
from wistro.runtimes.worker.framing import dumps
from wistro.runtimes.worker.lockfile import configs_from_lock
from wistro.runtimes.worker.process import WorkerProcess


def _run_in_thread(factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to completion on a private loop in a helper thread (works whether or not
    the caller's thread runs an event loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=target, name="wistro-worker-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class WorkerRuntime(LanguageRuntime):
    """Base of the worker languages: one long-lived worker per runtime (so per project)."""

    languages: ClassVar[tuple[str, ...]] = ()  # every language this runtime's records can have
    toolchain: ClassVar[str] = "the toolchain"
    install_hint: ClassVar[str] = ""
    restart_backoff_s: ClassVar[float] = 0.05
    max_backoff_s: ClassVar[float] = 2.0
    stable_after_s: ClassVar[float] = 10.0  # a worker that lived this long resets the backoff
    load_timeout_s: ClassVar[float] = 120.0

    def __init__(self) -> None:
        self.worker: WorkerProcess | None = None
        self.restarts = 0
        self.pids: list[int] = []  # hello pid of every long-lived worker started
        self.root: Path | None = None
        self._starting: asyncio.Future[WorkerProcess] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures = 0  # consecutive short-lived workers (the restart backoff grows)
        self._started_at = 0.0
        self._ctxs: dict[int, Any] = {}
        self._refused: dict[int, BaseException] = {}  # invoke id -> its deferred emit refused
        self._prepared: set[Path] = set()
        self._bound: dict[Path, set[Path]] = {}  # root -> step files bound to this runtime

    # ------------------------------------------------------------ subclass hooks
    def command(self, root: Path) -> list[str] | None:
        """The worker's command line; None when the toolchain is missing."""
        raise NotImplementedError

    def prepare(self, root: Path, files: list[Path]) -> None:
        """Build or compile what the worker needs (blocking; runs in a thread on the loop)."""

    def env(self, root: Path) -> dict[str, str]:
        return {}

    def language_of(self, file: Path) -> str:
        return self.language

    def toolchain_error(self, files: list[Path]) -> list[StepLoadError]:
        hint = self.install_hint or None
        return [
            StepLoadError(
                f"{self.language} step needs {self.toolchain}, which is not installed "
                f"(not on PATH); Python steps still run",
                file=f,
                hint=hint,
            )
            for f in files
        ]

    # ------------------------------------------------------------ reading configs
    def read(
        self, files: list[Path], root: Path, src: Path | None = None
    ) -> list[StepSource | StepLoadError]:
        self.root = root
        if not files:
            return []
        locked = configs_from_lock(root, files)
        if locked:
            rest = [f for f in files if f not in locked]
            return (
                [*locked.values(), *self.read(rest, root, src)] if rest else list(locked.values())
            )
        cmd = self.command(root)
        if cmd is None:
            return list(self.toolchain_error(files))
        try:
            self.prepare(root, files)
        except StepLoadError as e:
            return [_with_file(e, f) for f in files]
        except Exception as e:
            return [StepLoadError(f"preparing the worker failed: {e}", file=f) for f in files]

        async def load() -> Any:
            proc = WorkerProcess(cmd, language=self.language, cwd=root, env=self._full_env(root))
            try:
                await proc.start()
                async with asyncio.timeout(self.load_timeout_s):
                    return await proc.request({"t": "load", "files": [str(f) for f in files]})
            finally:
                await proc.close()

        try:
            value = _run_in_thread(load)
        except (WorkerCrashed, WorkerError, TimeoutError) as e:
            why = str(e) or "timed out"
            return [
                StepLoadError(f"the {self.language} worker failed to load steps: {why}", file=f)
                for f in files
            ]
        out: list[StepSource | StepLoadError] = []
        by_file = {str(f): f for f in files}
        seen: set[str] = set()
        for step in value.get("steps") or []:
            file = by_file.get(step.get("file"), Path(step.get("file", "")))
            seen.add(str(file))
            line = step.get("line")
            out.append(
                StepSource(file, step.get("config"), line if isinstance(line, int) else None)
            )
        for err in value.get("errors") or []:
            file = by_file.get(err.get("file"), Path(err.get("file", "")))
            seen.add(str(file))
            line = err.get("line")
            out.append(
                StepLoadError(
                    str(err.get("message") or "cannot load the step"),
                    file=file,
                    line=line if isinstance(line, int) else None,
                )
            )
        for f in files:
            if str(f) not in seen:
                out.append(StepLoadError("the worker did not report this file", file=f))
        return out

    # ------------------------------------------------------------ the long-lived worker
    def _full_env(self, root: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env(root))
        return env

    async def ensure_worker(self, root: Path) -> WorkerProcess:
        """The running worker, started (or restarted after a crash) on demand."""
        worker = self.worker
        loop = asyncio.get_running_loop()
        if worker is not None and worker.alive and worker.loop is loop:
            return worker
        starting = self._starting
        if starting is not None and not starting.done() and starting.get_loop() is loop:
            return await asyncio.shield(starting)
        fut: asyncio.Future[WorkerProcess] = loop.create_future()
        self._starting = fut
        try:
            proc = await self._start(root, worker, loop)
        except BaseException as e:
            self._starting = None
            if not fut.done():
                fut.set_exception(e)
                fut.exception()
            raise
        fut.set_result(proc)
        return proc

    async def _start(
        self, root: Path, old: WorkerProcess | None, loop: asyncio.AbstractEventLoop
    ) -> WorkerProcess:
        if old is not None:
            if old.loop is not loop or old.alive:
                old.kill()  # left behind by another event loop
            else:
                self.restarts += 1
                # a worker that dies soon after it started backs off more each time
                lived = time.monotonic() - self._started_at
                self._failures = self._failures + 1 if lived < self.stable_after_s else 1
            self.worker = None
        if self._failures:
            delay = self.restart_backoff_s * 2 ** min(self._failures - 1, 10)
            await asyncio.sleep(min(delay, self.max_backoff_s))
        cmd = self.command(root)
        if cmd is None:
            raise WorkerStartError(
                f"{self.toolchain} is not installed (not on PATH); "
                f"{self.language} steps cannot run"
                + (f" ({self.install_hint})" if self.install_hint else "")
            )
        if root not in self._prepared:
            files = sorted(self._bound.get(root, ()))
            await asyncio.to_thread(self.prepare, root, files)
            self._prepared.add(root)
        proc = WorkerProcess(
            cmd,
            language=self.language,
            cwd=root,
            env=self._full_env(root),
            on_call=self._on_call,
            on_emits=self._on_emits,
        )
        try:
            hello = await proc.start()
        except WorkerCrashed:
            self._failures += 1
            raise
        self._started_at = time.monotonic()
        pid = hello.get("pid")
        self.pids.append(pid if isinstance(pid, int) else proc.pid or 0)
        self.worker = proc
        return proc

    def discard(self) -> None:
        """Stop the worker from sync code (a reload replaced this runtime): ``shutdown`` on its
        loop when that loop runs in this thread, else kill it."""
        worker, self.worker = self.worker, None
        if worker is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and worker.loop is running:
            task = running.create_task(worker.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            worker.kill()

    async def aclose(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if worker.loop is running and worker.loop is not None:
            await worker.close()
        else:
            worker.kill()

    # ------------------------------------------------------------ invoking
    def bind(self, record: StepRecord, source: StepSource | None, src: Path | None = None) -> None:
        if record.type == "noop":
            return
        language = self.language_of(record.file)
        if record.language != language:
            record.language = language
        root = _root_of(record)
        self._bound.setdefault(root, set()).add(record.file)
        runtime = self
        file = str(record.file)

        step_json = dumps(record.name)
        after_id = b',"file":' + dumps(file) + b',"step":' + step_json + b',"data":'
        ctx_tail = b',"step":' + step_json + b',"flows":' + dumps(list(record.flows)) + b"}"
        # The step's emit check (``invoke.emits``): sent with its first invoke on each worker,
        # and again when the engine's topics change (a reload).
        told: list[Any] = [None, None, b""]  # [worker, topic catalog, b"" or b',"emits":{...}']

        async def invoke(data: Any, ctx: Any) -> Any:
            worker = runtime.worker
            if worker is None or not worker.alive or worker.loop is not asyncio.get_running_loop():
                worker = await runtime.ensure_worker(root)
            # {"t":"invoke","id":..,"file":..,"step":..,"data":..,"ctx":{..},"emits"?:{..}}
            rest = dumps(data) + _ctx_json(ctx, ctx_tail)
            catalog = _topics_of(ctx)
            if told[0] is worker and told[1] is catalog:
                rest += b"}"
            else:
                if told[1] is not catalog:
                    told[2] = _emit_checks(record, catalog)
                told[0], told[1] = worker, catalog
                rest += told[2] + b"}"
            rid, fut = worker.start_request_bytes(
                lambda rid: b'{"t":"invoke","id":%d%s%s' % (rid, after_id, rest)
            )
            ctxs = runtime._ctxs
            ctxs[rid] = ctx
            refused: BaseException | None = None
            try:
                value = await fut
            except WorkerError as e:
                refused = runtime._refused.get(rid)
                if refused is not None:  # a deferred emit was refused: that is the failure
                    raise runtime._refused_error(record, refused) from None
                raise runtime.step_error(record, e) from None
            except asyncio.CancelledError:
                worker.forget(rid)
                if worker.alive:
                    with contextlib.suppress(WorkerCrashed):
                        worker.send({"t": "cancel", "id": rid})
                raise
            finally:
                ctxs.pop(rid, None)
                if runtime._refused:
                    refused = runtime._refused.pop(rid, None)
            if refused is not None:
                raise runtime._refused_error(record, refused)
            return value

        record.invoke = invoke

    def step_error(self, record: StepRecord, e: WorkerError) -> StepError:
        """The exception a failed invoke raises: one line naming the step file and line."""
        file: str | None = record.rel_file
        if e.file and Path(e.file) != record.file:
            file = _relative(Path(e.file), _root_of(record))
        return StepError(
            e.message,
            error_type=e.type,
            stack=e.stack,
            file=file,
            line=e.line,
            step=record.name,
        )

    def _refused_error(self, record: StepRecord, e: BaseException) -> StepError:
        """The failure of an invoke whose deferred emit the engine refused (the worker's check
        had accepted it, so the handler went on): one line naming the step file."""
        message = e.format() if isinstance(e, WistroError) else str(e)
        return StepError(
            f"{message} (an emit the worker had let through, refused once the handler went on)",
            error_type=type(e).__name__,
            file=record.rel_file,
            line=None,
            step=record.name,
        )

    def _on_emits(self, rid: Any, emits: list[Any]) -> None:
        """An invoke's deferred emits (``emits`` of its ``result``/``error``/``emits`` frame):
        validated and published in order through ``ctx.emit``; the first one refused stops the
        invoke's emits and fails it."""
        ctx = self._ctxs.get(rid)
        if ctx is None or rid in self._refused:
            return  # the invoke is over (timed out, cancelled) or already failed
        for item in emits:
            try:
                if not isinstance(item, dict):
                    raise ValueError(f"an emit of the worker is not an object: {item!r}")
                ctx.emit(item.get("topic"), item.get("data"))
            except Exception as e:
                self._refused[rid] = e
                return

    def _on_call(self, msg: dict[str, Any]) -> Any:
        rid = msg.get("invoke")
        ctx = self._ctxs.get(rid)  # type: ignore[arg-type]
        if ctx is None:
            raise RuntimeError("the invoke this call belongs to is over (timed out or cancelled)")
        op = msg.get("op")
        args = msg.get("args") or {}
        if op == "emit":
            if rid in self._refused:
                raise RuntimeError("an earlier emit of this delivery was refused")
            done = ctx.emit(args.get("topic"), args.get("data"))
            if done is DONE or done is None:
                return None
            if inspect.isawaitable(done):
                return _await_none(done)
            return None
        if op == "log":
            fields = args.get("fields")
            if not isinstance(fields, dict):
                fields = {} if fields is None else {"fields": fields}
            for clash in ("level", "message"):  # Logger.log(level, message, **fields)
                if clash in fields:
                    fields[clash + "_"] = fields.pop(clash)
            ctx.logger.log(str(args.get("level") or "info"), str(args.get("message")), **fields)
            return None
        state = ctx.state
        if op == "state.get":
            return state.get(args.get("group"), args.get("key"))
        if op == "state.set":
            return state.set(args.get("group"), args.get("key"), args.get("value"))
        if op == "state.delete":
            return state.delete(args.get("group"), args.get("key"))
        if op == "state.get_group":
            return state.get_group(args.get("group"))
        if op == "state.clear":
            return state.clear(args.get("group"))
        raise ValueError(f"unknown op {op!r}")


def _topics_of(ctx: Any) -> Any:
    """The engine's topic catalog behind ``ctx`` (None for a ctx without an engine)."""
    registry = getattr(getattr(ctx, "_engine", None), "registry", None)
    return getattr(registry, "topics", None)


def _emit_checks(record: StepRecord, catalog: Any) -> bytes:
    """``,"emits":{topic: schema | true}``: the step's declared emit topics, each with the
    JSON Schema the engine validates it with (``true``: no schema). The worker checks an emit
    against it to skip the round trip (docs/worker-protocol.md). Empty without a catalog: every
    emit is then a ``call``."""
    if catalog is None or not hasattr(catalog, "topics"):
        return b""
    table: dict[str, Any] = {}
    for topic in sorted(record.emit_topics):
        known = catalog.topics.get(topic)
        schema = known.schema if known is not None else None
        table[topic] = True if schema is None else schema
    try:
        return b',"emits":' + dumps(table)
    except (TypeError, ValueError):
        return b""


def _ctx_json(ctx: Any, tail: bytes) -> bytes:
    """``,"ctx":{"trace_id", "span_id", "step", "flows"}``; ``tail`` is the pre-encoded step +
    flows."""
    trace_id = getattr(ctx, "trace_id", None)
    span_id = getattr(ctx, "span_id", None)
    if type(trace_id) is str and type(span_id) is str and (trace_id + span_id).isalnum():
        return b',"ctx":{"trace_id":"%s","span_id":"%s"%s' % (
            trace_id.encode(),
            span_id.encode(),
            tail,
        )
    return b',"ctx":{"trace_id":%s,"span_id":%s%s' % (dumps(trace_id), dumps(span_id), tail)


async def _await_none(aw: Awaitable[Any]) -> None:
    await aw


def _root_of(record: StepRecord) -> Path:
    n = len(Path(record.rel_file).parts)
    return Path(*record.file.parts[: len(record.file.parts) - n]) if n else record.file.parent


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _with_file(e: StepLoadError, file: Path) -> StepLoadError:
    return StepLoadError(e.message, file=file, line=e.line, hint=e.hint)
