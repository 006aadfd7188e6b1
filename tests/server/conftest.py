"""Fixtures of the server tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from processes import Server


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers started by a test, killed at the end whatever happened."""
    started: list[Server] = []
    yield started
    for s in started:
        s.kill()
