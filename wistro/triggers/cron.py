"""Cron: cron steps and wistro.yml ``cron:`` entries, scheduled with croniter on a clock.

Schedules are five-field cron expressions read as *wall-clock* times in the job's time zone
(``timezone:``, default UTC). Daylight saving time:

- a wall-clock time that does not exist that day (spring forward, e.g. 02:30 on the last Sunday
  of March in Europe/Berlin) fires once, at the first instant after the gap (03:00 local); several
  times inside one gap (``*/15``) collapse into that one firing. A daily job is never dropped.
- a wall-clock time that occurs twice (fall back, 02:30 on the last Sunday of October) fires
  once, at its first occurrence; the repeated hour fires nothing again (as cron does).

No overlap: a firing of a job whose previous run has not finished is skipped (counted in
``stats[job].skipped_overlap`` and logged on ``wistro.cron``), unless the job has
``allow_overlap``.

Missed runs (while the process was stopped): the scheduler keeps, per job, when it last fired and
when it last ran at all in ``.wistro/cron.json`` (atomic writes). ``missed="skip"`` (the default)
replays nothing. ``missed="run_once"`` fires a job once at start when a scheduled time fell after
the scheduler last ran with that job, however many times were missed. A job the file does not know
(new, or its schedule changed) is never replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from wistro.config import read_raw
from wistro.core.step import StepRecord
from wistro.diagnostics import Diagnostic
from wistro.errors import WistroError
from wistro.files import write_atomic

if TYPE_CHECKING:
    from wistro.app import App
    from wistro.core.run import Run

log = logging.getLogger("wistro.cron")

MissedPolicy = Literal["skip", "run_once"]
STATE_FORMAT = 1
_MAX_CANDIDATES = 10_000  # croniter matches examined for one answer (DST skips a few)
_MAX_DST_SHIFT = timedelta(hours=3)  # wider than any DST shift in the tz database
EXPR_HINT = "five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'"
TZ_HINT = "an IANA time zone name, e.g. 'Europe/Berlin' or 'UTC'"
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


# ---------------------------------------------------------------- jobs


@dataclass
class CronJob:
    """One schedule: a cron step (``step``) or a wistro.yml entry that only emits (``emits``)."""

    name: str
    expr: str
    timezone: str | None = None
    step: StepRecord | None = None
    emits: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    allow_overlap: bool = False
    source_file: str | None = None
    source_line: int | None = None

    def __post_init__(self) -> None:
        if (self.step is None) == (self.emits is None):
            raise ValueError(f"cron job {self.name!r}: give exactly one of `step` and `emits`")

    @property
    def target(self) -> str:
        return self.step.name if self.step is not None else f"emit {self.emits}"

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)


def cron_jobs(app: App) -> list[CronJob]:
    """The project's jobs: active cron steps and wistro.yml ``cron:`` entries, by name."""
    jobs = [
        CronJob(
            name=r.name,
            expr=str(r.trigger.get("cron") or ""),
            timezone=r.trigger.get("timezone"),
            step=r,
            allow_overlap=bool(r.trigger.get("allow_overlap", False)),
            source_file=r.rel_file,
            source_line=r.line,
        )
        for r in app.registry
        if r.type == "cron" and r.active
    ]
    config_file, lines = _config_lines(app)
    for name, entry in app.project.config.cron.items():
        jobs.append(
            CronJob(
                name=name,
                expr=entry.cron,
                timezone=entry.timezone,
                emits=entry.emits,
                payload=dict(entry.payload),
                allow_overlap=bool(getattr(entry, "allow_overlap", False)),
                source_file=config_file,
                source_line=_entry_line(app, lines, name, "cron"),
            )
        )
    return sorted(jobs, key=lambda j: j.name)


# ---------------------------------------------------------------- parsing and validation


def zone(name: str | None) -> ZoneInfo:
    """The time zone of a job (``None``: UTC). Raises ``ValueError`` for an unknown name."""
    if name is None:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r}") from None


def expr_error(expr: Any) -> str | None:
    """Why ``expr`` is not a usable five-field cron expression, or None."""
    if not isinstance(expr, str) or not expr.strip():
        return "empty cron expression"
    text = expr.strip()
    if text.startswith("@"):
        instead = _ALIASES.get(text.lower())
        return f"cron expression {expr!r}: aliases are not supported" + (
            f"; write {instead!r}" if instead else ""
        )
    n = len(text.split())
    if n != 5:
        return f"cron expression {expr!r} has {n} field(s); expected 5"
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError as e:
        if "failed to find" in str(e):
            return f"cron expression {expr!r} never matches a date"
        return f"cron expression {expr!r} does not parse: {e}"
    except (KeyError, TypeError, IndexError) as e:  # defensive: croniter internals
        return f"cron expression {expr!r} does not parse: {e}"
    return None


def tz_error(tz: Any) -> str | None:
    """Why ``tz`` is not a usable time zone name (None is UTC), or None."""
    if tz is None:
        return None
    if not isinstance(tz, str):
        return f"time zone must be a string, not {type(tz).__name__}"
    try:
        zone(tz)
    except ValueError as e:
        return str(e)
    return None


def validate_cron(expr: str, tz: str | None = None) -> str | None:
    """The error text for a schedule that cannot run, or None when it is valid."""
    return expr_error(expr) or tz_error(tz)


# ---------------------------------------------------------------- fire times


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def resolve_wall_time(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant a wall-clock time names in ``tz``: its first occurrence when it is ambiguous
    (fall back); the end of the gap when it does not exist (spring forward)."""
    first = naive.replace(tzinfo=tz, fold=0)
    if _wall(first.astimezone(UTC), tz) == naive:
        return first
    # In a gap: fold=1 reads it with the offset after the transition (an instant before the gap),
    # fold=0 with the offset before it (an instant after). The transition lies in between.
    lo = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(first.timestamp()) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), tz) > naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC).astimezone(tz)


def _candidates(expr: str, tz: ZoneInfo, start: datetime, reverse: bool) -> Iterator[datetime]:
    it = croniter(expr.strip(), start)
    step = it.get_prev if reverse else it.get_next
    for _ in range(_MAX_CANDIDATES):
        yield resolve_wall_time(step(datetime), tz)


def fire_times(expr: str, tz: str | ZoneInfo | None, after: datetime, n: int = 5) -> list[datetime]:
    """The next ``n`` fire instants strictly after ``after`` (aware), in the job's time zone."""
    zi = tz if isinstance(tz, ZoneInfo) else zone(tz)
    out: list[datetime] = []
    last = after
    if n <= 0:
        return out
    # Resolved instants never decrease as wall times increase, so the first candidate after
    # ``after`` is the next fire; equal instants (a DST gap) collapse into one.
    for when in _candidates(expr, zi, _wall(after, zi), reverse=False):
        if when > last:
            out.append(when)
            last = when
            if len(out) == n:
                break
    return out


def previous_fire(expr: str, tz: str | ZoneInfo | None, at: datetime) -> datetime | None:
    """The most recent fire instant at or before ``at`` (None if there is none to find)."""
    zi = tz if isinstance(tz, ZoneInfo) else zone(tz)
    start = _wall(at, zi) + _MAX_DST_SHIFT + timedelta(seconds=1)
    try:
        for when in _candidates(expr, zi, start, reverse=True):
            if when <= at:
                return when
    except CroniterError:
        return None
    return None


# ---------------------------------------------------------------- clocks


class Clock(Protocol):
    """Where the scheduler reads the time and waits. ``now()`` is timezone-aware."""

    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


class SystemClock:
    """The real clock. Sleeps in slices of at most a minute so that a wall-clock change
    (NTP step, suspend and resume) is noticed."""

    max_slice_s = 60.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        while True:
            left = (when - self.now()).total_seconds()
            if left <= 0:
                return
            await asyncio.sleep(min(left, self.max_slice_s))


@dataclass(order=True)
class _Sleeper:
    when: datetime
    seq: int
    future: asyncio.Future[None] = field(compare=False)
    task: asyncio.Task[Any] | None = field(compare=False)


class ManualClock:
    """A clock for tests: time moves only when told, and nothing really sleeps.

    ``set(dt)`` / ``advance(seconds)`` jump (sleepers whose time has come wake once, like after a
    suspend); ``await run_until(dt)`` / ``await run_for(seconds)`` stop at every sleeper's
    deadline in turn and let the woken tasks run before going on, so every scheduled firing in
    between happens: a month of schedule runs instantly and in a deterministic order
    (``between=scheduler.wait_idle`` also finishes each run before the clock moves on).
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start
        self._sleepers: list[_Sleeper] = []
        self._awake: set[asyncio.Task[Any]] = set()
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._awake.discard(task)
        if when <= self._now:
            if task is not None:
                self._awake.add(task)  # still running: settle() waits for its next sleep
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, _Sleeper(when, next(self._seq), future, task))
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    def set(self, dt: datetime) -> None:
        """Jump to ``dt`` and wake every sleeper whose time has come."""
        if dt.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        if dt < self._now:
            raise ValueError("a ManualClock only moves forward")
        self._now = dt
        while self._sleepers and self._sleepers[0].when <= dt:
            s = heapq.heappop(self._sleepers)
            if not s.future.done():
                s.future.set_result(None)
                if s.task is not None:
                    self._awake.add(s.task)

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))

    def next_deadline(self) -> datetime | None:
        """When the earliest live sleeper wakes."""
        while self._sleepers and self._sleepers[0].future.done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0].when if self._sleepers else None

    async def settle(self, max_yields: int = 10_000) -> None:
        """Yield to the event loop until every woken sleeper sleeps again or has finished."""
        for _ in range(max_yields):
            self._awake = {t for t in self._awake if not t.done()}
            if not self._awake:
                return
            await asyncio.sleep(0)
        raise RuntimeError("woken tasks did not go back to sleep")

    async def run_until(
        self, dt: datetime, between: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        """Move to ``dt`` deadline by deadline, letting woken tasks run at each. ``between`` is
        awaited after each deadline: pass ``scheduler.wait_idle`` to finish every run before the
        clock moves on (in simulated time runs take no time; without it a run still in progress
        at the next fire time makes that firing an overlap)."""
        await self.settle()
        while (deadline := self.next_deadline()) is not None and deadline <= dt:
            self.set(deadline)
            await self.settle()
            if between is not None:
                await between()
                await self.settle()
        if dt > self._now:
            self.set(dt)
        await self.settle()

    async def run_for(
        self, seconds: float, between: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        await self.run_until(self._now + timedelta(seconds=seconds), between)


# ---------------------------------------------------------------- the scheduler


@dataclass
class JobStats:
    fired: int = 0
    skipped_overlap: int = 0
    errors: int = 0
    last_fire: datetime | None = None  # when it last fired (the clock's time)
    last_scheduled: datetime | None = None  # the schedule slot of that firing
    last_status: str | None = None  # running | ok | error | cancelled
    last_trace_id: str | None = None
    last_error: str | None = None
    next_fire: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fired": self.fired,
            "skipped_overlap": self.skipped_overlap,
            "errors": self.errors,
            "last_fire": _iso(self.last_fire),
            "last_scheduled": _iso(self.last_scheduled),
            "last_status": self.last_status,
            "last_trace_id": self.last_trace_id,
            "last_error": self.last_error,
            "next_fire": _iso(self.next_fire),
        }


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


class CronScheduler:
    """Fires the project's cron jobs on ``clock``; each firing is a new run (a trace).

    ``jobs`` defaults to :func:`cron_jobs` of the app; ``state_file`` to ``.wistro/cron.json``.
    """

    def __init__(
        self,
        app: App,
        clock: Clock | None = None,
        missed: MissedPolicy = "skip",
        *,
        jobs: list[CronJob] | None = None,
        state_file: str | Path | None = None,
    ) -> None:
        if missed not in ("skip", "run_once"):
            raise ValueError(f"missed must be 'skip' or 'run_once', not {missed!r}")
        self.app = app
        self.clock: Clock = clock or SystemClock()
        self.missed: MissedPolicy = missed
        self.state_file = Path(state_file) if state_file else app.project.data_dir / "cron.json"
        self._given_jobs = jobs
        self.jobs: dict[str, CronJob] = {}
        self.invalid: dict[str, str] = {}  # job name -> why it is not scheduled
        self.stats: dict[str, JobStats] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._firing: dict[str, set[asyncio.Task[None]]] = {}
        self._saved: dict[str, dict[str, Any]] = {}
        self.running = False

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Schedule every valid job (and, with ``missed="run_once"``, catch up once)."""
        if self.running:
            return
        self.running = True
        self._load_jobs()
        self._saved = self._read_state()
        now = self.clock.now()
        for job in self.jobs.values():
            saved = self._saved.get(job.name)
            if self.missed == "run_once" and saved is not None and self._same_schedule(job, saved):
                self._catch_up(job, saved, now)
            record = self._record(job)
            record["last_seen"] = now.isoformat()
        self._write_state()
        for job in self.jobs.values():
            self._loops[job.name] = asyncio.create_task(
                self._loop(job, now), name=f"wistro-cron-loop:{job.name}"
            )
        await asyncio.sleep(0)  # let every loop reach its first sleep

    async def stop(self, timeout: float | None = None) -> None:
        """Stop scheduling and wait for runs in progress (``timeout``: then cancel them)."""
        if not self.running:
            return
        self.running = False
        await self._stop_loops()
        tasks = [t for ts in self._firing.values() for t in ts if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        now = self.clock.now()
        for job in self.jobs.values():
            self._record(job)["last_seen"] = now.isoformat()
        self._write_state()

    async def refresh(self) -> None:
        """Pick up changed jobs (after ``app.reload()``); runs in progress go on."""
        if not self.running:
            return
        await self._stop_loops()
        self._load_jobs()
        now = self.clock.now()
        for job in self.jobs.values():
            self._record(job)
            self._loops[job.name] = asyncio.create_task(
                self._loop(job, now), name=f"wistro-cron-loop:{job.name}"
            )
        self._write_state()
        await asyncio.sleep(0)

    async def wait_idle(self) -> None:
        """Wait until no firing is in progress (each firing waits for its whole run)."""
        while tasks := [t for ts in self._firing.values() for t in ts if not t.done()]:
            await asyncio.wait(tasks)

    async def __aenter__(self) -> CronScheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ queries
    def next_fires(
        self, job: CronJob | str, n: int = 5, after: datetime | None = None
    ) -> list[datetime]:
        """The next ``n`` fire times of ``job`` after ``after`` (default: the clock's now)."""
        if isinstance(job, str):
            job = self.jobs[job]
        return fire_times(job.expr, job.timezone, after or self.clock.now(), n)

    def busy(self, name: str) -> bool:
        """True while a run of job ``name`` is in progress."""
        return any(not t.done() for t in self._firing.get(name, ()))

    # ------------------------------------------------------------ scheduling
    def _load_jobs(self) -> None:
        jobs = self._given_jobs if self._given_jobs is not None else cron_jobs(self.app)
        self.jobs, self.invalid = {}, {}
        for job in jobs:
            error = validate_cron(job.expr, job.timezone)
            if error is not None:
                self.invalid[job.name] = error
                where = f"{job.source_file}: " if job.source_file else ""
                log.error(
                    "%scron job %r is not scheduled: %s",
                    where,
                    job.name,
                    error,
                    extra={"cron_event": "invalid", "cron_job": job.name, "error": error},
                )
                continue
            self.jobs[job.name] = job
            self.stats.setdefault(job.name, JobStats())

    async def _stop_loops(self) -> None:
        loops = list(self._loops.values())
        self._loops.clear()
        for t in loops:
            t.cancel()
        for t in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _loop(self, job: CronJob, after: datetime) -> None:
        stats = self.stats[job.name]
        while True:
            try:
                upcoming = fire_times(job.expr, job.timezone, after, 1)
            except CroniterError as e:
                upcoming = []
                log.error("cron job %r: %s", job.name, e)
            if not upcoming:
                stats.next_fire = None
                log.warning(
                    "cron job %r has no further fire time",
                    job.name,
                    extra={"cron_event": "exhausted", "cron_job": job.name},
                )
                return
            when = stats.next_fire = upcoming[0]
            await self.clock.sleep_until(when)
            try:
                self._fire(job, when)
            except Exception:  # a bug here must not stop the schedule
                log.exception("cron job %r: firing failed", job.name)
            after = max(when, self.clock.now())

    def _fire(self, job: CronJob, scheduled: datetime, catch_up: bool = False) -> None:
        stats = self.stats[job.name]
        fields: dict[str, Any] = {
            "cron_job": job.name,
            "scheduled_for": scheduled.isoformat(),
            "catch_up": catch_up,
        }
        if job.step is not None and not job.step.active:
            log.info(
                "cron job %r not fired: step is inactive",
                job.name,
                extra={"cron_event": "inactive", **fields},
            )
            return
        if not job.allow_overlap and self.busy(job.name):
            stats.skipped_overlap += 1
            log.warning(
                "cron job %r skipped at %s: its previous run (trace %s) is still in progress",
                job.name,
                scheduled.isoformat(),
                stats.last_trace_id,
                extra={
                    "cron_event": "skipped_overlap",
                    "trace_id": stats.last_trace_id,
                    "skipped_overlap": stats.skipped_overlap,
                    **fields,
                },
            )
            return
        now = self.clock.now()
        stats.fired += 1
        stats.last_fire, stats.last_scheduled = now, scheduled
        stats.last_status, stats.last_error, stats.last_trace_id = "running", None, None
        self._record(job)["last_fire"] = now.isoformat()
        self._write_state()
        task = asyncio.create_task(self._run(job, fields), name=f"wistro-cron:{job.name}")
        firing = self._firing.setdefault(job.name, set())
        firing.add(task)
        task.add_done_callback(firing.discard)

    async def _run(self, job: CronJob, fields: dict[str, Any]) -> None:
        stats = self.stats[job.name]
        engine = self.app.engine
        run: Run | None = None
        trace_id: str | None = None
        try:
            if job.step is not None:
                topic = f"cron {job.name}"
                call = asyncio.ensure_future(
                    engine.call(job.step, None, trigger="cron", topic=topic)
                )
                await asyncio.sleep(0)  # the call has opened its run: name it while it runs
                if not call.done() and (trace_id := _open_run(engine.runs.values(), topic)):
                    self._started(job, trace_id, fields)
                try:
                    _, run = await call
                except WistroError as e:
                    # The handler failed: the span and a dead letter record it. What it emitted
                    # before failing may still be running: wait for that run too.
                    failed_trace = getattr(e, "trace_id", None) or trace_id
                    if trace_id is None and failed_trace is not None:
                        self._started(job, failed_trace, fields)
                    run = engine.runs.get(failed_trace) if failed_trace else None
                    if run is not None:
                        await run
                    self._failed(job, e.format(), failed_trace, fields)
                    return
            else:
                assert job.emits is not None
                run = await engine.emit(job.emits, dict(job.payload), wait=False, trigger="cron")
            if trace_id is None:
                self._started(job, run.trace_id, fields)
            await run
        except asyncio.CancelledError:
            stats.last_status = "cancelled"
            raise
        except Exception as e:  # never let a job kill the scheduler
            text = e.format() if isinstance(e, WistroError) else f"{type(e).__name__}: {e}"
            self._failed(job, text, run.trace_id if run else trace_id, fields)
            return
        if run.status == "ok":
            stats.last_status = "ok"
            log.info(
                "cron job %r finished: trace %s ok",
                job.name,
                run.trace_id,
                extra={"cron_event": "finished", "trace_id": run.trace_id, **fields},
            )
        else:
            self._failed(job, "; ".join(run.errors) or run.status, run.trace_id, fields)

    def _started(self, job: CronJob, trace_id: str, fields: dict[str, Any]) -> None:
        self.stats[job.name].last_trace_id = trace_id
        log.info(
            "cron job %r fired: trace %s",
            job.name,
            trace_id,
            extra={"cron_event": "fired", "trace_id": trace_id, **fields},
        )

    def _failed(
        self, job: CronJob, error: str, trace_id: str | None, fields: dict[str, Any]
    ) -> None:
        stats = self.stats[job.name]
        stats.errors += 1
        stats.last_status, stats.last_error = "error", error
        stats.last_trace_id = trace_id or stats.last_trace_id
        log.error(
            "cron job %r failed (trace %s): %s",
            job.name,
            trace_id,
            error,
            extra={"cron_event": "failed", "trace_id": trace_id, "error": error, **fields},
        )

    # ------------------------------------------------------------ missed runs
    @staticmethod
    def _same_schedule(job: CronJob, saved: dict[str, Any]) -> bool:
        return saved.get("cron") == job.expr and saved.get("timezone") == job.timezone

    def _catch_up(self, job: CronJob, saved: dict[str, Any], now: datetime) -> None:
        seen = [t for t in (_parse_iso(saved.get(k)) for k in ("last_fire", "last_seen")) if t]
        if not seen:
            return
        due = previous_fire(job.expr, job.timezone, now)
        if due is not None and due > max(seen):
            log.info(
                "cron job %r missed %s while stopped: firing once now",
                job.name,
                due.isoformat(),
                extra={"cron_event": "catch_up", "cron_job": job.name},
            )
            self._fire(job, due, catch_up=True)

    def _record(self, job: CronJob) -> dict[str, Any]:
        record = self._saved.get(job.name)
        if record is None or not self._same_schedule(job, record):
            record = self._saved[job.name] = {
                "cron": job.expr,
                "timezone": job.timezone,
                "last_fire": None,
                "last_seen": None,
            }
        return record

    def _read_state(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("ignoring %s: %s", self.state_file, e)
            return {}
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(jobs, dict):
            return {}
        return {k: v for k, v in jobs.items() if isinstance(v, dict)}

    def _write_state(self) -> None:
        data = {"format": STATE_FORMAT, "jobs": dict(sorted(self._saved.items()))}
        try:
            write_atomic(self.state_file, json.dumps(data, indent=2, sort_keys=True) + "\n")
        except OSError as e:
            log.error("cannot write %s: %s", self.state_file, e)


def _open_run(runs: Iterable[Run], topic: str) -> str | None:
    """The trace id of the newest run in progress started by cron on ``topic``."""
    found = [r for r in runs if r.topic == topic and r.record.trigger == "cron" and not r.done]
    return found[-1].trace_id if found else None


# ---------------------------------------------------------------- `wistro cron list`


def cron_table(app: App, n: int = 3, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per job (by name): name, schedule, timezone (UTC when not set), target (the step's
    name or ``emit <topic>``), next fire times (ISO, in the job's zone), allow_overlap, source
    file and line, and the error that keeps an invalid job from being scheduled (else None)."""
    now = now or datetime.now(UTC)
    rows = []
    for job in cron_jobs(app):
        error = validate_cron(job.expr, job.timezone)
        try:
            upcoming = [] if error else fire_times(job.expr, job.timezone, now, n)
        except CroniterError as e:
            upcoming, error = [], str(e)
        rows.append(
            {
                "name": job.name,
                "schedule": job.expr,
                "timezone": job.timezone or "UTC",
                "target": job.target,
                "next": [t.isoformat() for t in upcoming],
                "allow_overlap": job.allow_overlap,
                "source": job.source_file,
                "line": job.source_line,
                "error": error,
            }
        )
    return rows


# ---------------------------------------------------------------- `wistro check`


def cron_diagnostics(app: App) -> list[Diagnostic]:
    """An error (code ``cron``) for every cron step or wistro.yml entry whose expression or time
    zone does not parse, naming the file and line. Inactive steps are checked too."""
    out: list[Diagnostic] = []
    for r in app.registry:
        if r.type != "cron":
            continue
        for key, error, hint in (
            ("cron", expr_error(r.trigger.get("cron")), EXPR_HINT),
            ("timezone", tz_error(r.trigger.get("timezone")), TZ_HINT),
        ):
            if error is not None:
                out.append(
                    Diagnostic(
                        "error",
                        "cron",
                        f"cron step {r.name!r}: {error}",
                        file=r.rel_file,
                        line=_key_line(r, key),
                        step=r.name,
                        hint=hint,
                    )
                )
    config_file, lines = _config_lines(app)
    for name, entry in sorted(app.project.config.cron.items()):
        for key, error, hint in (
            ("cron", expr_error(entry.cron), EXPR_HINT),
            ("timezone", tz_error(entry.timezone), TZ_HINT),
        ):
            if error is not None:
                out.append(
                    Diagnostic(
                        "error",
                        "cron",
                        f"cron job {name!r}: {error}",
                        file=config_file,
                        line=_entry_line(app, lines, name, key),
                        topic=entry.emits,
                        hint=hint,
                    )
                )
    return out


def _config_lines(app: App) -> tuple[str | None, dict[tuple[Any, ...], int]]:
    path = app.project.config_file
    if path is None:
        return None, {}
    try:
        rel = path.resolve().relative_to(app.project.root.resolve()).as_posix()
    except ValueError:
        rel = str(path)
    lines: dict[tuple[Any, ...], int] = {}
    with contextlib.suppress(WistroError, OSError):  # it loaded once: lines are a bonus
        _, lines = read_raw(path)
    return rel, lines


def _entry_line(app: App, lines: dict[tuple[Any, ...], int], name: str, key: str) -> int | None:
    env = ("environments", app.project.env)
    for path in (
        (*env, "cron", name, key),
        ("cron", name, key),
        (*env, "cron", name),
        ("cron", name),
    ):
        if path in lines:
            return lines[path]
    return None


def _key_line(record: StepRecord, key: str) -> int | None:
    """The line of ``key:`` in a step's config (any language), else the config's line."""
    try:
        text = record.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return record.line
    pattern = re.compile(rf"""(?:^|[\s{{,])["']?{re.escape(key)}["']?\s*:""")
    first = record.line or 1
    for n, line in enumerate(text.splitlines(), start=1):
        if n >= first and pattern.search(line):
            return n
    return record.line
