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

The modules, each importing only those above it:

- ``schedule`` - the schedule maths: parsing and validating expressions and time zones
  (``validate_cron``), fire times in a job's zone across DST (``fire_times``,
  ``previous_fire``), the missed-run policies (``MissedPolicy``);
- ``clock`` - where the scheduler reads the time and waits: ``SystemClock``, ``ManualClock``;
- ``jobs`` - ``CronJob``, the project's jobs (``cron_jobs``) and the rows of ``wistro cron list``
  (``cron_table``);
- ``scheduler`` - ``CronScheduler``, its ``JobStats`` and its job state file (``cron.json``);
- ``diagnostics`` - ``cron_diagnostics`` for ``wistro check``.
"""

from wistro.triggers.cron.clock import Clock as Clock
from wistro.triggers.cron.clock import ManualClock as ManualClock
from wistro.triggers.cron.clock import SystemClock as SystemClock
from wistro.triggers.cron.clock import _Sleeper as _Sleeper
from wistro.triggers.cron.diagnostics import _key_line as _key_line
from wistro.triggers.cron.diagnostics import cron_diagnostics as cron_diagnostics
from wistro.triggers.cron.jobs import CronJob as CronJob
from wistro.triggers.cron.jobs import _config_lines as _config_lines
from wistro.triggers.cron.jobs import _entry_line as _entry_line
from wistro.triggers.cron.jobs import cron_jobs as cron_jobs
from wistro.triggers.cron.jobs import cron_table as cron_table
from wistro.triggers.cron.schedule import _ALIASES as _ALIASES
from wistro.triggers.cron.schedule import _MAX_CANDIDATES as _MAX_CANDIDATES
from wistro.triggers.cron.schedule import _MAX_DST_SHIFT as _MAX_DST_SHIFT
from wistro.triggers.cron.schedule import EXPR_HINT as EXPR_HINT
from wistro.triggers.cron.schedule import TZ_HINT as TZ_HINT
from wistro.triggers.cron.schedule import MissedPolicy as MissedPolicy
from wistro.triggers.cron.schedule import _candidates as _candidates
from wistro.triggers.cron.schedule import _wall as _wall
from wistro.triggers.cron.schedule import expr_error as expr_error
from wistro.triggers.cron.schedule import fire_times as fire_times
from wistro.triggers.cron.schedule import previous_fire as previous_fire
from wistro.triggers.cron.schedule import resolve_wall_time as resolve_wall_time
from wistro.triggers.cron.schedule import tz_error as tz_error
from wistro.triggers.cron.schedule import validate_cron as validate_cron
from wistro.triggers.cron.schedule import zone as zone
from wistro.triggers.cron.scheduler import STATE_FORMAT as STATE_FORMAT
from wistro.triggers.cron.scheduler import CronScheduler as CronScheduler
from wistro.triggers.cron.scheduler import JobStats as JobStats
from wistro.triggers.cron.scheduler import _iso as _iso
from wistro.triggers.cron.scheduler import _open_run as _open_run
from wistro.triggers.cron.scheduler import _parse_iso as _parse_iso
from wistro.triggers.cron.scheduler import log as log

__all__ = [
    "EXPR_HINT",
    "STATE_FORMAT",
    "TZ_HINT",
    "Clock",
    "CronJob",
    "CronScheduler",
    "JobStats",
    "ManualClock",
    "MissedPolicy",
    "SystemClock",
    "cron_diagnostics",
    "cron_jobs",
    "cron_table",
    "expr_error",
    "fire_times",
    "previous_fire",
    "resolve_wall_time",
    "tz_error",
    "validate_cron",
    "zone",
]
