"""``wistro dataset ...`` and ``wistro eval ...``: registered on the main group by wistro/cli/main.py."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from wistro.cli.support import Obj, emit_json, fail, parse_payload, run_async

# wistro/cli/main.py imports this module to register the groups; the helpers both use live in
# wistro.cli.support, and the eval machinery is imported when a command runs (`wistro --help`
# does not load numpy).
pass_obj = click.pass_obj


def _root(obj: Obj) -> Any:
    return obj.project_only().root


# ---------------------------------------------------------------- datasets
@click.group("dataset")
def dataset() -> None:
    """Datasets of samples (datasets/NAME.jsonl): add recorded runs, list, show."""


@dataset.command("add")
@click.argument("name")
@click.option(
    "--trace",
    "trace_ids",
    multiple=True,
    metavar="ID",
    help="A stored trace (id or prefix) becomes a sample; repeatable.",
)
@click.option("--topic", help="Input topic of a sample written by hand (with --data).")
@click.option("--data", "data_text", metavar="JSON", help="Input payload for --topic.")
@click.option(
    "--expect", "expect_text", metavar="JSON", help='Expected payloads: {"topic": {...}}.'
)
@click.option("--tag", "tags", multiple=True, help="Tag the new samples; repeatable.")
@click.option("--id", "sample_id", help="Sample id (default: a hash of the input).")
@click.option(
    "--from-runs", is_flag=True, help="Sample the recorded runs of --version into the dataset."
)
@click.option("--version", "version", metavar="V", help="With --from-runs: a label, id or prefix.")
@click.option(
    "--sample",
    "sample_size",
    default="100%",
    show_default=True,
    metavar="N|P%",
    help="With --from-runs: a share of the runs (5%) or a count (50).",
)
@click.option("--since", metavar="DURATION", help="With --from-runs: runs of the last 1h, 30m, 2d.")
@click.option("--limit", type=int, metavar="N", help="With --from-runs: at most N samples.")
@click.option("--seed", default=0, show_default=True, help="With --from-runs: the sampling seed.")
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def dataset_add(
    obj: Obj,
    name: str,
    trace_ids: tuple[str, ...],
    topic: str | None,
    data_text: str | None,
    expect_text: str | None,
    tags: tuple[str, ...],
    sample_id: str | None,
    from_runs: bool,
    version: str | None,
    sample_size: str,
    since: str | None,
    limit: int | None,
    seed: int,
    as_json: bool,
) -> None:
    """Add samples to dataset NAME: recorded runs (--trace ID), an input (--topic, --data), or
    a seeded sample of a version's production runs (--from-runs --version V --sample 5%).

    A recorded run's payloads become the sample's expectations unless --expect is given."""
    from wistro.eval.dataset import Dataset

    if from_runs and not version:
        fail("--from-runs needs --version V (a label, a version id or a prefix of one)")
    if version and not from_runs:
        fail("--version goes with --from-runs")
    if not trace_ids and not topic and not from_runs:
        fail("give --trace ID (a recorded run), --topic TOPIC --data JSON or --from-runs")
    expected = parse_payload(expect_text) if expect_text else None
    if expected is not None and not isinstance(expected, dict):
        fail('--expect must be a JSON object: {"topic": {...}}')
    ds = Dataset(name, root=_root(obj))
    added = []
    if from_runs:
        from wistro.eval.live import live_versions_of
        from wistro.eval.recorded import parse_sample, sample_runs, since_timestamp

        parse_sample(sample_size)  # bad input fails before the app loads
        since_timestamp(since)
        app = obj.app(state="memory")
        wanted = str(version)

        async def go() -> Any:
            try:
                versions = await live_versions_of(app)
                return sample_runs(
                    app, wanted, sample_size, since=since, seed=seed, limit=limit, live=versions
                )
            finally:
                await app.aclose()

        samples = run_async(go)
        if tags:
            for s in samples:
                s.tags = sorted({*s.tags, *tags})
        ds.extend(samples)
        added += samples
    if trace_ids:
        app = obj.app(state="memory")
        try:
            for tid in trace_ids:
                trace = app.trace(tid)
                added.append(ds.add_run(trace, expected, tags=tags, id=sample_id or ""))
        finally:
            if app.engine.store is not None:
                app.engine.store.close()
    if topic:
        data = parse_payload(data_text) if data_text else None
        added.append(ds.add({"topic": topic, "data": data}, expected, tags=tags, id=sample_id))
    if as_json:
        emit_json({"dataset": name, "version": ds.version, "added": [s.to_dict() for s in added]})
        return
    for s in added:
        src = f" from trace {s.source_trace[:12]}" if s.source_trace else ""
        click.echo(f"added {s.id} ({s.topic}{src}, {len(s.expected)} expectation(s))")
    click.echo(f"{ds.path}: {len(ds)} samples, version {ds.version}")


@dataset.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def dataset_list(obj: Obj, as_json: bool) -> None:
    """List the project's datasets."""
    from wistro.eval.dataset import Dataset, list_datasets

    root = _root(obj)
    rows: list[dict[str, Any]] = []
    for name in list_datasets(root):
        ds = Dataset.load(name, root)
        topics = sorted({s.topic for s in ds})
        rows.append({"name": name, "samples": len(ds), "version": ds.version, "topics": topics})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no datasets (add one: wistro dataset add NAME --trace ID)")
    for r in rows:
        click.echo(f"{r['name']}  {r['samples']} samples  {r['version']}  {', '.join(r['topics'])}")


@dataset.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def dataset_show(obj: Obj, name: str, as_json: bool) -> None:
    """Show the samples of dataset NAME."""
    from wistro.eval.dataset import Dataset

    ds = Dataset.load(name, _root(obj))
    if as_json:
        emit_json({"name": name, "version": ds.version, "samples": [s.to_dict() for s in ds]})
        return
    click.echo(f"dataset {name}: {len(ds)} samples, version {ds.version}")
    for s in ds:
        tags = f" [{', '.join(s.tags)}]" if s.tags else ""
        expects = ", ".join(sorted(s.expected)) or "-"
        click.echo(f"  {s.id}  {s.topic}  expects: {expects}{tags}")


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
