"""``wistro eval history [DATASET]``: the stored evals of a dataset, oldest first, with each
scorer's pass rate and a sparkline of its trend; ``--json``, ``--svg FILE`` (the trend chart).
Registered on ``eval_group`` by the import at the end of wistro/cli/eval.py."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from wistro.cli.support import Obj, emit_json, fail

__all__ = ["history"]


@click.command("history")
@click.argument("dataset", required=False)
@click.option(
    "--scorer",
    "scorers",
    multiple=True,
    metavar="S",
    help="Only this scorer (repeatable); default: every scorer the evals used.",
)
@click.option("--json", "as_json", is_flag=True, help="The evals as strict JSON, oldest first.")
@click.option(
    "--svg",
    "svg",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Write the trend chart (pass rate per eval, a line per scorer) as SVG.",
)
@click.pass_obj
def history(
    obj: Obj, dataset: str | None, scorers: tuple[str, ...], as_json: bool, svg: Path | None
) -> None:
    """The evals of DATASET (default: every dataset), newest last: time, version, commit,
    samples, the pass rate of each scorer, and a sparkline of each scorer's trend."""
    from wistro.eval.history import evals, known_datasets, scorer_names, trend

    root = obj.project_only().root
    frame = evals(root, dataset)
    if dataset is not None and frame.empty:
        known = known_datasets(root)
        if dataset not in known:
            fail(f"no dataset {dataset!r} (known: {', '.join(known) or 'none'})")
    if frame.empty:
        if as_json:
            click.echo("[]")
        else:
            what = f"dataset {dataset!r}" if dataset else "any dataset"
            click.echo(f"no evals of {what} yet (run one: wistro eval run {dataset or 'DATASET'})")
        return
    frame = frame.iloc[::-1]  # oldest first, newest last
    datasets = list(dict.fromkeys(frame["dataset"]))
    if svg is not None and len(datasets) > 1:
        fail(f"--svg draws one dataset; these evals are of {', '.join(datasets)}: give DATASET")
    blocks = []
    used_anywhere: set[str] = set()
    for name in datasets:
        part = frame[frame["dataset"] == name]
        used = [s for s in scorer_names(part) if part[f"{s}:pass_rate"].notna().any()]
        used_anywhere.update(used)
        blocks.append((name, part, [s for s in scorers if s in used] if scorers else used))
    unknown = [s for s in scorers if s not in used_anywhere]
    if unknown:
        known_scorers = ", ".join(sorted(used_anywhere)) or "none"
        fail(f"no scorer {unknown[0]!r} in these evals (scorers: {known_scorers})")
    if svg is not None:
        name, part, chosen = blocks[0]
        trend(part, chosen).save(svg)
        click.echo(f"trend chart written to {svg}", err=True)
    if as_json:
        rows = [_json_row(r, chosen) for _, part, chosen in blocks for r in _records(part)]
        emit_json(rows)
        return
    for i, (name, part, chosen) in enumerate(blocks):
        if i:
            click.echo("")
        click.echo("\n".join(_table(name, part, chosen)))


def _register() -> None:
    from wistro.cli.eval import eval_group  # whose module imports this one at its end

    eval_group.add_command(history)


_register()


def _records(part: Any) -> list[dict[str, Any]]:
    return list(part.to_dict(orient="records"))


def _num(v: Any) -> Any:
    """A JSON number or null (never NaN)."""
    if v is None:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):  # numpy scalars
        return _num(v.item())
    return v


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _time(v: Any) -> str | None:
    return None if v is None or v != v else v.isoformat()  # NaT != NaT


def _json_row(r: dict[str, Any], scorers: list[str]) -> dict[str, Any]:
    return {
        "eval_id": r["eval_id"],
        "dataset": r["dataset"],
        "dataset_version": r["dataset_version"],
        "version": r["version"],
        "label": _text(r["label"]),
        "git_commit": _text(r["git_commit"]),
        "dirty": bool(r["dirty"]),
        "started": _time(r["started"]),
        "finished": _time(r["finished"]),
        "n_samples": _num(r["n_samples"]),
        "n_results": _num(r["n_results"]),
        "n_errors": _num(r["n_errors"]),
        "status": r["status"],
        "complete": bool(r["complete"]),
        "scorers": {
            s: {stat: _num(r[f"{s}:{stat}"]) for stat in ("pass_rate", "mean", "n", "errors")}
            for s in scorers
        },
    }


def _table(dataset: str, part: Any, scorers: list[str]) -> list[str]:
    from wistro.eval.history_chart import sparkline

    records = _records(part)
    head = ["time", "version", "commit", "n", *scorers]
    rows = []
    for r in records:
        started = r["started"]
        when = datetime.fromtimestamp(started.timestamp()).strftime("%Y-%m-%d %H:%M")
        label = _text(r["label"]) or r["version"][:12]
        commit = (_text(r["git_commit"]) or "-")[:8] + ("*" if r["dirty"] else "")
        cells = [when, label[:24], commit, str(r["n_samples"])]
        cells += [_pct(r[f"{s}:pass_rate"]) for s in scorers]
        if not r["complete"]:
            cells.append("(incomplete)")
        rows.append(cells)
    widths = [max(len(c[i]) for c in [head, *rows] if i < len(c)) for i in range(len(head))]
    right = {3, *range(4, len(head))}  # numbers right-aligned

    def line(cells: list[str]) -> str:
        out = [
            (c.rjust(widths[i]) if i in right else c.ljust(widths[i])) if i < len(widths) else c
            for i, c in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    n = len(records)
    out = [f"dataset {dataset}: {n} eval{'s' if n != 1 else ''}, oldest first", line(head)]
    out += [line(c) for c in rows]
    if scorers:
        width = max(len(s) for s in scorers)
        out.append("trend:")
        for s in scorers:
            rates = [_rate(r[f"{s}:pass_rate"]) for r in records]
            known = [x for x in rates if x is not None]
            span = f"{_pct(known[0])} -> {_pct(known[-1])}" if known else "n/a"
            out.append(f"  {s.ljust(width)}  {sparkline(rates)}  {span}")
    return out


def _rate(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _pct(v: Any) -> str:
    rate = _rate(v)
    return "-" if rate is None else f"{rate:.1%}"
