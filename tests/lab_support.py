"""What the real-browser tests share: a ``jupyter lab`` on a free loopback port with a known token
and only the tests' kernel, JupyterLab's user settings of the tests, and headless Debian Chromium
through Playwright (a test tool's own browser download is never used).

Used by tests/notebooks/test_jupyterlab_browser.py, tests/notebooks/test_flowgraph_browser.py
and tests/workbench_panel_support.py (the Workbench panel's tests).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("WISTRO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_lab_settings(config_dir: Path) -> None:
    """User settings of a test JupyterLab: every cell rendered (no windowing, so the widgets of
    cells off screen are in the DOM), no news fetching, no update checks."""
    settings = config_dir / "lab" / "user-settings" / "@jupyterlab"
    files = {
        "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for rel, value in files.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")


def lab_command(root: Path, token: str, port: int, kernel: str, *extra: str) -> list[str]:
    """``jupyter lab`` serving ``root`` on loopback with ``token``, making no calls out of the
    machine, with ``kernel`` the only kernelspec (the default one)."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--IdentityProvider.token={token}",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
        f"--KernelSpecManager.allowed_kernelspecs={kernel}",
        "--KernelSpecManager.ensure_native_kernel=False",
        f"--MappingKernelManager.default_kernel_name={kernel}",
        *extra,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    return cmd


def wait_for_lab(
    base: str,
    token: str,
    exited: Callable[[], int | None],
    tail: Callable[[], str],
    timeout_s: float,
) -> None:
    """Until ``/api/status`` answers; AssertionError (with the log's tail) when the server
    exits first or does not answer in ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        code = exited()
        if code is not None:
            raise AssertionError(f"jupyter lab exited ({code}):\n{tail()}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"jupyter lab did not answer in {timeout_s:g} s:\n{tail()}")
        time.sleep(0.2)


def launch_chromium(playwright: Any, profile: Path, width: int = 1400, height: int = 1000) -> Any:
    """A persistent headless Chromium context (the system browser) with one viewport size."""
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": width, "height": height},
    )
