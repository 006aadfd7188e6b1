"""History: every stored eval as one DataFrame, their samples as another, and a trend chart.

``evals()`` lists ``.wistro/evals/`` newest first, one row per eval with a summary per scorer.
The summary of an eval is cached in its folder as ``summary.json``, keyed by the size and
modification time of its ``results.jsonl``: a listing reads each ``meta.json`` and that small
file, and parses a results file again only when it changed (an eval still running, or resumed).

Scores are counted as they are stored: ``{"value", "passed", "rationale"}``; a score with
``"passed": null`` was not scored and one with an ``"error"`` key is that scorer's error (both
are left out of the pass rate and the mean; errors are counted).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.errors import DatasetNotFound, EvalNotFound, WistroError
from wistro.eval.results import (
    EvalInfo,
    EvalMeta,
    EvalResult,
    SampleResult,
    list_evals,
    read_results,
    resolve_eval,
)

if TYPE_CHECKING:
    import pandas as pd

    from wistro.eval.history_chart import TrendChart

SUMMARY_FILE = "summary.json"
SUMMARY_FORMAT = 1

# the columns of evals() before the per-scorer ones
EVAL_COLUMNS = [
    "eval_id",
    "dataset",
    "dataset_version",
    "version",
    "label",
    "git_commit",
    "dirty",
    "revision",
    "started",
    "finished",
    "repeats",
    "n_samples",
    "n_results",
    "n_errors",
    "latency_ms",
    "complete",
    "status",
    "scorers",
]
SCORER_STATS = ("pass_rate", "mean", "n", "errors")

__all__ = [
    "EVAL_COLUMNS",
    "SUMMARY_FILE",
    "eval_samples",
    "eval_summary",
    "evals",
    "score_outcome",
    "summarize_results",
    "trend",
]


# ---------------------------------------------------------------- one eval's summary
def score_outcome(score: dict[str, Any] | None) -> str:
    """``passed`` / ``failed`` / ``not_scored`` / ``error`` / ``missing`` for a stored score."""
    if score is None:
        return "missing"
    if score.get("error"):
        return "error"
    passed = score.get("passed")
    if passed is None:
        return "not_scored"
    return "passed" if passed else "failed"


def summarize_results(path: Path) -> dict[str, Any]:
    """Counts over a results file (the last row per sample and repeat, as ``read_results``):
    results, samples, failed runs, median latency, and per scorer ``n`` (scored: passed or
    failed), ``n_passed``, ``n_values``/``sum_values`` (the mean's), ``errors``, ``not_scored``."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    key = (str(d["sample_id"]), int(d.get("repeat", 0)))
                except (ValueError, TypeError, KeyError):
                    continue  # a line cut short by an interruption
                if isinstance(d, dict):
                    rows[key] = d
    scorers: dict[str, dict[str, Any]] = {}
    latencies: list[float] = []
    n_errors = 0
    for d in rows.values():
        if d.get("error") is not None or d.get("status", "ok") != "ok":
            n_errors += 1
        lat = d.get("latency_ms")
        if isinstance(lat, (int, float)):
            latencies.append(float(lat))
        for name, score in (d.get("scores") or {}).items():
            st = scorers.setdefault(
                name,
                {"n": 0, "n_passed": 0, "n_values": 0, "sum_values": 0.0, "errors": 0,
                 "not_scored": 0},
            )  # fmt: skip
            outcome = score_outcome(score if isinstance(score, dict) else None)
            if outcome == "error":
                st["errors"] += 1
                continue
            if outcome == "not_scored":
                st["not_scored"] += 1
            elif outcome in ("passed", "failed"):
                st["n"] += 1
                st["n_passed"] += outcome == "passed"
            value = score.get("value") if isinstance(score, dict) else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                st["n_values"] += 1
                st["sum_values"] += float(value)
    latencies.sort()
    return {
        "n_results": len(rows),
        "n_samples": len({sid for sid, _ in rows}),
        "n_errors": n_errors,
        "latency_ms": latencies[len(latencies) // 2] if latencies else None,
        "scorers": scorers,
    }


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def eval_summary(info: EvalInfo | Path) -> dict[str, Any]:
    """The summary of one stored eval (see :func:`summarize_results`), from its
    ``summary.json`` when that was made from the results file as it is now, else computed and
    written there (best effort: a read-only folder only costs the re-read)."""
    folder = info.path if isinstance(info, EvalInfo) else Path(info)
    results = folder / "results.jsonl"
    cache = folder / SUMMARY_FILE
    stamp = _stamp(results)  # before reading: a file growing meanwhile is read again next time
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if (
            isinstance(cached, dict)
            and cached.get("format") == SUMMARY_FORMAT
            and cached.get("results") == stamp
        ):
            return cached
    summary = {"format": SUMMARY_FORMAT, "results": stamp, **summarize_results(results)}
    with contextlib.suppress(OSError):
        from wistro.files import write_atomic

        write_atomic(cache, json.dumps(summary, sort_keys=True))
    return summary


# ---------------------------------------------------------------- across evals
def _selected(root: str | Path | None, dataset: str | Iterable[str] | None) -> list[EvalInfo]:
    infos = list_evals(root)
    if dataset is None:
        return infos
    wanted = {dataset} if isinstance(dataset, str) else set(dataset)
    return [i for i in infos if i.meta.dataset in wanted]


def _scorer_order(infos: Sequence[EvalInfo], summaries: Sequence[dict[str, Any]]) -> list[str]:
    """Scorer names in order of first use, oldest eval first."""
    names: dict[str, None] = {}
    for info, summary in zip(infos, summaries, strict=True):
        for name in [*info.meta.scorers, *summary.get("scorers", {})]:
            names.setdefault(name, None)
    return list(names)


def _eval_row(info: EvalInfo, summary: dict[str, Any], scorers: list[str]) -> dict[str, Any]:
    meta, version = info.meta, info.version
    nan = float("nan")
    row: dict[str, Any] = {
        "eval_id": info.eval_id,
        "dataset": meta.dataset,
        "dataset_version": meta.dataset_version,
        "version": version.id,
        "label": info.label,
        "git_commit": version.git_commit,
        "dirty": bool(version.dirty),
        "revision": version.revision,
        "started": meta.created,
        "finished": meta.finished,
        "repeats": meta.repeats,
        "n_samples": summary["n_samples"],
        "n_results": summary["n_results"],
        "n_errors": summary["n_errors"],
        "latency_ms": summary["latency_ms"] if summary["latency_ms"] is not None else nan,
        "complete": meta.status == "complete",
        "status": meta.status,
        "scorers": list(meta.scorers),
    }
    stats = summary.get("scorers", {})
    for name in scorers:
        st = stats.get(name)
        used = st is not None or name in meta.scorers
        st = st or {}
        n, n_values = st.get("n", 0), st.get("n_values", 0)
        row[f"{name}:pass_rate"] = st["n_passed"] / n if n else nan
        row[f"{name}:mean"] = st["sum_values"] / n_values if n_values else nan
        row[f"{name}:n"] = n if used else nan
        row[f"{name}:errors"] = st.get("errors", 0) if used else nan
    return row


def evals(
    root: str | Path | None = None, dataset: str | Iterable[str] | None = None
) -> pd.DataFrame:
    """Every stored eval of the project (or of ``dataset``), newest first: one row with
    ``eval_id, dataset, dataset_version, version`` (the version id), ``label, git_commit, dirty,
    revision, started, finished`` (UTC datetimes), ``repeats, n_samples, n_results, n_errors``
    (results whose run failed or did not run), ``latency_ms`` (median), ``complete, status,
    scorers``, then per scorer ``<scorer>:pass_rate`` (0-1, over the samples it scored),
    ``<scorer>:mean``, ``<scorer>:n`` and ``<scorer>:errors`` (NaN where it was not used)."""
    import pandas as pd

    infos = _selected(root, dataset)
    infos.reverse()  # newest first
    summaries = [eval_summary(i) for i in infos]
    scorers = _scorer_order(infos[::-1], summaries[::-1])
    rows = [_eval_row(i, s, scorers) for i, s in zip(infos, summaries, strict=True)]
    columns = EVAL_COLUMNS + [f"{name}:{stat}" for name in scorers for stat in SCORER_STATS]
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("started", "finished"):
        frame[col] = pd.to_datetime(frame[col].astype("float64"), unit="s", utc=True)
    return _none_for_missing(frame, ("label", "git_commit", "revision"))


def _none_for_missing(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """None (not NaN) where a text column has no value, as in the stored JSON."""
    for col in columns:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame


def _load(folder: Path, meta: EvalMeta | None = None) -> EvalResult:
    """An eval's meta and results (not its dataset: the sample rows do not need it)."""
    if meta is None:
        meta = EvalMeta.from_dict(json.loads((folder / "meta.json").read_text(encoding="utf-8")))
    return EvalResult(folder.name, meta, read_results(folder / "results.jsonl"), (), folder)


def _as_results(
    which: Any, root: str | Path | None, dataset: str | Iterable[str] | None
) -> list[EvalResult]:
    import pandas as pd

    if which is None:
        return [_load(i.path, i.meta) for i in reversed(_selected(root, dataset))]
    if isinstance(which, pd.DataFrame):
        which = list(which["eval_id"])
    elif isinstance(which, (str, EvalResult, EvalInfo)):
        which = [which]
    out: list[EvalResult] = []
    stored: dict[str, EvalInfo] | None = None
    for item in which:
        if isinstance(item, EvalResult):
            out.append(item)
        elif isinstance(item, EvalInfo):
            out.append(_load(item.path, item.meta))
        else:
            if stored is None:  # listed once: exact ids (a frame's) need no resolving each
                stored = {i.eval_id: i for i in list_evals(root)}
            info = stored.get(str(item))
            out.append(
                _load(info.path, info.meta) if info else _load(resolve_eval(str(item), root))
            )
    if dataset is not None:
        wanted = {dataset} if isinstance(dataset, str) else set(dataset)
        out = [r for r in out if r.meta.dataset in wanted]
    return out


def _sample_row(r: EvalResult, s: SampleResult, scorers: list[str]) -> dict[str, Any]:
    meta = r.meta
    row: dict[str, Any] = {
        "eval_id": r.eval_id,
        "dataset": meta.dataset,
        "version": meta.version.id,
        "label": meta.label or meta.version.label,
        "started": meta.created,
        "sample_id": s.sample_id,
        "repeat": s.repeat,
        "topic": s.topic,
        "status": s.status,
        "error": s.error,
        "latency_ms": s.latency_ms,
        "trace_id": s.trace_id,
    }
    for name in scorers:
        score = s.scores.get(name)
        outcome = score_outcome(score)
        row[name] = None if score is None else score.get("value")
        row[f"{name}:passed"] = (
            None if outcome in ("missing", "not_scored", "error") else outcome == "passed"
        )
        row[f"{name}:error"] = score.get("error") if score else None
    return row


def eval_samples(
    evals: Any = None,
    dataset: str | Iterable[str] | None = None,
    sample_id: str | Iterable[str] | None = None,
    root: str | Path | None = None,
) -> pd.DataFrame:
    """The samples of several evals, one row per eval, sample and repeat: ``eval_id, dataset,
    version, label, started, sample_id, repeat, topic, status, error, latency_ms, trace_id`` and
    per scorer ``<scorer>`` (its value), ``<scorer>:passed`` (None when not scored or the scorer
    failed) and ``<scorer>:error``. ``evals``: None (every stored eval, newest first), ids, id
    prefixes, ``latest``/``latest~1``, ``EvalResult``s, ``list_evals()`` items, or a frame from
    :func:`evals` (its ``eval_id`` column); ``dataset`` and ``sample_id`` filter the rows."""
    import pandas as pd

    results = _as_results(evals, root, dataset)
    wanted = None
    if sample_id is not None:
        wanted = {sample_id} if isinstance(sample_id, str) else set(sample_id)
    scorers: dict[str, None] = {}
    for r in reversed(results):
        for name in r.meta.scorers:
            scorers.setdefault(name, None)
    names = list(scorers)
    rows = [
        _sample_row(r, s, names)
        for r in results
        for s in r.results
        if wanted is None or s.sample_id in wanted
    ]
    base = [
        "eval_id", "dataset", "version", "label", "started", "sample_id", "repeat", "topic",
        "status", "error", "latency_ms", "trace_id",
    ]  # fmt: skip
    columns = base + [c for n in names for c in (n, f"{n}:passed", f"{n}:error")]
    frame = pd.DataFrame(rows, columns=columns)
    frame["started"] = pd.to_datetime(frame["started"].astype("float64"), unit="s", utc=True)
    errors = [f"{n}:error" for n in names]
    return _none_for_missing(frame, ["label", "error", "trace_id", *errors])


# ---------------------------------------------------------------- trend
def known_datasets(root: str | Path | None = None) -> list[str]:
    """Datasets of the project (``datasets/*.jsonl``) and datasets that stored evals ran."""
    from wistro.eval.dataset import list_datasets

    names = set(list_datasets(root)) | {i.meta.dataset for i in list_evals(root)}
    return sorted(names)


def pick_dataset(frame: pd.DataFrame, dataset: str | None, known: Sequence[str] = ()) -> str:
    """The one dataset a history is about: ``dataset`` when the frame has evals of it (a name in
    ``known`` without evals raises ``EvalNotFound``, any other ``DatasetNotFound`` naming the
    known ones), else the only dataset the frame holds."""
    present = sorted(set(frame["dataset"]))
    if dataset is not None:
        if dataset in present:
            return dataset
        names = sorted({*known, *present})
        if dataset in names:
            raise EvalNotFound(
                f"no evals of dataset {dataset!r} yet", hint=f"run one: `wistro eval run {dataset}`"
            )
        raise DatasetNotFound(f"no dataset {dataset!r} (known: {', '.join(names) or 'none'})")
    if not present:
        raise EvalNotFound("no evals yet", hint="run one: `wistro eval run DATASET`")
    if len(present) > 1:
        raise WistroError(
            f"evals of several datasets ({', '.join(present)}): a trend is about one",
            hint="give the dataset: trend('NAME')",
        )
    return str(present[0])


def scorer_names(frame: pd.DataFrame) -> list[str]:
    """The scorers of an :func:`evals` frame, in column order."""
    return [c.removesuffix(":pass_rate") for c in frame.columns if c.endswith(":pass_rate")]


def trend(
    data: str | pd.DataFrame | None = None,
    scorer: str | Sequence[str] | None = None,
    *,
    root: str | Path | None = None,
    title: str | None = None,
) -> TrendChart:
    """Each scorer's pass rate over the evals of one dataset, oldest first: a ``TrendChart``
    (an SVG line chart; ``.save("trend.svg")``, shown in a notebook). ``data``: a dataset name,
    a frame from :func:`evals` (so ``we.evals().pipe(we.trend, "payload_equals")`` works), or
    None when every stored eval is of one dataset. ``scorer``: one name or several (default:
    every scorer the evals used)."""
    import pandas as pd

    from wistro.eval.history_chart import TrendChart

    if isinstance(data, pd.DataFrame):
        dataset = pick_dataset(data, None)
        frame = data
    else:
        frame = evals(root)
        dataset = pick_dataset(frame, data, known_datasets(root) if data is not None else ())
    frame = frame[frame["dataset"] == dataset].sort_values(["started", "eval_id"])
    available = [s for s in scorer_names(frame) if frame[f"{s}:pass_rate"].notna().any()]
    if scorer is None:
        chosen = available
    else:
        chosen = [scorer] if isinstance(scorer, str) else list(scorer)
        unknown = [s for s in chosen if s not in available]
        if unknown:
            raise WistroError(
                f"no scorer {unknown[0]!r} in the evals of {dataset!r} "
                f"(scorers: {', '.join(available) or 'none'})"
            )
    points = frame.to_dict(orient="records")
    return TrendChart(
        title=title or f"{dataset}: pass rate per eval",
        labels=[_x_label(p) for p in points],
        eval_ids=[str(p["eval_id"]) for p in points],
        times=[p["started"].strftime("%Y-%m-%d %H:%M UTC") for p in points],
        series=[(s, [_rate(p.get(f"{s}:pass_rate")) for p in points]) for s in chosen],
    )


def _x_label(row: Mapping[Any, Any]) -> str:
    label = row.get("label")
    if isinstance(label, str) and label:
        return label
    return str(row["version"])[:12]


def _rate(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
