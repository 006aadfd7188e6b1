"""Which process did something, and is it still there: a worker is named ``host:pid`` (a bus
instance may add ``/suffix``), and a name of this machine whose pid is gone is a dead process
(``kill -9``) whose leases, runs and holds others may take over. Also: pipes made wider."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket

PIPE_SIZE = 1 << 20


def widen_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Make the pipe ``fd`` hold ``size`` bytes (1 MiB) where Linux allows it (64 KiB by
    default); elsewhere, or above the system's limit, it stays as it is."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


def worker_name() -> str:
    """``host:pid`` of this process: what spans, runs and leases name."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: object) -> bool:
    """True when a process with this pid exists (one of another user's counts too)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gone_here(name: str | None) -> bool:
    """True for a worker name of this machine whose process is gone. A name of another machine
    (or not a worker name) is never judged gone: only its own machine can tell."""
    if not name:
        return False
    host, _, pid = name.partition("/")[0].rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))
