"""The scheduler: ``CronScheduler`` fires the jobs on a clock (each firing a new run, no
overlap unless allowed), keeps ``JobStats`` per job, and replays missed runs with the job state
file ``.wistro/cron.json`` (when each job last fired and last ran at all)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from croniter import CroniterError

from wistro.errors import WistroError
from wistro.files import write_atomic
from wistro.triggers.cron.clock import Clock, SystemClock
from wistro.triggers.cron.jobs import CronJob, cron_jobs
from wistro.triggers.cron.schedule import MissedPolicy, fire_times, previous_fire, validate_cron

if TYPE_CHECKING:
    from wistro.app import App
    from wistro.core.run import Run

log = logging.getLogger("wistro.cron")

STATE_FORMAT = 1
CLAIM_TTL_S = 86_400.0  # a tick's claim outlives any clock skew between the processes


@dataclass
class JobStats:
    fired: int = 0
    skipped_overlap: int = 0
    fired_elsewhere: int = 0  # ticks another process on the shared bus claimed first
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
            "fired_elsewhere": self.fired_elsewhere,
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
        self._claiming: set[asyncio.Task[None]] = set()  # ticks being claimed on a shared bus
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
        for claiming in list(self._claiming):
            claiming.cancel()
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

    def _fire(
        self, job: CronJob, scheduled: datetime, catch_up: bool = False, claimed: bool = False
    ) -> None:
        if self.app.engine.bus.shared and not claimed:  # several processes: one fires the tick
            task = asyncio.create_task(self._fire_if_claimed(job, scheduled, catch_up))
            self._claiming.add(task)
            task.add_done_callback(self._claiming.discard)
            return
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

    async def _fire_if_claimed(self, job: CronJob, scheduled: datetime, catch_up: bool) -> None:
        """Fire ``job`` for ``scheduled`` if no other process on the shared bus did: the tick is
        claimed on the bus (a lease for the tick's time)."""
        key = f"cron:{job.name}:{scheduled.isoformat()}"
        try:
            claimed = await self.app.engine.bus.claim(key, CLAIM_TTL_S)
        except Exception as e:  # the bus is unreachable: better fire twice than never
            log.warning("cron job %r: cannot claim its tick on the bus (%s); firing", job.name, e)
            claimed = True
        if not claimed:
            log.debug("cron job %r at %s fired by another process", job.name, scheduled)
            self.stats[job.name].fired_elsewhere += 1
            return
        self._fire(job, scheduled, catch_up, claimed=True)

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
