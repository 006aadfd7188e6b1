"""``wistro types``: typed Python stubs so a type checker rejects a wrong topic or payload.

``python_stubs(app)`` returns the source of ``wistro_types.py``: one ``TypedDict`` per topic
payload (from its JSON Schema), ``TopicName``, and per step a ``<Step>Context`` whose ``emit``
only accepts the topics the step declares, each with its payload type. At runtime the context
classes are plain subclasses of ``wistro.Context``, so annotating ``ctx`` with them is harmless.
"""

from __future__ import annotations

import builtins
import json
import keyword
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.typegen.schemas import pascal_case, resolve_local_ref, strip_docs

if TYPE_CHECKING:
    from wistro.app import App

MODULE_NAME = "wistro_types.py"
LINE_LENGTH = 88  # what ruff and black use by default

_RESERVED = {
    "TYPE_CHECKING",
    "Any",
    "Awaitable",
    "BaseModel",
    "Context",
    "Literal",
    "Never",
    "NotRequired",
    "TopicName",
    "TypeAlias",
    "TypedDict",
    "Union",
    "overload",
    "wistro",
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Marks a forward reference (a recursive model) while generating; quoted in the output. The
# module has no ``from __future__ import annotations`` so that ``NotRequired`` is visible to
# the runtime (``__required_keys__``): every other name is defined before it is used.
_FWD = "\x00"


class _Names:
    def __init__(self) -> None:
        self.used = set(_RESERVED)

    def take(self, wanted: str) -> str:
        name = wanted
        if keyword.iskeyword(name) or hasattr(builtins, name):
            name = f"{name}_"
        n = 2
        while name in self.used:
            name = f"{wanted}{n}"
            n += 1
        self.used.add(name)
        return name


class _Generator:
    def __init__(self) -> None:
        self.names = _Names()
        self.blocks: list[str] = []  # definitions, in dependency order
        self._by_schema: dict[str, str] = {}  # canonical schema json -> TypedDict name
        self._in_progress: dict[int, str] = {}

    # ------------------------------------------------------------ schema -> type expression
    def type_of(self, schema: Any, root: dict[str, Any], hint: str) -> str:
        if schema is True or not isinstance(schema, dict) or not schema:
            return "Any"
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref, root, hint)
        if "const" in schema:
            return _literal([schema["const"]]) or "Any"
        if "enum" in schema and isinstance(schema["enum"], list):
            return _literal(schema["enum"]) or "Any"
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                return _union(
                    [
                        self.type_of(s, root, f"{hint}Option{i + 1}")
                        for i, s in enumerate(schema[key])
                    ]
                )
        all_of = schema.get("allOf")
        if isinstance(all_of, list):
            return self.type_of(all_of[0], root, hint) if len(all_of) == 1 else "Any"
        kind = schema.get("type")
        if isinstance(kind, list):
            return _union([self.type_of({**schema, "type": k}, root, hint) for k in kind])
        if kind == "string":
            return "str"
        if kind == "integer":
            return "int"
        if kind == "number":
            return "float"
        if kind == "boolean":
            return "bool"
        if kind == "null":
            return "None"
        if kind == "array":
            items = schema.get("items")
            return f"list[{self.type_of(items, root, f'{hint}Item') if items else 'Any'}]"
        if kind == "object" or "properties" in schema:
            if isinstance(schema.get("properties"), dict) and schema["properties"]:
                return self.typed_dict(schema, root, hint)
            extra = schema.get("additionalProperties")
            value = self.type_of(extra, root, f"{hint}Value") if isinstance(extra, dict) else "Any"
            return f"dict[str, {value}]"
        return "Any"

    def _ref(self, ref: str, root: dict[str, Any], hint: str) -> str:
        found = resolve_local_ref(ref, root)
        if found is None:
            return "Any"
        target, key = found
        name = pascal_case(key) if key is not None else hint
        if not isinstance(target, dict):
            return "Any"
        if id(target) in self._in_progress:  # a recursive model: a forward reference
            return f"{_FWD}{self._in_progress[id(target)]}{_FWD}"
        return self.type_of(target, root, name)

    def typed_dict(self, schema: dict[str, Any], root: dict[str, Any], hint: str) -> str:
        canonical = json.dumps(strip_docs(schema), sort_keys=True, default=str)
        if canonical in self._by_schema and canonical_refs_local(schema):
            return self._by_schema[canonical]
        name = self.names.take(hint)
        self._in_progress[id(schema)] = name
        required = set(schema.get("required") or [])
        fields: list[tuple[str, str, bool]] = []
        for prop, sub in schema["properties"].items():
            t = self.type_of(sub, root, f"{name}{pascal_case(prop)}")
            fields.append((prop, t, prop in required))
        del self._in_progress[id(schema)]
        self._by_schema.setdefault(canonical, name)
        doc = schema.get("description")
        if all(_IDENT.match(p) and not keyword.iskeyword(p) for p, _, _ in fields):
            body = [f"class {name}(TypedDict):"]
            if isinstance(doc, str) and doc.strip():
                body.append(f"    {_docstring(doc)}")
                body.append("")
            body += [f"    {p}: {t if req else f'NotRequired[{t}]'}" for p, t, req in fields]
        else:  # keys that are not identifiers need the functional form
            items = "".join(
                f"\n        {json.dumps(p)}: {t if req else f'NotRequired[{t}]'},"
                for p, t, req in fields
            )
            body = [f'{name} = TypedDict(\n    "{name}",\n    {{{items}\n    }},\n)']
        self.blocks.append("\n".join(body))
        return name


def canonical_refs_local(schema: dict[str, Any]) -> bool:
    """Reuse a TypedDict for an identical schema only when it has no ``$ref`` (a ref's meaning
    depends on the root schema it comes from)."""
    return "$ref" not in json.dumps(schema, default=str)


def _literal(values: list[Any]) -> str | None:
    parts = []
    for v in values:
        if v is None or isinstance(v, bool | int | str):
            parts.append(json.dumps(v) if isinstance(v, str) else repr(v))
        else:
            return None
    return f"Literal[{', '.join(parts)}]" if parts else None


def _union(types: list[str]) -> str:
    unique: list[str] = []
    for t in types:
        if t == "Any":
            return "Any"
        if t not in unique:
            unique.append(t)
    if "None" in unique:  # `None` last reads best: `str | None`
        unique = [t for t in unique if t != "None"] + ["None"]
    if len(unique) > 1 and any(_FWD in t for t in unique):
        return f"Union[{', '.join(unique)}]"  # `"Node" | None` does not run; Union does
    return " | ".join(unique)


def _docstring(text: str) -> str:
    first = " ".join(text.split())
    return '"""' + first.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'


def _header(app: App, body: str) -> list[str]:
    typing_names = [
        n
        for n in (
            "TYPE_CHECKING",
            "Any",
            "Literal",
            "Never",
            "NotRequired",
            "TypeAlias",
            "TypedDict",
            "Union",
            "overload",
        )
        if re.search(rf"\b{n}\b", body)
    ]
    lines = [
        f"# Generated by `wistro types` for project {app.project.name!r}. Do not edit:",
        "# run `wistro types` again after changing a step's config.",
        '"""Typed topics and step contexts of this project, for editors and type checkers."""',
        "",
    ]
    if "Awaitable" in body:
        lines.append("from collections.abc import Awaitable")
    one = f"from typing import {', '.join(typing_names)}"
    if len(one) <= LINE_LENGTH:
        lines.append(one)
    else:
        lines += ["from typing import (", *(f"    {n}," for n in typing_names), ")"]
    lines += [
        "",
        *(["from pydantic import BaseModel"] if "BaseModel" in body else []),
        "from wistro import Context  # type: ignore[import-untyped, unused-ignore]",
    ]
    return lines


def python_stubs(app: App) -> str:
    """The source of ``wistro_types.py`` for ``app``."""
    gen = _Generator()
    catalog = app.registry.topics
    topic_names = sorted(catalog.topics)
    # Topic payload names are chosen first, so a topic always gets its own PascalCase name.
    wanted = {t: pascal_case(t) for t in topic_names}
    payload_type: dict[str, str] = {}
    aliases: list[str] = []
    reserved_topic_names = {
        t: gen.names.take(wanted[t])
        for t in topic_names
        if _object_schema(catalog.topics[t].schema)
    }
    for t in topic_names:
        schema = catalog.topics[t].schema
        if schema is None:
            payload_type[t] = "Any"
            continue
        if t in reserved_topic_names:
            name = reserved_topic_names[t]
            gen.names.used.discard(name)
            expr = gen.type_of(schema, schema, name)
            payload_type[t] = expr
            continue
        expr = gen.type_of(schema, schema, wanted[t])
        if expr == "Any":
            payload_type[t] = "Any"
            continue
        alias = gen.names.take(wanted[t])
        aliases.append(f"{alias}: TypeAlias = {expr}")
        payload_type[t] = alias

    lines: list[str] = []
    for block in gen.blocks:
        lines += ["", "", block]
    if aliases:
        lines += ["", "", *aliases]
    lines += ["", ""]
    if topic_names:
        lines.append("TopicName = Literal[")
        lines += [f"    {json.dumps(t)}," for t in topic_names]
        lines.append("]")
    else:
        lines.append("TopicName: TypeAlias = str  # the project has no topics yet")
    lines.append('"""Every topic of the project."""')

    topic_types = {t: payload_type[t] for t in topic_names}
    for record in sorted(app.registry, key=lambda r: r.name):
        if record.type == "noop":
            continue
        cls = gen.names.take(f"{pascal_case(record.name)}Context")
        lines += [
            "",
            "",
            *_context_class(
                cls, record.name, record.rel_file, sorted(record.emit_topics), topic_types
            ),
        ]
    lines += ["", "", *_FALLBACK]
    exported = sorted((gen.names.used - _RESERVED) | {"TopicName"})
    lines += ["", "", "__all__ = ["]
    lines += [f"    {json.dumps(n)}," for n in exported]
    lines.append("]")
    body = ("\n".join(lines) + "\n").replace(_FWD, '"')
    # isort style: two blank lines after the imports before a class, one before anything else
    if not body.lstrip("\n").startswith("class "):
        body = body.removeprefix("\n")
    return "\n".join(_header(app, body)) + "\n" + body


_FALLBACK = [
    "if not TYPE_CHECKING:",
    "",
    "    def __getattr__(name: str) -> Any:",
    "        # A step added since the last `wistro types` still loads (type checkers see the",
    "        # missing name): its context is a plain Context, its payload types are Any.",
    '        if name.endswith("Context"):',
    "            return Context",
    "        if name[:1].isupper():",
    "            return Any",
    '        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")',
]


def _object_schema(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and bool(schema.get("properties"))
        and (schema.get("type") in (None, "object"))
    )


def _context_class(
    cls: str, step: str, file: str, topics: list[str], types: dict[str, str]
) -> list[str]:
    out = [
        f"# {file}",
        f"class {cls}(Context):  # type: ignore[misc, unused-ignore]",
        f"    {_docstring(f'`ctx` of step {step!r}: `emit` accepts only its declared topics.')}",
        "",
        "    if TYPE_CHECKING:",
    ]

    ignore = "  # type: ignore[override, unused-ignore]"

    def signature(topic: str | None, comment: str = "") -> list[str]:
        if topic is None:
            params = ["self", "topic: Never", "data: Any = None"]
        else:
            t = types.get(topic, "Any")
            data = "data: Any = None" if t == "Any" else f"data: {t} | BaseModel"
            params = ["self", f"topic: Literal[{json.dumps(topic)}]", data]
        return _def("emit", params, "Awaitable[None]", comment)

    out.append("")
    if len(topics) <= 1:  # @overload needs two variants: a plain method says the same
        out += signature(topics[0] if topics else None, ignore)
        return out
    for i, topic in enumerate(topics):
        out.append("        @overload" + (ignore if i == 0 else ""))
        out += signature(topic)
    out += _def("emit", ["self", "topic: str", "data: Any = None"], "Awaitable[None]", "")
    return out


def _def(name: str, params: list[str], returns: str, comment: str) -> list[str]:
    """A method stub at class-body-in-``if`` depth, wrapped the way ``ruff format`` does."""
    indent = " " * 8
    one = f"{indent}def {name}({', '.join(params)}) -> {returns}: ...{comment}"
    if len(one) - len(comment) <= LINE_LENGTH:
        return [one]
    middle = f"{indent}    {', '.join(params)}"
    if len(middle) <= LINE_LENGTH:
        return [f"{indent}def {name}({comment}", middle, f"{indent}) -> {returns}: ..."]
    return [
        f"{indent}def {name}({comment}",
        *(f"{indent}    {p}," for p in params),
        f"{indent}) -> {returns}: ...",
    ]


def generated_files(app: App, out_dir: str | Path | None = None) -> dict[Path, str]:
    """What ``wistro types`` writes for ``app`` as it is loaded now: path -> text.
    ``wistro_types.py`` always, ``wistro-types.d.ts`` when the project has JS/TS steps and
    ``wistro_types.go`` when it has Go step files (by default one in each folder of Go step
    files, in the package of the steps beside it; with ``out_dir``, one there)."""
    from wistro.typegen.go import go_type_files, has_go_steps
    from wistro.typegen.typescript import DTS_NAME, typescript_types

    folder = Path(out_dir) if out_dir is not None else app.project.src
    files = {folder / MODULE_NAME: python_stubs(app)}
    if any(r.language in ("javascript", "typescript") for r in app.registry):
        files[folder / DTS_NAME] = typescript_types(app)
    if has_go_steps(app):
        files.update(go_type_files(app, out_dir))
    return files


def stale_types(
    app: App, out_dir: str | Path | None = None, *, missing: bool = True
) -> list[tuple[Path, str]]:
    """``(path, why)`` of each generated file that differs from what ``wistro types`` would
    write now (``missing``: and of each that does not exist)."""
    out = []
    for path, text in generated_files(app, out_dir).items():
        if not path.is_file():
            if missing:
                out.append((path, "missing"))
            continue
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != text:
            out.append((path, "stale"))
    return out


def write_types(app: App, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``wistro_types.py``, and ``wistro-types.d.ts`` / ``wistro_types.go`` when the project
    has JS/TS / Go steps (default: into the step folder); returns the paths.

    Step files that use the generated types cannot load before they exist (the first run, a
    clean checkout) or before they know them (a new step, a new field): Python ones fail to
    import ``wistro_types``, Go ones do not compile. The Go types of steps that do not load come
    from a static parse of their configs (``wistro.typegen.goconfig``), so a Go step's own
    structs are real from the first run. After writing into the step folder, a project with such
    steps is loaded again (``app.reload()``) and the files written once more, so they cover it.
    """
    from wistro.typegen.go import has_go_steps, write_go_workspace

    folder = Path(out_dir) if out_dir is not None else app.project.src
    folder.mkdir(parents=True, exist_ok=True)
    in_src = folder.resolve() == app.project.src.resolve()
    files: dict[Path, str] = {}
    for _ in range(3):
        files = generated_files(app, out_dir)
        changed = False
        for path, text in files.items():
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                changed = True
        if not (in_src and changed and _waits_for_types(app)):
            break
        app.reload()
    extra = write_go_workspace(app) if out_dir is None and has_go_steps(app) else []
    return list(files) + extra


def _waits_for_types(app: App) -> bool:
    """Whether some step file did not load in a way the generated types may fix."""
    return any(
        "wistro_types" in str(e) or str(e.file or "").endswith(".step.go") for e in app.errors
    )
