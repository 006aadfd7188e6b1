"""The trace writer in a process of its own.

Writing a batch to SQLite (or Redis) costs more CPU than the engine spends on the events it
holds, and in a writer *thread* that CPU is taken under the GIL, from the event loop. A store
that can be opened again from plain values (:meth:`TraceStore.writer_spec`) is therefore
written by a child process instead: the recorder's thread turns each batch into tuples
(the store's ``prepare``: rows as close to what the store writes as it can, in ``marshal``, the
cheapest encoding of str, float, int, bytes and None) and sends them down a pipe. It does not
wait for a batch to be written before it hands on the next: the child writes one batch while the
recorder prepares the next (``submit``), and its answers come back in order (``answer``). A
flush still returns once its batch is in the store, as with a thread.

The wire: frames of a 4-byte little-endian length and a ``marshal`` body. First the spec
(``factory``, ``kwargs``); the child answers ``("ready", None)`` or ``("failed", reason)``.
Then one frame a batch, answered ``None`` (written) or the error's one line. The child ends at
end of input, after the last batch it read, so a parent killed with ``kill -9`` loses no batch
it sent. It ignores SIGINT and SIGTERM: Ctrl-C in a terminal reaches the whole process group,
and the parent, which drains on those, still has batches to send.

    python -c "import wistro.tracing.writer_process as w; w.run()"   # ProcessWriter runs it
"""

from __future__ import annotations

import contextlib
import importlib
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from typing import IO, Any

from wistro.collector import collector_paused
from wistro.processes import widen_pipe

_LENGTH = struct.Struct("<I")
# marshal's version 4 refers back to an object it wrote before (a record's trace id, topic and
# step are the run's, the topic's and the step's objects), where version 2 writes them again.
# Measured on the engine's batches: 4 is 25 % faster to write and twice as fast to read.
_WIRE_VERSION = 4


@dataclass(frozen=True)
class WriterSpec:
    """How to open a store again in another process: ``factory`` is ``module:qualname``,
    called with ``kwargs`` (str, int, float, bool and None only)."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def encode(prepared: Any) -> bytes:
    """What a store's ``prepare`` made, as the writer process reads it."""
    return marshal.dumps(prepared, _WIRE_VERSION)


class WriterGone(Exception):
    """The writer process ended or its pipe broke."""


# -- the wire --------------------------------------------------------------------------------


def _send(out: IO[bytes], value: Any) -> None:
    body = value if isinstance(value, bytes) else marshal.dumps(value)
    out.write(_LENGTH.pack(len(body)))
    out.write(body)
    out.flush()


def _receive_raw(inp: IO[bytes]) -> bytes | None:
    head = inp.read(_LENGTH.size)
    if not head:
        return None
    if len(head) < _LENGTH.size:
        raise EOFError("a frame cut short")
    (size,) = _LENGTH.unpack(head)
    body = inp.read(size)
    if len(body) < size:
        raise EOFError("a frame cut short")
    return body


def _receive(inp: IO[bytes]) -> Any:
    body = _receive_raw(inp)
    if body is None:
        raise EOFError("end of input")
    return marshal.loads(body)


# -- the parent's side ---------------------------------------------------------------------


class ProcessWriter:
    """A child process writing batches to the store ``spec`` opens. Used from one thread."""

    def __init__(self, spec: WriterSpec) -> None:
        self.spec = spec
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import wistro.tracing.writer_process as w; w.run()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in, self._out = self._proc.stdin, self._proc.stdout
        # 1 MiB: a batch goes across in a few writes, not one wake-up of the child per 64 KiB
        # (measured: a third of the thread's CPU per batch, one event in flight)
        widen_pipe(self._in.fileno())
        self.ready = False
        try:
            _send(self._in, (spec.factory, spec.kwargs))
        except OSError as e:
            self.close()
            raise WriterGone(f"the trace writer process did not start ({e})") from e

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll_ready(self, timeout: float = 0.0) -> bool:
        """Whether the child has opened the store (waits at most ``timeout`` seconds). Raises
        WriterGone when it could not."""
        if self.ready:
            return True
        if not select.select([self._out], [], [], timeout)[0]:
            return False
        try:
            status, reason = _receive(self._out)
        except (EOFError, OSError, ValueError) as e:
            self.close()
            raise WriterGone(f"the trace writer process ended before it was ready ({e})") from e
        if status != "ready":
            self.close()
            raise WriterGone(f"the trace writer process could not open the store: {reason}")
        self.ready = True
        return True

    def write(self, prepared: Any) -> str | None:
        """Send one batch (what the store's ``prepare`` made of it) and wait until it is
        written: None, or the error's line. Raises WriterGone when the child is gone (the batch
        may or may not have been written)."""
        self.submit(encode(prepared))
        return self.answer()

    def submit(self, body: bytes) -> None:
        """Send a batch already encoded (``encode(store.prepare(batch))``) without waiting for
        it to be written: the child writes the batches in the order they were sent and answers
        each (``answer``). Blocks only while the pipe is full. Raises WriterGone."""
        try:
            _send(self._in, body)
        except (OSError, ValueError) as e:
            self.close()
            raise WriterGone(f"the trace writer process ended ({e or type(e).__name__})") from e

    def answer(self) -> str | None:
        """Wait for the child to have written the oldest batch not answered yet: None, or the
        error's line. Raises WriterGone when the child is gone (the batches not answered may or
        may not have been written)."""
        try:
            answer: str | None = _receive(self._out)
        except (EOFError, OSError, ValueError) as e:
            self.close()
            raise WriterGone(f"the trace writer process ended ({e or type(e).__name__})") from e
        return answer

    def close(self, timeout: float = 30.0) -> None:
        """End of input: the child writes what it has read and exits."""
        for pipe in (self._in, self._out):
            with contextlib.suppress(OSError):
                pipe.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# -- the child's side ----------------------------------------------------------------------


def _open(factory: str, kwargs: dict[str, Any]) -> Any:
    module, _, name = factory.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target(**kwargs)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed must not corrupt the frames
    try:
        factory, kwargs = _receive(inp)
        store = _open(factory, kwargs)
    except EOFError:
        return 0
    except Exception as e:
        with contextlib.suppress(OSError):
            _send(out, ("failed", f"{type(e).__name__}: {e}"))
        return 1
    try:
        _send(out, ("ready", None))
    except OSError:  # the parent closed before the store was open: nothing to write
        with contextlib.suppress(Exception):
            store.close()
        return 0
    try:
        while (body := _receive_raw(inp)) is not None:
            try:
                with collector_paused():  # the batch's tuples, freed when it is written
                    store.write_prepared(marshal.loads(body))
                answer = None
            except Exception as e:
                traceback.print_exc()
                answer = str(e).splitlines()[0] if str(e) else type(e).__name__
            with contextlib.suppress(OSError):  # the parent may be gone: write the rest anyway
                _send(out, answer)
    except EOFError:  # a frame cut short: the parent died while sending it
        pass
    finally:
        with contextlib.suppress(Exception):
            store.close()
    return 0


def run() -> None:
    """The child's entry point (``python -c``: ``-m`` would import this module twice)."""
    sys.stderr.flush()
    os._exit(main())
