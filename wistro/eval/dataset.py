"""Datasets: named sets of samples, stored as ``datasets/NAME.jsonl`` in the project.

One sample per line, keys sorted, so a dataset is committable and a review diff shows the samples
that were added or changed. A sample holds the input event (``{"topic", "data"}``), optional
expectations (``{topic: payload}``), the events its source run recorded, tags and a split.

Identity: a sample's id is given, or a hash of its input and expected (``sample_id``). An id given
twice is a ``DuplicateSampleError`` unless ``upsert=True`` replaces; a sample without an id whose
content (input and expected) is already there is kept once, with a ``DuplicateSampleWarning``.

History: every save of a project's dataset appends one line to ``datasets/.history/NAME.jsonl``
(the version, time, sample count, ids added / removed / changed, and the git commit), next to the
dataset so that it is committed with it (``ds.versions()``, ``wistro dataset versions NAME``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from wistro.errors import ProjectNotFound
from wistro.eval._json import canonical, content_hash, plain
from wistro.eval.errors import (
    DatasetError,
    DatasetNotFound,
    DuplicateSampleError,
    DuplicateSampleWarning,
)
from wistro.files import PRIVATE_FILE, make_private_dirs, write_atomic
from wistro.project.paths import find_root

if TYPE_CHECKING:
    import pandas as pd

    from wistro.core.run import Run

DATASET_DIR = "datasets"
HISTORY_DIR = ".history"
"""``datasets/.history/NAME.jsonl``: the versions of dataset NAME, one line per change."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_SPLIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHOWN_IDS = 5  # ids named in one warning line


def check_dataset_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise DatasetError(
            f"invalid dataset name {name!r}",
            hint="letters, digits, '_', '-', '.'; it becomes datasets/NAME.jsonl",
        )
    return name


def check_split(split: Any) -> str | None:
    """``None`` (no split) or a split name such as ``"train"`` or ``"test"``."""
    if split is None or split == "":
        return None
    if not isinstance(split, str) or not _SPLIT.match(split):
        raise DatasetError(
            f"invalid split {split!r}", hint="a name of letters, digits, '_', '-', '.': test"
        )
    return split


def input_hash(topic: str, data: Any) -> str:
    """The identity of an input event: a hash of its topic and payload."""
    return content_hash({"topic": topic, "data": data}, 16)


def sample_id(input: Mapping[str, Any], expected: Mapping[str, Any] | None = None) -> str:
    """The id of a sample that was given none: a hash of its input and its expectations, so two
    samples of one input with different expectations are two samples."""
    return content_hash(
        {
            "input": {"topic": input["topic"], "data": plain(input.get("data"))},
            "expected": plain(dict(expected or {})),
        },
        16,
    )


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
    """One input event with what is expected of it. Without an ``id``, the id is
    ``sample_id(input, expected)``."""

    input: dict[str, Any]
    expected: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    id: str = ""
    source_trace: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.input, dict) or not isinstance(self.input.get("topic"), str):
            raise DatasetError(
                f"a sample input must be {{'topic': str, 'data': ...}}, got {self.input!r}"
            )
        self.input = {"topic": self.input["topic"], "data": plain(self.input.get("data"))}
        self.expected = plain(dict(self.expected or {}))
        self.events = [plain(e) for e in self.events]
        self.tags = sorted({str(t) for t in self.tags})
        self.split = check_split(self.split)
        self._input_hash = input_hash(self.input["topic"], self.input["data"])
        self.id = str(self.id) if self.id else ""
        self._auto_id = not self.id
        if not self.id:
            self.id = self.content_id

    @property
    def topic(self) -> str:
        return str(self.input["topic"])

    @property
    def data(self) -> Any:
        return self.input.get("data")

    @property
    def input_hash(self) -> str:
        return self._input_hash

    @property
    def content_id(self) -> str:
        """``sample_id(input, expected)``: the id this sample has when none is given."""
        return sample_id(self.input, self.expected)

    @property
    def auto_id(self) -> bool:
        """True when the id was not given but made from the content."""
        return self._auto_id

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "input": self.input}
        if self.expected:
            out["expected"] = self.expected
        if self.events:
            out["events"] = self.events
        if self.tags:
            out["tags"] = self.tags
        if self.split:
            out["split"] = self.split
        if self.source_trace:
            out["source_trace"] = self.source_trace
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        """From a stored line, or from a plain dict: ``{"topic", "data"}`` or ``{"input": ...}``
        with optional ``expected``, ``events``, ``tags``, ``split``, ``id``."""
        if not isinstance(d, Mapping):
            raise DatasetError(f"a sample must be a JSON object, got {type(d).__name__}")
        if "input" in d:
            inp = d["input"]
            if not isinstance(inp, Mapping):
                raise DatasetError(f"'input' must be an object, got {type(inp).__name__}")
        elif "topic" in d:
            inp = {"topic": d["topic"], "data": d.get("data")}
        else:
            raise DatasetError(f"a sample needs 'topic' (and 'data') or 'input': {dict(d)!r}")
        tags = d.get("tags") or []
        if isinstance(tags, str):
            tags = [t for t in tags.split(",") if t]
        if not isinstance(tags, list | tuple):
            raise DatasetError(f"'tags' must be a list of strings, got {tags!r}")
        for key, kind in (("expected", Mapping), ("events", list)):
            value = d.get(key)
            if value is not None and not isinstance(value, kind):
                raise DatasetError(
                    f"{key!r} must be {'an object' if kind is Mapping else 'a list'}"
                    f", got {type(value).__name__}"
                )
        sid = d.get("id")
        if sid is not None and not isinstance(sid, str | int):
            raise DatasetError(f"'id' must be a string, got {sid!r}")
        trace = d.get("source_trace")
        return cls(
            input=dict(inp),
            expected=dict(d.get("expected") or {}),
            events=list(d.get("events") or []),
            tags=list(tags),
            id=str(sid) if sid is not None else "",
            source_trace=str(trace) if trace else None,
            split=check_split(d.get("split")),
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
        split: str | None = None,
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
            split=split,
        )

    @classmethod
    def from_run(
        cls,
        run: Run | Mapping[str, Any],
        expected: dict[str, Any] | None = None,
        *,
        tags: Iterable[str] = (),
        id: str = "",
        split: str | None = None,
    ) -> Sample:
        """A ``Run`` or a stored trace (``app.trace(id)``) as a sample, as ``add_run`` does."""
        if isinstance(run, Mapping):
            events = list(run.get("events") or [])
            trace_id = (run.get("run") or {}).get("trace_id")
        else:
            from wistro.tracing.records import as_dict

            events = [as_dict(e) for e in run.event_records]
            trace_id = run.trace_id
        return cls.from_events(
            events, trace_id=trace_id, expected=expected, tags=tags, id=id, split=split
        )


@dataclass
class MergeResult:
    """What ``Dataset.merge`` did with the samples it was given."""

    added: list[Sample] = field(default_factory=list)
    replaced: list[Sample] = field(default_factory=list)  # with upsert: same id, new sample
    duplicates: list[Sample] = field(default_factory=list)  # identical content: kept once

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced)


@dataclass
class DatasetVersion:
    """One line of ``datasets/.history/NAME.jsonl``: a saved state of the dataset.

    ``source`` is ``"wistro"`` for a change saved by Wistro (then ``added``, ``removed`` and
    ``changed`` count the sample ids against the file before), or ``"found"`` for a state found
    on disk that the history did not have yet (a dataset from before the history was kept, or
    edited by hand or by a checkout): counts unknown, ``time`` the file's modification time."""

    version: str
    time: str
    n_samples: int
    added: int | None = None
    removed: int | None = None
    changed: int | None = None
    git_commit: str | None = None
    parent: str | None = None
    source: str = "wistro"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "time": self.time,
            "n_samples": self.n_samples,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "git_commit": self.git_commit,
            "parent": self.parent,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetVersion:
        if not isinstance(d, Mapping) or not isinstance(d.get("version"), str):
            raise DatasetError("a history entry must be an object with a 'version'")
        try:
            return cls(
                version=d["version"],
                time=str(d.get("time") or ""),
                n_samples=int(d.get("n_samples") or 0),
                added=_opt_int(d.get("added")),
                removed=_opt_int(d.get("removed")),
                changed=_opt_int(d.get("changed")),
                git_commit=d.get("git_commit") or None,
                parent=d.get("parent") or None,
                source=str(d.get("source") or "wistro"),
            )
        except (TypeError, ValueError) as e:
            raise DatasetError(f"a history entry has a bad field: {e}") from None


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


VERSION_COLUMNS = [
    "version",
    "time",
    "n_samples",
    "added",
    "removed",
    "changed",
    "git_commit",
    "parent",
    "source",
]


class Dataset:
    """A named set of samples. ``Dataset(name)`` opens ``datasets/NAME.jsonl`` of the project of
    ``root`` (default: the current folder or its parents) if it exists; every ``add*`` saves,
    and every save that changes the file is a version in ``datasets/.history/NAME.jsonl``.
    Outside a project the dataset lives in memory (``save(path)`` writes it anywhere)."""

    name: str
    root: Path | None
    autosave: bool
    subset: str | None
    """Set on a part of a dataset (``split("test")``: ``"split test"``; ``filter(tag)``): such a
    part is never saved over the whole dataset's file."""
    _samples: dict[str, Sample]
    _batch: int
    _pending: bool

    def __init__(
        self,
        name: str,
        samples: Iterable[Sample] = (),
        *,
        root: str | Path | None = None,
        autosave: bool = True,
    ) -> None:
        self._setup(name, root, autosave)
        if self.path is not None and self.path.is_file():
            for s in _read_jsonl(self.path, display=self._display(self.path), name=self.name):
                self._samples[s.id] = s
        samples = list(samples)
        if samples:  # merged with the stored ones, saved with the next change
            keep = self.autosave
            self.autosave = False
            try:
                self.merge(samples)
            finally:
                self.autosave = keep

    def _setup(self, name: str, root: str | Path | None, autosave: bool) -> None:
        self.name = check_dataset_name(name)
        try:
            self.root = find_root(root)
        except ProjectNotFound:
            if root is not None:
                raise
            self.root = None
        self.autosave = autosave and self.root is not None
        self._samples = {}
        self.subset = None
        self._batch = 0
        self._pending = False

    @classmethod
    def _blank(
        cls, name: str, root: str | Path | None = None, *, autosave: bool = False
    ) -> Dataset:
        """A dataset of no samples, whatever is stored under its name (not read)."""
        ds = cls.__new__(cls)
        ds._setup(name, root, autosave)
        return ds

    # ------------------------------------------------------------ files
    @property
    def path(self) -> Path | None:
        return self.root / DATASET_DIR / f"{self.name}.jsonl" if self.root else None

    @property
    def history_path(self) -> Path | None:
        """``datasets/.history/NAME.jsonl``: the versions of this dataset."""
        return self.root / DATASET_DIR / HISTORY_DIR / f"{self.name}.jsonl" if self.root else None

    def _display(self, path: Path) -> str:
        """``path`` relative to the project (``datasets/x.jsonl``) when it is inside it."""
        if self.root is not None:
            try:
                return path.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                pass
        return str(path)

    @classmethod
    def load(cls, name: str, root: str | Path | None = None) -> Dataset:
        """The stored dataset ``name``; ``DatasetNotFound`` lists the known ones, and a file
        that cannot be read raises a ``DatasetError`` naming its line."""
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
        """The samples of a JSONL file (duplicate ids in it are an error naming the line)."""
        file = Path(path)
        ds = cls._blank(name or file.name.removesuffix(".jsonl"), root)
        for s in _read_jsonl(file, display=str(file), name=ds.name):
            ds._samples[s.id] = s
        return ds

    @classmethod
    def from_records(
        cls,
        name: str,
        records: Iterable[Mapping[str, Any]],
        *,
        root: str | Path | None = None,
        upsert: bool = False,
    ) -> Dataset:
        """A dataset of these records only (not merged with a stored one of the same name); not
        saved until ``save()``. An id given twice is a ``DuplicateSampleError`` naming both
        records, unless ``upsert`` (the last one wins)."""
        ds = cls._blank(name, root)
        ds._merge(_numbered(records, name, "record"), upsert=upsert, unit="record")
        return ds

    @classmethod
    def from_runs(
        cls,
        name: str,
        source: Any,
        *,
        root: str | Path | None = None,
        upsert: bool = False,
        split: str | None = None,
        **options: Any,
    ) -> Dataset:
        """A dataset of a seeded sample of recorded runs (``add_runs``: ``version=``,
        ``sample=``, ``since=``, ``seed=``, ``limit=``, ``status=``, ``labels=``), not saved
        until ``save()``."""
        ds = cls._blank(name, root)
        ds.add_runs(source, upsert=upsert, split=split, **options)
        return ds

    @classmethod
    def from_frame(
        cls,
        name: str,
        df: pd.DataFrame,
        *,
        root: str | Path | None = None,
        upsert: bool = False,
    ) -> Dataset:
        """From a DataFrame with columns ``topic``, ``data`` (and optional ``expected``,
        ``tags``, ``split``, ``id``), or ``input``; a missing cell (NaN, None) is no value.
        Errors name the row by its index label."""
        labels = list(df.index)
        records = [
            {str(k): v for k, v in row.items() if not _missing(v)}
            for row in df.to_dict(orient="records")
        ]
        ds = cls._blank(name, root)
        ds._merge(
            _numbered(records, name, "row", labels=labels),
            upsert=upsert,
            unit="row",
        )
        return ds

    def save(self, path: str | Path | None = None) -> Path:
        """Write the samples to ``path`` (default: ``datasets/NAME.jsonl``). Saving to the
        project's file records a version in the history when the content changed."""
        own = path is None or (
            self.path is not None and Path(path).resolve() == self.path.resolve()
        )
        target = Path(path) if path is not None else self.path
        if target is None:
            raise DatasetError(
                f"dataset {self.name!r} is not in a project", hint="give save() a path"
            )
        if own and self.subset:
            raise DatasetError(
                f"dataset {self.name!r} here is only its {self.subset}: saving it would replace "
                f"the whole dataset",
                hint="save(path) it to another file",
            )
        lines = [canonical(s.to_dict()) + "\n" for s in self._samples.values()]
        text = "".join(lines)
        if not own:
            write_atomic(target, text)  # 0600: samples hold recorded payloads
            return target
        before = _disk_state(target, self.name)
        write_atomic(target, text)
        self._pending = False
        after = {s.id: content_hash(line, 16) for s, line in zip(self, lines, strict=True)}
        self._record(before, after, content_hash(text, 16))
        return target

    def to_jsonl(self) -> str:
        return "".join(canonical(s.to_dict()) + "\n" for s in self._samples.values())

    # ------------------------------------------------------------ history
    def _record(
        self, before: tuple[dict[str, str], str, float] | None, after: dict[str, str], version: str
    ) -> None:
        """Append this save to the history when it changed the dataset."""
        hist = self.history_path
        if hist is None:
            return
        entries = _read_history(hist, strict=False)
        last = entries[-1].version if entries else None
        new: list[DatasetVersion] = []
        parent = last
        if before is not None:
            old, old_version, mtime = before
            if old_version != last:  # a state the history has not seen: record it first
                new.append(
                    DatasetVersion(old_version, _iso(mtime), len(old), parent=last, source="found")
                )
                parent = old_version
        else:
            old = {}
        if version != parent:
            new.append(
                DatasetVersion(
                    version,
                    _iso(),
                    len(after),
                    added=sum(1 for k in after if k not in old),
                    removed=sum(1 for k in old if k not in after),
                    changed=sum(1 for k, h in after.items() if k in old and old[k] != h),
                    git_commit=_git_head(self.root),
                    parent=parent,
                )
            )
        if new:
            _append_history(hist, new)

    def history(self) -> list[DatasetVersion]:
        """The recorded versions, oldest first (empty outside a project or before any save).
        A history line that cannot be read raises a ``DatasetError`` naming it."""
        hist = self.history_path
        return _read_history(hist, strict=True) if hist is not None else []

    def versions(self) -> pd.DataFrame:
        """The recorded versions as a DataFrame, oldest first: ``version`` (the content hash,
        as ``ds.version``), ``time`` (UTC), ``n_samples``, ``added`` / ``removed`` /
        ``changed`` sample ids, ``git_commit`` (HEAD when it was saved, in a git repository),
        ``parent`` (the version before) and ``source`` (``wistro`` or ``found``)."""
        import pandas as pd

        rows = [v.to_dict() for v in self.history()]
        df = pd.DataFrame(rows, columns=VERSION_COLUMNS)
        df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
        for col in ("n_samples", "added", "removed", "changed"):
            df[col] = df[col].astype("Int64")
        return df

    # ------------------------------------------------------------ building
    def _changed(self) -> None:
        if not self.autosave:
            return
        if self._batch:
            self._pending = True
        else:
            self.save()

    @contextmanager
    def batch(self) -> Iterator[Dataset]:
        """Make several changes one: saved (and one version) when the block ends; if it
        raises, the dataset is as it was before the block and nothing is saved."""
        snapshot = dict(self._samples)
        self._batch += 1
        try:
            yield self
        except BaseException:
            self._samples = snapshot
            self._batch -= 1
            if not self._batch:
                self._pending = False
            raise
        self._batch -= 1
        if not self._batch and self._pending:
            self.save()

    def merge(self, samples: Iterable[Sample], *, upsert: bool = False) -> MergeResult:
        """Add ``samples`` (all or none) and say what happened: ``added``, ``replaced`` (an
        existing id, with ``upsert``) and ``duplicates`` (no id given and the same input and
        expected already there: kept once, with a ``DuplicateSampleWarning``). Any other
        existing id is a ``DuplicateSampleError``."""
        return self._merge(((s, None) for s in samples), upsert=upsert, unit="sample")

    def _merge(
        self,
        items: Iterable[tuple[Sample, Any]],
        *,
        upsert: bool,
        unit: str,
        file: str | None = None,
    ) -> MergeResult:
        result = MergeResult()
        undo: list[tuple[str, Sample | None]] = []
        try:
            _merge_into(
                self._samples,
                items,
                result,
                undo,
                name=self.name,
                upsert=upsert,
                unit=unit,
                file=file,
            )
        except BaseException:
            for sid, old in reversed(undo):
                if old is None:
                    self._samples.pop(sid, None)
                else:
                    self._samples[sid] = old
            raise
        if result.changed:
            self._changed()
        return result

    def extend(self, samples: Iterable[Sample], *, upsert: bool = False) -> Dataset:
        """``merge`` the samples; returns the dataset."""
        self.merge(samples, upsert=upsert)
        return self

    def add(
        self,
        sample: Mapping[str, Any] | Sample,
        expected: dict[str, Any] | None = None,
        *,
        tags: Iterable[str] = (),
        id: str | None = None,
        split: str | None = None,
        upsert: bool = False,
    ) -> Sample:
        """Add one sample: ``{"topic": ..., "data": ...}`` and ``expected={topic: payload}``.
        An existing id is a ``DuplicateSampleError`` unless ``upsert=True`` (then it is
        replaced). Returns the sample as stored (the existing one for a duplicate of identical
        content)."""
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
            if split is not None:
                d["split"] = split
            s = Sample.from_dict(d)
        return self._one(s, upsert)

    def _one(self, s: Sample, upsert: bool) -> Sample:
        self.merge([s], upsert=upsert)
        return self._samples[s.id]

    def add_run(
        self,
        run: Run | Mapping[str, Any],
        expected: dict[str, Any] | None = None,
        *,
        tags: Iterable[str] = (),
        id: str = "",
        split: str | None = None,
        upsert: bool = False,
    ) -> Sample:
        """A recorded run becomes a sample: its first event is the input, every payload it
        emitted is expected (the last one per topic) unless ``expected`` is given. ``run`` is a
        ``Run`` or a stored trace (``app.trace(id)``). Duplicates as with ``add``."""
        s = Sample.from_run(run, expected, tags=tags, id=id, split=split)
        return self._one(s, upsert)

    def add_runs(
        self,
        source: Any,
        version: str,
        *,
        split: str | None = None,
        upsert: bool = False,
        **options: Any,
    ) -> list[Sample]:
        """Add a seeded sample of the recorded runs of ``version`` (a label, id or id prefix)
        in the trace store of ``source`` (an ``App`` or a ``TraceStore``). Options:
        ``sample`` a share of the distinct inputs (``"5%"``, 0.05) or a count (default all),
        ``since`` a duration (``"1h"``), seconds or a datetime, ``seed`` (0), ``limit`` (at
        most that many samples), ``status`` (only runs that ended so), ``labels`` (label ->
        id), ``live`` (``LiveVersion``s). Each run becomes a sample as with ``add_run``; the
        samples added or replaced are returned."""
        from wistro.eval.recorded import sample_runs

        split = check_split(split)
        sampled = sample_runs(source, version, **options)
        for s in sampled:
            s.split = split
        result = self.merge(sampled, upsert=upsert)
        return [*result.added, *result.replaced]

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

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._samples

    def __getitem__(self, sample_id: str) -> Sample:
        return self._samples[sample_id]

    def _part(self, subset: str, keep: Iterable[Sample]) -> Dataset:
        ds = Dataset.__new__(Dataset)
        ds._setup(self.name, self.root, autosave=False)
        ds.root = self.root
        ds._samples = {s.id: s for s in keep}
        ds.subset = subset if not self.subset else f"{self.subset}, {subset}"
        return ds

    def filter(self, tag: str) -> Dataset:
        """The samples with ``tag``, as an in-memory dataset of the same name."""
        return self._part(f"tag {tag}", (s for s in self if tag in s.tags))

    @property
    def splits(self) -> dict[str, int]:
        """The number of samples of each split, by split name (samples of no split left out)."""
        counts: dict[str, int] = {}
        for s in self._samples.values():
            if s.split:
                counts[s.split] = counts.get(s.split, 0) + 1
        return dict(sorted(counts.items()))

    def split(self, name: str) -> Dataset:
        """The samples of split ``name`` (``"train"``, ``"test"``), as an in-memory dataset of
        the same name (``subset == "split NAME"``; it cannot be saved over the whole one). A
        split no sample has raises a ``DatasetError`` listing the splits there are."""
        check_split(name)
        keep = [s for s in self if s.split == name]
        if not keep:
            known = ", ".join(self.splits) or "none"
            raise DatasetError(
                f"dataset {self.name!r} has no split {name!r} (splits: {known})",
                hint="give samples a split: add(..., split=NAME) or wistro dataset add --split",
            )
        return self._part(f"split {name}", keep)

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
                "split": s.split,
                "n_events": len(s.events),
                "source_trace": s.source_trace,
            }
            for s in self
        ]
        cols = ["id", "topic", "data", "expected", "tags", "split", "n_events", "source_trace"]
        return pd.DataFrame(rows, columns=cols)

    def _repr_html_(self) -> str:
        head = f"<b>Dataset {self.name}</b> · {len(self)} samples · version {self.version}"
        return head + self.to_frame().head(50).to_html(index=False)

    def __repr__(self) -> str:
        part = f" ({self.subset})" if self.subset else ""
        return f"<Dataset {self.name!r}{part}: {len(self)} samples, version {self.version}>"


# ---------------------------------------------------------------- merging (one rule for all)
def _numbered(
    records: Iterable[Mapping[str, Any]],
    name: str,
    unit: str,
    labels: list[Any] | None = None,
) -> Iterator[tuple[Sample, Any]]:
    """``(sample, position)`` of each record; a bad record names its position."""
    for i, r in enumerate(records):
        pos = labels[i] if labels is not None else i + 1
        try:
            yield Sample.from_dict(r), pos
        except DatasetError as e:
            raise DatasetError(f"dataset {name!r}: {unit} {pos}: {e.message}") from None


def _merge_into(
    into: dict[str, Sample],
    items: Iterable[tuple[Sample, Any]],
    result: MergeResult,
    undo: list[tuple[str, Sample | None]],
    *,
    name: str,
    upsert: bool,
    unit: str,
    file: str | None,
) -> None:
    """Insert ``items`` (``(sample, position)``) into ``into`` by id, logging each change in
    ``undo``. Detection is one dict lookup per sample."""
    first_at: dict[str, Any] = {}
    dupes: list[Any] = []
    for s, pos in items:
        old = into.get(s.id)
        if old is not None and not upsert:
            if s.auto_id and old.content_id == s.content_id:
                result.duplicates.append(s)
                dupes.append(pos)
                continue
            seen = first_at.get(s.id)
            where = f"first at {unit} {seen}" if seen is not None else "already in the dataset"
            if file is not None:
                raise DuplicateSampleError(
                    f"duplicate sample id {s.id!r} in dataset {name!r} ({where})",
                    file=file,
                    line=pos,
                    hint="delete one of the lines or give it another id",
                )
            at = f"{unit} {pos}: " if pos is not None else ""
            raise DuplicateSampleError(
                f"dataset {name!r}: {at}duplicate sample id {s.id!r} ({where})",
                hint="pass upsert=True (wistro dataset add --upsert) to replace it, or give "
                "another id",
            )
        undo.append((s.id, old))
        into[s.id] = s
        (result.replaced if old is not None else result.added).append(s)
        if pos is not None:
            first_at.setdefault(s.id, pos)
    if result.duplicates:
        n = len(result.duplicates)
        ids = sorted({s.id for s in result.duplicates})
        shown = ", ".join(ids[:_SHOWN_IDS]) + (", ..." if len(ids) > _SHOWN_IDS else "")
        where = ""
        if any(p is not None for p in dupes):
            units = ", ".join(str(p) for p in dupes[:_SHOWN_IDS])
            more = ", ..." if len(dupes) > _SHOWN_IDS else ""
            where = f" ({file + ' ' if file else ''}{unit}s {units}{more})"
        warnings.warn(
            f"dataset {name!r}: {n} duplicate sample{'s' if n != 1 else ''} of identical content "
            f"(same input and expected) kept once{where}: {shown}",
            DuplicateSampleWarning,
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this module."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        level += 1
    return level


# ---------------------------------------------------------------- reading files
def _parse_line(line: str, n: int, display: str) -> Sample:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"invalid JSON: {e.msg} (column {e.colno})", file=display, line=n
        ) from None
    try:
        return Sample.from_dict(obj)
    except DatasetError as e:
        raise DatasetError(e.message, file=display, line=n, hint=e.hint) from None


def _read_text(path: Path, display: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"not UTF-8 text (byte {e.start})", file=display) from None
    except OSError as e:
        raise DatasetError(f"cannot be read: {e.strerror or e}", file=display) from None


def _read_jsonl(path: Path, display: str | None = None, name: str | None = None) -> list[Sample]:
    """The samples of a JSONL file, in order. A line that is not a sample, and an id on two
    lines, raise a ``DatasetError`` naming the file and line; lines of identical content and no
    id are kept once with a ``DuplicateSampleWarning``."""
    shown = display or str(path)
    if not path.is_file():
        raise DatasetNotFound(f"no such file: {shown}", file=shown)
    text = _read_text(path, shown)
    items = (
        (_parse_line(line, n, shown), n)
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip()
    )
    into: dict[str, Sample] = {}
    _merge_into(
        into,
        items,
        MergeResult(),
        [],
        name=name or path.name.removesuffix(".jsonl"),
        upsert=False,
        unit="line",
        file=shown,
    )
    return list(into.values())


def _disk_state(path: Path, name: str) -> tuple[dict[str, str], str, float] | None:
    """What a save is about to replace: ``({id: line hash}, version, mtime)`` of the file, or
    None when there is none (or it cannot be read: then every sample counts as added)."""
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DuplicateSampleWarning)
            samples = _read_jsonl(path, name=name)
        mtime = path.stat().st_mtime
    except (DatasetError, OSError):
        return None
    lines = [canonical(s.to_dict()) + "\n" for s in samples]
    state = {s.id: content_hash(line, 16) for s, line in zip(samples, lines, strict=True)}
    return state, content_hash("".join(lines), 16), mtime


def _missing(value: Any) -> bool:
    """A DataFrame cell with no value: None, NaN, pandas' NA / NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency of the eval package
        return False


# ---------------------------------------------------------------- history files
def _iso(timestamp: float | None = None) -> str:
    when = datetime.now(UTC) if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
    return when.isoformat(timespec="milliseconds")


def _git_head(root: Path | None) -> str | None:
    """The commit checked out at ``root``, or None outside a git repository (or without git)."""
    if root is None or shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _read_history(path: Path, *, strict: bool) -> list[DatasetVersion]:
    """The entries of a history file; a bad line raises (``strict``) or is passed over (when a
    save appends: a damaged history never stops a dataset from being saved)."""
    if not path.is_file():
        return []
    out: list[DatasetVersion] = []
    display = f"{DATASET_DIR}/{HISTORY_DIR}/{path.name}"
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(DatasetVersion.from_dict(json.loads(line)))
        except json.JSONDecodeError as e:
            if strict:
                raise DatasetError(f"invalid JSON: {e.msg}", file=display, line=n) from None
        except DatasetError as e:
            if strict:
                raise DatasetError(e.message, file=display, line=n) from None
    return out


def _append_history(path: Path, entries: list[DatasetVersion]) -> None:
    make_private_dirs(path.parent)
    text = "".join(canonical(e.to_dict()) + "\n" for e in entries)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:  # a line cut short (a crash) must not swallow this one
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    text = "\n" + text
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the project's datasets
def list_datasets(root: str | Path | None = None) -> list[str]:
    """The names of the project's datasets (``datasets/*.jsonl``), whether or not they read."""
    folder = find_root(root) / DATASET_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p.name.removesuffix(".jsonl")
        for p in folder.glob("*.jsonl")
        if p.is_file() and _NAME.match(p.name.removesuffix(".jsonl"))
    )


def load_datasets(root: str | Path | None = None) -> tuple[list[Dataset], list[DatasetError]]:
    """Every dataset of the project that reads, and one ``DatasetError`` per file that does not
    (naming the file and line), so one bad file never hides the others."""
    project = find_root(root)
    good: list[Dataset] = []
    bad: list[DatasetError] = []
    folder = project / DATASET_DIR
    if folder.is_dir():
        for p in sorted(folder.glob("*.jsonl")):
            name = p.name.removesuffix(".jsonl")
            if not p.is_file():
                continue
            if not _NAME.match(name) or ".." in name:
                bad.append(
                    DatasetError(
                        "not a dataset name: letters, digits, '_', '-', '.'",
                        file=f"{DATASET_DIR}/{p.name}",
                    )
                )
                continue
            try:
                good.append(Dataset(name, root=project, autosave=False))
            except DatasetError as e:
                bad.append(e)
    return good, bad
