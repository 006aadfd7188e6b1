"""Running an eval: every sample through one version of the project, in isolation, scored.

Each sample runs on a fresh ``Engine`` with fresh memory state, sharing the version's registry
(engines are cheap), so samples never see each other's state and each has its own trace id.
Results are appended to ``.wistro/evals/<eval_id>/results.jsonl`` as each sample finishes: an
eval that was interrupted resumes when it is run again with the same dataset, version, scorers
and repeats (``resume=True``), and runs only what is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import orjson

from wistro.core.engine import Engine
from wistro.errors import WistroError
from wistro.eval._json import canonical, content_hash
from wistro.eval.dataset import Dataset, Sample
from wistro.eval.errors import DatasetError
from wistro.eval.results import (
    EvalMeta,
    EvalResult,
    SampleResult,
    evals_dir,
    list_evals,
    read_results,
    scorer_errors_line,
)
from wistro.eval.scorers import ScoreFn, Scorer, as_scorer, default_scorers
from wistro.eval.version import open_version
from wistro.files import make_private_dir, make_private_file, write_atomic
from wistro.state.base import StateAdapter
from wistro.state.memory import MemoryState

if TYPE_CHECKING:
    from wistro.config import EngineConfig
    from wistro.core.registry import Registry
    from wistro.core.run import Run

ScorerLike = Scorer | ScoreFn | str
ResultHook = Callable[[SampleResult], None]


def resolve_scorers(scorers: Iterable[ScorerLike] | None) -> list[Scorer]:
    """Scorers with unique names (a repeated name gets ``#2``, ``#3``...)."""
    out: list[Scorer] = []
    seen: dict[str, int] = {}
    for s in default_scorers() if scorers is None else scorers:
        sc = as_scorer(s)
        n = seen.get(sc.name, 0) + 1
        seen[sc.name] = n
        if n > 1:
            sc = sc.renamed(f"{sc.name}#{n}")
        out.append(sc)
    return out


# ---------------------------------------------------------------- one sample
_start = attrgetter("start")


def record_run(result: SampleResult, run: Run) -> None:
    """Copy what a finished run did into ``result``: events with payloads, spans, errors.
    The payloads are decoded from their JSON text in one call (they were encoded when emitted,
    which is what makes them snapshots). Times are milliseconds from the run's start, to the
    microsecond. One pass over the spans and one over the events: this runs once per sample."""
    spans = run.span_records
    if len(spans) > 1:
        spans = sorted(spans, key=_start)
    t0 = run.record.start
    status = run.status
    result.status = status
    result.latency_ms = run.duration_ms
    result.errors = run.errors if status != "ok" else []
    result.trace_id = run.trace_id
    index: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for i, s in enumerate(spans):
        index[s.id] = i
        start = s.start
        row = {
            "step": s.step,
            "topic": s.topic,
            "status": s.status,
            "start_ms": int((start - t0) * 1e6 + 0.5) / 1000,
            "end_ms": int(((s.end or start) - t0) * 1e6 + 0.5) / 1000,
        }
        if s.error is not None:
            row["error"] = s.error
        rows.append(row)
    if run.state_records:
        writes: dict[str, list[list[Any]]] = {}
        for op in run.state_records:
            if op.op in ("set", "delete", "clear") and op.span_id is not None:
                value = _loads(op.value_json) if op.value_json else None
                writes.setdefault(op.span_id, []).append([op.op, op.group, op.key, value])
        for s, row in zip(spans, rows, strict=True):
            if s.id in writes:
                row["writes"] = writes[s.id]
    result.spans = rows
    records = run.event_records
    payloads = _loads("[" + ",".join([e.data_json for e in records]) + "]")
    events: list[dict[str, Any]] = []
    for e, data in zip(records, payloads, strict=True):
        parent = e.parent_span_id
        ev = {
            "topic": e.topic,
            "data": data,
            "source": e.source,
            "span": index.get(parent) if parent else None,
        }
        if e.error:
            ev["error"] = e.error
        events.append(ev)
    result.events = events


async def snapshot(state: StateAdapter) -> dict[str, dict[str, Any]]:
    """The final state as ``{group: {key: value}}``."""
    if isinstance(state, MemoryState):
        groups = {g: dict(items) for g, items in state._data.items() if items}
    else:
        groups = {g: await state.get_group(g) for g in await state.groups()}
    if not groups:
        return {}
    pairs = [(g, k, v) for g, items in sorted(groups.items()) for k, v in items.items()]
    values = _loads("[" + ",".join(v for _, _, v in pairs) + "]")
    out: dict[str, dict[str, Any]] = {}
    for (g, k, _), value in zip(pairs, values, strict=True):
        out.setdefault(g, {})[k] = value
    return out


class EngineSlot:
    """One engine for samples that run one after another: each sample gets fresh memory state
    and a fresh run, and the engine's worker tasks are reused (much cheaper than an engine per
    sample). An engine left with work in flight (a sample that timed out) is replaced."""

    def __init__(self, registry: Registry, config: EngineConfig | None) -> None:
        self.registry = registry
        self.config = config
        self.engine: Engine | None = None

    def fresh(self) -> Engine:
        if self.engine is None or self.engine.in_flight:
            if self.engine is not None:
                self._abandon(self.engine)
            self.engine = Engine(self.registry, MemoryState(), None, self.config)
        else:
            self.engine.state = MemoryState()
            self.engine.recorder.discard()  # no store: drop what the last sample recorded
        return self.engine

    @staticmethod
    def _abandon(engine: Engine) -> None:
        engine.abandon()

    async def aclose(self) -> None:
        if self.engine is not None:
            if self.engine.in_flight:
                self._abandon(self.engine)
            else:
                await self.engine.aclose()
            self.engine = None


async def run_sample(
    registry: Registry,
    config: EngineConfig | None,
    sample: Sample,
    repeat: int = 0,
    timeout_s: float | None = None,
    slot: EngineSlot | None = None,
) -> SampleResult:
    """Run one sample in isolation: fresh memory state, its own run and trace id (on ``slot``'s
    engine, or a fresh one). Never raises for the sample's own problems: an input that cannot
    be emitted is recorded as the result's ``error``."""
    result = SampleResult(sample.id, sample.input_hash, sample.topic, repeat)
    own = slot is None
    slot = slot or EngineSlot(registry, config)
    engine = slot.fresh()
    state = engine.state
    try:
        try:
            if timeout_s is None:
                run = await engine.emit(sample.topic, sample.data, trigger="eval")
            else:
                async with asyncio.timeout(timeout_s):
                    run = await engine.emit(sample.topic, sample.data, trigger="eval")
        except TimeoutError:
            result.status = "error"
            result.error = f"the sample did not finish within {timeout_s:g}s"
            return result
        except WistroError as e:
            result.status = "not_run"
            result.error = e.format()
            return result
        record_run(result, run)
        result.state = await snapshot(state)
        return result
    finally:
        if own:
            await slot.aclose()


def score_result(sample: Sample, result: SampleResult, scorers: Sequence[Scorer]) -> None:
    """Score ``result``; a scorer that raises is recorded as an error for that scorer (value
    and passed None: neither a pass nor a failure, counted in ``EvalResult.scorer_errors``)."""
    scores = result.scores
    for sc in scorers:
        try:
            scores[sc.name] = sc(sample, result).to_dict()
        except Exception as e:
            scores[sc.name] = {
                "value": None,
                "passed": None,
                "rationale": "",
                "error": f"{type(e).__name__}: {e}",
            }


# ---------------------------------------------------------------- the eval
def eval_key(
    dataset: str, dataset_version: str, version_id: str, scorer_names: list[str], repeats: int
) -> str:
    """What makes two eval runs the same eval (and one the resumption of the other)."""
    return content_hash(
        {
            "dataset": dataset,
            "dataset_version": dataset_version,
            "version": version_id,
            "scorers": scorer_names,
            "repeats": repeats,
        },
        16,
    )


def _new_eval_id(key: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{key[:8]}-{os.urandom(2).hex()}"


_loads = orjson.loads
_safe = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _line(data: Any) -> bytes:
    """One results line. orjson writes what the stdlib encoder writes, many times faster; what
    it refuses (ints over 64 bits, keys that are not str, objects a scorer returned) goes to the
    stdlib encoder, which writes unknown objects as their str."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return _safe(data).encode()


class _Appender:
    """Appends result lines; a line cut short by an earlier interruption is terminated first.
    Lines reach the file at least every ``FLUSH_S`` seconds and when the eval stops for any
    reason (a process killed outright loses at most that much: those samples run again)."""

    FLUSH_S = 0.25

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file() and path.stat().st_size:
            with path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    with path.open("ab") as out:
                        out.write(b"\n")
        make_private_file(path)  # 0600: results hold payloads
        self.fh: IO[bytes] = path.open("ab")
        self.lines: list[bytes] = []
        self.flushed = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None

    def write(self, result: SampleResult) -> None:
        self.lines.append(_line(result.to_dict()))
        now = time.monotonic()
        if now - self.flushed >= self.FLUSH_S:
            self.flush()
        elif self._timer is None:  # no result may follow for a while (the rest are slow)
            delay = self.FLUSH_S - (now - self.flushed)
            self._timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.lines:
            self.fh.write(b"\n".join(self.lines) + b"\n")
            self.lines.clear()
        self.fh.flush()
        self.flushed = time.monotonic()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.fh.close()


@dataclass(frozen=True)
class Stopped:
    """An eval stopped before it finished (Ctrl-C, a cancelled task): what to tell the user."""

    eval_id: str
    done: int
    total: int

    @property
    def message(self) -> str:
        return stopped_message(self.eval_id, self.done, self.total)


def stopped_message(eval_id: str, done: int, total: int) -> str:
    """The one line shown when an eval is stopped before it finished."""
    return (
        f"stopped: eval {eval_id} ({done}/{total} samples done); "
        "run the same command again to resume"
    )


# set by run_from_cli around one eval: `run` appends where it stopped
_STOPS: ContextVar[list[Stopped] | None] = ContextVar("wistro_eval_stops", default=None)


def _report_stop(stop: Stopped, exc: BaseException) -> None:
    """On Ctrl-C or cancellation: the line goes to stderr (the run's results so far are stored
    and a rerun resumes), onto the exception as a note, and to ``run_from_cli``."""
    exc.add_note(stop.message)
    sink = _STOPS.get()
    if sink is not None:
        sink.append(stop)
    try:
        sys.stderr.write(stop.message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed
        pass


T = TypeVar("T")


def run_from_cli(fn: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(fn())`` for ``wistro eval run``: on Ctrl-C, ``run`` has printed
    ``stopped: eval ID (n/total samples done); run the same command again to resume`` on
    stderr; this exits with code 130 and nothing more (``stopped`` when the eval had not started
    yet)."""
    stops: list[Stopped] = []
    token = _STOPS.set(stops)
    try:
        return asyncio.run(_awaited(fn))
    except KeyboardInterrupt:
        if not stops:
            sys.stderr.write("stopped\n")
        raise SystemExit(130) from None
    finally:
        _STOPS.reset(token)


async def _awaited(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


async def run(
    dataset: Dataset | str,
    version: str | None = None,
    scorers: Iterable[ScorerLike] | None = None,
    repeats: int = 1,
    concurrency: int = 8,
    label: str | None = None,
    *,
    resume: bool = True,
    root: str | Path | None = None,
    progress: bool = True,
    timeout_s: float | None = None,
    on_result: ResultHook | None = None,
) -> EvalResult:
    """Run ``dataset`` through ``version`` (None: the working tree; a git revision such as
    ``"main~1"``; or a folder) and score every run.

    ``repeats`` runs each sample that many times; ``concurrency`` samples run at once.
    Scorers default to ``payload_equals()`` and ``error_free()``. With ``resume`` (default), an
    unfinished eval of the same dataset version, project version, scorers and repeats is
    continued instead of started again. ``on_result`` is called with each result once it is
    stored (an exception from it stops the eval; what was stored stays).

    A dataset with no samples raises ``DatasetError``. Stopped by Ctrl-C or cancelled, the eval
    writes ``stopped: eval ID (n/total samples done); run the same command again to resume`` to
    stderr (and as a note on the exception) and re-raises. Scorers that raised are counted in
    ``EvalResult.scorer_errors`` and warned about."""
    if repeats < 1 or concurrency < 1:
        raise WistroError("repeats and concurrency must be at least 1")
    ds = dataset if isinstance(dataset, Dataset) else Dataset.load(dataset, root)
    if not ds.samples:
        part = getattr(ds, "subset", None)  # a split or a filter of a dataset
        raise DatasetError(
            f"dataset {ds.name!r}{f' ({part})' if part else ''} has no samples: "
            "nothing to evaluate",
            hint=f"add some: wistro dataset add {ds.name} --trace ID (or --topic T --data JSON)",
        )
    if root is None and ds.root is not None:
        root = ds.root
    resolved = resolve_scorers(scorers)
    names = [s.name for s in resolved]
    finished: list[SampleResult] = []
    with open_version(version, root, label) as (pv, app):
        try:
            jsonl = ds.to_jsonl()
            ds_version = content_hash(jsonl, 16)  # == ds.version, computed once
            key = eval_key(ds.name, ds_version, pv.id, names, repeats)
            base = evals_dir(root)
            eval_id = None
            if resume:
                for name, meta in reversed(list_evals(root)):
                    if meta.key == key and meta.status != "complete":
                        eval_id = name
                        break
            if eval_id is None:
                eval_id = _new_eval_id(key)
            folder = base / eval_id
            make_private_dir(folder, within=base.parent.parent)  # .wistro/evals/<id>: 0700
            meta_path = folder / "meta.json"
            info = [s.info() for s in resolved]
            if meta_path.is_file():
                meta = EvalMeta.from_dict(json.loads(meta_path.read_text(encoding="utf-8")))
                meta.label = label or meta.label
                meta.scorer_info = info  # evals stored before kinds were recorded get them
            else:
                meta = EvalMeta(
                    ds.name, ds_version, pv, names, repeats, label, key, scorer_info=info
                )
                write_atomic(folder / "dataset.jsonl", jsonl)
            _write_meta(meta_path, meta)

            previous = read_results(folder / "results.jsonl")
            done = {(r.sample_id, r.repeat) for r in previous}
            samples = ds.samples
            total = len(samples) * repeats
            jobs = [(s, k) for k in range(repeats) for s in samples if (s.id, k) not in done]
            t0 = time.perf_counter()
            try:
                await _run_jobs(
                    jobs,
                    app.registry,
                    app.project.config.engine,
                    resolved,
                    folder / "results.jsonl",
                    finished,
                    concurrency=concurrency,
                    total=total,
                    initial=len(done),
                    desc=f"eval {ds.name} @ {pv.name}",
                    progress=progress,
                    timeout_s=timeout_s,
                    on_result=on_result,
                )
            except (asyncio.CancelledError, KeyboardInterrupt) as e:
                _report_stop(Stopped(eval_id, len(done) + len(finished), total), e)
                raise
            samples_s = time.perf_counter() - t0
            if previous:
                _compact(folder / "results.jsonl")
            meta.status = "complete"
            meta.finished = time.time()
            _write_meta(meta_path, meta)
        finally:
            await app.aclose()
    order = {s.id: i for i, s in enumerate(samples)}
    rows = [*previous, *finished]
    rows.sort(key=lambda r: (order.get(r.sample_id, len(order)), r.repeat))
    result = EvalResult(eval_id, meta, rows, samples, folder)
    result.samples_s = samples_s
    errors = result.scorer_errors
    if errors:
        warnings.warn(scorer_errors_line(errors, result.results), ScorerErrorWarning, stacklevel=2)
    return result


class ScorerErrorWarning(UserWarning):
    """Some scorer raised for some samples (their scores hold the error)."""


def _compact(path: Path) -> None:
    """Rewrite the results without lines cut short by an interruption or superseded."""
    if not path.is_file():
        return
    rows = read_results(path)
    n_lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if n_lines != len(rows):
        write_atomic(path, "".join(canonical(r.to_dict()) + "\n" for r in rows))


def _write_meta(path: Path, meta: EvalMeta) -> None:
    write_atomic(path, json.dumps(meta.to_dict(), indent=2, sort_keys=True))


async def _run_jobs(
    jobs: list[tuple[Sample, int]],
    registry: Registry,
    config: EngineConfig,
    scorers: list[Scorer],
    results_path: Path,
    finished: list[SampleResult],
    *,
    concurrency: int,
    total: int,
    initial: int,
    desc: str,
    progress: bool,
    timeout_s: float | None,
    on_result: ResultHook | None,
) -> None:
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    bar = tqdm(total=total, initial=initial, desc=desc, disable=not progress, unit="sample")
    out = _Appender(results_path)
    pending = iter(jobs)

    async def worker() -> None:
        slot = EngineSlot(registry, config)
        try:
            for sample, repeat in pending:
                result = await run_sample(registry, config, sample, repeat, timeout_s, slot)
                score_result(sample, result, scorers)
                out.write(result)
                finished.append(result)
                bar.update(1)
                if on_result is not None:
                    on_result(result)
        finally:
            await slot.aclose()

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(jobs)))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        out.close()
        bar.close()
