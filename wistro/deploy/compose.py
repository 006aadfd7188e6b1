"""``compose.yaml`` of ``wistro deploy --target compose``: Redis (append-only file on a named
volume), ``start`` (HTTP and cron, published on the host) and ``worker-<version>`` (deliveries,
``deploy.replicas`` of them), all from one image, all pointed at the Redis by ``REDIS_URL``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wistro.deploy.output import to_yaml
from wistro.deploy.plan import GRACE_S, HEALTH_PATH, PORT, REDIS_IMAGE, STOP_GRACE_S, Plan

REDIS_URL = "redis://redis:6379/0"  # the `redis` service
HEALTHCHECK = (
    "import urllib.request; "
    f"urllib.request.urlopen('http://127.0.0.1:{PORT}{HEALTH_PATH}', timeout=2)"
)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def compose(plan: Plan, out: Path) -> str:
    """The compose file, to be written into ``out`` (its paths are relative to that folder)."""
    build = {"context": _rel(plan.root, out), "dockerfile": "Dockerfile"}
    common: dict[str, Any] = {
        "build": build,  # on each service with the image: `up --build` builds it once, cached
        "image": plan.image,
        "environment": {"REDIS_URL": REDIS_URL},
        "depends_on": {"redis": {"condition": "service_healthy"}},
        "restart": "unless-stopped",
        "stop_grace_period": f"{STOP_GRACE_S}s",
    }
    if plan.env_files_of_env:
        common["env_file"] = [_rel(plan.root / f, out) for f in plan.env_files_of_env]
    wistro = ["wistro", "--env", plan.env]
    start = {
        **common,
        "command": [
            *wistro,
            "start",
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--no-workers",
            "--grace-s",
            str(GRACE_S),
        ],
        "ports": [f"{PORT}:{PORT}"],
        "healthcheck": {
            "test": ["CMD", "python", "-c", HEALTHCHECK],
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "20s",
        },
    }
    worker = {
        **common,
        "command": [*wistro, "worker", "--grace-s", str(GRACE_S)],
        "deploy": {"replicas": plan.workers},
    }
    redis = {
        "image": REDIS_IMAGE,
        "command": ["redis-server", "--appendonly", "yes"],
        "volumes": ["redis-data:/data"],
        "healthcheck": {
            "test": ["CMD", "redis-cli", "ping"],
            "interval": "5s",
            "timeout": "3s",
            "retries": 10,
        },
        "restart": "unless-stopped",
    }
    doc = {
        "name": plan.slug,
        "services": {"redis": redis, "start": start, f"worker-{plan.tag}": worker},
        "volumes": {"redis-data": {}},
    }
    header = [
        *plan.header(),
        f"# docker compose up --build -d; more workers: --scale worker-{plan.tag}=N",
    ]
    if plan.variables:
        where = " or ".join(plan.env_files_of_env) or "an env_file"
        header.append(f"# The project reads {', '.join(plan.variables)}: set them in {where}.")
    return to_yaml([doc], header)
