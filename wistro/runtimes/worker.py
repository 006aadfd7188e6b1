"""Long-lived language workers: the engine side of ``docs/worker-protocol.md``.

Two layers, both shared by every worker language (JavaScript/TypeScript, Go, ...):

``WorkerProcess`` - one child process speaking the protocol over stdin/stdout::

    proc = WorkerProcess(["node", "worker.mjs"], language="javascript", cwd=root,
                         on_call=handle_call)        # handle_call(msg) -> value | awaitable
    hello = await proc.start()                       # spawns, waits for `hello` (hello_timeout)
    value = await proc.request({"t": "load", "files": [...]})   # the id is assigned here
    proc.send({"t": "cancel", "id": 7})              # fire and forget
    await proc.close()                               # `shutdown`, wait, then kill

  * ``request`` returns the ``value`` of the matching ``result``; an ``error`` raises
    ``WorkerError(type, message, stack, file, line)``; a worker that exits or breaks the
    protocol fails every pending request with ``WorkerCrashed`` (``proc.alive`` turns False).
  * A ``call`` from the worker is passed to ``on_call(msg)``; its return value (awaited when it
    is awaitable) is sent back as ``result``; an exception is sent back as ``error`` with
    ``type`` = the exception class name and ``message`` = ``err.format()`` for a WistroError.
  * stderr is forwarded line by line to ``logging.getLogger("wistro.worker.<language>")``;
    the last lines are kept in ``proc.stderr_tail`` for crash messages.
  * Frames written in one loop iteration are flushed together (one syscall under load).

``WorkerRuntime`` - a ``LanguageRuntime`` base for worker languages. A subclass sets
``language``, ``suffixes`` (and ``languages`` when one worker serves several, e.g.
javascript + typescript) and implements::

    def command(self, root: Path) -> list[str] | None      # None: the toolchain is missing
    def toolchain_error(self, files) -> list[StepLoadError] # optional: the message per file
    def prepare(self, root: Path, files: list[Path]) -> None  # optional: build/compile, blocking
    def env(self, root: Path) -> dict[str, str]            # optional: extra environment
    def language_of(self, file: Path) -> str               # optional: a record's language

  * ``read()`` (sync, callable while an event loop runs) starts a short-lived worker in a helper
    thread, sends one batched ``load``, and maps ``steps``/``errors`` to StepSource /
    StepLoadError (``file`` + ``line``; the optional ``line`` of a step is where its config is).
  * ``bind()`` sets ``record.invoke``; the runtime's single long-lived worker is started on
    demand on the running loop (``prepare`` runs first, in a thread), restarted after a crash
    with a small backoff (``restarts`` counts them, ``pids`` lists every worker's hello pid).
  * An invoke sends ``invoke`` with ``data`` (JSON; pydantic models dumped) and ``ctx`` =
    ``{trace_id, span_id, step, flows}``; the worker's ``call``s are served with the real
    ``ctx`` (emit / state.* / log). A worker ``error`` raises ``StepError`` (a HandlerError
    whose one-line message is ``<file>:<line>, step '<name>': <JSType>: <message>`` and whose
    ``.stack`` is also attached as an exception note, so the span's traceback shows it). On
    cancellation (the step's timeout) ``cancel`` is sent.
  * ``read()`` first takes the configs of files unchanged since ``wistro.yml.lock`` from the
    lock (``configs_from_lock(root, files)``; same sha256 as the lock's ``hash``): no worker and
    no toolchain needed for them.
  * ``aclose()`` sends ``shutdown`` (then kills); ``discard()`` does it from sync code (reload).

Other helpers: ``start_request_body(lambda id: json_text)`` (a pre-encoded hot request),
``encode_frame(msg)``, ``which(name, env_var)``, ``raw_config(name, lock_config)``.

Nothing here blocks the loop but ``read()``, which is synchronous by the runtime interface.
The exceptions (``WorkerError``, ``WorkerCrashed``, ``WorkerStartError``, ``StepError``) are
defined in :mod:`wistro.errors` and importable from here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from wistro.context import DONE
from wistro.errors import (
    StepError,
    StepLoadError,
    WistroError,
    WorkerCrashed,
    WorkerError,
    WorkerStartError,
)
from wistro.runtimes.base import LanguageRuntime, StepSource
from wistro.step import StepRecord

__all__ = [
    "MAX_FRAME",
    "StepError",
    "WorkerCrashed",
    "WorkerError",
    "WorkerProcess",
    "WorkerRuntime",
    "WorkerStartError",
]

MAX_FRAME = 64 * 1024 * 1024
_HEADER = 4

CallHandler = Callable[[dict[str, Any]], Any]  # returns a value or an awaitable of one


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. an api request
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
_decode = json.JSONDecoder().decode  # on str
# (text, 0) -> (value, end), without decode()'s whitespace handling
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def encode_frame(msg: dict[str, Any]) -> bytes:
    body = _encode(msg).encode()
    return len(body).to_bytes(_HEADER, "big") + body


def _error_payload(e: BaseException) -> dict[str, Any]:
    if isinstance(e, WistroError):
        return {"type": type(e).__name__, "message": e.format()}
    return {"type": type(e).__name__, "message": str(e)}


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, proc: WorkerProcess) -> None:
        self.proc = proc
        self.buf = bytearray()
        self.err = bytearray()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            buf = self.buf
            buf += data
            pos, n = 0, len(buf)
            frames: list[str] = []
            while n - pos >= _HEADER:
                size = int.from_bytes(buf[pos : pos + _HEADER], "big")
                if size > MAX_FRAME:
                    self.proc._broken(f"frame of {size} bytes is larger than 64 MiB")
                    return
                end = pos + _HEADER + size
                if end > n:
                    break
                try:
                    frames.append(buf[pos + _HEADER : end].decode())
                except UnicodeDecodeError:
                    self.proc._broken("a frame is not UTF-8")
                    return
                pos = end
            if pos:
                del buf[:pos]
            for frame in frames:
                try:
                    msg, stop = _scan_once(frame, 0)
                    if stop != len(frame):
                        msg = _decode(frame)  # whitespace around it, or an error to report
                except StopIteration:
                    self.proc._broken("a frame is not JSON")
                    return
                except ValueError as e:
                    self.proc._broken(f"a frame is not JSON: {e}")
                    return
                if not isinstance(msg, dict):
                    self.proc._broken("a frame is not a JSON object")
                    return
                self.proc._dispatch(msg)
        else:
            self.err += data
            while (i := self.err.find(b"\n")) >= 0:
                self.proc._stderr_line(self.err[:i].decode(errors="replace"))
                del self.err[: i + 1]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 2 and self.err:
            self.proc._stderr_line(self.err.decode(errors="replace"))
            self.err.clear()
        if fd == 1:
            self.proc._gone("closed its stdout")

    def process_exited(self) -> None:
        self.proc._gone("exited")
        reaped = self.proc._reaped
        if reaped is not None and not reaped.done():
            reaped.set_result(None)


class WorkerProcess:
    """One worker child process speaking the framed JSON protocol (see the module docstring)."""

    def __init__(
        self,
        command: list[str],
        *,
        language: str,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        on_call: CallHandler | None = None,
        hello_timeout: float = 15.0,
    ) -> None:
        self.command = list(command)
        self.language = language
        self.cwd = str(cwd) if cwd is not None else None
        self.env = env
        self.on_call = on_call
        self.hello_timeout = hello_timeout
        self.logger = logging.getLogger(f"wistro.worker.{language}")
        self.hello: dict[str, Any] | None = None
        self.pid: int | None = None
        self.alive = False
        self.returncode: int | None = None
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.exited: asyncio.Future[None] | None = None  # set once it is gone (or broken)
        self._reaped: asyncio.Future[None] | None = None  # set once the process has exited
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._crash: str | None = None
        self._failed = False
        self._gone_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> dict[str, Any]:
        """Spawn the worker and wait for its ``hello``. Raises WorkerStartError."""
        loop = self.loop = asyncio.get_running_loop()
        self.exited = loop.create_future()
        self._reaped = loop.create_future()
        self._hello = loop.create_future()
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _Protocol(self),
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        except OSError as e:
            raise WorkerStartError(f"cannot start the {self.language} worker: {e}") from None
        self._transport = transport
        self.pid = transport.get_pid()
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        self._stdin = stdin
        self.alive = True
        try:
            async with asyncio.timeout(self.hello_timeout):
                self.hello = await asyncio.shield(self._hello)
        except TimeoutError:
            self.kill()
            raise WorkerStartError(
                f"the {self.language} worker sent no hello within {self.hello_timeout:g}s"
                + self._tail()
            ) from None
        except WorkerCrashed as e:
            raise WorkerStartError(str(e)) from None
        return self.hello

    async def close(self, timeout: float = 3.0) -> None:
        """Ask the worker to finish its in-flight invokes and exit; kill it after ``timeout``."""
        if self._transport is None:
            return
        if self.alive:
            with contextlib.suppress(Exception):
                self.send({"t": "shutdown"})
                self._flush()
            if self._reaped is None or asyncio.get_running_loop() is not self.loop:
                self.kill()
        if self._reaped is not None and asyncio.get_running_loop() is self.loop:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._reaped)
            except TimeoutError:
                self.kill()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await asyncio.shield(self._reaped)
        with contextlib.suppress(Exception):
            self._transport.close()

    def kill(self) -> None:
        """Kill the worker now (works from any thread, even once its loop is closed)."""
        if self.pid is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)

    # ------------------------------------------------------------ sending
    def send(self, msg: dict[str, Any]) -> None:
        """Queue one frame; frames queued in one loop iteration are written together."""
        if not self.alive:
            raise WorkerCrashed(self._crash or f"the {self.language} worker is not running")
        self._out.append(encode_frame(msg))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.write(data)

    async def request(self, msg: dict[str, Any]) -> Any:
        """Send a request (its ``id`` is set here) and return the answer's ``value``."""
        fut = self.start_request(msg)
        return await fut

    def start_request(self, msg: dict[str, Any]) -> asyncio.Future[Any]:
        """``request`` without awaiting: returns the future (``msg["id"]`` is set)."""
        if not self.alive:
            raise WorkerCrashed(self._crash or f"the {self.language} worker is not running")
        self._next_id += 1
        rid = msg["id"] = self._next_id
        assert self.loop is not None
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending[rid] = fut
        self.send(msg)
        return fut

    def start_request_body(self, body: Callable[[int], str]) -> tuple[int, asyncio.Future[Any]]:
        """Like ``start_request`` for a pre-encoded message: ``body(id)`` returns its JSON text
        (the fast path of hot requests). Returns ``(id, future)``."""
        if not self.alive:
            raise WorkerCrashed(self._crash or f"the {self.language} worker is not running")
        self._next_id += 1
        rid = self._next_id
        assert self.loop is not None
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending[rid] = fut
        data = body(rid).encode()
        self._out.append(len(data).to_bytes(_HEADER, "big") + data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return rid, fut

    def _send_null_result(self, rid: Any) -> None:
        if not isinstance(rid, int):
            self.send({"t": "result", "id": rid, "ok": True, "value": None})
            return
        data = b'{"t":"result","id":%d,"ok":true,"value":null}' % rid
        self._out.append(len(data).to_bytes(_HEADER, "big") + data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._flush)

    def forget(self, rid: int) -> None:
        """Stop waiting for request ``rid`` (its late answer is dropped)."""
        self._pending.pop(rid, None)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------ receiving
    def _dispatch(self, msg: dict[str, Any]) -> None:
        t = msg.get("t")
        if t == "result" or t == "error":
            fut = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
            if fut is None or fut.done():
                return
            if t == "result":
                fut.set_result(msg.get("value"))
            else:
                fut.set_exception(WorkerError.from_payload(msg.get("error")))
        elif t == "call":
            self._serve(msg)
        elif t == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(msg)
        else:
            self._broken(f"unknown message type {t!r}")

    def _serve(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        if self.on_call is None:
            self._answer_error(rid, RuntimeError("this worker may not call the engine"))
            return
        try:
            value = self.on_call(msg)
        except Exception as e:
            self._answer_error(rid, e)
            return
        if value is None:
            if self.alive:
                self._send_null_result(rid)
        elif inspect.isawaitable(value):
            task = asyncio.ensure_future(self._finish_call(rid, value))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif self.alive:
            try:
                self.send({"t": "result", "id": rid, "ok": True, "value": value})
            except (TypeError, ValueError) as e:
                self._answer_error(rid, e)

    async def _finish_call(self, rid: Any, value: Awaitable[Any]) -> None:
        try:
            result = await value
        except Exception as e:
            self._answer_error(rid, e)
            return
        if self.alive:
            try:
                self.send({"t": "result", "id": rid, "ok": True, "value": result})
            except (TypeError, ValueError) as e:
                self._answer_error(rid, e)

    def _answer_error(self, rid: Any, e: BaseException) -> None:
        if self.alive:
            self.send({"t": "error", "id": rid, "error": _error_payload(e)})

    def _stderr_line(self, line: str) -> None:
        self.stderr_tail.append(line)
        self.logger.info("%s", line)

    def _tail(self) -> str:
        if not self.stderr_tail:
            return ""
        return "; stderr: " + " | ".join(list(self.stderr_tail)[-5:])

    # ------------------------------------------------------------ failure
    def _broken(self, why: str) -> None:
        self.logger.error("%s worker broke the protocol: %s", self.language, why)
        self._fail(f"the {self.language} worker broke the protocol: {why}")
        self.kill()

    def _gone(self, how: str) -> None:
        if self._transport is not None:
            self.returncode = self._transport.get_returncode()
        if self._failed:
            return
        if self.returncode is None and how != "exited":
            # stdout closed first: stop taking requests, and wait a moment for the exit code
            self.alive = False
            if self._gone_timer is None and self.loop is not None:
                self._gone_timer = self.loop.call_later(1.0, self._gone_late, how)
            return
        code = f" (exit code {self.returncode})" if self.returncode is not None else ""
        self._fail(f"the {self.language} worker (pid {self.pid}) {how}{code}" + self._tail())

    def _gone_late(self, how: str) -> None:
        if not self._failed:
            self._fail(f"the {self.language} worker (pid {self.pid}) {how}" + self._tail())
            self.kill()

    def _fail(self, why: str) -> None:
        self.alive = False
        self._failed = True
        if self._gone_timer is not None:
            self._gone_timer.cancel()
        self._crash = why
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerCrashed(why))
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(WorkerCrashed(why))
            self._hello.exception()  # observed: start() may already have given up
        if self.exited is not None and not self.exited.done():
            self.exited.set_result(None)


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

        step_json = _encode(record.name)
        after_id = ',"file":' + _encode(file) + ',"step":' + step_json
        ctx_tail = ',"step":' + step_json + ',"flows":' + _encode(list(record.flows)) + "}"

        async def invoke(data: Any, ctx: Any) -> Any:
            worker = runtime.worker
            if worker is None or not worker.alive or worker.loop is not asyncio.get_running_loop():
                worker = await runtime.ensure_worker(root)
            ctx_json = _ctx_json(ctx, ctx_tail)
            data_json = _encode(data)
            rid, fut = worker.start_request_body(
                lambda rid: (
                    f'{{"t":"invoke","id":{rid}{after_id},"data":{data_json},"ctx":{ctx_json}}}'
                )
            )
            ctxs = runtime._ctxs
            ctxs[rid] = ctx
            try:
                return await fut
            except WorkerError as e:
                raise runtime.step_error(record, e) from None
            except asyncio.CancelledError:
                worker.forget(rid)
                if worker.alive:
                    with contextlib.suppress(WorkerCrashed):
                        worker.send({"t": "cancel", "id": rid})
                raise
            finally:
                ctxs.pop(rid, None)

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

    def _on_call(self, msg: dict[str, Any]) -> Any:
        ctx = self._ctxs.get(msg.get("invoke"))  # type: ignore[arg-type]
        if ctx is None:
            raise RuntimeError("the invoke this call belongs to is over (timed out or cancelled)")
        op = msg.get("op")
        args = msg.get("args") or {}
        if op == "emit":
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


def _ctx_json(ctx: Any, tail: str) -> str:
    """``{"trace_id", "span_id", "step", "flows"}``; ``tail`` is the pre-encoded step + flows."""
    trace_id = getattr(ctx, "trace_id", None)
    span_id = getattr(ctx, "span_id", None)
    t = f'"{trace_id}"' if type(trace_id) is str and trace_id.isalnum() else _encode(trace_id)
    s = f'"{span_id}"' if type(span_id) is str and span_id.isalnum() else _encode(span_id)
    return f'{{"trace_id":{t},"span_id":{s}{tail}'


async def _await_none(aw: Awaitable[Any]) -> None:
    await aw


def configs_from_lock(root: Path, files: list[Path]) -> dict[Path, StepSource]:
    """Configs of the ``files`` unchanged since ``wistro.yml.lock`` was written (same hash), read
    back from the lock: no worker (and no toolchain) is needed for them."""
    lock_path = root / "wistro.yml.lock"
    if not lock_path.is_file():
        return {}
    try:
        lock = json.loads(lock_path.read_text(encoding="utf-8"))
        steps = lock["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    wanted = {f.resolve(): f for f in files}
    out: dict[Path, StepSource] = {}
    for name, step in steps.items() if isinstance(steps, dict) else ():
        try:
            file = wanted.get((root / step["file"]).resolve())
            if file is None or file in out:
                continue
            if hashlib.sha256(file.read_bytes()).hexdigest() != step["hash"]:
                continue
            cfg = step["config"]
            out[file] = StepSource(file, raw_config(name, cfg), cfg.get("line"))
        except (OSError, KeyError, TypeError, AttributeError):
            continue
    return out


def raw_config(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A step's ``config`` as written in its file, from its lock entry (``config_dict()``)."""
    schemas = cfg.get("emit_schemas") or {}

    def emits(items: Any) -> list[dict[str, Any]]:
        out = []
        for e in items or ():
            decl = {k: v for k, v in e.items() if v is not None}
            if e["topic"] in schemas and items is cfg.get("emits"):
                decl["schema"] = schemas[e["topic"]]
            out.append(decl)
        return out

    raw: dict[str, Any] = {
        "type": cfg["type"],
        "name": name,
        "description": cfg.get("description"),
        "subscribes": list(cfg.get("subscribes") or ()),
        "emits": emits(cfg.get("emits")),
        "virtual_subscribes": list(cfg.get("virtual_subscribes") or ()),
        "virtual_emits": emits(cfg.get("virtual_emits")),
        "flows": list(cfg.get("flows") or ()),
        "input": cfg.get("input_schema"),
        "concurrency": cfg.get("concurrency"),
        "timeout_s": cfg.get("timeout_s"),
        "retries": cfg.get("retries"),
        "retry_backoff_s": cfg.get("retry_backoff_s", 0.1),
    }
    trigger = dict(cfg.get("trigger") or {})
    if cfg["type"] == "api":
        raw.update(
            path=trigger.get("path"),
            method=trigger.get("method"),
            body=trigger.get("body_schema"),
            query=trigger.get("query_schema"),
            responses=trigger.get("responses") or None,
            auth=trigger.get("auth"),
        )
    elif cfg["type"] == "cron":
        raw.update(
            cron=trigger.get("cron"),
            timezone=trigger.get("timezone"),
            allow_overlap=bool(trigger.get("allow_overlap", False)),
        )
    return {k: v for k, v in raw.items() if v is not None}


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


def which(name: str, env_var: str | None = None) -> str | None:
    """``env_var`` (an explicit path) wins; else ``name`` on PATH."""
    if env_var and (explicit := os.environ.get(env_var)):
        return explicit if os.path.exists(explicit) else None
    return shutil.which(name)
