"""Fixtures shared by tests in several files."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from auth_support import Issuer


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
