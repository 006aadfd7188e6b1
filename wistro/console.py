"""Terminal rendering: trace trees, tables and live log lines."""

from __future__ import annotations

import json
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
}
LEVEL_COLORS = {"debug": "bright_black", "info": "cyan", "warning": "yellow", "error": "red"}


def _ms(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "…"
    return f"{(end - start) * 1000:.1f} ms"


def _short(data_json: str | None, width: int = 80) -> str:
    text = data_json or ""
    return text if len(text) <= width else text[: width - 1] + "…"


def status(text: str) -> str:
    return click.style(text, fg=STATUS_COLORS.get(text, "white"), bold=text != "ok")


def trace_tree(trace: dict[str, Any], show_payloads: bool = True) -> str:
    """The causal tree of one run: event -> the steps it ran -> what they emitted, with logs,
    state operations and errors under the step that made them."""
    run = trace["run"]
    spans_by_event: dict[str, list[dict[str, Any]]] = {}
    for span in trace["spans"]:
        spans_by_event.setdefault(span["event_id"], []).append(span)
    events_by_span: dict[str | None, list[dict[str, Any]]] = {}
    for event in trace["events"]:
        events_by_span.setdefault(event["parent_span_id"], []).append(event)
    logs_by_span: dict[str | None, list[dict[str, Any]]] = {}
    for log in trace["logs"]:
        logs_by_span.setdefault(log["span_id"], []).append(log)
    ops_by_span: dict[str | None, list[dict[str, Any]]] = {}
    for op in trace["state_ops"]:
        ops_by_span.setdefault(op["span_id"], []).append(op)

    lines = [
        f"{click.style('trace', bold=True)} {run['trace_id']}  {status(run['status'])}  "
        f"{run['trigger']} {run['topic']}  {_ms(run['start'], run['end'])}  "
        f"{run['n_events']} events, {run['n_errors']} errors"
    ]

    def event_line(ev: dict[str, Any], prefix: str, last: bool) -> None:
        branch = "└─ " if last else "├─ "
        payload = f" {_short(ev['data_json'])}" if show_payloads else ""
        if ev.get("error"):
            lines.append(f"{prefix}{branch}{click.style('✗ ' + ev['topic'], fg='red')}{payload}")
            lines.append(
                f"{prefix}{'   ' if last else '│  '}  "
                f"{click.style('refused: ' + ev['error'], fg='red')}"
            )
            return
        lines.append(f"{prefix}{branch}{click.style('● ' + ev['topic'], fg='blue')}{payload}")
        children = spans_by_event.get(ev["id"], [])
        child_prefix = prefix + ("   " if last else "│  ")
        for i, span in enumerate(children):
            span_line(span, child_prefix, i == len(children) - 1)

    def span_line(span: dict[str, Any], prefix: str, last: bool) -> None:
        branch = "└─ " if last else "├─ "
        attempt = f" (attempt {span['attempt']})" if span["attempt"] > 1 else ""
        lines.append(
            f"{prefix}{branch}{click.style('▶ ' + span['step'], bold=True)} "
            f"{status(span['status'])} {_ms(span['start'], span['end'])}{attempt}"
        )
        inner = prefix + ("   " if last else "│  ")
        for log in logs_by_span.get(span["id"], []):
            fields = json.loads(log["fields_json"] or "{}")
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            lines.append(
                f"{inner}  {click.style(log['level'], fg=LEVEL_COLORS.get(log['level']))}"
                f" {log['message']} {extra}".rstrip()
            )
        for op in ops_by_span.get(span["id"], []):
            key = f"{op['group']}/{op['key']}" if op["key"] is not None else op["group"]
            value = f" = {_short(op['value_json'], 60)}" if op["op"] == "set" else ""
            lines.append(f"{inner}  {click.style('state', fg='magenta')} {op['op']} {key}{value}")
        if span.get("error"):
            lines.append(f"{inner}  {click.style(span['error'], fg='red')}")
        children = events_by_span.get(span["id"], [])
        for i, ev in enumerate(children):
            event_line(ev, inner, i == len(children) - 1)

    roots = events_by_span.get(None, [])
    for i, ev in enumerate(roots):
        event_line(ev, "", i == len(roots) - 1)
    for dead in trace.get("dead_letters", []):
        lines.append(
            click.style(
                f"dead letter {dead['id']}: {dead['step']} <- {dead['topic']}: {dead['error']} "
                f"(replay with `wistro replay {dead['id']}`)",
                fg="red",
            )
        )
    return "\n".join(lines)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table."""
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
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return str(value)


def log_line(log: dict[str, Any]) -> str:
    ts = time.strftime("%H:%M:%S", time.localtime(log["ts"]))
    fields = json.loads(log.get("fields_json") or "{}")
    extra = " ".join(f"{k}={v}" for k, v in fields.items())
    level = click.style(f"{log['level']:<7}", fg=LEVEL_COLORS.get(log["level"], "white"))
    step = click.style(log.get("step") or "-", bold=True)
    trace = (log.get("trace_id") or "")[:8]
    return f"{ts} {level} {trace} {step} {log['message']} {extra}".rstrip()


def lines(items: Iterable[str]) -> str:
    return "\n".join(items)
