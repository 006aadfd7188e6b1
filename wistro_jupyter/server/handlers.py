"""The handlers of the Workbench's Jupyter server extension (see the package docstring)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import tornado.web
from jupyter_server.base.handlers import APIHandler

from wistro.processes import pid_alive
from wistro.project.paths import DATA_DIR_NAME
from wistro.server.control import SERVER_FILE, TOKEN_HEADER

MAX_DEPTH = 3  # folders below the Jupyter root searched for projects
MAX_FOLDERS = 20_000  # a huge tree is searched this far, not forever
SKIP = {"node_modules", "__pycache__", "venv", "site-packages"}  # and every dot folder
PROBE_TIMEOUT_S = 3.0  # a listed server answers the `project` op within this
FORWARD_TIMEOUT_S = 120.0  # emits wait 30 s and replays 60 s at most on the server


def find_server_files(root: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """The ``.wistro/server.json`` files of the folders under ``root``, at most ``max_depth``
    levels down; sorted."""
    found: list[Path] = []
    for seen, (folder, dirs, _files) in enumerate(os.walk(root), 1):
        here = Path(folder)
        candidate = here / DATA_DIR_NAME / SERVER_FILE
        if candidate.is_file():
            found.append(candidate)
        depth = len(here.relative_to(root).parts)
        if depth >= max_depth or seen >= MAX_FOLDERS:
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP)
    return sorted(found)


def read_server_file(path: Path) -> dict[str, Any] | None:
    """The running server's ``{url, token, pid, mode}``, or None (no file, unreadable, dead)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str):
        return None
    if not isinstance(info.get("token"), str) or not pid_alive(info.get("pid")):
        return None
    return info


def _shown(root: Path, folder: Path) -> str:
    return folder.relative_to(root).as_posix() or "."


async def _probe(client: httpx.AsyncClient, root: Path, path: Path) -> dict[str, Any] | None:
    info = await asyncio.to_thread(read_server_file, path)
    if info is None:
        return None
    try:
        response = await client.post(
            f"{info['url']}/_wistro/workbench",
            json={"op": "project", "args": {}},
            headers={TOKEN_HEADER: info["token"]},
        )
        reply = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if not (isinstance(reply, dict) and reply.get("ok")):
        return None
    project = reply["result"]
    return {
        "root": _shown(root, path.parent.parent),
        "name": project.get("name"),
        "url": info["url"],
        "mode": project.get("mode") or info.get("mode"),
        "bus": project.get("bus"),
    }


class _Base(APIHandler):
    root_dir: Path

    def initialize(self, root_dir: Path) -> None:
        self.root_dir = root_dir

    def reply(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body if isinstance(body, bytes) else json.dumps(body))

    def refuse(self, status: int, error: str) -> None:
        self.reply(status, {"ok": False, "error": error})


class ProjectsHandler(_Base):
    """``GET wistro/api/projects``: the projects under the root with a running server."""

    @tornado.web.authenticated
    async def get(self) -> None:
        files = await asyncio.to_thread(find_server_files, self.root_dir)
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, trust_env=False) as client:
            found = await asyncio.gather(*(_probe(client, self.root_dir, f) for f in files))
        self.reply(200, [p for p in found if p is not None])


class WorkbenchHandler(_Base):
    """``POST wistro/api/workbench?project=<root>``: a Workbench request for that project."""

    @tornado.web.authenticated
    async def post(self) -> None:
        project = self.get_query_argument("project", None)
        if project is None:
            self.refuse(400, "project: the query argument ?project=<root> is required")
            return
        folder = (self.root_dir / project).resolve()
        if not folder.is_relative_to(self.root_dir):
            self.refuse(403, f"project {project!r}: outside the Jupyter server's root")
            return
        info = await asyncio.to_thread(read_server_file, folder / DATA_DIR_NAME / SERVER_FILE)
        if info is None:
            self.refuse(
                404, f"project {project!r}: no running wistro server (start `wistro dev` there)"
            )
            return
        try:
            async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S, trust_env=False) as client:
                response = await client.post(
                    f"{info['url']}/_wistro/workbench",
                    content=self.request.body,
                    headers={TOKEN_HEADER: info["token"], "Content-Type": "application/json"},
                )
        except httpx.TimeoutException:
            self.refuse(
                504, f"project {project!r}: its server did not answer in {FORWARD_TIMEOUT_S:g} s"
            )
            return
        except httpx.HTTPError as e:
            self.refuse(502, f"project {project!r}: its server is not reachable: {e}")
            return
        self.reply(response.status_code, response.content)
