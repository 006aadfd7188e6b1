"""``cron_diagnostics``: what ``wistro check`` reports about cron steps and wistro.yml ``cron:``
entries whose expression or time zone does not parse, with the file and line of the key."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from wistro.core.step import StepRecord
from wistro.diagnostics import Diagnostic
from wistro.triggers.cron.jobs import _config_lines, _entry_line
from wistro.triggers.cron.schedule import EXPR_HINT, TZ_HINT, expr_error, tz_error

if TYPE_CHECKING:
    from wistro.app import App


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
