"""Wistro: an event-driven workflow framework that lives in Jupyter."""

from wistro.app import App, load
from wistro.core.context import Context
from wistro.core.run import Run
from wistro.errors import WistroError

__version__ = "0.1.0"
__all__ = ["App", "Context", "Run", "WistroError", "__version__", "load"]
