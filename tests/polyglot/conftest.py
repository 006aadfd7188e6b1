"""Fixtures of the language-worker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import wistro


@pytest.fixture
async def apps() -> AsyncIterator[list[wistro.App]]:
    """Apps a test loads (``tests.projects.load_app``), closed after it."""
    made: list[wistro.App] = []
    yield made
    for app in made:
        await app.aclose()
