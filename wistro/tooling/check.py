"""``wistro check``: static validation of a loaded project, without running anything.

Errors: step files that do not load, topics whose declarations disagree on the payload type,
emits of undeclared topics found in Python step source. Warnings: flows nothing can start,
topics nobody receives or nobody produces, steps no trigger can ever reach.
"""

from __future__ import annotations

import ast
import contextlib
import re
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.config import read_raw
from wistro.core.step import StepRecord
from wistro.diagnostics import Diagnostic, Severity, undeclared_emit
from wistro.errors import WistroError
from wistro.triggers.cron import cron_diagnostics

if TYPE_CHECKING:
    from wistro.app import App

__all__ = ["Diagnostic", "Severity", "check", "check_exit_code"]  # Diagnostic: wistro.diagnostics


def check_exit_code(diags: list[Diagnostic], strict: bool = False) -> int:
    """1 when there are errors (or warnings under ``strict``), else 0."""
    if any(d.severity == "error" for d in diags):
        return 1
    if strict and diags:
        return 1
    return 0


def check(app: App) -> list[Diagnostic]:
    """Every problem ``wistro check`` reports for ``app``, errors first, then by file and line."""
    diags: list[Diagnostic] = []
    diags += _load_errors(app.errors)
    diags += _schema_conflicts(app)
    diags += _undeclared_emits(app)
    diags += cron_diagnostics(app)
    graph = _Graph(app)
    diags += graph.flows_without_trigger()
    diags += graph.no_subscriber()
    diags += graph.no_producer()
    diags += graph.unreachable()
    return sorted(diags, key=Diagnostic.sort_key)


# ---------------------------------------------------------------- errors


def _from_error(err: WistroError, code: str) -> Diagnostic:
    message = err.message
    if err.field:
        message = f"field {err.field!r}: {message}"
    return Diagnostic(
        "error",
        code,
        message,
        file=err.file,
        line=err.line,
        step=err.step,
        topic=err.topic,
        hint=err.hint,
    )


def _load_errors(errors: list[WistroError]) -> list[Diagnostic]:
    return [_from_error(err, "load") for err in errors]


def _schema_conflicts(app: App) -> list[Diagnostic]:
    out = []
    for err in app.registry.topics.conflicts:
        d = _from_error(err, "schema-conflict")
        d.message = f"topic {err.topic!r}: {d.message}"
        out.append(d)
    return out


_EMIT_LITERAL = re.compile(r"""\.emit\(\s*(?:topic\s*=\s*)?(['"])(.*?)\1""")


def _emit_calls(tree: ast.AST) -> list[tuple[str, int]]:
    """``(topic, line)`` of every ``<anything>.emit("literal", ...)`` call."""
    found = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "emit"
        ):
            continue
        arg: ast.expr | None = node.args[0] if node.args else None
        if arg is None:
            arg = next((k.value for k in node.keywords if k.arg == "topic"), None)
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.append((arg.value, node.lineno))
    return found


def _undeclared_emits(app: App) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for record in app.registry:
        if record.language != "python" or record.type == "noop":
            continue
        try:
            source = record.file.read_text(encoding="utf-8")
            # Cheap first pass: only a file that seems to emit an undeclared topic is parsed.
            if all(m.group(2) in record.emit_topics for m in _EMIT_LITERAL.finditer(source)):
                continue
            tree = ast.parse(source, str(record.file))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        declared = sorted(record.emit_topics)
        for topic, line in _emit_calls(tree):
            if topic in record.emit_topics:
                continue
            out.append(
                undeclared_emit(
                    repr(record.name), record.name, topic, declared, record.rel_file, line
                )
            )
    return out


# ---------------------------------------------------------------- the event graph


class _Graph:
    """Producers and subscribers of every topic, from the registry and wistro.yml."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.steps: list[StepRecord] = sorted(app.registry, key=lambda r: r.name)
        config = app.project.config
        self.config_file: str | None = None
        self.config_lines: dict[tuple[Any, ...], int] = {}
        cfg_path = app.project.config_file
        if cfg_path is not None:
            self.config_file = _rel(cfg_path, app.project.root)
            with contextlib.suppress(WistroError):  # it loaded once: lines are a bonus
                _, self.config_lines = read_raw(cfg_path)
        # topic -> names of producers / subscribers
        self.producers: dict[str, list[str]] = {}
        self.virtual_producers: dict[str, list[str]] = {}
        self.subscribers: dict[str, list[str]] = {}
        self.virtual_subscribers: dict[str, list[str]] = {}
        self.entry_topics: set[str] = set()  # fed by wistro.yml api / cron entries
        self.entries: list[tuple[str, str, tuple[str, ...], tuple[Any, ...]]] = []
        self.emitters: dict[str, list[StepRecord]] = {}
        self.virtual_emitters: dict[str, list[StepRecord]] = {}
        for r in self.steps:
            for e in r.emits:
                self.emitters.setdefault(e.topic, []).append(r)
            for e in r.virtual_emits:
                self.virtual_emitters.setdefault(e.topic, []).append(r)
            for t in r.subscribes:
                self.subscribers.setdefault(t, []).append(r.name)
            for t in r.virtual_subscribes:
                self.virtual_subscribers.setdefault(t, []).append(r.name)
            for e in r.emits:
                self.producers.setdefault(e.topic, []).append(r.name)
            for e in r.virtual_emits:
                self.virtual_producers.setdefault(e.topic, []).append(r.name)
        for i, ep in enumerate(config.api):
            label = f"{ep.method.upper()} {ep.path}"
            self.entries.append((label, ep.emits, tuple(ep.flows), ("api", i)))
        for name, job in sorted(config.cron.items()):
            self.entries.append((f"cron {name}", job.emits, tuple(job.flows), ("cron", name)))
        for label, topic, _, _ in self.entries:
            self.producers.setdefault(topic, []).append(label)
            self.entry_topics.add(topic)
        self.topics = sorted(
            set(self.producers)
            | set(self.virtual_producers)
            | set(self.subscribers)
            | set(self.virtual_subscribers)
        )

    def _entry_loc(self, key: tuple[Any, ...]) -> tuple[str | None, int | None]:
        return self.config_file, self.config_lines.get(key)

    def _step_loc(self, name: str) -> tuple[str | None, int | None]:
        r = self.app.registry.steps[name]
        return r.rel_file, r.line

    def _loc(self, producer: str) -> tuple[str | None, int | None]:
        if producer in self.app.registry.steps:
            return self._step_loc(producer)
        for label, _, _, key in self.entries:
            if label == producer:
                return self._entry_loc(key)
        return None, None

    # ------------------------------------------------------------ warnings
    def flows_without_trigger(self) -> list[Diagnostic]:
        out = []
        for flow, names in self.app.registry.flows().items():
            members = [self.app.registry.steps[n] for n in names]
            member_names = set(names)
            subscribed = {t for r in members for t in r.subscribes}
            if self._flow_has_trigger(flow, members, member_names, subscribed):
                continue
            emitted_inside = {e.topic for r in members for e in r.emits}
            entry_topics = sorted(subscribed - emitted_inside) or sorted(subscribed)
            entry_step = next(
                (r for r in members if set(r.subscribes) - emitted_inside), members[0]
            )
            how = f"`wistro emit {entry_topics[0]} ...`" if entry_topics else "`wistro emit`"
            out.append(
                Diagnostic(
                    "warning",
                    "flow-without-trigger",
                    f"flow {flow!r} has no trigger: no api or cron step, no wistro.yml "
                    "api/cron entry and no step outside the flow starts it",
                    file=entry_step.rel_file,
                    line=entry_step.line,
                    step=entry_step.name,
                    topic=entry_topics[0] if entry_topics else None,
                    flow=flow,
                    hint=f"add an api or cron step, or start it from outside with {how}",
                )
            )
        return out

    def _flow_has_trigger(
        self, flow: str, members: list[StepRecord], member_names: set[str], subscribed: set[str]
    ) -> bool:
        if any(r.type in ("api", "cron") for r in members):
            return True
        for _, topic, flows, _ in self.entries:
            if flow in flows or topic in subscribed:
                return True
        for topic in subscribed:  # a no-op, or a step outside the flow, feeds it
            if any(r.type == "noop" for r in self.virtual_emitters.get(topic, ())):
                return True
            if any(r.name not in member_names for r in self.emitters.get(topic, ())):
                return True
        return False

    def no_subscriber(self) -> list[Diagnostic]:
        out = []
        for topic in self.topics:
            if self.subscribers.get(topic) or self.virtual_subscribers.get(topic):
                continue
            producers = self.producers.get(topic) or self.virtual_producers.get(topic) or []
            if not producers:
                continue
            file, line = self._loc(producers[0])
            out.append(
                Diagnostic(
                    "warning",
                    "no-subscriber",
                    f"topic {topic!r} is emitted by {_names(producers)} but no step "
                    "subscribes to it",
                    file=file,
                    line=line,
                    step=producers[0] if producers[0] in self.app.registry else None,
                    topic=topic,
                    hint="add a step that subscribes to it, or remove the emit",
                )
            )
        return out

    def no_producer(self) -> list[Diagnostic]:
        out = []
        for topic in self.topics:
            subscribers = self.subscribers.get(topic)
            if not subscribers or self.producers.get(topic) or self.virtual_producers.get(topic):
                continue
            file, line = self._step_loc(subscribers[0])
            out.append(
                Diagnostic(
                    "warning",
                    "no-producer",
                    f"topic {topic!r} is subscribed by {_names(subscribers)} but no step, "
                    "endpoint or cron job emits it",
                    file=file,
                    line=line,
                    step=subscribers[0],
                    topic=topic,
                    hint=f"only an outside emit (`wistro emit {topic} ...` or app.emit from a "
                    "notebook) can start it",
                )
            )
        return out

    def reachable(self) -> set[str]:
        """Names of the steps some trigger can reach."""
        seen_steps: set[str] = set()
        seen_topics: set[str] = set()
        topics: deque[str] = deque()

        def reach_topic(topic: str) -> None:
            if topic not in seen_topics:
                seen_topics.add(topic)
                topics.append(topic)

        def reach_step(r: StepRecord) -> None:
            if r.name in seen_steps:
                return
            seen_steps.add(r.name)
            for e in (*r.emits, *r.virtual_emits):
                reach_topic(e.topic)

        for topic in sorted(self.entry_topics):
            reach_topic(topic)
        for topic in self.topics:
            if not self.producers.get(topic) and not self.virtual_producers.get(topic):
                reach_topic(topic)  # fed from outside: `wistro emit`, a notebook
        for r in self.steps:
            if r.type in ("api", "cron", "noop"):
                reach_step(r)
        steps = self.app.registry.steps
        while topics:
            topic = topics.popleft()
            for name in (
                *self.subscribers.get(topic, ()),
                *self.virtual_subscribers.get(topic, ()),
            ):
                reach_step(steps[name])
        return seen_steps

    def unreachable(self) -> list[Diagnostic]:
        reached = self.reachable()
        out = []
        for r in self.steps:
            if r.name in reached:
                continue
            out.append(
                Diagnostic(
                    "warning",
                    "unreachable",
                    f"step {r.name!r} can never run: no trigger reaches its topics "
                    f"({', '.join(r.subscribes) or 'none'})",
                    file=r.rel_file,
                    line=r.line,
                    step=r.name,
                    flow=r.flows[0] if r.flows else None,
                    hint="its topics are only emitted by steps that are themselves unreachable; "
                    "add a trigger (api/cron step or entry) that starts the cycle",
                )
            )
        return out


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
