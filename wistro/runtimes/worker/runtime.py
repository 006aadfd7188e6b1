"""``WorkerRuntime``: the ``LanguageRuntime`` base of the worker languages (see
:mod:`wistro.runtimes.worker`): reading step configs (from the lock, else a short-lived worker),
the long-lived worker started on demand and restarted with a backoff, and invokes with the
worker's ``call``s served by the real ``ctx``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

from wistro.config import CONFIG_NAMES, RuntimesConfig, WorkerPoolConfig, read_raw
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

_log = logging.getLogger("wistro.runtimes")
_INVOKE_HEAD = b'{"t":"invoke","id":'
QUIET_S = 0.05  # a worker with requests in flight that sent nothing for this long is avoided


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
    """Base of the worker languages: a pool of long-lived workers per runtime (so per project):
    ``runtimes: {<config_key>: {workers: N}}`` in wistro.yml, one by default."""

    languages: ClassVar[tuple[str, ...]] = ()  # every language this runtime's records can have
    toolchain: ClassVar[str] = "the toolchain"
    install_hint: ClassVar[str] = ""
    restart_backoff_s: ClassVar[float] = 0.05
    max_backoff_s: ClassVar[float] = 2.0
    stable_after_s: ClassVar[float] = 10.0  # a worker that lived this long resets the backoff
    load_timeout_s: ClassVar[float] = 120.0
    config_key: ClassVar[str] = ""  # its block in wistro.yml's `runtimes:` (node, go)
    max_redeliveries: ClassVar[int] = 5  # of one invoke, on fresh workers, when not at fault

    def __init__(self) -> None:
        self.slots: list[WorkerProcess | None] = [None]  # the pool (resized on first use)
        self.restarts = 0
        self.redeliveries = 0  # invokes sent again, on another worker, after a death not theirs
        self.pids: list[int] = []  # hello pid of every long-lived worker started
        self.root: Path | None = None
        self.pool: WorkerPoolConfig | None = None  # None: read from the project on first use
        self._starting: list[asyncio.Future[WorkerProcess] | None] = [None]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failures = 0  # consecutive short-lived workers (the restart backoff grows)
        self._started_at = 0.0
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

    @property
    def worker(self) -> WorkerProcess | None:
        """The first worker of the pool that runs (else the first slot's, dead or None)."""
        for proc in self.slots:
            if proc is not None and proc.alive:
                return proc
        return self.slots[0] if self.slots else None

    @property
    def workers(self) -> list[WorkerProcess]:
        return [proc for proc in self.slots if proc is not None]

    def configure(self, pool: WorkerPoolConfig | RuntimesConfig) -> None:
        """Set the pool's size and kill grace (else read from the project's wistro.yml)."""
        if isinstance(pool, RuntimesConfig):
            pool = getattr(pool, self.config_key, None) or WorkerPoolConfig()
        self.pool = pool

    def settings(self, root: Path) -> WorkerPoolConfig:
        if self.pool is None:
            self.pool = _pool_config(root, self.config_key)
        return self.pool

    def _resize(self, root: Path) -> None:
        size = self.settings(root).workers
        if len(self.slots) < size:
            self.slots.extend([None] * (size - len(self.slots)))
            self._starting.extend([None] * (size - len(self._starting)))

    async def _pick(self, root: Path, loop: asyncio.AbstractEventLoop) -> WorkerProcess:
        """The pool's worker for the next invoke: the fewest requests in flight among those
        that answered lately (a worker stuck in a busy loop sends nothing: it is avoided until
        it is killed); when every one is quiet, the one heard from last (a busy machine can
        keep a healthy worker silent for a moment, while a stuck one's silence only grows: by
        requests in flight, the stuck one, holding one, got the next invoke); dead slots are
        restarted meanwhile, and waited for when every running worker is quiet."""
        best: WorkerProcess | None = None
        best_score = 0.0
        now = time.monotonic()
        starting = -1
        for i, proc in enumerate(self.slots):
            if proc is None or not proc.alive or proc.loop is not loop:
                self._start_soon(root, i, loop)
                starting = i
                continue
            silent = proc.silent_for(now)
            score = 1e9 + silent if silent > QUIET_S else float(proc.in_flight)
            if best is None or score < best_score:
                best, best_score = proc, score
        if best is None or (best_score >= 1e9 and starting >= 0):
            return await self.ensure_worker(root, max(starting, 0))
        return best

    def _start_soon(self, root: Path, slot: int, loop: asyncio.AbstractEventLoop) -> None:
        starting = self._starting[slot]
        if starting is not None and not starting.done() and starting.get_loop() is loop:
            return
        task = loop.create_task(self.ensure_worker(root, slot))
        self._tasks.add(task)
        task.add_done_callback(_quiet_done)
        task.add_done_callback(self._tasks.discard)

    async def ensure_worker(self, root: Path, slot: int = 0) -> WorkerProcess:
        """The running worker of ``slot``, started (or restarted after a crash) on demand."""
        loop = asyncio.get_running_loop()
        if len(self.slots) < self.settings(root).workers:
            self._resize(root)
            for other in range(len(self.slots)):  # the whole pool starts with its first worker
                if other != slot:
                    self._start_soon(root, other, loop)
        worker = self.slots[slot]
        if worker is not None and worker.alive and worker.loop is loop:
            return worker
        starting = self._starting[slot]
        if starting is not None and not starting.done() and starting.get_loop() is loop:
            return await asyncio.shield(starting)
        # a task of its own: an invoke cancelled meanwhile (its timeout) does not stop the start
        task = loop.create_task(self._start(root, worker, loop, slot))
        task.add_done_callback(_quiet_done)
        self._starting[slot] = task
        return await asyncio.shield(task)

    async def _start(
        self,
        root: Path,
        old: WorkerProcess | None,
        loop: asyncio.AbstractEventLoop,
        slot: int = 0,
    ) -> WorkerProcess:
        if old is not None:
            if old.loop is not loop or old.alive:
                old.kill()  # left behind by another event loop
            else:
                self.restarts += 1
                # a worker that dies soon after it started backs off more each time
                lived = time.monotonic() - self._started_at
                self._failures = self._failures + 1 if lived < self.stable_after_s else 1
            self.slots[slot] = None
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
        proc = WorkerProcess(cmd, language=self.language, cwd=root, env=self._full_env(root))
        proc.on_call = functools.partial(self._on_call, proc)
        proc.on_emits = functools.partial(self._on_emits, proc)
        try:
            hello = await proc.start()
        except WorkerCrashed:
            self._failures += 1
            raise
        self._started_at = time.monotonic()
        pid = hello.get("pid")
        self.pids.append(pid if isinstance(pid, int) else proc.pid or 0)
        self.slots[slot] = proc
        if proc.exited is not None:  # a worker that dies is replaced at once (not on demand)
            proc.exited.add_done_callback(lambda _: self._replace(root, slot, proc, loop))
        return proc

    def _replace(
        self, root: Path, slot: int, proc: WorkerProcess, loop: asyncio.AbstractEventLoop
    ) -> None:
        mine = slot < len(self.slots) and self.slots[slot] is proc
        if mine and not proc.closing and not loop.is_closed():
            self._start_soon(root, slot, loop)

    def _take_workers(self) -> list[WorkerProcess]:
        workers = self.workers
        self.slots = [None] * len(self.slots)
        return workers

    def discard(self) -> None:
        """Stop the workers from sync code (a reload replaced this runtime): ``shutdown`` on
        their loop when that loop runs in this thread, else kill them."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for worker in self._take_workers():
            worker.closing = True
            if running is not None and worker.loop is running:
                task = running.create_task(worker.close())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                worker.kill()

    async def aclose(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        closing = []
        for worker in self._take_workers():
            worker.closing = True
            if worker.loop is running and worker.loop is not None:
                closing.append(worker.close())
            else:
                worker.kill()
        if closing:
            await asyncio.gather(*closing)

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
        # The step's emit check (``invoke.emits``): sent with its first invoke on each worker
        # (``worker.told``), and again when the engine's topics change (a reload).
        checks: list[Any] = [None, b""]  # [topic catalog, b"" or b',"emits":{...}']

        async def invoke(data: Any, ctx: Any) -> Any:
            # what follows the id: the file, the step, the data and the ctx (then maybe the
            # emit check, and the closing brace)
            payload = after_id + dumps(data) + _ctx_json(ctx, ctx_tail)
            catalog = _topics_of(ctx)
            loop = asyncio.get_running_loop()
            redelivered = unattributed = 0
            while True:
                slots = runtime.slots
                worker: WorkerProcess | None
                if len(slots) == 1:
                    worker = slots[0]
                    if worker is None or not worker.alive or worker.loop is not loop:
                        worker = await runtime.ensure_worker(root)
                else:
                    worker = await runtime._pick(root, loop)
                # {"t":"invoke","id":..,"file":..,"step":..,"data":..,"ctx":{..},"emits"?:{..}}
                told = worker.told
                if told.get(after_id) is catalog:
                    rest = payload + b"}"
                else:
                    if checks[0] is not catalog:
                        checks[0], checks[1] = catalog, _emit_checks(record, catalog)
                    told[after_id] = catalog
                    rest = payload + checks[1] + b"}"
                rid, fut = worker.start_request_parts(_INVOKE_HEAD, rest)
                ctxs = worker.ctxs
                ctxs[rid] = ctx
                refused: BaseException | None = None
                try:
                    value = await fut
                except WorkerError as e:
                    refused = worker.refused.get(rid)
                    if refused is not None:  # a deferred emit was refused: that is the failure
                        raise runtime._refused_error(record, refused) from None
                    raise runtime.step_error(record, e) from None
                except WorkerCrashed:
                    if not runtime._redeliver(worker, rid, redelivered, unattributed):
                        raise
                    # not at fault: sent again on a fresh worker, no attempt used up
                    redelivered += 1
                    unattributed += not worker.blamed
                    runtime.redeliveries += 1
                    continue
                except asyncio.CancelledError:
                    if worker.alive:
                        grace = runtime.settings(root).kill_grace_s
                        worker.abandon(
                            rid,
                            grace,
                            f"step '{record.name}' ({record.rel_file}) did not end within "
                            f"{grace:g}s of being cancelled (its timeout)",
                        )
                        with contextlib.suppress(WorkerCrashed):
                            worker.send({"t": "cancel", "id": rid})
                    else:
                        worker.forget(rid)
                    raise
                finally:
                    ctxs.pop(rid, None)
                    if worker.refused:
                        refused = worker.refused.pop(rid, None)
                if refused is not None:
                    raise runtime._refused_error(record, refused)
                return value

        record.invoke = invoke

    def _redeliver(
        self, worker: WorkerProcess, rid: int, redelivered: int, unattributed: int
    ) -> bool:
        """Whether an invoke whose worker died is sent again, transparently, on a fresh worker
        (the engine never sees that failure, so no attempt is used up): when the death is
        blamed on other requests (a handler killed for overrunning its timeout, an invoke the
        worker reported fatal); when nothing is blamed, once, and only if it was not alone on
        the worker (alone, it is the cause: it fails and follows the step's retries)."""
        if worker.closing or redelivered >= self.max_redeliveries:
            return False
        if worker.blamed:
            return rid not in worker.blamed
        return worker.died_with > 1 and unattributed == 0

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

    def _on_emits(self, proc: WorkerProcess, rid: Any, emits: list[Any]) -> None:
        """An invoke's deferred emits (``emits`` of its ``result``/``error``/``emits`` frame):
        validated and published in order through ``ctx.emit``; the first one refused stops the
        invoke's emits and fails it."""
        ctx = proc.ctxs.get(rid)
        if ctx is None or rid in proc.refused:
            return  # the invoke is over (timed out, cancelled) or already failed
        for item in emits:
            try:
                if not isinstance(item, dict):
                    raise ValueError(f"an emit of the worker is not an object: {item!r}")
                ctx.emit(item.get("topic"), item.get("data"))
            except Exception as e:
                proc.refused[rid] = e
                return

    def _on_call(self, proc: WorkerProcess, msg: dict[str, Any]) -> Any:
        rid = msg.get("invoke")
        ctx = proc.ctxs.get(rid)  # type: ignore[arg-type]
        if ctx is None:
            raise RuntimeError("the invoke this call belongs to is over (timed out or cancelled)")
        op = msg.get("op")
        args = msg.get("args") or {}
        if op == "emit":
            if rid in proc.refused:
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


def _quiet_done(task: asyncio.Task[Any]) -> None:
    """A pool worker started in the background: its failure is the next invoke's to report."""
    if not task.cancelled() and task.exception() is not None:
        _log.debug("starting a worker failed: %s", task.exception())


def _pool_config(root: Path, key: str) -> WorkerPoolConfig:
    """``runtimes.<key>`` of the project's wistro.yml (its environment's overlay applied:
    ``$WISTRO_ENV``); the defaults when there is none. The project's loader has validated the
    file already: a block that does not validate here gives the defaults, with a warning."""
    file = next((root / n for n in CONFIG_NAMES if (root / n).is_file()), None)
    if file is None or not key:
        return WorkerPoolConfig()
    try:
        raw, _ = read_raw(file)
        block = dict(raw.get("runtimes") or {})
        env = (raw.get("environments") or {}).get(os.environ.get("WISTRO_ENV") or "dev") or {}
        for name, overlay in (env.get("runtimes") or {}).items():
            block[name] = {**(block.get(name) or {}), **(overlay or {})}
        return getattr(RuntimesConfig.model_validate(block), key)
    except Exception as e:
        _log.warning("runtimes.%s of %s: %s; using the defaults", key, file, e)
        return WorkerPoolConfig()


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
    """The project folder of a step: its file without its project-relative path."""
    file, rel = str(record.file), record.rel_file
    if rel and len(file) > len(rel) + 1 and file.endswith("/" + rel):  # every step of a load
        return Path(file[: -len(rel) - 1])
    n = len(Path(rel).parts)
    return Path(*record.file.parts[: len(record.file.parts) - n]) if n else record.file.parent


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _with_file(e: StepLoadError, file: Path) -> StepLoadError:
    return StepLoadError(e.message, file=file, line=e.line, hint=e.hint)
