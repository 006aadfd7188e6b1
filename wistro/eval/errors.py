"""Errors of the eval package: each names what was asked for and what exists."""

from __future__ import annotations

from wistro.errors import WistroError


class DatasetNotFound(WistroError):
    """No ``datasets/NAME.jsonl`` in the project."""


class DatasetError(WistroError):
    """A dataset file or a sample could not be read or built."""


class VersionError(WistroError):
    """A project version (git revision or folder) that cannot be loaded."""


class EvalNotFound(WistroError):
    """No stored eval with that id under ``.wistro/evals/``."""
