"""Cron jobs: ``CronJob`` (a cron step or a wistro.yml ``cron:`` entry), ``cron_jobs`` (the
project's jobs, with their source file and line) and ``cron_table`` (the rows of
``wistro cron list``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from croniter import CroniterError

from wistro.config import read_raw
from wistro.core.step import StepRecord
from wistro.errors import WistroError
from wistro.triggers.cron.schedule import fire_times, validate_cron, zone

if TYPE_CHECKING:
    from wistro.app import App


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
