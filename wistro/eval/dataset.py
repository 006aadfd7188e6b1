"""Datasets: named sets of samples, stored as ``datasets/NAME.jsonl`` in the project.

One sample per line, keys sorted, so a dataset is committable and a review diff shows the samples
that were added or changed. A sample holds the input event (``{"topic", "data"}``), optional
expectations (``{topic: payload}``), the events its source run recorded, and tags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.errors import ProjectNotFound
from wistro.eval._json import canonical, content_hash, plain
from wistro.eval.errors import DatasetError, DatasetNotFound
from wistro.files import write_atomic
from wistro.project.paths import find_root

if TYPE_CHECKING:
    import pandas as pd

    from wistro.core.run import Run

DATASET_DIR = "datasets"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_dataset_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise DatasetError(
            f"invalid dataset name {name!r}",
            hint="letters, digits, '_', '-', '.'; it becomes datasets/NAME.jsonl",
        )
    return name


def input_hash(topic: str, data: Any) -> str:
    """The identity of an input event: a hash of its topic and payload."""
    return content_hash({"topic": topic, "data": data}, 16)


def _event_dict(e: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded event (an ``EventRecord`` as dict, or a stored trace row) as sample data."""
    raw = e.get("data_json")
    data = json.loads(raw) if isinstance(raw, str) and raw else e.get("data")
    out: dict[str, Any] = {"topic": e["topic"], "data": data, "source": e.get("source")}
    if e.get("error"):
        out["error"] = e["error"]
    return out


def _expected_from_events(events: list[dict[str, Any]], input_topic: str) -> dict[str, Any]:
    """The golden outcome of a recorded run: the last payload of every topic it emitted."""
    expected: dict[str, Any] = {}
    for i, e in enumerate(events):
        if e.get("error") or (i == 0 and e["topic"] == input_topic):
            continue
        expected[e["topic"]] = e["data"]
    return expected


@dataclass
class Sample:
    """One input event with what is expected of it."""

    input: dict[str, Any]
    expected: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    id: str = ""
    source_trace: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input, dict) or not isinstance(self.input.get("topic"), str):
            raise DatasetError(
                f"a sample input must be {{'topic': str, 'data': ...}}, got {self.input!r}"
            )
        self.input = {"topic": self.input["topic"], "data": plain(self.input.get("data"))}
        self.expected = plain(dict(self.expected or {}))
        self.events = [plain(e) for e in self.events]
        self.tags = sorted({str(t) for t in self.tags})
        self._input_hash = input_hash(self.input["topic"], self.input["data"])
        if not self.id:
            self.id = self._input_hash

    @property
    def topic(self) -> str:
        return str(self.input["topic"])

    @property
    def data(self) -> Any:
        return self.input.get("data")

    @property
    def input_hash(self) -> str:
        return self._input_hash

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "input": self.input}
        if self.expected:
            out["expected"] = self.expected
        if self.events:
            out["events"] = self.events
        if self.tags:
            out["tags"] = self.tags
        if self.source_trace:
            out["source_trace"] = self.source_trace
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        """From a stored line, or from a plain dict: ``{"topic", "data"}`` or ``{"input": ...}``
        with optional ``expected``, ``events``, ``tags``, ``id``."""
        if not isinstance(d, Mapping):
            raise DatasetError(f"a sample must be a dict, got {type(d).__name__}")
        if "input" in d:
            inp = d["input"]
        elif "topic" in d:
            inp = {"topic": d["topic"], "data": d.get("data")}
        else:
            raise DatasetError(f"a sample needs 'topic' (and 'data') or 'input': {dict(d)!r}")
        tags = d.get("tags") or []
        if isinstance(tags, str):
            tags = [t for t in tags.split(",") if t]
        return cls(
            input=dict(inp),
            expected=dict(d.get("expected") or {}),
            events=list(d.get("events") or []),
            tags=list(tags),
            id=str(d.get("id") or ""),
            source_trace=d.get("source_trace"),
        )

    @classmethod
    def from_events(
        cls,
        events: list[Mapping[str, Any]],
        *,
        trace_id: str | None = None,
        expected: dict[str, Any] | None = None,
        tags: Iterable[str] = (),
        id: str = "",
    ) -> Sample:
        """From the events of a recorded run: the first is the input; the payloads it caused
        are the expectations unless ``expected`` is given."""
        evs = [_event_dict(e) for e in events]
        if not evs:
            raise DatasetError(f"run {trace_id or '?'} recorded no events: nothing to replay")
        first = evs[0]
        return cls(
            input={"topic": first["topic"], "data": first["data"]},
            expected=_expected_from_events(evs, first["topic"]) if expected is None else expected,
            events=evs,
            tags=list(tags),
            id=id,
            source_trace=trace_id,
        )


class Dataset:
    """A named set of samples. ``Dataset(name)`` opens ``datasets/NAME.jsonl`` of the project of
    ``root`` (default: the current folder or its parents) if it exists; every ``add*`` saves.
    Outside a project the dataset lives in memory (``save(path)`` writes it anywhere)."""

    def __init__(
        self,
        name: str,
        samples: Iterable[Sample] = (),
        *,
        root: str | Path | None = None,
        autosave: bool = True,
    ) -> None:
        self.name = check_dataset_name(name)
        self.root: Path | None
        try:
            self.root = find_root(root)
        except ProjectNotFound:
            if root is not None:
                raise
            self.root = None
        self.autosave = autosave and self.root is not None
        self._samples: dict[str, Sample] = {}
        if self.path is not None and self.path.is_file():
            for s in _read_jsonl(self.path):
                self._samples[s.id] = s
        for s in samples:
            self._samples[s.id] = s

    # ------------------------------------------------------------ files
    @property
    def path(self) -> Path | None:
        return self.root / DATASET_DIR / f"{self.name}.jsonl" if self.root else None

    @classmethod
    def load(cls, name: str, root: str | Path | None = None) -> Dataset:
        """The stored dataset ``name``; ``DatasetNotFound`` lists the known ones."""
        project = find_root(root)
        check_dataset_name(name)
        if not (project / DATASET_DIR / f"{name}.jsonl").is_file():
            known = list_datasets(project)
            raise DatasetNotFound(
                f"no dataset {name!r} (known: {', '.join(known) if known else 'none'})",
                file=f"{DATASET_DIR}/{name}.jsonl",
                hint="create it with `wistro dataset add NAME --trace ID` or Dataset(NAME).add(...)",
            )
        return cls(name, root=project)

    @classmethod
    def from_jsonl(
        cls, path: str | Path, name: str | None = None, *, root: str | Path | None = None
    ) -> Dataset:
        file = Path(path)
        ds = cls(name or file.name.removesuffix(".jsonl"), root=root, autosave=False)
        ds._samples = {}
        ds.extend(_read_jsonl(file))
        return ds

    @classmethod
    def from_records(
        cls, name: str, records: Iterable[Mapping[str, Any]], *, root: str | Path | None = None
    ) -> Dataset:
        """A dataset of these records only (not merged with a stored one of the same name); not
        saved until ``save()``."""
        ds = cls(name, root=root, autosave=False)
        ds._samples = {}
        ds.extend(Sample.from_dict(r) for r in records)
        return ds

    @classmethod
    def from_runs(
        cls, name: str, source: Any, *, root: str | Path | None = None, **options: Any
    ) -> Dataset:
        """A dataset of a seeded sample of recorded runs (``add_runs``: ``version=``,
        ``sample=``, ``since=``, ``seed=``, ``limit=``, ``status=``, ``labels=``), not saved
        until ``save()``."""
        ds = cls(name, root=root, autosave=False)
        ds._samples = {}
        ds.add_runs(source, **options)
        return ds

    @classmethod
    def from_frame(cls, name: str, df: pd.DataFrame, *, root: str | Path | None = None) -> Dataset:
        """From a DataFrame with columns ``topic``, ``data`` (and optional ``expected``,
        ``tags``, ``id``), or ``input``."""
        records = []
        for row in df.to_dict(orient="records"):
            clean = {
                str(k): v
                for k, v in row.items()
                if not (isinstance(v, float) and v != v)  # NaN: a missing cell
            }
            records.append(clean)
        return cls.from_records(name, records, root=root)

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise DatasetError(
                f"dataset {self.name!r} is not in a project", hint="give save() a path"
            )
        write_atomic(target, self.to_jsonl())  # 0600: samples hold recorded payloads
        return target

    def to_jsonl(self) -> str:
        return "".join(canonical(s.to_dict()) + "\n" for s in self._samples.values())

    # ------------------------------------------------------------ building
    def _changed(self) -> None:
        if self.autosave:
            self.save()

    def extend(self, samples: Iterable[Sample]) -> Dataset:
        for s in samples:
            self._samples[s.id] = s
        self._changed()
        return self

    def add(
        self,
        sample: Mapping[str, Any] | Sample,
        expected: dict[str, Any] | None = None,
        *,
        tags: Iterable[str] = (),
        id: str | None = None,
    ) -> Sample:
        """Add one sample: ``{"topic": ..., "data": ...}`` and ``expected={topic: payload}``.
        A sample with the id of an existing one replaces it."""
        if isinstance(sample, Sample):
            s = sample
        else:
            d = dict(sample)
            if expected is not None:
                d["expected"] = expected
            if tags:
                d["tags"] = [*d.get("tags", []), *tags]
            if id:
                d["id"] = id
            s = Sample.from_dict(d)
        self.extend([s])
        return s

    def add_run(
        self,
        run: Run | Mapping[str, Any],
        expected: dict[str, Any] | None = None,
        *,
        tags: Iterable[str] = (),
        id: str = "",
    ) -> Sample:
        """A recorded run becomes a sample: its first event is the input, every payload it
        emitted is expected (the last one per topic) unless ``expected`` is given. ``run`` is a
        ``Run`` or a stored trace (``app.trace(id)``)."""
        if isinstance(run, Mapping):
            events = list(run.get("events") or [])
            trace_id = (run.get("run") or {}).get("trace_id")
        else:
            from wistro.tracing.records import as_dict

            events = [as_dict(e) for e in run.event_records]
            trace_id = run.trace_id
        s = Sample.from_events(events, trace_id=trace_id, expected=expected, tags=tags, id=id)
        self.extend([s])
        return s

    def add_runs(self, source: Any, version: str, **options: Any) -> list[Sample]:
        """Add a seeded sample of the recorded runs of ``version`` (a label, id or id prefix)
        in the trace store of ``source`` (an ``App`` or a ``TraceStore``). Options:
        ``sample`` a share of the distinct inputs (``"5%"``, 0.05) or a count (default all),
        ``since`` a duration (``"1h"``), seconds or a datetime, ``seed`` (0), ``limit`` (at
        most that many samples), ``status`` (only runs that ended so), ``labels`` (label ->
        id), ``live`` (``LiveVersion``s). Each run becomes a sample as with ``add_run``."""
        from wistro.eval.recorded import sample_runs

        added = sample_runs(source, version, **options)
        self.extend(added)
        return added

    def remove(self, sample_id: str) -> None:
        self._samples.pop(sample_id, None)
        self._changed()

    # ------------------------------------------------------------ reading
    @property
    def samples(self) -> list[Sample]:
        return list(self._samples.values())

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, sample_id: str) -> Sample:
        return self._samples[sample_id]

    def filter(self, tag: str) -> Dataset:
        """The samples with ``tag``, as an in-memory dataset of the same name."""
        ds = Dataset(self.name, root=self.root, autosave=False)
        ds._samples = {k: s for k, s in self._samples.items() if tag in s.tags}
        return ds

    @property
    def version(self) -> str:
        """A hash of the content: the same samples in the same order give the same version."""
        return content_hash(self.to_jsonl(), 16)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        rows = [
            {
                "id": s.id,
                "topic": s.topic,
                "data": s.data,
                "expected": s.expected,
                "tags": s.tags,
                "n_events": len(s.events),
                "source_trace": s.source_trace,
            }
            for s in self
        ]
        cols = ["id", "topic", "data", "expected", "tags", "n_events", "source_trace"]
        return pd.DataFrame(rows, columns=cols)

    def _repr_html_(self) -> str:
        head = f"<b>Dataset {self.name}</b> · {len(self)} samples · version {self.version}"
        return head + self.to_frame().head(50).to_html(index=False)

    def __repr__(self) -> str:
        return f"<Dataset {self.name!r}: {len(self)} samples, version {self.version}>"


def _read_jsonl(path: Path) -> list[Sample]:
    if not path.is_file():
        raise DatasetNotFound(f"no such file: {path}", file=str(path))
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Sample.from_dict(json.loads(line)))
        except json.JSONDecodeError as e:
            raise DatasetError(f"not JSON: {e.msg}", file=str(path), line=n) from None
        except DatasetError as e:
            raise DatasetError(e.message, file=str(path), line=n) from None
    return out


def list_datasets(root: str | Path | None = None) -> list[str]:
    folder = find_root(root) / DATASET_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".jsonl") for p in folder.glob("*.jsonl"))
