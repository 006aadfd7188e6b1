"""Wistro: an event-driven workflow framework that lives in Jupyter."""

from wistro.app import App, load
from wistro.context import Context
from wistro.errors import WistroError
from wistro.run import Run

__version__ = "0.1.0"
__all__ = ["App", "Context", "Run", "WistroError", "__version__", "load"]
