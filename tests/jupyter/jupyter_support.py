"""Helpers shared by the notebook tests."""

from __future__ import annotations

from typing import Any


def cell(ip: Any, source: str) -> Any:
    """Run one cell; no exception may escape it. Returns the cell's value."""
    result = ip.run_cell(source)
    assert result.error_before_exec is None, result.error_before_exec
    assert result.error_in_exec is None, result.error_in_exec
    return result.result
