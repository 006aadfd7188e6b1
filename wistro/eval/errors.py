"""Errors of the eval package: each names what was asked for and what exists. They are defined in
:mod:`wistro.errors` (the one error tree) and importable from here too.

``DuplicateSampleError`` (a ``DatasetError``): a duplicate sample id (given twice, or twice in a
file). The dataset warnings live here: samples of identical content that were kept once."""

from __future__ import annotations

from wistro.errors import (
    DatasetError,
    DatasetNotFound,
    DuplicateSampleError,
    EvalNotFound,
    VersionError,
)

__all__ = [
    "DatasetError",
    "DatasetNotFound",
    "DatasetWarning",
    "DuplicateSampleError",
    "DuplicateSampleWarning",
    "EvalNotFound",
    "VersionError",
]


class DatasetWarning(UserWarning):
    """Something about a dataset that is kept but should be known (``warnings.warn``)."""


class DuplicateSampleWarning(DatasetWarning):
    """Samples of identical content (same input and expected, no id given) were kept once."""
