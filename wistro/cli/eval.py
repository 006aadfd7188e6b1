"""``wistro eval ...``: run datasets through versions and compare them; registered on the main
group by wistro/cli/main.py (``wistro dataset ...`` is ``wistro.cli.dataset_commands``)."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from wistro.cli.dataset_commands import dataset as dataset  # importable from here too
from wistro.cli.support import Obj, emit_json, fail, run_async

# wistro/cli/main.py imports this module to register the groups; the helpers both use live in
# wistro.cli.support, and the eval machinery is imported when a command runs (`wistro --help`
# does not load numpy).
pass_obj = click.pass_obj


def _root(obj: Obj) -> Any:
    return obj.project_only().root


# ---------------------------------------------------------------- evals
@click.group("eval")
def eval_group() -> None:
    """Run datasets through a version of the project and compare versions."""


@eval_group.command("run")
@click.argument("name")
@click.option(
    "--version",
    "revision",
    metavar="REV",
    help="A git revision (main~1) or a folder; default: the working tree.",
)
@click.option(
    "--scorer",
    "scorer_specs",
    multiple=True,
    metavar="SPEC",
    help=(
        "error_free, payload_equals[:TOPIC], emitted:TOPIC, not_emitted:TOPIC, sequence:A,B, "
        "latency_budget:MS, step_output:STEP.FIELD, step_ran:STEP, step_not_ran:STEP, "
        "step_latency:STEP:MS, event_count:TOPIC:N; repeatable "
        "(default: payload_equals and error_free)."
    ),
)
@click.option("--split", metavar="SPLIT", help="Only the samples of this split (train, test, ...).")
@click.option("--repeats", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--label", help="A name for this version in reports.")
@click.option("--no-resume", is_flag=True, help="Start afresh even if an unfinished run exists.")
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def eval_run(
    obj: Obj,
    name: str,
    revision: str | None,
    scorer_specs: tuple[str, ...],
    repeats: int,
    concurrency: int,
    label: str | None,
    split: str | None,
    no_resume: bool,
    as_json: bool,
) -> None:
    """Run dataset NAME (or its --split) through the project (or --version REV) and score it.

    Ctrl-C stops it with its eval id: the same command again resumes where it stopped."""
    from wistro.eval.dataset import Dataset
    from wistro.eval.runner import run, run_from_cli
    from wistro.eval.scorers import from_spec

    root = _root(obj)
    ds = Dataset.load(name, root)
    if split is not None:
        ds = ds.split(split)  # an unknown split: one line naming the splits there are
    scorers = [from_spec(s) for s in scorer_specs] or None

    async def go() -> Any:
        return await run(
            ds,
            revision,
            scorers,
            repeats=repeats,
            concurrency=concurrency,
            label=label,
            resume=not no_resume,
            root=root,
            progress=sys.stderr.isatty() and not as_json,
        )

    result = run_from_cli(go)  # Ctrl-C: the eval id and how to resume, exit 130
    if as_json:
        emit_json(
            {
                "eval_id": result.eval_id,
                "dataset": result.meta.dataset,
                "dataset_version": result.meta.dataset_version,
                "version": result.version.to_dict(),
                "summary": result.summary_records(),
                "n_errors": sum(1 for r in result.results if r.failed),
                "scorer_errors": result.scorer_errors,
            }
        )
        return
    click.echo(result.describe())
    click.echo(f"eval id: {result.eval_id}")


@eval_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def eval_list(obj: Obj, as_json: bool) -> None:
    """List stored evals, newest last."""
    from wistro.eval.results import list_evals

    rows = [
        {
            "eval_id": eid,
            "dataset": m.dataset,
            "dataset_version": m.dataset_version,
            "version": m.version.short,
            "label": m.label,
            "git_commit": m.version.git_commit,
            "status": m.status,
            "scorers": m.scorers,
        }
        for eid, m in list_evals(_root(obj))
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no evals (run one: wistro eval run DATASET)")
    for r in rows:
        click.echo(f"{r['eval_id']}  {r['dataset']}  {r['label'] or r['version']}  {r['status']}")


@eval_group.command("compare")
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option(
    "--live",
    is_flag=True,
    help="A and B are live versions (label, id or prefix): compare their recorded runs.",
)
@click.option(
    "--since",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="With --live: the runs of the last 90s, 30m, 1h, 2d.",
)
@click.option(
    "--scorer",
    "scorer_specs",
    multiple=True,
    metavar="SPEC",
    help="With --live: a scorer besides error_free and latency_ms (emitted:TOPIC, ...); repeatable.",
)
@click.option(
    "--fail-on-regression",
    is_flag=True,
    help="Exit 1 when the regression gate fails (see docs/eval.md, 'The regression gate').",
)
@click.option(
    "--gate",
    "gate_scorers",
    multiple=True,
    metavar="SCORER",
    help="Gate on this scorer only; repeatable (default: every scorer).",
)
@click.option(
    "--max-regressions",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Fail when more than N samples got worse, instead of the significance rule.",
)
@click.option(
    "--min-effect",
    type=click.FloatRange(min=0.0),
    default=0.0,
    metavar="X",
    help="A significant regression fails only when the mean drops by at least X.",
)
@click.option(
    "--max-error-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.1,
    show_default=True,
    metavar="F",
    help="Fail when a gated scorer raised on more than this share of samples.",
)
@click.option("--alpha", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.05)
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def eval_compare(
    obj: Obj,
    a: str | None,
    b: str | None,
    live: bool,
    since: str,
    scorer_specs: tuple[str, ...],
    fail_on_regression: bool,
    gate_scorers: tuple[str, ...],
    max_regressions: int | None,
    min_effect: float,
    max_error_share: float,
    alpha: float,
    as_json: bool,
) -> None:
    """Compare eval A (baseline) with eval B: ids, id prefixes, `latest` or `latest~1`.

    The report ends with the regression gate's verdict; --fail-on-regression exits 1 when it
    fails. With --live, A and B are two versions running in production: their runs since
    --since are compared with the same statistics (paired on the inputs both ran, else
    unpaired)."""
    from wistro.eval.compare import compare_two
    from wistro.eval.results import EvalResult

    if a is None or b is None:
        if live:
            fail("--live compares two versions: wistro eval compare --live A B [--since 1h]")
        fail("compare needs two evals: wistro eval compare A B")
    if live:
        ra, rb, cmp = _compare_live(obj, a, b, since, scorer_specs, alpha)
    elif scorer_specs:
        fail("--scorer goes with --live (an eval's scorers are those it ran)")
    else:
        root = _root(obj)
        ra, rb = EvalResult.load(a, root), EvalResult.load(b, root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the notes are in the report
            cmp = compare_two(ra, rb, alpha=alpha)
    result = cmp.gate(  # a scorer that is not in both evals: one line, exit 1
        gate_scorers or None,
        max_regressions=max_regressions,
        min_effect=min_effect,
        max_error_share=max_error_share,
    )
    if as_json:
        emit_json(cmp.to_dict(gate=result))
    else:
        for w in cmp.warnings:
            click.echo(click.style(f"warning: {w}", fg="yellow"), err=True)
        click.echo(cmp.report(gate=result))
    if fail_on_regression and not result.passed:
        fail(f"{rb.label} against {ra.label}: {result.line}")


def _compare_live(
    obj: Obj, a: str, b: str, since: str, scorer_specs: tuple[str, ...], alpha: float = 0.05
) -> tuple[Any, Any, Any]:
    from wistro.eval.live import acompare_live
    from wistro.eval.recorded import since_timestamp
    from wistro.eval.scorers import from_spec

    since_timestamp(since)  # bad input fails before the app loads
    scorers = [from_spec(s) for s in scorer_specs]
    app = obj.app(state="memory")

    async def go() -> Any:
        try:
            return await acompare_live(app, a, b, since=since, scorers=scorers, alpha=alpha)
        finally:
            await app.aclose()

    cmp = run_async(go)
    return cmp.a, cmp.b, cmp


from wistro.cli.eval_history import history as _history  # noqa: E402,F401
