"""Wistro: an event-driven workflow framework that lives in Jupyter."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wistro.app import App, load
from wistro.core.context import Context
from wistro.core.run import Run
from wistro.errors import WistroError

if TYPE_CHECKING:
    from wistro.eval.history import eval_samples, evals

__version__ = "0.1.0"

# Imported on first use (they load pandas): `wistro.evals()`, `wistro.eval_samples()`.
_LAZY = {
    "evals": "wistro.eval.history",
    "eval_samples": "wistro.eval.history",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'wistro' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "App",
    "Context",
    "Run",
    "WistroError",
    "__version__",
    "eval_samples",
    "evals",
    "load",
]
