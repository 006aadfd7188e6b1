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
    help="error_free, payload_equals[:TOPIC], emitted:TOPIC, not_emitted:TOPIC, sequence:A,B, latency_budget:MS; repeatable (default: payload_equals and error_free).",
)
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
    no_resume: bool,
    as_json: bool,
) -> None:
    """Run dataset NAME through the project (or --version REV) and score it."""
    from wistro.eval.dataset import Dataset
    from wistro.eval.runner import run
    from wistro.eval.scorers import from_spec

    root = _root(obj)
    ds = Dataset.load(name, root)
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

    result = run_async(go)
    if as_json:
        emit_json(
            {
                "eval_id": result.eval_id,
                "dataset": result.meta.dataset,
                "dataset_version": result.meta.dataset_version,
                "version": result.version.to_dict(),
                "summary": result.summary.to_dict(orient="records"),
                "n_errors": sum(1 for r in result.results if r.failed),
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
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when b regressed against a.")
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
    as_json: bool,
) -> None:
    """Compare eval A (baseline) with eval B: ids, id prefixes, `latest` or `latest~1`.

    With --live, A and B are two versions running in production: their runs since --since are
    compared with the same statistics (paired on the inputs both ran, else unpaired)."""
    from wistro.eval.compare import compare_two
    from wistro.eval.results import EvalResult

    if a is None or b is None:
        if live:
            fail("--live compares two versions: wistro eval compare --live A B [--since 1h]")
        fail("compare needs two evals: wistro eval compare A B")
    if live:
        ra, rb, cmp = _compare_live(obj, a, b, since, scorer_specs)
    elif scorer_specs:
        fail("--scorer goes with --live (an eval's scorers are those it ran)")
    else:
        root = _root(obj)
        ra, rb = EvalResult.load(a, root), EvalResult.load(b, root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the notes are in the report
            cmp = compare_two(ra, rb)
    if as_json:
        emit_json(cmp.to_dict())
    else:
        for w in cmp.warnings:
            click.echo(click.style(f"warning: {w}", fg="yellow"), err=True)
        click.echo(cmp.report())
    if fail_on_regression and cmp.has_regression:
        if live:
            fail(cmp.verdict().removeprefix("verdict: "))
        n = len(cmp.regressions)
        fail(f"{rb.label} regressed against {ra.label}: {n} sample(s) worse")


def _compare_live(
    obj: Obj, a: str, b: str, since: str, scorer_specs: tuple[str, ...]
) -> tuple[Any, Any, Any]:
    from wistro.eval.live import acompare_live
    from wistro.eval.recorded import since_timestamp
    from wistro.eval.scorers import from_spec

    since_timestamp(since)  # bad input fails before the app loads
    scorers = [from_spec(s) for s in scorer_specs]
    app = obj.app(state="memory")

    async def go() -> Any:
        try:
            return await acompare_live(app, a, b, since=since, scorers=scorers)
        finally:
            await app.aclose()

    cmp = run_async(go)
    return cmp.a, cmp.b, cmp
