"""``wistro dataset ...``: datasets of samples (add, list, show, versions); registered on the main
group by wistro/cli/main.py. The dataset machinery is imported when a command runs (`wistro
--help` does not load pandas).

What a user reads: one line per sample added or replaced, one ``warning:`` line on stderr for
samples of identical content kept once, one ``file:line: what`` line on stderr per dataset file
that cannot be read (``list`` goes on with the others; ``--strict`` makes that exit 1), and with
``--json`` strict JSON on stdout (NaN and infinities become null)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from wistro.cli.support import Obj, emit_json, fail, parse_payload, run_async

pass_obj = click.pass_obj


def _root(obj: Obj) -> Any:
    return obj.project_only().root


# ---------------------------------------------------------------- datasets
@click.group("dataset")
def dataset() -> None:
    """Datasets of samples (datasets/NAME.jsonl): add recorded runs, list, show, versions."""


@contextmanager
def dataset_warnings() -> Iterator[None]:
    """Dataset warnings as ``warning: ...`` lines on stderr (not Python's warning format)."""
    from wistro.eval.errors import DatasetWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, DatasetWarning):
                    click.echo(f"warning: {w.message}", err=True)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


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
@click.option("--split", "split", metavar="NAME", help="Put the new samples in split NAME (test).")
@click.option("--id", "sample_id", help="Sample id (default: a hash of the input and expected).")
@click.option("--upsert", is_flag=True, help="Replace a sample of the same id (else an error).")
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
    split: str | None,
    sample_id: str | None,
    upsert: bool,
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

    A recorded run's payloads become the sample's expectations unless --expect is given. An id
    that is already in the dataset is an error unless --upsert; a sample of identical content
    (same input and expected, no --id) is kept once, with a warning. All the samples of one
    command are added together (one version) or, on an error, none."""
    from wistro.eval.dataset import Dataset, Sample, check_split

    if from_runs and not version:
        fail("--from-runs needs --version V (a label, a version id or a prefix of one)")
    if version and not from_runs:
        fail("--version goes with --from-runs")
    if not trace_ids and not topic and not from_runs:
        fail("give --trace ID (a recorded run), --topic TOPIC --data JSON or --from-runs")
    if sample_id and (from_runs or len(trace_ids) + (1 if topic else 0) > 1):
        fail("--id names one sample: give it with one --trace or with --topic")
    split = check_split(split)
    expected = parse_payload(expect_text) if expect_text else None
    if expected is not None and not isinstance(expected, dict):
        fail('--expect must be a JSON object: {"topic": {...}}')
    with dataset_warnings():
        ds = Dataset(name, root=_root(obj))
    new: list[Sample] = []
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

        for s in run_async(go):
            s.tags = sorted({*s.tags, *tags})
            s.split = split
            new.append(s)
    if trace_ids:
        app = obj.app(state="memory")
        try:
            for tid in trace_ids:
                trace = app.trace(tid)
                new.append(
                    Sample.from_run(trace, expected, tags=tags, id=sample_id or "", split=split)
                )
        finally:
            if app.engine.store is not None:
                app.engine.store.close()
    if topic:
        data = parse_payload(data_text) if data_text else None
        record: dict[str, Any] = {"topic": topic, "data": data, "tags": list(tags)}
        if expected is not None:
            record["expected"] = expected
        if sample_id:
            record["id"] = sample_id
        if split:
            record["split"] = split
        new.append(Sample.from_dict(record))
    with dataset_warnings():
        result = ds.merge(new, upsert=upsert)
    if as_json:
        emit_json(
            {
                "dataset": name,
                "version": ds.version,
                "samples": len(ds),
                "added": [s.to_dict() for s in result.added],
                "replaced": [s.to_dict() for s in result.replaced],
                "duplicates": [s.id for s in result.duplicates],
            }
        )
        return
    for verb, samples in (("added", result.added), ("replaced", result.replaced)):
        for s in samples:
            src = f" from trace {s.source_trace[:12]}" if s.source_trace else ""
            where = f", split {s.split}" if s.split else ""
            click.echo(f"{verb} {s.id} ({s.topic}{src}, {len(s.expected)} expectation(s){where})")
    click.echo(f"{ds.path}: {len(ds)} samples, version {ds.version}")


@dataset.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--strict", is_flag=True, help="Exit 1 when a dataset file cannot be read.")
@pass_obj
def dataset_list(obj: Obj, as_json: bool, strict: bool) -> None:
    """List the project's datasets. A file that cannot be read is one line on stderr
    (file:line: what) and the others are listed; exit 0 unless --strict."""
    from wistro.eval.dataset import load_datasets

    with dataset_warnings():
        good, bad = load_datasets(_root(obj))
    rows: list[dict[str, Any]] = []
    for ds in good:
        topics = sorted({s.topic for s in ds})
        rows.append(
            {
                "name": ds.name,
                "samples": len(ds),
                "version": ds.version,
                "topics": topics,
                "splits": ds.splits,
            }
        )
    if as_json:
        emit_json(rows)
    else:
        if not rows and not bad:
            click.echo("no datasets (add one: wistro dataset add NAME --trace ID)")
        for r in rows:
            splits = ", ".join(f"{k} {n}" for k, n in r["splits"].items())
            click.echo(
                f"{r['name']}  {r['samples']} samples  {r['version']}  {', '.join(r['topics'])}"
                + (f"  splits: {splits}" if splits else "")
            )
    for e in bad:
        click.echo(e.format(), err=True)
    if bad and strict:
        raise SystemExit(1)


@dataset.command("show")
@click.argument("name")
@click.option("--split", "split", metavar="NAME", help="Only the samples of split NAME.")
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def dataset_show(obj: Obj, name: str, split: str | None, as_json: bool) -> None:
    """Show the samples of dataset NAME (of one split with --split)."""
    from wistro.eval.dataset import Dataset

    with dataset_warnings():
        ds = Dataset.load(name, _root(obj))
    if split is not None:
        ds = ds.split(split)
    if as_json:
        emit_json(
            {
                "name": name,
                "split": split,
                "version": ds.version,
                "samples": [s.to_dict() for s in ds],
            }
        )
        return
    part = f" (split {split})" if split else ""
    click.echo(f"dataset {name}{part}: {len(ds)} samples, version {ds.version}")
    for s in ds:
        tags = f" [{', '.join(s.tags)}]" if s.tags else ""
        where = f" ({s.split})" if s.split and not split else ""
        expects = ", ".join(sorted(s.expected)) or "-"
        click.echo(f"  {s.id}  {s.topic}  expects: {expects}{tags}{where}")


@dataset.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_obj
def dataset_versions(obj: Obj, name: str, as_json: bool) -> None:
    """The versions of dataset NAME, oldest first (datasets/.history/NAME.jsonl)."""
    from wistro.eval.dataset import Dataset

    with dataset_warnings():
        ds = Dataset.load(name, _root(obj))
    entries = ds.history()
    current = ds.version
    recorded = bool(entries) and entries[-1].version == current
    if as_json:
        emit_json(
            {
                "name": name,
                "version": current,
                "recorded": recorded,
                "versions": [e.to_dict() for e in entries],
            }
        )
        return
    click.echo(f"dataset {name}: {len(entries)} version(s), current {current}")
    for e in entries:
        counts = f"+{e.added} -{e.removed} ~{e.changed}"
        change = "found on disk" if e.source == "found" else counts
        commit = f"  git {e.git_commit[:12]}" if e.git_commit else ""
        click.echo(f"  {e.version}  {e.time}  {e.n_samples} samples  {change}{commit}")
    if not recorded:
        click.echo(
            f"  the file's content ({current}) is not in the history yet: changed outside "
            "wistro; the next save records it"
        )
