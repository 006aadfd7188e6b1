"""CPU time of another process, for the figures that count a child's work (the trace writer
process, a language worker) while the clock runs."""

from __future__ import annotations

import os
from pathlib import Path


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux ``/proc``); nan when
    unknown (no pid, no such process, no ``/proc``). Read it before and after a timed part, so
    the child's start-up is not counted."""
    if pid is None:
        return float("nan")
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
