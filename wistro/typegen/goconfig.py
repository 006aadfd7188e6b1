"""The config of a Go step read by a static parse of its source, without compiling it.

A Go step that uses the generated struct of its own topic (``var o StockReserved``) cannot
compile while ``wistro_types.go`` does not exist (a clean checkout) or is stale, so its config —
and the schemas in it — cannot come from the worker. ``wistro types`` then reads it here: the
first argument of ``wistro.Register(...)`` (or the variable it names), a composite literal made
of string, number, bool and nil literals, ``[]string{...}``, ``[]any{...}``, ``map[string]any{...}``,
``wistro.StepConfig{...}``, ``wistro.Emit{...}`` and ``json.RawMessage(`...`)``. Struct field
names become the JSON keys of the SDK (``TimeoutS`` -> ``timeout_s``). A value that is not a
literal (a function call, a variable, a Go struct as a schema) is left out: the topic's type is
then ``any`` until the step compiles and its real config is loaded.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:\\.|[^"\\\n])*")
  | (?P<raw>`[^`]*`)
  | (?P<rune>'(?:\\.|[^'\\\n])+')
  | (?P<number>(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\.\.\.|:=|.)
    """,
    re.VERBOSE | re.DOTALL,
)


class _Unknown:
    """A value the static parse cannot know (left out of the config)."""


UNKNOWN = _Unknown()


def tokens(source: str) -> list[tuple[str, Any, int]]:
    """``(kind, value, line)`` of the Go source's tokens, comments and spaces left out."""
    out: list[tuple[str, Any, int]] = []
    line = 1
    for m in _TOKEN.finditer(source):
        kind = m.lastgroup or "op"
        text = m.group()
        if kind == "string":
            try:
                out.append(("string", ast.literal_eval(text), line))
            except (ValueError, SyntaxError):
                out.append(("string", text[1:-1], line))
        elif kind == "raw":
            out.append(("string", text[1:-1].replace("\r", ""), line))
        elif kind == "number":
            clean = text.replace("_", "")
            value: Any = float(clean) if any(c in clean for c in ".eE") else int(clean)
            out.append(("number", value, line))
        elif kind not in ("space", "comment"):
            out.append((kind, text, line))
        line += text.count("\n")
    return out


def _snake(field: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", field).lower()


class _Parser:
    def __init__(self, toks: list[tuple[str, Any, int]]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, Any, int]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", None, 0)

    def take(self) -> tuple[str, Any, int]:
        tok = self.peek()
        self.i += 1
        return tok

    def is_op(self, text: str, k: int = 0) -> bool:
        kind, value, _ = self.peek(k)
        return kind == "op" and value == text

    def skip_type(self) -> str:
        """Skip a type expression before ``{``; returns its last name (``StepConfig``)."""
        last = ""
        while True:
            kind, value, _ = self.peek()
            if kind == "ident" and value == "interface" and self.is_op("{", 1):
                self.i += 2
                if self.is_op("}"):
                    self.i += 1
                last = "any"
            elif kind == "ident":
                self.i += 1
                last = value
            elif kind == "op" and value in ("[", "]", ".", "*", "&"):
                self.i += 1
            else:
                return last

    def value(self) -> Any:
        kind, value, _ = self.peek()
        if kind in ("string", "number"):
            self.i += 1
            return value
        if kind == "op" and value == "-" and self.peek(1)[0] == "number":
            self.i += 2
            return -self.toks[self.i - 1][1]
        if kind == "op" and value == "{":  # an element whose type is elided
            return self.composite("")
        if kind == "ident" and value in ("true", "false", "nil") and not self.is_op("{", 1):
            self.i += 1
            return {"true": True, "false": False, "nil": None}[value]
        if (
            kind == "ident"
            and value == "json"
            and self.is_op(".", 1)
            and self.peek(2)[1] == "RawMessage"
            and self.is_op("(", 3)
        ):
            self.i += 4
            inner = self.value()
            self.skip_to_close()
            if isinstance(inner, str):
                try:
                    return json.loads(inner)
                except ValueError:
                    return UNKNOWN
            return UNKNOWN
        if (kind == "ident" and value != "func") or (kind == "op" and value in "[&*"):
            start = self.i
            name = self.skip_type()
            if self.is_op("{"):
                return self.composite(name)
            self.i = start
        self.skip_expression()
        return UNKNOWN

    def composite(self, type_name: str) -> Any:
        self.take()  # {
        items: list[Any] = []
        keyed: dict[Any, Any] = {}
        while not self.is_op("}") and self.peek()[0] != "eof":
            kind, value, _ = self.peek()
            if kind in ("ident", "string", "number") and self.is_op(":", 1):
                self.i += 2
                keyed[value if kind != "ident" else ("field", value)] = self.value()
            else:
                items.append(self.value())
            if self.is_op(","):
                self.i += 1
            elif not self.is_op("}"):
                self.skip_expression()
                if self.is_op(","):
                    self.i += 1
        self.take()  # }
        if not keyed:
            return [v for v in items if v is not UNKNOWN]
        out: dict[str, Any] = {}
        for key, v in keyed.items():
            if v is UNKNOWN:
                continue
            if isinstance(key, tuple):
                out[_snake(key[1]) if type_name in ("StepConfig", "Emit") else key[1]] = v
            else:
                out[str(key)] = v
        return out

    def skip_expression(self) -> None:
        """Skip to the next ``,`` / closing bracket at this depth."""
        depth = 0
        while self.peek()[0] != "eof":
            kind, value, _ = self.peek()
            if kind == "op" and value in "([{":
                depth += 1
            elif kind == "op" and value in ")]}":
                if depth == 0:
                    return
                depth -= 1
            elif kind == "op" and value == "," and depth == 0:
                return
            self.i += 1

    def skip_to_close(self) -> None:
        self.skip_expression()
        if self.is_op(")"):
            self.i += 1


def _config_at(toks: list[tuple[str, Any, int]], i: int) -> dict[str, Any] | None:
    p = _Parser(toks)
    p.i = i
    kind, name, _ = p.peek()
    if kind == "ident" and (p.is_op(",", 1) or p.is_op(")", 1)):  # a variable: find its value
        for j in range(len(toks) - 2):
            assigned = toks[j + 1][:2] in (("op", "="), ("op", ":="))
            if toks[j][:2] == ("ident", name) and assigned and j + 2 != i:
                return _config_at(toks, j + 2)
        return None
    found = p.value()
    return found if isinstance(found, dict) else None


def go_step_configs(source: str) -> list[dict[str, Any]]:
    """The configs (JSON keys) of every ``wistro.Register(...)`` call in a Go step's source."""
    toks = tokens(source)
    out = []
    for i, (kind, value, _) in enumerate(toks[:-2]):
        if kind == "ident" and value == "Register" and toks[i + 1][:2] == ("op", "("):
            if i > 0 and toks[i - 1][:2] == ("ident", "func"):  # its declaration
                continue
            config = _config_at(toks, i + 2)
            if config is not None and isinstance(config.get("name"), str):
                out.append(config)
    return out


def read_go_step_configs(file: Path) -> list[dict[str, Any]]:
    try:
        return go_step_configs(file.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []


def topic_schemas(configs: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Topic -> payload schema declared by these configs (an event step's ``input`` types the
    topics it subscribes; an emit's ``schema`` its topic); a topic with no schema: None."""
    out: dict[str, dict[str, Any] | None] = {}
    for config in configs:
        subscribes = config.get("subscribes")
        schema = config.get("input")
        for topic in subscribes if isinstance(subscribes, list) else []:
            if isinstance(topic, str):
                typed = isinstance(schema, dict) and config.get("type", "event") == "event"
                if typed or topic not in out:
                    out[topic] = schema if typed else out.get(topic)
        emits = config.get("emits")
        for emit in emits if isinstance(emits, list) else []:
            topic = emit if isinstance(emit, str) else (emit or {}).get("topic")
            if not isinstance(topic, str):
                continue
            schema = emit.get("schema") if isinstance(emit, dict) else None
            if isinstance(schema, dict) or topic not in out:
                out[topic] = schema if isinstance(schema, dict) else out.get(topic)
    return out
