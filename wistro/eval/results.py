"""What an eval recorded: one ``SampleResult`` per sample and repeat, and the ``EvalResult``.

Stored under ``.wistro/evals/<eval_id>/``: ``meta.json`` (dataset, version, scorers, status),
``dataset.jsonl`` (the samples as they were) and ``results.jsonl`` (one line per finished sample,
appended as it finishes, so an interrupted eval resumes where it stopped).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from wistro.collector import collector_paused
from wistro.eval._json import canonical
from wistro.eval.dataset import Sample, _read_jsonl
from wistro.eval.errors import EvalNotFound
from wistro.eval.scorers import kind_of
from wistro.eval.version import ProjectVersion
from wistro.project.paths import find_root

if TYPE_CHECKING:
    import pandas as pd

EVALS_DIR = "evals"


@dataclass
class SampleResult:
    """The outcome of one sample (one repeat) through one version.

    ``events``: ``{topic, data, source, span, error?}`` in emit order (``span``: index in
    ``spans`` of the span that emitted it, None for the input). ``spans``: ``{step, topic,
    status, start_ms, end_ms, error?, writes?}`` in start order (``writes``: the span's state
    changes, ``[op, group, key, value]``). ``state``: the final state, ``{group: {key: value}}``.
    ``error``: the sample could not run (unknown topic, invalid input); ``errors``: what failed
    inside the run (failed steps, refused emits)."""

    sample_id: str
    input_hash: str
    topic: str
    repeat: int = 0
    status: str = "ok"  # ok | error (the run's status) | not_run
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    trace_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ------------------------------------------------------------ for scorers
    @property
    def failed(self) -> bool:
        """The sample did not run, or its run had errors."""
        return self.error is not None or self.status != "ok"

    @property
    def topics(self) -> list[str]:
        """Topics of the events the run emitted (not refused), in order, input included."""
        return [e["topic"] for e in self.events if not e.get("error")]

    def payloads(self, topic: str) -> list[Any]:
        return [e["data"] for e in self.events if e["topic"] == topic and not e.get("error")]

    def emitted(self, topic: str, **fields: Any) -> bool:
        return any(
            isinstance(p, dict) and all(p.get(k) == v for k, v in fields.items())
            for p in self.payloads(topic)
        )

    def count(self, topic: str) -> int:
        """How many events the run emitted (not refused) on ``topic``, the input included."""
        return sum(1 for e in self.events if e["topic"] == topic and not e.get("error"))

    def ran(self, step: str) -> bool:
        return any(s["step"] == step and s["status"] == "ok" for s in self.spans)

    def step_spans(self, step: str) -> list[dict[str, Any]]:
        """The spans of ``step`` (one per invocation and attempt), in start order."""
        return [s for s in self.spans if s["step"] == step]

    def step_events(self, step: str) -> list[dict[str, Any]]:
        """The events ``step`` emitted (refused ones included, with their ``error``)."""
        mine = {i for i, s in enumerate(self.spans) if s["step"] == step}
        return [e for e in self.events if e.get("span") in mine]

    def step_payloads(self, step: str) -> list[Any]:
        """The payloads ``step`` emitted (not refused), in emit order."""
        return [e["data"] for e in self.step_events(step) if not e.get("error")]

    def step_topics(self, step: str) -> list[str]:
        """The topics of the events ``step`` emitted (not refused), in emit order."""
        return [e["topic"] for e in self.step_events(step) if not e.get("error")]

    @property
    def step_errors(self) -> list[str]:
        """``"Step: error"`` of every span that failed (attempts that were retried included)."""
        return [f"{s['step']}: {s['error']}" for s in self.spans if s.get("error")]

    def score(self, name: str) -> float | None:
        s = self.scores.get(name)
        return None if s is None else s.get("value")

    # ------------------------------------------------------------ per step, for compare
    def step_outputs(self) -> dict[str, list[tuple[str, str, tuple[tuple[str, str], ...], str]]]:
        """Per step: ``(topic, status, emitted (topic, payload JSON), state writes JSON)`` of
        each of its spans. Two runs whose step outputs are equal behaved the same there."""
        emits: dict[int, list[tuple[str, str]]] = {}
        for e in self.events:
            i = e.get("span")
            if i is not None:
                emits.setdefault(i, []).append(
                    (e["topic"] + ("!" if e.get("error") else ""), _same_form(e["data"]))
                )
        out: dict[str, list[tuple[str, str, tuple[tuple[str, str], ...], str]]] = {}
        for i, s in enumerate(self.spans):
            out.setdefault(s["step"], []).append(
                (
                    s.get("topic", ""),
                    s["status"],
                    tuple(sorted(emits.get(i, []))),
                    _same_form(s.get("writes") or []),
                )
            )
        for outs in out.values():
            outs.sort()
        return out

    @property
    def steps(self) -> list[str]:
        """Steps that ran, in the order they first started."""
        return list(dict.fromkeys(s["step"] for s in self.spans))

    # ------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id,
            "input_hash": self.input_hash,
            "topic": self.topic,
            "repeat": self.repeat,
            "status": self.status,
            "error": self.error,
            "errors": self.errors,
            "latency_ms": self.latency_ms,
            "trace_id": self.trace_id,
            "events": self.events,
            "spans": self.spans,
            "state": self.state,
            "scores": self.scores,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d and k[0] != "_"})


@dataclass
class EvalMeta:
    """What an eval ran. ``scorers``: the scorer names; ``scorer_info``: per scorer its
    ``{"name", "kind", "spec"}`` (``kind``: outcome, latency, error or custom; ``spec``: the
    command-line spec of a built-in, else None). Evals stored before kinds were recorded get
    them from the names (``kind_of``)."""

    dataset: str
    dataset_version: str
    version: ProjectVersion
    scorers: list[str]
    repeats: int = 1
    label: str | None = None
    key: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None
    status: str = "running"  # running | complete
    scorer_info: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        known = {i["name"]: i for i in self.scorer_info if isinstance(i, dict) and "name" in i}
        self.scorer_info = [
            known.get(n) or {"name": n, "kind": kind_of(n), "spec": None} for n in self.scorers
        ]

    def kind(self, scorer: str) -> str:
        """The kind of scorer ``scorer`` (``custom`` when unknown)."""
        for i in self.scorer_info:
            if i["name"] == scorer:
                return str(i.get("kind") or "custom")
        return kind_of(scorer)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "version": self.version.to_dict(),
            "scorers": self.scorers,
            "scorer_info": self.scorer_info,
            "repeats": self.repeats,
            "label": self.label,
            "key": self.key,
            "created": self.created,
            "finished": self.finished,
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalMeta:
        raw = list(d["scorers"])  # names; dicts ({"name", "kind", "spec"}) are read too
        names = [str(s["name"]) if isinstance(s, dict) else str(s) for s in raw]
        info = [s for s in raw if isinstance(s, dict)] + [
            s for s in d.get("scorer_info") or [] if isinstance(s, dict)
        ]
        return cls(
            dataset=d["dataset"],
            dataset_version=d["dataset_version"],
            version=ProjectVersion.from_dict(d["version"]),
            scorers=names,
            repeats=int(d.get("repeats", 1)),
            label=d.get("label"),
            key=d.get("key", ""),
            created=float(d.get("created", 0.0)),
            finished=d.get("finished"),
            status=d.get("status", "running"),
            scorer_info=info,
        )


class EvalResult:
    """An eval: its metadata, the samples it ran and one result per sample and repeat."""

    def __init__(
        self,
        eval_id: str,
        meta: EvalMeta,
        results: Iterable[SampleResult],
        samples: Iterable[Sample] = (),
        path: Path | None = None,
    ) -> None:
        self.eval_id = eval_id
        self.meta = meta
        self.results = list(results)
        self.samples = {s.id: s for s in samples}
        self.path = path
        # seconds `run` spent running, scoring and storing samples (not loading the version)
        self.samples_s: float | None = None

    @property
    def version(self) -> ProjectVersion:
        return self.meta.version

    @property
    def label(self) -> str:
        return self.meta.label or self.meta.version.name

    @property
    def scorers(self) -> list[str]:
        return list(self.meta.scorers)

    @property
    def complete(self) -> bool:
        return self.meta.status == "complete"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[SampleResult]:
        return iter(self.results)

    def by_sample(self) -> dict[str, list[SampleResult]]:
        out: dict[str, list[SampleResult]] = {}
        for r in self.results:
            out.setdefault(r.sample_id, []).append(r)
        return out

    @property
    def scorer_errors(self) -> dict[str, int]:
        """Per scorer that raised for some sample: how many samples (scorers that never raised
        are left out)."""
        out: dict[str, int] = {}
        for r in self.results:
            for name, s in r.scores.items():
                if s.get("error"):
                    out[name] = out.get(name, 0) + 1
        return {n: out[n] for n in [*self.meta.scorers, *sorted(out)] if n in out}

    # ------------------------------------------------------------ DataFrames
    @property
    def frame(self) -> pd.DataFrame:
        """One row per sample and repeat: status, ``error`` (the sample's error, else its run's
        errors, joined), ``step_errors`` (every failed step attempt, joined, retried ones
        included), latency, and each scorer's value and passed (None: not scored)."""
        import pandas as pd

        rows = []
        for r in self.results:
            step_errors = r.step_errors
            row: dict[str, Any] = {
                "sample_id": r.sample_id,
                "repeat": r.repeat,
                "topic": r.topic,
                "status": r.status,
                "error": r.error or ("; ".join(r.errors) if r.errors else None),
                "step_errors": "; ".join(step_errors) if step_errors else None,
                "latency_ms": r.latency_ms,
                "n_events": len(r.events),
                "trace_id": r.trace_id,
            }
            for name in self.meta.scorers:
                s = r.scores.get(name) or {}
                row[name] = s.get("value")
                row[f"{name}:passed"] = s.get("passed")
            rows.append(row)
        return pd.DataFrame(rows)

    SUMMARY_COLUMNS = (
        "scorer",
        "kind",
        "n",
        "n_passed",
        "n_not_scored",
        "n_scorer_errors",
        "mean",
        "pass_rate",
    )

    def summary_records(self) -> list[dict[str, Any]]:
        """Per scorer: ``kind``; ``n`` scored samples (a value or a pass/fail); ``n_passed``;
        ``n_not_scored`` (nothing to judge, or the result lacks the scorer); ``n_scorer_errors``;
        ``mean`` of the values and ``pass_rate`` over the scored ones (None when none was)."""
        out = []
        for name in self.meta.scorers:
            values: list[float] = []
            n_pass = n_judged = n_err = n_scored = 0
            for r in self.results:
                s = r.scores.get(name)
                if s is None:
                    continue
                if s.get("error"):
                    n_err += 1
                    continue
                v, p = s.get("value"), s.get("passed")
                if v is None and p is None:
                    continue
                n_scored += 1
                if v is not None:
                    values.append(float(v))
                if p is not None:
                    n_judged += 1
                    n_pass += bool(p)
            out.append(
                {
                    "scorer": name,
                    "kind": self.meta.kind(name),
                    "n": n_scored,
                    "n_passed": n_pass,
                    "n_not_scored": len(self.results) - n_scored - n_err,
                    "n_scorer_errors": n_err,
                    "mean": sum(values) / len(values) if values else None,
                    "pass_rate": n_pass / n_judged if n_judged else None,
                }
            )
        return out

    @property
    def summary(self) -> pd.DataFrame:
        """``summary_records()`` as a DataFrame (``mean``/``pass_rate`` NaN when nothing was
        scored; ``describe()`` and the HTML view show "—" instead)."""
        import pandas as pd

        return pd.DataFrame(self.summary_records(), columns=list(self.SUMMARY_COLUMNS))

    def describe(self) -> str:
        n_err = sum(1 for r in self.results if r.failed)
        lat = sorted(r.latency_ms for r in self.results if r.latency_ms is not None)
        med = f"{lat[len(lat) // 2]:.1f} ms" if lat else "—"
        lines = [
            f"eval {self.eval_id}: dataset {self.meta.dataset} ({self.meta.dataset_version}), "
            f"version {self.version.name} ({self.version.short}), {len(self.results)} results, "
            f"{n_err} with errors, median latency {med}"
            + ("" if self.complete else " [incomplete]")
        ]
        for row in self.summary_records():
            mean = "—" if row["mean"] is None else f"{row['mean']:.3f}"
            rate = "—" if row["pass_rate"] is None else f"{row['pass_rate']:.1%}"
            extra = ""
            if row["n_not_scored"]:
                extra += f", {row['n_not_scored']} not scored"
            if row["n_scorer_errors"]:
                extra += f", {row['n_scorer_errors']} scorer error(s)"
            lines.append(f"  {row['scorer']}: mean {mean}, pass rate {rate} (n={row['n']}{extra})")
        errs = self.scorer_errors
        if errs:
            lines.append("warning: " + scorer_errors_line(errs, self.results))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{_escape(self.describe())}</pre>" + self.summary.to_html(
            index=False, na_rep="—"
        )

    def __repr__(self) -> str:
        return (
            f"<EvalResult {self.eval_id}: {self.meta.dataset} x {self.version.name}, "
            f"{len(self.results)} results{'' if self.complete else ', incomplete'}>"
        )

    # ------------------------------------------------------------ storage
    @classmethod
    def load(cls, eval_id: str = "latest", root: str | Path | None = None) -> EvalResult:
        """A stored eval by id, unique id prefix, or ``latest``."""
        folder = resolve_eval(eval_id, root)
        meta = EvalMeta.from_dict(json.loads((folder / "meta.json").read_text(encoding="utf-8")))
        samples = (
            _read_jsonl(folder / "dataset.jsonl") if (folder / "dataset.jsonl").is_file() else []
        )
        return cls(folder.name, meta, read_results(folder / "results.jsonl"), samples, folder)


def scorer_errors_line(errors: dict[str, int], results: Iterable[SampleResult]) -> str:
    """``scorer error(s): fragile raised for 2 sample(s) (first: KeyError: 'total')``."""
    first: dict[str, str] = {}
    for r in results:
        for name, s in r.scores.items():
            if s.get("error") and name not in first:
                first[name] = str(s["error"])
    parts = [
        f"{name} raised for {n} sample(s) (first: {' '.join(first.get(name, '').split())[:120]})"
        for name, n in errors.items()
    ]
    return "scorer error(s): " + "; ".join(parts)


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def evals_dir(root: str | Path | None = None) -> Path:
    return find_root(root) / ".wistro" / EVALS_DIR


@dataclass(frozen=True)
class EvalInfo:
    """A stored eval, as :func:`list_evals` lists it: ``eval_id``, ``meta``, its folder, label
    (the eval's, else its version's; None when unlabelled) and version. Unpacks and indexes as
    the ``(eval_id, meta)`` tuple that ``list_evals`` returned before."""

    eval_id: str
    meta: EvalMeta
    path: Path
    label: str | None
    version: ProjectVersion

    @property
    def dataset(self) -> str:
        return self.meta.dataset

    @property
    def created(self) -> float:
        return self.meta.created

    @property
    def status(self) -> str:
        return self.meta.status

    @property
    def complete(self) -> bool:
        return self.meta.status == "complete"

    @property
    def name(self) -> str:
        """How to show it: the label, else the version's short id."""
        return self.label or self.version.short

    # the old ``(eval_id, meta)`` tuple: ``for eval_id, meta in list_evals()``, ``info[0]``
    def __iter__(self) -> Iterator[Any]:
        return iter((self.eval_id, self.meta))

    def __getitem__(self, index: Any) -> Any:
        return (self.eval_id, self.meta)[index]

    def __len__(self) -> int:
        return 2


def list_evals(root: str | Path | None = None) -> list[EvalInfo]:
    """Stored evals, oldest first (by start time, then id). An ``EvalInfo`` unpacks as the
    ``(eval_id, meta)`` tuple of earlier versions."""
    folder = evals_dir(root)
    out: list[EvalInfo] = []
    if folder.is_dir():
        for sub in folder.iterdir():
            meta_file = sub / "meta.json"
            if meta_file.is_file():
                try:
                    meta = EvalMeta.from_dict(json.loads(meta_file.read_text(encoding="utf-8")))
                except (ValueError, KeyError, TypeError, OSError):
                    continue
                label = meta.label or meta.version.label
                out.append(EvalInfo(sub.name, meta, sub, label, meta.version))
    out.sort(key=lambda info: (info.meta.created, info.eval_id))
    return out


def resolve_eval(eval_id: str, root: str | Path | None = None) -> Path:
    known = list_evals(root)
    folder = evals_dir(root)
    if eval_id == "latest":
        if not known:
            raise EvalNotFound("no evals yet", hint="run one: `wistro eval run DATASET`")
        return folder / known[-1][0]
    if eval_id.startswith("latest~"):
        back = int(eval_id.removeprefix("latest~") or 1)
        if back >= len(known):
            raise EvalNotFound(f"no eval {eval_id!r}: only {len(known)} stored")
        return folder / known[-1 - back][0]
    matches = [name for name, _ in known if name == eval_id or name.startswith(eval_id)]
    if len(matches) == 1 or eval_id in matches:
        return folder / (eval_id if eval_id in matches else matches[0])
    if not matches:
        recent = ", ".join(name for name, _ in known[-5:]) or "none"
        raise EvalNotFound(
            f"no eval {eval_id!r} (recent: {recent})", hint="`wistro eval list`, or use `latest`"
        )
    raise EvalNotFound(f"eval id prefix {eval_id!r} is ambiguous: {', '.join(matches[:5])}")


def read_results(path: Path) -> list[SampleResult]:
    """The rows of a results file, the last one per (sample, repeat); a line cut short by an
    interruption is skipped."""
    if not path.is_file():
        return []
    rows: dict[tuple[str, int], SampleResult] = {}
    with collector_paused(), path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                r = SampleResult.from_dict(_loads_line(line))
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                continue
            rows[(r.sample_id, r.repeat)] = r
    return list(rows.values())


def _same_form(value: Any) -> str:
    """A form of ``value`` in which equal values are equal (sorted keys), for comparing outputs
    only (never hashed or stored): orjson's, else the canonical JSON text."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return canonical(value)


def _loads_line(line: bytes) -> Any:
    """orjson, several times faster; what it refuses (a ``NaN`` an older version wrote, an int
    over 64 bits) is read by the stdlib decoder."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line.decode("utf-8"))
