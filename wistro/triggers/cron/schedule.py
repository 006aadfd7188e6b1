"""Schedule maths: five-field cron expressions (croniter) read as wall-clock times in a job's
time zone, their validation (``validate_cron``, the texts and hints ``wistro check`` shows), the
fire times after an instant and the latest one before it (DST gaps and repeated hours resolved as
:mod:`wistro.triggers.cron` describes), and the missed-run policies (``MissedPolicy``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

MissedPolicy = Literal["skip", "run_once"]
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
