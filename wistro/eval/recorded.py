"""Recorded production runs as eval material: the runs of one version since a time, read from
the trace store; a version named by label, id or id prefix; a stored trace as the
``SampleResult`` an eval would have recorded; and a deterministic sample of runs as dataset
samples (``Dataset.from_runs``, ``wistro dataset add --from-runs``).

The trace store lists runs newest first and cannot filter by time or version: the rows are read
in growing pages until one is older than ``since``, then filtered here.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from wistro.errors import WistroError
from wistro.eval.dataset import Sample, input_hash
from wistro.eval.results import SampleResult

if TYPE_CHECKING:
    from wistro.tracing.store import TraceStore
    from wistro.versions.live import LiveVersion

Since = str | float | int | datetime | None

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
MIN_PREFIX = 4


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``1h``, ``2d``, ``1w``, ``1h30m``, or a plain number."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw.replace(" ", ""):
            raise WistroError(
                f"not a duration: {text!r}", hint="e.g. 90s, 30m, 1h, 2d (or seconds)"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise WistroError(f"not a duration: {text!r}", hint="a positive time, e.g. 1h")
    return seconds


def since_timestamp(since: Since, now: float | None = None) -> float | None:
    """The time (epoch seconds) ``since`` names: a duration back from now (``"1h"``, seconds),
    a ``datetime`` (naive: local time), or None (all recorded runs)."""
    if since is None:
        return None
    if isinstance(since, datetime):
        return since.timestamp()
    if isinstance(since, bool):
        raise WistroError(f"not a time: {since!r}")
    seconds = float(since) if isinstance(since, int | float) else parse_duration(str(since))
    if not math.isfinite(seconds) or seconds <= 0:
        raise WistroError(f"not a duration: {since!r}", hint="a positive time, e.g. 1h")
    return (time.time() if now is None else now) - seconds


def store_of(source: Any) -> TraceStore:
    """The trace store of an ``App`` (or an ``Engine``), or ``source`` itself."""
    from wistro.tracing.store import TraceStore

    if isinstance(source, TraceStore):
        return source
    engine = getattr(source, "engine", source)
    store = getattr(engine, "store", None)
    if not isinstance(store, TraceStore):
        raise WistroError("no trace store: recorded runs are read from an app's traces")
    return store


def recorded_runs(
    store: TraceStore, since: float | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Run rows started at or after ``since`` that have finished, oldest first."""
    limit = 1000
    while True:
        rows = store.list_runs(limit=limit, status=status)
        if len(rows) < limit or (since is not None and rows[-1]["start"] < since):
            break
        limit *= 4
    out = [
        r for r in rows if r.get("status") != "running" and (since is None or r["start"] >= since)
    ]
    out.reverse()
    return out


def known_labels(source: Any, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """Label -> version id: the engine's own version's label, then ``labels``."""
    out: dict[str, str] = {}
    engine = getattr(source, "engine", None)
    own, own_label = getattr(engine, "version", None), getattr(engine, "version_label", None)
    if isinstance(own, str) and isinstance(own_label, str) and own_label:
        out[own_label] = own
    out.update(labels or {})
    return out


def resolve_version(
    name: str,
    recorded: Iterable[str],
    labels: Mapping[str, str] | None = None,
    live: Iterable[LiveVersion] = (),
) -> str:
    """The id of the version ``name`` names: a label (``labels``, or of a live version), a
    version id, or a prefix of one (4+ characters) among the live and recorded versions."""
    from wistro.core.routing import resolve

    labels = dict(labels or {})
    live = list(live)
    if name in labels:
        return labels[name]
    found = resolve(name, live)
    if found is not None:
        return found
    ids = sorted(set(recorded))
    if name in ids:
        return name
    matches = [v for v in ids if len(name) >= MIN_PREFIX and v.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise WistroError(
            f"version prefix {name!r} is ambiguous: {', '.join(matches[:5])}",
            hint="give more characters of the id",
        )
    names = sorted({*labels, *(v.label for v in live if v.label)})
    known = ", ".join([*names, *ids][:10]) or "none recorded"
    raise WistroError(
        f"no version {name!r} (known: {known})",
        hint="a label of a live version, a version id or a prefix of one (4+ characters)",
    )


def version_runs(
    rows: Iterable[dict[str, Any]], version: str, max_runs: int | None = None
) -> list[dict[str, Any]]:
    """The rows of ``version``, the newest ``max_runs`` of them, oldest first."""
    mine = [r for r in rows if r.get("version") == version]
    return mine[-max_runs:] if max_runs is not None and len(mine) > max_runs else mine


# ---------------------------------------------------------------- a stored trace as a result
def _input_of(trace: Mapping[str, Any]) -> tuple[str, Any]:
    events = trace.get("events") or []
    if not events:
        run = trace["run"]
        return str(run["topic"]), None
    first = events[0]
    raw = first.get("data_json")
    return str(first["topic"]), (json.loads(raw) if raw else None)


def result_from_trace(trace: Mapping[str, Any], repeat: int = 0) -> SampleResult:
    """A stored trace (``store.get_run``) as the ``SampleResult`` an eval records: status (ok,
    or error for a failed, refused or interrupted run), latency, events with payloads (and the
    span that emitted each), spans with their state writes, errors. The sample id is the input
    hash, so runs of the same input pair across versions. The final state is not known."""
    run = trace["run"]
    topic, data = _input_of(trace)
    h = input_hash(topic, data)
    result = SampleResult(h, h, topic, repeat)
    t0 = float(run["start"])
    result.status = "ok" if run["status"] == "ok" else "error"
    result.latency_ms = (run["end"] - t0) * 1000 if run.get("end") is not None else None
    result.trace_id = run["trace_id"]
    spans = sorted(trace.get("spans") or [], key=lambda s: (s["start"], s["id"]))
    index = {s["id"]: i for i, s in enumerate(spans)}
    writes: dict[str, list[list[Any]]] = {}
    for op in trace.get("state_ops") or []:
        if op["op"] in ("set", "delete", "clear") and op.get("span_id") is not None:
            value = json.loads(op["value_json"]) if op.get("value_json") else None
            writes.setdefault(op["span_id"], []).append([op["op"], op["group"], op["key"], value])
    for s in spans:
        row: dict[str, Any] = {
            "step": s["step"],
            "topic": s["topic"],
            "status": s["status"],
            "start_ms": round((s["start"] - t0) * 1000, 3),
            "end_ms": round(((s.get("end") or s["start"]) - t0) * 1000, 3),
        }
        if s.get("error") is not None:
            row["error"] = s["error"]
        if s["id"] in writes:
            row["writes"] = writes[s["id"]]
        result.spans.append(row)
    errors: list[str] = []
    for e in trace.get("events") or []:
        raw = e.get("data_json")
        parent = e.get("parent_span_id")
        ev: dict[str, Any] = {
            "topic": e["topic"],
            "data": json.loads(raw) if raw else None,
            "source": e.get("source"),
            "span": index.get(parent) if parent else None,
        }
        if e.get("error"):
            ev["error"] = e["error"]
            errors.append(f"{e.get('source')} -> {e['topic']}: {e['error']}")
        result.events.append(ev)
    errors += [f"{d['step']}: {d['error']}" for d in trace.get("dead_letters") or []]
    if result.status != "ok":
        if not errors:  # the last attempt of each step that failed
            last: dict[tuple[str, str], dict[str, Any]] = {}
            for s in spans:
                last[(s["step"], s.get("event_id", ""))] = s
            errors = [
                f"{s['step']}: {s.get('error') or s['status']}"
                for s in last.values()
                if s["status"] != "ok"
            ]
        result.errors = errors or [f"the run ended {run['status']}"]
    return result


def sample_from_trace(trace: Mapping[str, Any], expected: bool = False) -> Sample:
    """The sample a scorer sees for a recorded run: its input and events; ``expected`` (the
    run's own outputs) only when asked, since a run always matches itself."""
    return Sample.from_events(
        list(trace.get("events") or []),
        trace_id=trace["run"]["trace_id"],
        expected=None if expected else {},
    )


# ---------------------------------------------------------------- sampling runs
def parse_sample(sample: str | int | float) -> tuple[str, float]:
    """``("fraction", f)`` for ``"5%"`` or a float in (0, 1); ``("count", n)`` for ``"40"`` or
    an int."""
    if isinstance(sample, bool):
        raise WistroError(f"not a sample size: {sample!r}")
    if isinstance(sample, int):
        kind, value = "count", float(sample)
    elif isinstance(sample, float):
        kind, value = "fraction", sample
        if not 0 < value <= 1:
            raise WistroError(
                f"a sample fraction must be in (0, 1], got {sample!r}", hint="or a count"
            )
    else:
        text = str(sample).strip()
        try:
            if text.endswith("%"):
                kind, value = "fraction", float(text[:-1]) / 100
            else:
                kind, value = "count", float(int(text))
        except ValueError:
            raise WistroError(
                f"not a sample size: {sample!r}", hint="a percentage (5%) or a count (50)"
            ) from None
        if kind == "fraction" and not 0 < value <= 1:
            raise WistroError(
                f"a sample percentage must be in (0%, 100%], got {text}", hint="e.g. 5%"
            )
    if kind == "count" and value < 1:
        raise WistroError(f"a sample count must be at least 1, got {sample!r}")
    return kind, value


def sample_runs(
    source: Any,
    version: str,
    sample: str | int | float = "100%",
    *,
    since: Since = None,
    seed: int = 0,
    limit: int | None = None,
    status: str | None = None,
    labels: Mapping[str, str] | None = None,
    live: Iterable[LiveVersion] = (),
) -> list[Sample]:
    """A seeded random sample of the recorded runs of ``version`` (label, id or prefix) since
    ``since``, as samples (``Dataset.add_run``: the input, and the run's payloads as expected).
    Runs of one input count once (the newest); ``sample`` is a share of them (``"5%"``, 0.05,
    rounded) or a count; ``limit`` caps the samples. The same runs and seed give the same
    samples, in time order."""
    kind, value = parse_sample(sample)
    if limit is not None and limit < 1:
        raise WistroError(f"--limit must be at least 1, got {limit}")
    store = store_of(source)
    rows = recorded_runs(store, since_timestamp(since), status)
    vid = resolve_version(
        version,
        [r["version"] for r in rows if r.get("version")],
        known_labels(source, labels),
        live,
    )
    by_input: dict[str, tuple[dict[str, Any], Mapping[str, Any]]] = {}
    for row in version_runs(rows, vid):
        trace = store.get_run(row["trace_id"])
        if not trace.get("events"):
            continue
        topic, data = _input_of(trace)
        by_input.pop(input_hash(topic, data), None)  # the newest run of an input, in time order
        by_input[input_hash(topic, data)] = (row, trace)
    candidates = list(by_input.values())
    k = round(value * len(candidates)) if kind == "fraction" else int(value)
    k = min(len(candidates), k if limit is None else min(k, limit))
    chosen = sorted(random.Random(seed).sample(range(len(candidates)), k))
    return [
        Sample.from_events(candidates[i][1]["events"], trace_id=candidates[i][0]["trace_id"])
        for i in chosen
    ]
