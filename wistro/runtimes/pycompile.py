"""Compiling the step files of a large project on another core, while this process imports them.

Loading a Python step file is reading it, hashing it, compiling it (or reading its bytecode from
``__pycache__``) and executing it. Only the execution must happen here: the module, its classes
and its handler live in this process. The rest has no side effect, so for a project with many
step files (``MIN_FILES``) a helper interpreter — the same Python, ``-I -S``, nothing imported but
the standard library — does it ahead of the importer: for each file, in order, it sends the
file's SHA-256, the line of its ``config``, and its code object (marshalled), writing the file's
``__pycache__`` entry exactly as an import would (``SourceFileLoader.get_code``: same bytecode,
same rules, ``sys.dont_write_bytecode`` and ``sys.pycache_prefix`` as in this process).

Nothing depends on the helper: a file it could not read or compile (a syntax error, say) is
loaded here as usual, which reports the error as usual; so is a file it has not sent yet when
its turn comes (the helper is starting, or behind on a busy machine: the import never waits for
it); if it does not start, is a different Python or dies, the remaining files are loaded here.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import select
import subprocess
import sys
import threading
import types
from importlib.util import MAGIC_NUMBER
from pathlib import Path

MIN_FILES = 200  # below this, starting an interpreter (~20 ms on its core) is not worth it
PIPE_BYTES = 1 << 20  # the helper's output pipe (Linux; the default is 64 KB)
WAIT_S = 0.0  # how long take() waits for the helper (0: a file it has not sent yet is loaded
# here, so the helper never holds the import up, on a busy machine included; tests wait)
DISABLE_ENV = "WISTRO_NO_COMPILE_HELPER"  # set (non-empty): never start the helper

# Run with ``python -I -S -c``. Reads settings, then one JSON path per line; writes frames of
# a 4-byte length and marshal data: first (magic, cache tag), then per path
# (sha256 hex, config line, code) or None when the file is left to the importer. The
# ``__pycache__`` writes (``set_data``, called by ``get_code``) wait until every frame is sent:
# writing thousands of small files costs as much as compiling them, and the importer needs
# the code now, the bytecode cache only next time.
_HELPER = r"""
import hashlib, importlib.machinery, importlib.util, json, marshal, re, sys
out = sys.stdout.buffer
def send(value):
    data = marshal.dumps(value)
    out.write(len(data).to_bytes(4, "big") + data)
    out.flush()
settings = json.loads(sys.stdin.readline())
sys.dont_write_bytecode = settings["dont_write_bytecode"]
sys.pycache_prefix = settings["pycache_prefix"]
send((importlib.util.MAGIC_NUMBER, sys.implementation.cache_tag))
CONFIG = re.compile(settings["config_line"], re.MULTILINE)
writes = []
class Loader(importlib.machinery.SourceFileLoader):
    def __init__(self, path, source):
        super().__init__("step", path)
        self.source = source
    def get_data(self, path):
        return self.source if path == self.path else super().get_data(path)
    def set_data(self, path, data, **kw):
        writes.append((self.path, path, data, kw))
for line in sys.stdin:
    path = json.loads(line)
    try:
        with open(path, "rb") as f:
            source = f.read()
        code = Loader(path, source).get_code("step")
        text = source.decode("utf-8", errors="replace")
        m = CONFIG.search(text)
        found = text.count("\n", 0, m.start()) + 1 if m else None
        send((hashlib.sha256(source).hexdigest(), found, code))
    except Exception:
        send(None)
out.close()
for source_path, path, data, kw in writes:
    importlib.machinery.SourceFileLoader("step", source_path).set_data(path, data, **kw)
"""


class Compiled:
    """What the helper sent for one file."""

    __slots__ = ("code", "hash", "line")

    def __init__(self, hash: str, line: int | None, code: types.CodeType) -> None:
        self.hash, self.line, self.code = hash, line, code


class Precompiler:
    """The helper for one list of files: ``take()`` once per file, in the list's order."""

    def __init__(self, files: list[Path], config_line: str) -> None:
        self._files = [str(f) for f in files]
        self._buf = bytearray()  # frames received; those before _pos are taken
        self._pos = 0
        self._handshake_ok: bool | None = None
        self._taken = 0  # files asked for (take)
        self._received = 0  # file frames read
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: threading.Thread | None = None
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", *["-O"] * sys.flags.optimize, "-c", _HELPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except (OSError, ValueError, subprocess.SubprocessError):
            self._proc = None
            return
        with contextlib.suppress(OSError, AttributeError, ImportError):  # Linux: room to run
            import fcntl  # ahead by ~1,000 files instead of ~40 (a 64 KB pipe)

            assert self._proc.stdout is not None
            fcntl.fcntl(self._proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        settings = {
            "dont_write_bytecode": bool(sys.dont_write_bytecode),
            "pycache_prefix": sys.pycache_prefix,
            "config_line": config_line,
        }
        lines = [json.dumps(settings)] + [json.dumps(f) for f in self._files]
        payload = ("\n".join(lines) + "\n").encode()
        self._writer = threading.Thread(
            target=self._write, args=(payload,), name="wistro-precompile", daemon=True
        )
        self._writer.start()

    def _write(self, payload: bytes) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        with contextlib.suppress(OSError, ValueError):  # the helper is gone: nothing to do
            try:
                proc.stdin.write(payload)
            finally:
                proc.stdin.close()

    # ------------------------------------------------------------ reading frames
    def _read_frame(self, wait: float) -> object:
        """The next frame, ``_NOT_YET`` when none arrived within ``wait`` seconds, ``_GONE``
        when the helper is gone."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return _GONE
        fd = proc.stdout.fileno()
        buf = self._buf
        while True:
            start = self._pos
            if len(buf) - start >= 4:
                end = start + 4 + int.from_bytes(buf[start : start + 4], "big")
                if len(buf) >= end:
                    self._pos = end
                    try:
                        with memoryview(buf) as view, view[start + 4 : end] as frame:
                            return marshal.loads(frame)
                    except (EOFError, ValueError, TypeError):
                        self.close()
                        return _GONE
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return _NOT_YET
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                self.close()
                return _GONE
            del buf[:start]  # what was read: dropped only when more comes
            self._pos = 0
            buf += chunk

    def _handshake(self) -> bool | None:
        """True once the helper said it is this Python, False if not (or gone), None while
        it is still starting."""
        if self._handshake_ok is None:
            frame = self._read_frame(WAIT_S)
            if frame is _NOT_YET:
                return None
            self._handshake_ok = frame == (MAGIC_NUMBER, sys.implementation.cache_tag)
            if not self._handshake_ok:
                self.close()  # another Python (its bytecode is not ours), or gone
        return self._handshake_ok

    @property
    def alive(self) -> bool:
        """Still listening to the helper (it will write the bytecode of every file)."""
        return self._proc is not None

    def take(self) -> Compiled | None:
        """The helper's result for the next file of the list, or None: load that one here.
        A file the helper has not sent yet (it is starting, or behind) is loaded here; its
        frame is skipped when it comes."""
        index, self._taken = self._taken, self._taken + 1
        if self._proc is None or not self._handshake():
            return None
        frame: object = None
        while self._received <= index:
            frame = self._read_frame(WAIT_S)
            if frame is _NOT_YET or frame is _GONE:  # not sent yet; or the helper is gone
                return None
            self._received += 1
        if not (isinstance(frame, tuple) and len(frame) == 3):
            return None
        digest, line, code = frame
        if not isinstance(code, types.CodeType):
            return None
        return Compiled(digest, line, code)

    def close(self) -> None:
        """Stop listening. A helper still sending exits at its next frame (after the file at
        hand); one done sending writes the ``__pycache__`` entries it owes and exits, in the
        background: this process does not wait for it (a thread reaps it)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        if proc.poll() is None:
            threading.Thread(target=proc.wait, name="wistro-precompile-reap", daemon=True).start()

    def __enter__(self) -> Precompiler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NOT_YET = object()
_GONE = object()


def precompiler(files: list[Path], config_line: str) -> Precompiler | None:
    """A helper for ``files`` when there are enough of them and this platform allows it."""
    if len(files) < MIN_FILES or os.name != "posix" or os.environ.get(DISABLE_ENV):
        return None
    if not sys.executable:
        return None
    helper = Precompiler(files, config_line)
    return helper if helper._proc is not None else None
