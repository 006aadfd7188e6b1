"""Fixtures shared by tests in several files."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from auth_support import Issuer
from projects import close_apps, write_project
from redis_support import RedisServer

import wistro


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    iss = Issuer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(iss.app(), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    iss.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield iss
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session (tests isolate themselves by key prefix)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


_prefixes = itertools.count()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis URL."""
    return redis_server.url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses, so tests sharing the session's Redis never meet."""
    return f"wistro-test-{next(_prefixes)}"


@pytest.fixture
async def make_app(tmp_path: Path) -> AsyncIterator[Callable[..., wistro.App]]:
    """``make_app(files, folder=None, errors_ok=False, **load_kwargs)``: a project written from
    ``files`` (see ``projects.write_project``) and loaded, memory state and traces by default;
    every app made is closed after the test."""
    apps: list[wistro.App] = []

    def make(
        files: dict[str, str],
        folder: str | None = None,
        errors_ok: bool = False,
        **kw: Any,
    ) -> wistro.App:
        root = write_project(tmp_path / (folder or f"p{len(apps)}"), files)
        kw.setdefault("state", "memory")
        kw.setdefault("traces", "memory")
        app = wistro.load(root, **kw)
        assert errors_ok or app.errors == [], app.errors
        apps.append(app)
        return app

    yield make
    await close_apps(apps)
