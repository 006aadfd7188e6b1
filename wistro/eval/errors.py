"""Errors of the eval package: each names what was asked for and what exists. They are defined in
:mod:`wistro.errors` (the one error tree) and importable from here too."""

from __future__ import annotations

from wistro.errors import DatasetError, DatasetNotFound, EvalNotFound, VersionError

__all__ = ["DatasetError", "DatasetNotFound", "EvalNotFound", "VersionError"]
