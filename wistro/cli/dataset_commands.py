"""``wistro dataset ...``: datasets of samples (add, list, show); registered on the main group by
wistro/cli/main.py. The dataset machinery is imported when a command runs (`wistro --help` does
not load pandas)."""

from __future__ import annotations

from typing import Any

import click

from wistro.cli.support import Obj, emit_json, fail, parse_payload, run_async

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
