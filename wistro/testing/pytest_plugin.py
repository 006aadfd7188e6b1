"""Wistro's pytest plugin (registered by entry point): the ``wistro_app`` fixture.

    async def test_checkout(wistro_app):
        run = await wistro_app.emit("order.placed", {...})
        assert run.emitted("payment.captured")

The project is found from pytest's rootdir (or the cwd) and loaded in-process with memory state
and an in-memory trace store, fresh for each test; a step file that does not load fails the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from wistro.app import App
from wistro.project.paths import find_root
from wistro.testing import load_app


@pytest_asyncio.fixture
async def wistro_app(request: pytest.FixtureRequest) -> AsyncIterator[App]:
    """The project under test, with memory state and a temporary trace store."""
    marker = request.node.get_closest_marker("wistro_project")
    path = marker.args[0] if marker else find_root(request.config.rootpath)
    app = load_app(path)
    try:
        yield app
    finally:
        await app.aclose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wistro_project(path): the project the wistro_app fixture loads"
    )
