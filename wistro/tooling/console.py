"""Terminal rendering: trace trees, tables and live log lines.

Everything printed here that comes from user data (messages, fields, payloads, errors, names) goes
through :func:`clean` first: control characters, ANSI escapes, line separators, bidi overrides and
lone surrogates are shown as escapes (``\\n``, ``\\x1b``, ``\\ud800``), so a value can neither forge a
line of output, recolor the terminal, nor fail to encode.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click

STATUS_COLORS = {
    "ok": "green",
    "error": "red",
    "timeout": "red",
    "invalid": "red",
    "running": "yellow",
    "dead": "red",
    "refused": "red",
}
LEVEL_COLORS = {"debug": "bright_black", "info": "cyan", "warning": "yellow", "error": "red"}

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 controls (newline, ESC, ...), DEL and C1 controls (CSI, NEL)
    "\u2028\u2029"  # line and paragraph separators
    "\u202a-\u202e\u2066-\u2069"  # bidirectional overrides and isolates
    "\ud800-\udfff]"  # lone surrogates: they cannot be encoded
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object) -> str:
    """``value`` as text that is safe to print on one terminal line."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


class Styled(str):
    """Text this module already escaped and styled: :func:`table` prints it as it is."""

    __slots__ = ()


def styled(text: object, **style: Any) -> Styled:
    """``click.style`` of the escaped ``text``, for a table cell."""
    return Styled(click.style(clean(text), **style))


def _ms(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "…"
    return f"{(end - start) * 1000:.1f} ms"


def _short(data_json: str | None, width: int = 80) -> str:
    text = clean(data_json or "")
    return text if len(text) <= width else text[: width - 1] + "…"


def status(text: str) -> Styled:
    return styled(text, fg=STATUS_COLORS.get(text, "white"), bold=text != "ok")


def _fields(fields_json: str | None) -> str:
    try:
        fields = json.loads(fields_json or "{}")
    except ValueError:
        return clean(fields_json)
    if not isinstance(fields, dict):
        return clean(fields)
    return " ".join(f"{clean(k)}={clean(v)}" for k, v in fields.items())


def trace_tree(trace: dict[str, Any], show_payloads: bool = True, show_ids: bool = False) -> str:
    """The causal tree of one run: event -> the steps it ran -> what they emitted, with logs,
    state operations and errors under the step that made them.

    Every span and event of the trace is in the tree, whatever started the run: an event with no
    parent span (an emit) and a span with no event (an api request, a cron job, a replay) are
    roots. Logs and state operations of no known span are listed under the header."""
    run = trace["run"]
    spans: list[dict[str, Any]] = list(trace.get("spans", []))
    events: list[dict[str, Any]] = list(trace.get("events", []))
    span_ids = {s["id"] for s in spans}
    event_ids = {e["id"] for e in events}
    spans_by_event: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        spans_by_event.setdefault(span["event_id"], []).append(span)
    events_by_span: dict[str | None, list[dict[str, Any]]] = {}
    for event in events:
        events_by_span.setdefault(event["parent_span_id"], []).append(event)
    logs_by_span: dict[str | None, list[dict[str, Any]]] = {}
    for log in trace.get("logs", []):
        span_id = log["span_id"] if log["span_id"] in span_ids else None
        logs_by_span.setdefault(span_id, []).append(log)
    ops_by_span: dict[str | None, list[dict[str, Any]]] = {}
    for op in trace.get("state_ops", []):
        span_id = op["span_id"] if op["span_id"] in span_ids else None
        ops_by_span.setdefault(span_id, []).append(op)

    lines = [
        f"{click.style('trace', bold=True)} {clean(run['trace_id'])}  {status(run['status'])}  "
        f"{clean(run['trigger'])} {clean(run['topic'])}  {_ms(run['start'], run['end'])}  "
        f"{run['n_events']} events, {run['n_errors']} errors"
    ]
    shown: set[str] = set()  # ids already in the tree: each record once, even in a cycle

    def ident(record_id: str) -> str:
        return click.style(f"  [{clean(record_id)}]", dim=True) if show_ids else ""

    def records_of(span_id: str | None, inner: str) -> None:
        for log in logs_by_span.get(span_id, []):
            level = clean(log["level"])
            lines.append(
                f"{inner}  {click.style(level, fg=LEVEL_COLORS.get(level))}"
                f" {clean(log['message'])} {_fields(log['fields_json'])}".rstrip()
            )
        for op in ops_by_span.get(span_id, []):
            key = f"{op['group']}/{op['key']}" if op["key"] is not None else op["group"]
            value = f" = {_short(op['value_json'], 60)}" if op["op"] in ("set", "update") else ""
            lines.append(
                f"{inner}  {click.style('state', fg='magenta')} {clean(op['op'])} "
                f"{clean(key)}{value}"
            )

    # a run whose spans ran in several processes (a shared bus): each span names its worker
    several_workers = len({sp.get("worker") for sp in spans if sp.get("worker")}) > 1

    def event_line(ev: dict[str, Any], prefix: str, last: bool) -> None:
        shown.add(ev["id"])
        branch = "└─ " if last else "├─ "
        payload = f" {_short(ev['data_json'])}" if show_payloads else ""
        topic = clean(ev["topic"])
        child_prefix = prefix + ("   " if last else "│  ")
        if ev.get("error"):
            lines.append(
                f"{prefix}{branch}{click.style('✗ ' + topic, fg='red')}{payload}{ident(ev['id'])}"
            )
            lines.append(
                f"{child_prefix}  {click.style('refused: ' + clean(ev['error']), fg='red')}"
            )
        else:
            lines.append(
                f"{prefix}{branch}{click.style('● ' + topic, fg='blue')}{payload}{ident(ev['id'])}"
            )
        children = [s for s in spans_by_event.get(ev["id"], []) if s["id"] not in shown]
        for i, span in enumerate(children):
            span_line(span, child_prefix, i == len(children) - 1)

    def span_line(span: dict[str, Any], prefix: str, last: bool) -> None:
        shown.add(span["id"])
        branch = "└─ " if last else "├─ "
        attempt = f" (attempt {span['attempt']})" if span["attempt"] > 1 else ""
        where = f" on {clean(span['worker'])}" if several_workers and span.get("worker") else ""
        lines.append(
            f"{prefix}{branch}{click.style('▶ ' + clean(span['step']), bold=True)} "
            f"{status(span['status'])} {_ms(span['start'], span['end'])}{attempt}{where}"
            f"{ident(span['id'])}"
        )
        inner = prefix + ("   " if last else "│  ")
        records_of(span["id"], inner)
        if span.get("error"):
            lines.append(f"{inner}  {click.style(clean(span['error']), fg='red')}")
        children = [e for e in events_by_span.get(span["id"], []) if e["id"] not in shown]
        for i, ev in enumerate(children):
            event_line(ev, inner, i == len(children) - 1)

    records_of(None, "")
    # roots: events no known span emitted and spans of no known event, in time order
    roots: list[tuple[float, bool, dict[str, Any]]] = [
        (ev["ts"] or 0.0, True, ev) for ev in events if ev["parent_span_id"] not in span_ids
    ] + [(sp["start"] or 0.0, False, sp) for sp in spans if sp["event_id"] not in event_ids]
    roots.sort(key=lambda root: root[0])
    for i, (_, is_event, record) in enumerate(roots):
        (event_line if is_event else span_line)(record, "", i == len(roots) - 1)
    # records that only reach each other (a cycle, in a damaged trace): shown all the same
    for ev in events:
        if ev["id"] not in shown:
            event_line(ev, "", True)
    for sp in spans:
        if sp["id"] not in shown:
            span_line(sp, "", True)
    if not events and not spans:
        lines.append(click.style("   (no events or spans recorded)", dim=True))
    for dead in trace.get("dead_letters", []):
        lines.append(
            click.style(
                f"dead letter {clean(dead['id'])}: {clean(dead['step'])} <- "
                f"{clean(dead['topic'])}: {clean(dead['error'])} "
                f"(replay with `wistro replay {clean(dead['id'])}`)",
                fg="red",
            )
        )
    return "\n".join(lines)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table. Cells are escaped (see :func:`clean`), except ``Styled`` ones."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [_width(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out += [
        "  ".join(v + " " * (w - _width(v)) for v, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    ]
    return "\n".join(out)


def _width(text: str) -> int:
    return len(click.unstyle(text))


def _cell(value: Any) -> str:
    if isinstance(value, Styled):
        return value
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(map(clean, value)) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return clean(value)


def log_line(log: dict[str, Any]) -> str:
    ts = time.strftime("%H:%M:%S", time.localtime(log["ts"]))
    level_name = clean(log["level"])
    level = click.style(f"{level_name:<7}", fg=LEVEL_COLORS.get(level_name, "white"))
    step = click.style(clean(log.get("step") or "-"), bold=True)
    trace = clean((log.get("trace_id") or "")[:8])
    message = clean(log["message"])
    return f"{ts} {level} {trace} {step} {message} {_fields(log.get('fields_json'))}".rstrip()


def lines(items: Iterable[str]) -> str:
    return "\n".join(items)
