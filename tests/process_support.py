"""A long-running process in a test (``wistro dev``, ``jupyter lab``, ``jupyter server``) whose
merged output a thread reads, so that a wait for a line never hangs; optionally copied to a log
file. Used by the Workbench tests (tests/workbench/, tests/workbench_panel_support.py)."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from pathlib import Path

TIMEOUT_S = 60.0


class Process:
    def __init__(
        self, args: list[str], cwd: Path, env: dict[str, str], log: Path | None = None
    ) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        out = self.log.open("a", encoding="utf-8") if self.log is not None else None
        try:
            for line in self.proc.stdout:
                if out is not None:
                    out.write(line)
                    out.flush()
                self._queue.put(line.rstrip("\n"))
        finally:
            if out is not None:
                out.close()
            self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = TIMEOUT_S) -> re.Match[str]:
        """The first new output line matching ``pattern``; AssertionError with the output seen
        when the process exits first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)
                raise AssertionError(
                    f"exited ({self.proc.poll()}) before {pattern!r}:\n" + "\n".join(self.lines)
                )
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def tail(self) -> str:
        """The end of the output (of the log file when there is one)."""
        if self.log is not None and self.log.exists():
            return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
        return "\n".join(self.lines)[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._thread.join(timeout=10)
