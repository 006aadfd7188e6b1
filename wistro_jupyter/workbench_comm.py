"""The kernel side of the Workbench: the ``wistro.workbench`` comm target.

``%load_ext wistro_jupyter`` registers it (in a kernel; a terminal IPython has no comms). The panel
opens a comm on it and sends ``{"id", "op", "args"}``; each request is answered on the same comm
with ``{"id", "ok", "result" | "error"}`` by :class:`wistro.workbench.Workbench` on the session's
app (the one ``%wistro`` magics use), looked up when the request arrives, so that ``%wistro load``
of another project is what the next request sees. Requests run as tasks on the kernel's asyncio
loop (ipykernel ≥ 6 handles comm messages on it): a slow op never blocks the kernel, and replies
may come in another order than the requests (match them by ``id``). A request that arrives on
another thread's loop (JupyterLab sends comm messages on a kernel subshell) runs on the loop the
session's engine is bound to, or the kernel's main loop: cells and the panel drive one engine.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from wistro.workbench import Workbench

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from wistro.app import App

TARGET = "wistro.workbench"
NO_APP = "no Wistro project is loaded in this kernel: run `%wistro load PATH`"

_benches: dict[int, Workbench] = {}
_tasks: set[asyncio.Task[Any]] = set()


def workbench(ip: InteractiveShell) -> Workbench:
    """The shell's Workbench (one per shell: it remembers the steps of finished runs)."""
    bench = _benches.get(id(ip))
    if bench is None:
        bench = _benches[id(ip)] = Workbench(
            lambda: _app(ip), source="kernel", no_app=NO_APP, on_change=lambda: _changed(ip)
        )
    return bench


def _app(ip: InteractiveShell) -> App | None:
    from wistro_jupyter import session

    s = session(ip)
    return s.app if s is not None else None


def _changed(ip: InteractiveShell) -> None:
    """A toggle wrote wistro.yml: no reload before the next cell; the graphs show it."""
    from wistro_jupyter import session

    s = session(ip)
    if s is not None:
        s.touched()
        s.refresh_graphs()


def register(ip: InteractiveShell) -> bool:
    manager = getattr(getattr(ip, "kernel", None), "comm_manager", None)
    if manager is None:
        return False
    bench = workbench(ip)

    def opened(comm: Any, msg: dict[str, Any]) -> None:
        comm.on_msg(lambda m: _received(ip, bench, comm, m))

    manager.register_target(TARGET, opened)
    return True


def engine_loop(ip: InteractiveShell) -> asyncio.AbstractEventLoop | None:
    """Where the session's engine runs, or will: the loop it is bound to while that loop runs,
    else the kernel's main loop (the one cells run on). Comm messages may arrive on another
    thread's loop (JupyterLab sends them on a kernel subshell), and an engine serves one loop."""
    app = _app(ip)
    loop = app.engine.loop if app is not None else None
    if loop is not None and loop.is_running():
        return loop
    io_loop = getattr(getattr(ip, "kernel", None), "io_loop", None)
    main = getattr(io_loop, "asyncio_loop", None)
    if isinstance(main, asyncio.AbstractEventLoop) and main.is_running():
        return main
    return None


def _received(ip: InteractiveShell, bench: Workbench, comm: Any, msg: dict[str, Any]) -> None:
    data = msg.get("content", {}).get("data")
    request_id = data.get("id") if isinstance(data, dict) else None

    def reply(result: dict[str, Any] | None, cancelled: bool) -> None:
        body = {"ok": False, "error": "cancelled"} if cancelled or result is None else result
        comm.send({"id": request_id, **body})

    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    target = engine_loop(ip) or here
    if target is None:
        reply({"ok": False, "error": "the kernel runs no asyncio loop"}, False)
        return
    if target is here:
        task = target.create_task(bench.handle(data))
        _tasks.add(task)

        def done(t: asyncio.Task[dict[str, Any]]) -> None:
            _tasks.discard(t)
            reply(None if t.cancelled() else t.result(), t.cancelled())

        task.add_done_callback(done)
        return
    # another thread's loop: run there, reply when it is done (comm.send is thread-safe)
    future = asyncio.run_coroutine_threadsafe(bench.handle(data), target)

    def finished(f: Any) -> None:
        if f.cancelled():
            reply(None, True)
        elif f.exception() is not None:
            reply({"ok": False, "error": f"{type(f.exception()).__name__}: {f.exception()}"}, False)
        else:
            reply(f.result(), False)

    future.add_done_callback(finished)
