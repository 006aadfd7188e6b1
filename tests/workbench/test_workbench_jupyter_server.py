"""The Workbench's Jupyter server extension on a real ``jupyter server`` (free loopback port, a
known token, root_dir a temp folder, enabled by the shipped jupyter_server_config.d file) in front
of a real ``wistro dev`` of a project two folders below its root."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis_support import free_port
from workbench_support import ORDER, REPO, TIMEOUT, Dev, Process, clean_env, make_shop, wait_until

TOKEN = "workbench-test-token"


class Jupyter:
    def __init__(self, root: Path, config_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            *(sys.executable, "-m", "jupyter_server", "--no-browser"),
            *(f"--port={self.port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0"),
            *(f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}"),
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ]
        self.process = Process(args, root, env=clean_env(JUPYTER_CONFIG_DIR=str(config_dir)))
        wait_until(self._up, what="the Jupyter server")

    def _up(self) -> bool:
        assert self.process.proc.poll() is None, "\n".join(self.process.lines)
        try:
            return self.get("/api/status").status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str, token: str | None = TOKEN) -> httpx.Response:
        return self.request("GET", path, token)

    def post(self, path: str, body: object, token: str | None = TOKEN) -> httpx.Response:
        return self.request("POST", path, token, body)

    def request(
        self, method: str, path: str, token: str | None, body: object = None
    ) -> httpx.Response:
        """Each request from a fresh client: no cookie of an earlier answer is sent."""
        headers = {"Authorization": f"token {token}"} if token else {}
        with httpx.Client(base_url=self.url, timeout=TIMEOUT, trust_env=False) as client:
            return client.request(method, path, headers=headers, json=body)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Jupyter, Dev]]:
    base = tmp_path_factory.mktemp("jupyter-server")
    root = base / "root"
    shop = make_shop(root / "apps" / "shop")
    (root / "node_modules" / "x" / ".wistro").mkdir(parents=True)  # skipped
    config = base / "config" / "jupyter_server_config.d"
    config.mkdir(parents=True)
    shipped = REPO / "jupyter-config" / "jupyter_server_config.d" / "wistro_jupyter.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == {
        "ServerApp": {"jpserver_extensions": {"wistro_jupyter": True}}
    }
    shutil.copy(shipped, config)
    dev = Dev(shop)
    try:
        jupyter = Jupyter(root, config.parent)
        try:
            yield jupyter, dev
        finally:
            jupyter.stop()
    finally:
        dev.stop()


def test_projects_lists_the_running_project(servers: tuple[Jupyter, Dev]) -> None:
    jupyter, dev = servers
    response = jupyter.get("/wistro/api/projects")
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"root": "apps/shop", "name": "shop", "url": dev.url, "mode": "dev", "bus": "local"}
    ]


def test_requests_without_the_token_are_refused(servers: tuple[Jupyter, Dev]) -> None:
    jupyter, _ = servers
    assert jupyter.get("/wistro/api/projects", token=None).status_code == 403
    assert jupyter.get("/wistro/api/projects", token="wrong").status_code == 403
    refused = jupyter.post("/wistro/api/workbench?project=apps/shop", {"op": "project"}, None)
    assert refused.status_code == 403


def test_a_forwarded_op_works_end_to_end(servers: tuple[Jupyter, Dev]) -> None:
    """``Authorization: token ...`` and no XSRF cookie or header: accepted (jupyter_server skips
    the XSRF check for token-authenticated requests)."""
    jupyter, dev = servers
    path = "/wistro/api/workbench?project=apps/shop"
    emitted = jupyter.post(path, {"op": "emit", "args": {"topic": "order.placed", "data": ORDER}})
    assert emitted.status_code == 200, emitted.text
    trace_id = emitted.json()["result"]["trace_id"]
    runs = jupyter.post(path, {"op": "runs", "args": {"limit": 5}}).json()["result"]["runs"]
    assert trace_id in {r["trace_id"] for r in runs}
    assert trace_id in {r["trace_id"] for r in dev.op("runs")["runs"]}  # the same server
    bad = jupyter.post(path, {"op": "emit", "args": {"topic": "order.placed", "data": {}}})
    assert bad.status_code == 200
    assert bad.json()["ok"] is False and bad.json()["error"].startswith("order.placed: ")


def test_cookie_auth_needs_the_xsrf_token(servers: tuple[Jupyter, Dev]) -> None:
    """A browser session (the login cookie) must send the XSRF token with a POST."""
    jupyter, _ = servers
    with httpx.Client(base_url=jupyter.url, timeout=TIMEOUT, trust_env=False) as browser:
        browser.get("/login")
        xsrf = browser.cookies["_xsrf"]
        login = browser.post("/login", data={"password": TOKEN, "_xsrf": xsrf})
        assert login.status_code in (200, 302), login.text
        assert browser.get("/wistro/api/projects").status_code == 200  # the cookie is enough
        path = "/wistro/api/workbench?project=apps/shop"
        assert browser.post(path, json={"op": "project"}).status_code == 403
        ok = browser.post(path, json={"op": "project"}, headers={"X-XSRFToken": xsrf})
        assert ok.status_code == 200 and ok.json()["result"]["name"] == "shop"


def test_paths_outside_the_root_and_missing_projects(servers: tuple[Jupyter, Dev]) -> None:
    jupyter, _ = servers
    for outside in ("..", "../..", "/etc", "apps/../../x"):
        response = jupyter.post(f"/wistro/api/workbench?project={outside}", {"op": "project"})
        assert response.status_code == 403, outside
        assert "outside the Jupyter server's root" in response.json()["error"]
    missing = jupyter.post("/wistro/api/workbench?project=apps/none", {"op": "project"})
    assert missing.status_code == 404
    assert missing.json()["error"].startswith("project 'apps/none': no running wistro server")
    bare = jupyter.post("/wistro/api/workbench", {"op": "project"})
    assert bare.status_code == 400 and "?project=" in bare.json()["error"]
    assert jupyter.get("/wistro/api/projects").status_code == 200
