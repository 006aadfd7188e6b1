"""Comparing evals: pair the samples of two versions, test each scorer, find where runs diverge.

``compare(a, b)`` returns a ``Comparison``: ``.summary`` (per scorer), ``.rows`` (per sample),
``.steps`` (per step: changed or not, regressions through it), ``.regressions``, ``.warnings``,
and the paired results themselves (``.pair(sample_id)``, ``.step_diff(sample_id)``) on which
richer views (a run-diff widget, charts) are built. ``compare([v1, v2, v3], baseline=v1)``
compares each version against the baseline (a ``MultiComparison``).

Per sample (``.rows["status"]``): ``new_error`` / ``fixed_error`` when the run failed (did not
run, a step failed, an emit was refused) on one side only; else ``regressed`` when a scorer that
passed now fails (``worse`` lists them), ``improved`` when one that failed now passes and none got
worse, ``unchanged`` otherwise; ``only_a`` / ``only_b`` for unpaired samples. Numeric drifts that
flip no pass/fail are not per-sample regressions: the per-scorer summary tests them (Wilcoxon).
With ``repeats``, a sample's value is the mean over repeats and it passes by majority.

The modules, each importing only those above it:

- ``samples`` - the per-sample statuses and their order; a sample's repeats reduced;
- ``divergence`` - outputs changed, the first divergent step, JSON diffs, JSON-friendly values;
- ``sources`` - a step's source as a version ran it, code diffs between two versions;
- ``chart`` - ``Chart``, the static SVG chart;
- ``comparison`` - ``Comparison``, ``MultiComparison`` and the view hook (``register_view``);
- ``compute`` - ``compare``, ``compare_two``.
"""

from wistro.eval.compare.chart import CHART_COLORS as CHART_COLORS
from wistro.eval.compare.chart import Chart as Chart
from wistro.eval.compare.comparison import Comparison as Comparison
from wistro.eval.compare.comparison import ComparisonView as ComparisonView
from wistro.eval.compare.comparison import MultiComparison as MultiComparison
from wistro.eval.compare.comparison import register_view as register_view
from wistro.eval.compare.compute import EvalComparisonWarning as EvalComparisonWarning
from wistro.eval.compare.compute import _compare_many as _compare_many
from wistro.eval.compare.compute import _load as _load
from wistro.eval.compare.compute import compare as compare
from wistro.eval.compare.compute import compare_two as compare_two
from wistro.eval.compare.divergence import _outputs_equal as _outputs_equal
from wistro.eval.compare.divergence import first_divergent_step as first_divergent_step
from wistro.eval.compare.samples import BAD as BAD
from wistro.eval.compare.samples import FIXED_ERROR as FIXED_ERROR
from wistro.eval.compare.samples import IMPROVED_S as IMPROVED_S
from wistro.eval.compare.samples import NEW_ERROR as NEW_ERROR
from wistro.eval.compare.samples import ONLY_A as ONLY_A
from wistro.eval.compare.samples import ONLY_B as ONLY_B
from wistro.eval.compare.samples import REGRESSED_S as REGRESSED_S
from wistro.eval.compare.samples import STATUS_ORDER as STATUS_ORDER
from wistro.eval.compare.samples import UNCHANGED_S as UNCHANGED_S
from wistro.eval.compare.samples import VERDICT_REGRESSED as VERDICT_REGRESSED
from wistro.eval.compare.samples import _Agg as _Agg
from wistro.eval.compare.samples import _aggregate as _aggregate

__all__ = [
    "BAD",
    "STATUS_ORDER",
    "VERDICT_REGRESSED",
    "Chart",
    "Comparison",
    "ComparisonView",
    "EvalComparisonWarning",
    "MultiComparison",
    "compare",
    "compare_two",
    "first_divergent_step",
    "register_view",
]
