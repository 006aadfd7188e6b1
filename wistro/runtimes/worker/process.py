"""``WorkerProcess``: one worker child process speaking the framed JSON protocol over
stdin/stdout (see :mod:`wistro.runtimes.worker`): start and ``hello``, requests multiplexed by
id, the worker's ``call``s, stderr forwarding, and what happens when it exits or breaks the
protocol."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from wistro.errors import WorkerCrashed, WorkerError, WorkerStartError
from wistro.runtimes.worker.framing import (
    _HEADER,
    MAX_FRAME,
    _error_payload,
    encode_frame,
    loads,
)

CallHandler = Callable[[dict[str, Any]], Any]  # returns a value or an awaitable of one
EmitsHandler = Callable[[Any, Any], None]  # (invoke id, the frame's "emits" list)


@functools.cache
def _setpriv() -> str | None:
    """util-linux's ``setpriv`` when it can set the parent-death signal (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    found = shutil.which("setpriv")
    if found is None:
        return None
    try:
        done = subprocess.run(
            [found, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found if done.returncode == 0 else None


def die_with_parent(command: list[str]) -> list[str]:
    """``command`` made to die (SIGKILL) with its parent: Linux's ``PR_SET_PDEATHSIG``, which
    the kernel applies however the parent ends (``kill -9`` included), and which a child stuck
    in a busy loop cannot ignore. ``setpriv --pdeathsig KILL`` sets it and then execs the
    command in the same process (same pid); elsewhere the command is left as it is, and a
    worker relies on the EOF of its stdin (which a worker that started after its parent died
    sees at once, too). The signal comes when the *thread* that started the child ends:
    workers are started on their event loop's thread.

    Not a ``preexec_fn``: Python code between fork and exec can deadlock the child in a
    process with threads (the engine has several), and it stops CPython from using
    ``vfork``: with a 400 MB heap each start blocked the event loop for 17.8 ms, against
    0.32 ms now (``bench/bench_worker_spawn.py``)."""
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else list(command)


def _how_it_ended(returncode: int | None) -> str:
    """`` (exit code 3)``, `` (killed by SIGKILL)`` for a signal, or nothing when unknown."""
    if returncode is None:
        return ""
    if returncode < 0:
        try:
            return f" (killed by {signal.Signals(-returncode).name})"
        except ValueError:
            return f" (killed by signal {-returncode})"
    return f" (exit code {returncode})"


def _executable(name: str, cwd: str | None, env: dict[str, str] | None) -> str | None:
    """Where the child would find ``name``: a path (relative to ``cwd``), else on the PATH of
    its environment."""
    if os.sep in name and cwd is not None:
        name = os.path.join(cwd, name)
    return shutil.which(name, path=(env if env is not None else os.environ).get("PATH"))


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, proc: WorkerProcess) -> None:
        self.proc = proc
        self.buf = bytearray()
        self.err = bytearray()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.proc.last_rx = time.monotonic()
            buf = self.buf
            buf += data
            pos, n = 0, len(buf)
            frames: list[bytearray] = []
            while n - pos >= _HEADER:
                size = int.from_bytes(buf[pos : pos + _HEADER], "big")
                if size > MAX_FRAME:
                    self.proc._broken(f"frame of {size} bytes is larger than 64 MiB")
                    return
                end = pos + _HEADER + size
                if end > n:
                    break
                frames.append(buf[pos + _HEADER : end])
                pos = end
            if pos:
                del buf[:pos]
            for frame in frames:
                try:
                    msg = loads(frame)
                except UnicodeDecodeError:
                    self.proc._broken("a frame is not UTF-8")
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
        on_emits: EmitsHandler | None = None,
        hello_timeout: float = 15.0,
    ) -> None:
        self.command = list(command)
        self.language = language
        self.cwd = str(cwd) if cwd is not None else None
        self.env = env
        self.on_call = on_call
        self.on_emits = on_emits
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
        # What the runtime keeps per worker (its invokes' ctx, their refused emits, the steps
        # told their emit check): request ids are only unique within one worker.
        self.ctxs: dict[int, Any] = {}
        self.refused: dict[int, BaseException] = {}
        self.told: dict[Any, Any] = {}
        self.last_rx = 0.0  # monotonic time of the last bytes on stdout
        self.busy_since = 0.0  # ... of the last request sent while none was in flight
        # Isolation: the requests this worker's death is blamed on (a handler that overran its
        # timeout and got the worker killed; an invoke the worker reported `fatal`), and how
        # many requests were in flight when it died. The others were not at fault.
        self.blamed: set[int] = set()
        self.died_with = 0
        self._abandoned: dict[int, asyncio.TimerHandle] = {}  # given up on, not answered yet
        self._killed_for: str | None = None
        self.closing = False  # close() was called: what fails now is not redelivered

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> dict[str, Any]:
        """Spawn the worker and wait for its ``hello``. Raises WorkerStartError."""
        loop = self.loop = asyncio.get_running_loop()
        self.exited = loop.create_future()
        self._reaped = loop.create_future()
        self._hello = loop.create_future()
        command = die_with_parent(self.command)
        if (
            command[0] != self.command[0]
            and _executable(self.command[0], self.cwd, self.env) is None
        ):
            # setpriv would exec it and exit 127: say it here, as a spawn of it would
            raise WorkerStartError(
                f"cannot start the {self.language} worker: no executable {self.command[0]!r}"
            )
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _Protocol(self),
                *command,
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
        self.last_rx = time.monotonic()
        # a write transport (asyncio's is a WriteTransport, uvloop's is not one by class)
        stdin = transport.get_pipe_transport(0)
        assert stdin is not None and hasattr(stdin, "write")
        self._stdin = stdin  # type: ignore[assignment]
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
        self.closing = True
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
        if not self._pending:
            self.busy_since = time.monotonic()
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending[rid] = fut
        self.send(msg)
        return fut

    def start_request_parts(self, head: bytes, rest: bytes) -> tuple[int, asyncio.Future[Any]]:
        """A pre-encoded request (the hot path of invokes): its JSON is ``head``, its id, then
        ``rest`` (``head`` ends with ``"id":``). Returns ``(id, future)``."""
        if not self.alive:
            raise WorkerCrashed(self._crash or f"the {self.language} worker is not running")
        self._next_id += 1
        rid = self._next_id
        assert self.loop is not None
        alone = not self._pending
        if alone:
            self.busy_since = time.monotonic()
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending[rid] = fut
        data = b"%s%d%s" % (head, rid, rest)
        self._out.append(len(data).to_bytes(_HEADER, "big") + data)
        if alone:  # nothing else in flight: no batch to wait for (a loop turn costs ~10 µs)
            self._flush()
        elif not self._flush_scheduled:
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

    def abandon(self, rid: int, grace_s: float, why: str) -> None:
        """Stop waiting for request ``rid`` (the engine gave up on it: its timeout), and kill the
        worker unless the worker answers it (late, dropped) within ``grace_s``: a handler that
        does not end when cancelled (a busy loop, a promise that never settles) would hold the
        worker, or leak in it, for good."""
        self._pending.pop(rid, None)
        if self.alive and self.loop is not None:
            self._abandoned[rid] = self.loop.call_later(grace_s, self._overran, rid, why)

    def _overran(self, rid: int, why: str) -> None:
        self._abandoned.pop(rid, None)
        if self.alive:
            self.logger.warning("killing the %s worker (pid %s): %s", self.language, self.pid, why)
            self.kill_for(rid, why)

    def kill_for(self, rid: int, why: str) -> None:
        """Kill the worker because of request ``rid``: the other requests in flight on it were
        not at fault (``blamed``)."""
        self.blamed.add(rid)
        if self._killed_for is None:
            self._killed_for = why
        self.kill()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def silent_for(self, now: float) -> float:
        """Seconds with requests in flight and nothing heard (since the first of them); 0 when
        none is in flight."""
        return now - max(self.last_rx, self.busy_since) if self._pending else 0.0

    # ------------------------------------------------------------ receiving
    def _dispatch(self, msg: dict[str, Any]) -> None:
        t = msg.get("t")
        if t == "result" or t == "error":
            rid = msg.get("id")
            if "emits" in msg:  # the invoke's deferred emits: published before it ends
                self._emits(rid, msg["emits"])
            if t == "error":
                err = msg.get("error")
                if isinstance(err, dict) and err.get("fatal"):  # the worker exits because of it
                    self.blamed.add(rid)  # type: ignore[arg-type]
            fut = self._pending.pop(rid, None)  # type: ignore[arg-type]
            if fut is None:
                if self._abandoned:  # a late answer: the handler did end
                    late = self._abandoned.pop(rid, None)  # type: ignore[arg-type]
                    if late is not None:
                        late.cancel()
                return
            if fut.done():
                return
            if t == "result":
                fut.set_result(msg.get("value"))
            else:
                fut.set_exception(WorkerError.from_payload(msg.get("error")))
        elif t == "call":
            self._serve(msg)
        elif t == "emits":
            self._emits(msg.get("invoke"), msg.get("emits"))
        elif t == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(msg)
        else:
            self._broken(f"unknown message type {t!r}")

    def _emits(self, invoke: Any, emits: Any) -> None:
        if self.on_emits is None or not isinstance(emits, list):
            if emits:
                self._broken("a frame carries emits this engine cannot take")
            return
        self.on_emits(invoke, emits)

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
        code = _how_it_ended(self.returncode)
        if self._killed_for is not None:
            self._fail(
                f"the {self.language} worker (pid {self.pid}) was killed: {self._killed_for}"
            )
            return
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
        for late in self._abandoned.values():
            late.cancel()
        self._abandoned.clear()
        pending, self._pending = self._pending, {}
        self.died_with = len(pending)
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerCrashed(why))
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(WorkerCrashed(why))
            self._hello.exception()  # observed: start() may already have given up
        if self.exited is not None and not self.exited.done():
            self.exited.set_result(None)
