"""`wistro dev` / `wistro start` as long-running servers: HTTP endpoints, cron jobs, and
`wistro emit` sending into the running server. Real processes, real sockets on loopback."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from test_cli import (
    Server,
    _env,
    ok,
    one_line_error,
    server,
    shop,
    shop_template,
    wistro,
)

from wistro.runtimes.node import ESBUILD_VERSION

__all__ = ["server", "shop", "shop_template"]  # fixtures used by name


def http_url(s: Server) -> str:
    line = s.wait_for(r"^http: ")
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert match, line
    return match.group(0)


def test_dev_serves_endpoints_and_emit_goes_to_it(shop: Path, server: list[Server]) -> None:
    s = Server("dev", "--port", "0", cwd=shop)
    server.append(s)
    s.wait_for(r"^ready: shop \(9 steps, dev mode")
    url = http_url(s)
    assert "cron: 1 job(s)" in s.lines[-1]

    r = httpx.post(f"{url}/orders", json={"order_id": "H1", "amount_cents": 1200}, timeout=10)
    assert r.status_code == 202 and r.json()["order_id"] == "H1"
    trace_id = r.headers["x-wistro-trace-id"]
    assert r.json()["trace_id"] == trace_id
    bad = httpx.post(f"{url}/orders", json={"order_id": "H1", "amount_cents": "x"}, timeout=10)
    assert bad.status_code == 422 and "amount_cents" in json.dumps(bad.json())
    assert "/orders" in httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"]

    # `wistro emit` finds the running server and sends the event there
    res = wistro("emit", "order.placed", '{"order_id": "H2", "amount_cents": 1200}', cwd=shop)
    assert "sent to the running wistro dev" in res.stderr
    assert "Send receipt" in ok(res)
    s.wait_for(r"^ok +run .* order\.placed")  # the server's live log shows the run
    # ... and an error from the server is still one line naming the culprit
    one_line_error(wistro("emit", "order.placd", "{}", cwd=shop), "did you mean 'order.placed'")
    # `--local` runs in this process instead
    local = wistro(
        "emit", "--local", "order.placed", '{"order_id": "H3", "amount_cents": 5}', cwd=shop
    )
    assert "sent to the running" not in local.stderr and local.returncode == 0

    assert s.stop() == 0
    assert not (shop / ".wistro" / "server.json").exists()
    traces = json.loads(ok(wistro("traces", "--json", cwd=shop)))
    assert trace_id in {t["trace_id"] for t in traces}
    after = wistro("emit", "order.placed", '{"order_id": "H4", "amount_cents": 5}', cwd=shop)
    assert "sent to the running" not in after.stderr and after.returncode == 0


def test_start_serves_from_the_lock(shop: Path, server: list[Server]) -> None:
    s = Server("start", "--port", "0", cwd=shop)
    server.append(s)
    s.wait_for(r"^ready: shop \(9 steps, lock mode")
    url = http_url(s)
    r = httpx.post(f"{url}/orders", json={"order_id": "S1", "amount_cents": 100}, timeout=10)
    assert r.status_code == 202
    assert httpx.get(f"{url}/_wistro/health", timeout=10).json()["steps"] == 9
    assert s.stop() == 0


def test_a_port_in_use_is_a_clear_error(shop: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = wistro("dev", "--no-reload", "--port", str(port), cwd=shop)
    one_line_error(res, f"could not listen on 127.0.0.1:{port}")


def test_openapi_command_and_cron_list(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    ok(wistro("openapi", "-o", str(out), cwd=shop))
    doc = json.loads(out.read_text())
    assert doc["openapi"].startswith("3.1") and "/orders" in doc["paths"]
    rows = json.loads(ok(wistro("cron", "list", "--json", cwd=shop)))
    assert [r["name"] for r in rows] == ["Nightly report"]
    assert rows[0]["timezone"] == "Europe/Berlin" and len(rows[0]["next"]) == 3


def test_the_polyglot_template_runs_four_languages(tmp_path: Path) -> None:
    # an empty wistro cache: esbuild comes with the project (its package.json), never downloaded
    env = {**_env(), "WISTRO_CACHE_DIR": str(tmp_path / "empty-cache")}
    init = ok(wistro("init", "--template", "polyglot", "poly", cwd=tmp_path, env=env))
    assert "Installing the npm packages of package.json (esbuild) with `npm install`" in init
    project = tmp_path / "poly"
    pinned = json.loads((project / "node_modules/esbuild/package.json").read_text())["version"]
    assert pinned == ESBUILD_VERSION
    assert "0 error(s), 0 warning(s)" in ok(wistro("check", cwd=project, env=env))
    tree = ok(
        wistro(
            "emit",
            "order.placed",
            '{"order_id": "A1", "amount_cents": 1200}',
            cwd=project,
            env=env,
        )
    )
    for step in ("Charge card", "Score fraud", "Send receipt", "Notify warehouse"):
        assert f"▶ {step} ok" in tree
    assert not (tmp_path / "empty-cache" / "esbuild").exists()
    steps = {
        s["name"]: s["language"]
        for s in json.loads(ok(wistro("steps", "--json", cwd=project, env=env)))
    }
    assert set(steps.values()) == {"python", "go", "typescript", "javascript"}
    written = ok(wistro("types", cwd=project, env=env))
    for rel in ("wistro_types.py", "wistro-types.d.ts", "checkout/wistro_types.go"):
        assert f"src/{rel}" in written and (project / "src" / rel).is_file()
    # the Go step in src/checkout/ is seen by go vet with the SDK and its folder's types
    go = shutil.which("go")
    assert go is not None
    go_env = {**env, "GOPROXY": "off", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    go_env.pop("GOFLAGS", None)
    vet = subprocess.run(
        [go, "vet", "./..."], cwd=project, env=go_env, capture_output=True, text=True, timeout=120
    )
    assert vet.returncode == 0, vet.stdout + vet.stderr
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tests.returncode == 0 and "2 passed" in tests.stdout, tests.stdout + tests.stderr
