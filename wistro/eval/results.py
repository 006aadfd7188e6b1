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

from wistro.eval._json import canonical
from wistro.eval.dataset import Sample, _read_jsonl
from wistro.eval.errors import EvalNotFound
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
    # (events, their JSON text) when recorded from a run: saves encoding payloads twice
    _events_json: tuple[list[dict[str, Any]], str] | None = field(
        default=None, repr=False, compare=False
    )

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

    def ran(self, step: str) -> bool:
        return any(s["step"] == step and s["status"] == "ok" for s in self.spans)

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
                    (e["topic"] + ("!" if e.get("error") else ""), canonical(e["data"]))
                )
        out: dict[str, list[tuple[str, str, tuple[tuple[str, str], ...], str]]] = {}
        for i, s in enumerate(self.spans):
            out.setdefault(s["step"], []).append(
                (
                    s.get("topic", ""),
                    s["status"],
                    tuple(sorted(emits.get(i, []))),
                    canonical(s.get("writes") or []),
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "version": self.version.to_dict(),
            "scorers": self.scorers,
            "repeats": self.repeats,
            "label": self.label,
            "key": self.key,
            "created": self.created,
            "finished": self.finished,
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalMeta:
        return cls(
            dataset=d["dataset"],
            dataset_version=d["dataset_version"],
            version=ProjectVersion.from_dict(d["version"]),
            scorers=list(d["scorers"]),
            repeats=int(d.get("repeats", 1)),
            label=d.get("label"),
            key=d.get("key", ""),
            created=float(d.get("created", 0.0)),
            finished=d.get("finished"),
            status=d.get("status", "running"),
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

    # ------------------------------------------------------------ DataFrames
    @property
    def frame(self) -> pd.DataFrame:
        """One row per sample and repeat: status, latency, each scorer's value and passed."""
        import pandas as pd

        rows = []
        for r in self.results:
            row: dict[str, Any] = {
                "sample_id": r.sample_id,
                "repeat": r.repeat,
                "topic": r.topic,
                "status": r.status,
                "error": r.error,
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

    @property
    def summary(self) -> pd.DataFrame:
        """Per scorer: n, mean, pass rate, scorer errors."""
        import pandas as pd

        rows = []
        for name in self.meta.scorers:
            scores = [r.scores.get(name) or {} for r in self.results]
            values = [s["value"] for s in scores if s.get("value") is not None]
            rows.append(
                {
                    "scorer": name,
                    "n": len(values),
                    "mean": sum(values) / len(values) if values else float("nan"),
                    "pass_rate": (
                        sum(bool(s.get("passed")) for s in scores if s.get("value") is not None)
                        / len(values)
                        if values
                        else float("nan")
                    ),
                    "n_scorer_errors": sum(1 for s in scores if s.get("error")),
                }
            )
        return pd.DataFrame(rows, columns=["scorer", "n", "mean", "pass_rate", "n_scorer_errors"])

    def describe(self) -> str:
        n_err = sum(1 for r in self.results if r.failed)
        lat = [r.latency_ms for r in self.results if r.latency_ms is not None]
        med = sorted(lat)[len(lat) // 2] if lat else float("nan")
        lines = [
            f"eval {self.eval_id}: dataset {self.meta.dataset} ({self.meta.dataset_version}), "
            f"version {self.version.name} ({self.version.short}), {len(self.results)} results, "
            f"{n_err} with errors, median latency {med:.1f} ms"
            + ("" if self.complete else " [incomplete]")
        ]
        for row in self.summary.to_dict(orient="records"):
            lines.append(
                f"  {row['scorer']}: mean {row['mean']:.3f}, pass rate {row['pass_rate']:.1%} "
                f"(n={row['n']})"
                + (f", {row['n_scorer_errors']} scorer error(s)" if row["n_scorer_errors"] else "")
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{_escape(self.describe())}</pre>" + self.summary.to_html(index=False)

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


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def evals_dir(root: str | Path | None = None) -> Path:
    return find_root(root) / ".wistro" / EVALS_DIR


def list_evals(root: str | Path | None = None) -> list[tuple[str, EvalMeta]]:
    """Stored evals, oldest first."""
    folder = evals_dir(root)
    out = []
    if folder.is_dir():
        for sub in folder.iterdir():
            meta_file = sub / "meta.json"
            if meta_file.is_file():
                try:
                    meta = EvalMeta.from_dict(json.loads(meta_file.read_text(encoding="utf-8")))
                except (ValueError, KeyError):
                    continue
                out.append((sub.name, meta))
    out.sort(key=lambda item: (item[1].created, item[0]))
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
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                r = SampleResult.from_dict(json.loads(line))
            except (ValueError, TypeError, KeyError):
                continue
            rows[(r.sample_id, r.repeat)] = r
    return list(rows.values())
