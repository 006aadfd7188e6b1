"""The parts of ``wistro check`` for JS/TS/Go steps and generated types.

``undeclared_emits(app)``: a static scan of each loaded JS, TS and Go step's source for emits of
topics the step does not declare — ``ctx.emit("topic", ...)`` / ``emit('topic', ...)`` (a string
or a template literal with no ``${}``) in JS/TS; ``ctx.Emit("topic", ...)`` (a string or raw
string literal), ``ctx.Emit(TopicX, ...)`` and the generated ``EmitX(ctx, ...)`` helpers in Go.
The line reported is the topic's (in a call over several lines, not the call's). Comments are
left out; a topic computed at run time is not seen (the engine refuses it then).
A file that registers several steps is checked against the topics all of them declare.

``stale_types(app)``: a warning per generated types file (``wistro types``) that exists but
differs from what ``wistro types`` would write now.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING

from wistro.diagnostics import Diagnostic, undeclared_emit

if TYPE_CHECKING:
    from wistro.app import App
    from wistro.core.step import StepRecord

_JS_NOISE = re.compile(
    r"""(?P<comment>//[^\n]*|/\*.*?\*/)|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|`(?:\\.|[^`\\])*`""",
    re.DOTALL,
)
_GO_NOISE = re.compile(
    r"""(?P<comment>//[^\n]*|/\*.*?\*/)|'(?:\\.|[^'\\\n])+'|"(?:\\.|[^"\\\n])*"|`[^`]*`""",
    re.DOTALL,
)
_JS_EMIT = re.compile(
    r"""(?<![\w$])emit\s*\(\s*(?P<q>['"`])(?P<topic>(?:\\.|(?!(?P=q))[^\\\n$])*)(?P=q)\s*[,)]"""
)
_GO_EMIT = re.compile(r"""\.Emit\s*\(\s*(?P<lit>"(?:\\.|[^"\\\n])*"|`[^`]*`|[A-Za-z_]\w*)\s*[,)]""")
_GO_HELPER = re.compile(r"""(?<![\w.])(?P<name>Emit\w+)\s*\(""")


def _blank_comments(source: str, noise: re.Pattern[str]) -> str:
    """The source with its comments turned into spaces (line breaks kept), strings untouched."""

    def blank(m: re.Match[str]) -> str:
        if m.group("comment") is None:
            return m.group()
        return re.sub(r"[^\n]", " ", m.group())

    return noise.sub(blank, source)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def js_emits(source: str) -> list[tuple[str, int]]:
    """``(topic, line)`` of each ``emit("literal", ...)`` call in JS/TS source."""
    text = _blank_comments(source, _JS_NOISE)
    out = []
    for m in _JS_EMIT.finditer(text):
        topic = m.group("topic")
        if m.group("q") != "`":
            try:
                topic = ast.literal_eval(m.group("q") + topic + m.group("q"))
            except (ValueError, SyntaxError):
                continue
        out.append((topic, _line(text, m.start("topic"))))
    return out


def go_emits(source: str, names: dict[str, str]) -> list[tuple[str, int]]:
    """``(topic, line)`` of each ``.Emit("literal" | TopicX, ...)`` and ``EmitX(...)`` call in
    Go source; ``names``: generated identifier -> topic (``wistro.typegen.go.go_topic_names``)."""
    text = _blank_comments(source, _GO_NOISE)
    out = []
    for m in _GO_EMIT.finditer(text):
        lit, line = m.group("lit"), _line(text, m.start("lit"))
        if lit.startswith("`"):
            out.append((lit[1:-1], line))
        elif lit.startswith('"'):
            try:
                out.append((ast.literal_eval(lit), line))
            except (ValueError, SyntaxError):
                continue
        elif lit in names:
            out.append((names[lit], line))
    for m in _GO_HELPER.finditer(text):
        if m.group("name") in names:
            out.append((names[m.group("name")], _line(text, m.start())))
    return sorted(out, key=lambda e: e[1])


def undeclared_emits(app: App) -> list[Diagnostic]:
    """``undeclared-emit`` errors for JS, TS and Go steps (Python: ``wistro.tooling.check``)."""
    by_file: dict[Path, list[StepRecord]] = {}
    for record in app.registry:
        if record.language in ("javascript", "typescript", "go") and record.type != "noop":
            by_file.setdefault(record.file, []).append(record)
    if not by_file:
        return []
    names: dict[str, str] | None = None
    out: list[Diagnostic] = []
    for file, records in sorted(by_file.items()):
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if records[0].language == "go":
            if names is None:
                from wistro.typegen.go import go_topic_names

                names = go_topic_names(app)
            found = go_emits(source, names)
        else:
            found = js_emits(source)
        declared = sorted({t for r in records for t in r.emit_topics})
        steps = " / ".join(repr(r.name) for r in records)
        for topic, line in found:
            if topic in declared:
                continue
            out.append(
                undeclared_emit(steps, records[0].name, topic, declared, records[0].rel_file, line)
            )
    return out


def stale_types(app: App) -> list[Diagnostic]:
    """A ``stale-types`` warning per generated file in the step folder that `wistro types`
    would now write differently (a file that does not exist is not reported)."""
    from wistro.typegen.python import stale_types as find_stale

    out = []
    for path, _ in find_stale(app, missing=False):
        try:
            rel = path.resolve().relative_to(app.project.root.resolve()).as_posix()
        except ValueError:
            rel = str(path)
        out.append(
            Diagnostic(
                "warning",
                "stale-types",
                f"{path.name} is stale: the step configs changed since `wistro types` wrote it",
                file=rel,
                hint="run `wistro types`",
            )
        )
    return out


def polyglot_diagnostics(app: App) -> list[Diagnostic]:
    """What ``wistro check`` adds to ``wistro.tooling.check.check``: JS/TS/Go undeclared emits
    and stale generated types."""
    return undeclared_emits(app) + stale_types(app)
