"""Evaluation: datasets from runs, project versions, eval runs, scorers, and comparisons.

from wistro import eval as we
ds = we.Dataset("checkout-smoke")
ds.add_run(run)
r_old = await we.run(ds, version="main~1", scorers=[we.scorers.error_free()])
r_new = await we.run(ds, scorers=[we.scorers.error_free()])
cmp = we.compare(r_old, r_new)
cmp.summary, cmp.rows, cmp.steps
live = we.compare_live(app, "v1", "v2", since="1h")  # two live versions, over recorded runs
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wistro.eval import scorers
    from wistro.eval.compare.gate import GateResult, GateRule
    from wistro.eval.dataset import (
        Dataset,
        DatasetVersion,
        MergeResult,
        Sample,
        list_datasets,
        load_datasets,
    )
    from wistro.eval.errors import (
        DatasetError,
        DatasetNotFound,
        DatasetWarning,
        DuplicateSampleError,
        DuplicateSampleWarning,
        EvalNotFound,
        VersionError,
    )
    from wistro.eval.live import LiveComparison, acompare_live, compare_live
    from wistro.eval.results import EvalResult, SampleResult, list_evals
    from wistro.eval.runner import run
    from wistro.eval.scorers import Score, Scorer
    from wistro.eval.testing import assert_no_regression
    from wistro.eval.version import ProjectVersion, current_version, load_version

# `compare` is also the name of a submodule: it is bound here so that `we.compare` is the function
from wistro.eval.compare import Comparison, MultiComparison, compare

# Imported on first use, so that `wistro --help` does not load numpy and scipy.
_WHERE = {
    "scorers": "wistro.eval.scorers",
    "Dataset": "wistro.eval.dataset",
    "Sample": "wistro.eval.dataset",
    "list_datasets": "wistro.eval.dataset",
    "DatasetError": "wistro.eval.errors",
    "DuplicateSampleError": "wistro.eval.errors",
    "DatasetWarning": "wistro.eval.errors",
    "DuplicateSampleWarning": "wistro.eval.errors",
    "load_datasets": "wistro.eval.dataset",
    "MergeResult": "wistro.eval.dataset",
    "DatasetVersion": "wistro.eval.dataset",
    "GateResult": "wistro.eval.compare.gate",
    "GateRule": "wistro.eval.compare.gate",
    "DatasetNotFound": "wistro.eval.errors",
    "EvalNotFound": "wistro.eval.errors",
    "VersionError": "wistro.eval.errors",
    "EvalResult": "wistro.eval.results",
    "SampleResult": "wistro.eval.results",
    "list_evals": "wistro.eval.results",
    "EvalInfo": "wistro.eval.results",
    "evals": "wistro.eval.history",
    "eval_samples": "wistro.eval.history",
    "trend": "wistro.eval.history",
    "TrendChart": "wistro.eval.history_chart",
    "LiveComparison": "wistro.eval.live",
    "acompare_live": "wistro.eval.live",
    "compare_live": "wistro.eval.live",
    "run": "wistro.eval.runner",
    "Score": "wistro.eval.scorers",
    "Scorer": "wistro.eval.scorers",
    "assert_no_regression": "wistro.eval.testing",
    "ProjectVersion": "wistro.eval.version",
    "current_version": "wistro.eval.version",
    "load_version": "wistro.eval.version",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'wistro.eval' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if name == "scorers" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "Comparison",
    "Dataset",
    "DatasetError",
    "DatasetNotFound",
    "DatasetVersion",
    "DatasetWarning",
    "DuplicateSampleError",
    "DuplicateSampleWarning",
    "EvalInfo",
    "EvalNotFound",
    "EvalResult",
    "GateResult",
    "GateRule",
    "LiveComparison",
    "MergeResult",
    "MultiComparison",
    "ProjectVersion",
    "Sample",
    "SampleResult",
    "Score",
    "Scorer",
    "TrendChart",
    "VersionError",
    "acompare_live",
    "assert_no_regression",
    "compare",
    "compare_live",
    "current_version",
    "eval_samples",
    "evals",
    "list_datasets",
    "list_evals",
    "load_datasets",
    "load_version",
    "run",
    "scorers",
    "trend",
]
