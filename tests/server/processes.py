"""Real ``wistro`` processes for the server tests: a ``Server`` (``dev``, ``start``, ``worker``)
whose stdout and stderr are read on threads, line by line, so a wait never blocks for good; and
``run`` for one-shot commands."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

WISTRO = [sys.executable, "-m", "wistro"]
START_TIMEOUT = 30.0  # seconds until the server prints its http line


def env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WISTRO_")}
    env["NO_COLOR"] = "1"
    return env


def run(*args: str, cwd: Path, timeout: float = 60) -> str:
    res = subprocess.run(
        [*WISTRO, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=env(),
        check=False,
    )
    assert res.returncode == 0, f"wistro {' '.join(args)}: exit {res.returncode}\n{res.stderr}"
    return res.stdout


class Server:
    """A ``wistro dev`` process; stdout and stderr are collected by threads, line by line."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [*WISTRO, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=env(),
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()  # stdout lines not yet waited for
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: object, is_stdout: bool) -> None:
        for line in stream:  # type: ignore[attr-defined]
            line = line.rstrip("\n")
            if is_stdout:
                self.stdout.append(line)
                self._new.put(line)
            else:
                self.stderr.append(line)
        if is_stdout:
            self._new.put(None)

    @property
    def output(self) -> str:
        return "stdout:\n" + "\n".join(self.stdout[-40:]) + "\nstderr:\n" + "\n".join(self.stderr)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first stdout line not waited for yet that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} in {timeout} s\n{self.output}")
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self._new.put(None)
                raise AssertionError(
                    f"exited ({self.proc.poll()}) before {pattern!r}\n{self.output}"
                )
            m = re.search(pattern, line)
            if m:
                return m

    async def await_line(self, pattern: str, timeout: float) -> re.Match[str]:
        return await asyncio.to_thread(self.wait_for, pattern, timeout)

    def port(self) -> int:
        return int(self.wait_for(r"^http: http://127\.0\.0\.1:(\d+)", START_TIMEOUT).group(1))

    async def exited(self, timeout: float) -> tuple[int, float]:
        """Wait (polling, at most ``timeout`` s) for the process to end: (exit code, seconds)."""
        t0 = time.monotonic()
        while self.proc.poll() is None:
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"still running {timeout} s after the signal\n{self.output}")
            await asyncio.sleep(0.02)
        took = time.monotonic() - t0
        for t in self._readers:
            t.join(timeout=10)
        return self.proc.returncode, took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
