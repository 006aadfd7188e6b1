"""The command line: ``wistro`` (``main``) and its commands."""

from wistro.cli.main import main

__all__ = ["main"]
