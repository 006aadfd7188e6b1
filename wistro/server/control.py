"""Talking to a running ``wistro dev`` / ``wistro start`` of the same project.

The server writes ``.wistro/server.json`` (pid, url, a random token; readable by its owner only)
when it is ready and removes it when it stops. ``wistro emit`` finds it, checks the process is
alive and the server answers, and sends the event to ``POST /_wistro/emit`` with the token.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.errors import WistroError
from wistro.files import make_private_dir, write_atomic
from wistro.processes import pid_alive

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from wistro.app import App
    from wistro.project.paths import Project

SERVER_FILE = "server.json"
TOKEN_HEADER = "x-wistro-token"


def server_file(project: Project) -> Path:
    return project.data_dir / SERVER_FILE


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_server_file(project: Project, url: str, token: str, mode: str) -> Path:
    path = server_file(project)  # 0600: the token is for this user only
    info = {"pid": os.getpid(), "url": url, "token": token, "mode": mode}
    make_private_dir(path.parent)  # .wistro/ is 0700, the file 0600 (write_atomic)
    write_atomic(path, json.dumps(info))
    return path


def remove_server_file(project: Project, token: str) -> None:
    """Remove the file if it is still ours (another server may have started since)."""
    info = _read(server_file(project))
    if info is not None and info.get("token") == token:
        server_file(project).unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def running_server(project: Project) -> dict[str, Any] | None:
    """The running server of this project, or None (a stale file is removed)."""
    path = server_file(project)
    info = _read(path)
    if info is None:
        return None
    if not pid_alive(info.get("pid")):
        path.unlink(missing_ok=True)
        return None
    import httpx

    try:
        httpx.get(f"{info['url']}/_wistro/health", timeout=2).raise_for_status()
    except (httpx.HTTPError, KeyError):
        return None
    return info


def emit_remote(
    info: dict[str, Any], topic: str, data: Any, wait: bool, timeout: float = 300
) -> dict[str, Any]:
    """Send an emit to the running server; returns ``{"trace_id", "status", "trace"?}``."""
    import httpx

    response = httpx.post(
        f"{info['url']}/_wistro/emit",
        json={"topic": topic, "data": data, "wait": wait},
        headers={TOKEN_HEADER: info["token"]},
        timeout=timeout,
    )
    body = response.json()
    if response.status_code != 200:
        raise WistroError(body.get("error", {}).get("message", f"HTTP {response.status_code}"))
    return dict(body)


def control_routes(app: App, token: str) -> list[BaseRoute]:
    """``POST /_wistro/emit``, for ``wistro emit``, and ``POST /_wistro/workbench``, the
    Workbench's ops (``docs/workbench.md``); both require the token."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from wistro.workbench import Workbench

    bench = Workbench(lambda: app, source="server", mode="start" if app.locked else "dev")

    async def emit(request: Request) -> Response:
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"error": {"type": "forbidden", "message": "bad token"}}, 403)
        try:
            body = await request.json()
            topic, data, wait = body["topic"], body.get("data"), bool(body.get("wait", True))
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": {"type": "bad_request", "message": "expected {topic, data, wait}"}}, 400
            )
        try:
            run = await app.engine.emit(topic, data, wait=wait, trigger="cli")
        except WistroError as e:
            return JSONResponse({"error": {"type": type(e).__name__, "message": e.format()}}, 400)
        out: dict[str, Any] = {"trace_id": run.trace_id, "status": run.status}
        if wait:
            await app.engine.recorder.flush()
            out["trace"] = app.trace(run.trace_id)
        return JSONResponse(out)

    async def workbench(request: Request) -> Response:
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"ok": False, "error": f"forbidden: bad {TOKEN_HEADER}"}, 403)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse(
                {"ok": False, "error": 'request: expected JSON {"op": str, "args": {...}}'}, 400
            )
        return JSONResponse(await bench.handle(body))

    return [
        Route("/_wistro/emit", emit, methods=["POST"]),
        Route("/_wistro/workbench", workbench, methods=["POST"]),
    ]
