"""``wistro types`` for Go: structs for topic payloads, from their JSON Schemas.

``go_structs(app)`` returns the source of ``wistro_types.go``: a ``Topic<Name>`` constant per
topic, a struct (or type alias) per payload, and ``Emit<Name>(ctx, payload)`` helpers so a wrong
payload type does not compile. A copy is written into every folder that holds Go step files, in
the package of the steps there (``go_type_folders``); the Go runtime compiles each step with the
copy nearest to it, from its folder up to the project root (the package clause rewritten like a
step's), so steps use the types with no import, and ``go vet ./...`` and gopls see them in every
folder, with the ``go.mod`` / ``go.work`` that ``write_go_workspace`` writes at the project
root. The output is gofmt-formatted and ``go vet`` clean.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.typegen.goconfig import read_go_step_configs, topic_schemas
from wistro.typegen.schemas import resolve_local_ref, strip_docs

if TYPE_CHECKING:
    from wistro.app import App

FILE_NAME = "wistro_types.go"
SDK_DIR = Path(__file__).resolve().parent.parent / "sdk" / "go"  # = wistro.runtimes.golang's
SDK_MODULE = "wistro.dev/sdk"
PACKAGE = "wistrotypes"
_INITIALISMS = {
    "ACL", "API", "ASCII", "CPU", "CSS", "DNS", "EOF", "GUID", "HTML", "HTTP", "HTTPS", "ID",
    "IP", "JSON", "LHS", "QPS", "RAM", "RHS", "RPC", "SLA", "SMTP", "SQL", "SSH", "TCP", "TLS",
    "TTL", "UDP", "UI", "UID", "UUID", "URI", "URL", "UTF8", "VM", "XML", "XMPP", "XSRF", "XSS",
}  # fmt: skip
_GO_KEYWORDS = {
    "break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough",
    "for", "func", "go", "goto", "if", "import", "interface", "map", "package", "range",
    "return", "select", "struct", "switch", "type", "var",
}  # fmt: skip
_RESERVED = {"Context", "Emit"}


def go_name(text: str) -> str:
    """``order.placed`` -> ``OrderPlaced``; ``order_id`` -> ``OrderID``; ``2fa`` -> ``T2fa``."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", text) if p]
    words: list[str] = []
    for part in parts:  # split camelCase too: "orderId" -> order, Id
        words += re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+|[A-Z]+", part) or [part]
    out = "".join(w.upper() if w.upper() in _INITIALISMS else w[0].upper() + w[1:] for w in words)
    if not out:
        return "T"
    return f"T{out}" if out[0].isdigit() else out


def _comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}// {line}".rstrip() for line in text.strip().splitlines()]


def _align(rows: list[list[str]], indent: str = "\t") -> list[str]:
    """gofmt's alignment of consecutive lines: cells padded with spaces, the last one not."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            if i >= len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(cell))
    return [
        indent + " ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + " " + row[-1]
        if len(row) > 1
        else indent + row[0]
        for row in rows
    ]


class _Generator:
    def __init__(self) -> None:
        self.used = set(_RESERVED)
        self.blocks: list[str] = []
        self.uses_json = False
        self._by_schema: dict[str, str] = {}
        self._in_progress: dict[int, str] = {}

    def take(self, wanted: str) -> str:
        name, n = wanted, 2
        while name in self.used:
            name = f"{wanted}{n}"
            n += 1
        self.used.add(name)
        return name

    # ------------------------------------------------------------ schema -> Go type
    def type_of(self, schema: Any, root: dict[str, Any], hint: str) -> tuple[str, bool]:
        """The Go type and whether JSON ``null`` is allowed."""
        if schema is True or not isinstance(schema, dict) or not schema:
            return "any", True
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref, root, hint)
        if "const" in schema:
            return self._of_values([schema["const"]])
        if isinstance(schema.get("enum"), list):
            return self._of_values(schema["enum"])
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list):
                real = [s for s in options if not (isinstance(s, dict) and s.get("type") == "null")]
                nullable = len(real) < len(options)
                if len(real) == 1:
                    t, null = self.type_of(real[0], root, hint)
                    return t, nullable or null
                return "any", True
        all_of = schema.get("allOf")
        if isinstance(all_of, list):
            return self.type_of(all_of[0], root, hint) if len(all_of) == 1 else ("any", True)
        kind = schema.get("type")
        if isinstance(kind, list):
            real_kinds = [k for k in kind if k != "null"]
            if len(real_kinds) == 1:
                t, _ = self.type_of({**schema, "type": real_kinds[0]}, root, hint)
                return t, "null" in kind
            return "any", True
        scalar = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool"}
        if kind in scalar:
            return scalar[kind], False
        if kind == "null":
            return "any", True
        if kind == "array":
            items = schema.get("items")
            t, _ = self.type_of(items, root, f"{hint}Item") if items else ("any", True)
            return f"[]{t}", False
        if kind == "object" or "properties" in schema:
            if isinstance(schema.get("properties"), dict) and schema["properties"]:
                return self.struct(schema, root, hint), False
            extra = schema.get("additionalProperties")
            value = (
                self.type_of(extra, root, f"{hint}Value")[0] if isinstance(extra, dict) else "any"
            )
            return f"map[string]{value}", False
        return "any", True

    @staticmethod
    def _of_values(values: list[Any]) -> tuple[str, bool]:
        kinds = {type(v) for v in values if v is not None}
        nullable = any(v is None for v in values)
        if kinds == {str}:
            return "string", nullable
        if kinds == {bool}:
            return "bool", nullable
        if kinds == {int}:
            return "int64", nullable
        if kinds and kinds <= {int, float}:
            return "float64", nullable
        return "any", True

    def _ref(self, ref: str, root: dict[str, Any], hint: str) -> tuple[str, bool]:
        found = resolve_local_ref(ref, root)
        if found is None:
            return "any", True
        target, key = found
        name = go_name(key) if key is not None else hint
        if not isinstance(target, dict):
            return "any", True
        if id(target) in self._in_progress:  # recursive: a field holds it through a pointer
            return self._in_progress[id(target)], True
        return self.type_of(target, root, name)

    def struct(self, schema: dict[str, Any], root: dict[str, Any], hint: str) -> str:
        canonical = json.dumps(strip_docs(schema), sort_keys=True, default=str)
        if "$ref" in canonical:  # a ref's meaning depends on the root's definitions
            defs = {k: root.get(k) for k in ("$defs", "definitions")}
            canonical += json.dumps(strip_docs(defs), sort_keys=True, default=str)
        if canonical in self._by_schema:
            return self._by_schema[canonical]
        name = self.take(hint)
        self._in_progress[id(schema)] = name
        required = set(schema.get("required") or [])
        rows: list[list[str]] = []
        field_names: set[str] = set()
        for prop, sub in schema["properties"].items():
            field = go_name(str(prop))
            base, n = field, 2
            while field in field_names:
                field = f"{base}{n}"
                n += 1
            field_names.add(field)
            t, nullable = self.type_of(sub, root, f"{name}{go_name(str(prop))}")
            optional = prop not in required
            pointer = (
                (optional or nullable) and not t.startswith(("[]", "map[", "*")) and t != "any"
            )
            go_type = f"*{t}" if pointer else t
            tag = json.dumps(str(prop))[1:-1].replace("`", "")
            omit = ",omitempty" if optional else ""
            rows.append([field, go_type, f'`json:"{tag}{omit}"`'])
        del self._in_progress[id(schema)]
        self._by_schema.setdefault(canonical, name)
        lines = []
        doc = schema.get("description")
        if isinstance(doc, str) and doc.strip():
            lines += _comment(f"{name}: {doc.strip()}")
        lines.append(f"type {name} struct {{")
        lines += _align(rows)
        lines.append("}")
        self.blocks.append("\n".join(lines))
        return name


_Steps = list[tuple[str, list[str]]]  # Go steps: (name, the topics it declares it emits)


def go_schemas(app: App) -> dict[str, dict[str, Any] | None]:
    """The topics' payload schemas: the registry's, and for Go step files that did not load (a
    step that uses the generated types does not compile before they exist) those of their
    configs read by a static parse (``wistro.typegen.goconfig``)."""
    return _go_inputs(app)[0]


def _go_inputs(app: App) -> tuple[dict[str, dict[str, Any] | None], _Steps]:
    schemas = dict(app.registry.topics.schemas())
    steps: _Steps = [
        (r.name, sorted(r.emit_topics))
        for r in app.registry
        if r.language == "go" and r.type != "noop"
    ]
    loaded = {r.file.resolve() for r in app.registry}
    for file in app.project.step_files():
        if file.name.endswith(".step.go") and file.resolve() not in loaded:
            configs = read_go_step_configs(file)
            for topic, schema in topic_schemas(configs).items():
                if schemas.get(topic) is None:
                    schemas[topic] = schema
            for config in configs:
                emits = config.get("emits") if isinstance(config.get("emits"), list) else []
                topics = {e if isinstance(e, str) else e.get("topic") for e in emits or []}
                if config.get("type", "event") != "noop":
                    steps.append((config["name"], sorted(t for t in topics if isinstance(t, str))))
    return schemas, sorted(steps)


def go_structs(
    app: App, package: str = PACKAGE, schemas: dict[str, dict[str, Any] | None] | None = None
) -> str:
    """The source of ``wistro_types.go`` for the project's topics (``schemas``: topic ->
    payload schema, default ``go_schemas(app)``) and its Go steps."""
    found, steps = _go_inputs(app)
    return _go_source(found if schemas is None else schemas, package, steps)[0]


def go_topic_names(app: App) -> dict[str, str]:
    """The generated Go identifiers that stand for a topic: ``Topic<Name>`` constants and
    ``Emit<Name>`` helpers -> the topic."""
    schemas, _ = _go_inputs(app)
    return _go_source(schemas, PACKAGE)[1]


def _go_source(
    schemas: dict[str, dict[str, Any] | None], package: str, steps: _Steps | None = None
) -> tuple[str, dict[str, str]]:
    gen = _Generator()
    topics = sorted(schemas.items())
    consts: list[list[str]] = []
    helpers: list[str] = []
    names: dict[str, str] = {}
    by_topic: dict[str, tuple[str, str, str]] = {}  # topic -> constant, payload type, helper
    for topic, schema in topics:
        base = go_name(topic)
        const = gen.take(f"Topic{base}")
        names[const] = topic
        consts.append([const, f"= {json.dumps(topic)}"])
        if isinstance(schema, dict) and schema:
            before = len(gen.blocks)
            t, _ = gen.type_of(schema, schema, base)
            if t != base and (len(gen.blocks) == before or not t.isidentifier()):
                alias = gen.take(base)
                gen.blocks.append(
                    f"// {alias} is the payload of topic {json.dumps(topic)}.\ntype {alias} = {t}"
                )
                t = alias
        else:
            t = gen.take(base)
            gen.blocks.append(
                f"// {t} is the payload of topic {json.dumps(topic)} (no schema: any JSON).\n"
                f"type {t} = any"
            )
        emit = gen.take(f"Emit{base}")
        names[emit] = topic
        by_topic[topic] = (const, t, emit)
        helpers.append(
            f"// {emit} emits payload on topic {json.dumps(topic)}.\n"
            f"func {emit}(ctx *wistro.Context, payload {t}) error {{\n"
            f"\treturn ctx.Emit({const}, payload)\n}}"
        )
    seen: set[str] = set()
    for step, emits in steps or []:
        if step in seen:
            continue
        seen.add(step)
        cls = gen.take(f"{go_name(step)}Context")
        helpers.append(
            f"// {cls} is ctx as step {json.dumps(step)} emits: {cls}{{ctx}}.EmitX(payload), one\n"
            "// method per topic the step declares, so `go build` rejects any other.\n"
            f"type {cls} struct{{ ctx *wistro.Context }}"
        )
        for topic in emits:
            if topic in by_topic:
                const, t, emit = by_topic[topic]
                helpers.append(
                    f"// {emit} emits payload on topic {json.dumps(topic)}.\n"
                    f"func (c {cls}) {emit}(payload {t}) error {{\n"
                    f"\treturn c.ctx.Emit({const}, payload)\n}}"
                )
    out = [
        "// Code generated by `wistro types`; DO NOT EDIT.",
        "",
        f"// Package {package} holds the payload types of the project's topics.",
        f"package {package}",
        "",
    ]
    if helpers:
        out += ['import "wistro.dev/sdk/wistro"', ""]
    if consts:
        out += ["// Topic names.", "const ("]
        out += _align(consts)
        out += [")", ""]
    for block in gen.blocks:
        out += [block, ""]
    for helper in helpers:
        out += [helper, ""]
    return "\n".join(out).rstrip("\n") + "\n", names


def has_go_steps(app: App) -> bool:
    return any(p.name.endswith(".step.go") for p in app.project.step_files())


_PACKAGE_CLAUSE = re.compile(r"^package[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
GENERATED = "// Code generated by `wistro types`"
GO_WORK = "go.work"
GO_MOD = "go.mod"


def _package_of(file: Path) -> str | None:
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)  # a `package` in a block comment
    m = _PACKAGE_CLAUSE.search(text)
    return m.group(1) if m else None


def go_type_folders(app: App) -> dict[Path, str]:
    """Where ``wistro types`` writes ``wistro_types.go``: every folder that holds Go step files
    (a Go package each, for ``go vet ./...`` and gopls), with the package clause of the Go step
    files there (the most common one; ``wistrotypes`` when they all say ``main``). The Go
    runtime compiles each step with the copy nearest to it. Folder -> package."""
    packages: dict[Path, list[str]] = {}
    for file in app.project.step_files():
        if file.name.endswith(".step.go"):
            names = packages.setdefault(file.resolve().parent, [])
            package = _package_of(file)
            if package is not None and package != "main":
                names.append(package)
    return {
        folder: max(sorted(set(names)), key=names.count) if names else PACKAGE
        for folder, names in sorted(packages.items())
    }


def module_path(name: str) -> str:
    """A Go module path for a project name: ``My Shop`` -> ``my-shop``."""
    cleaned = re.sub(r"[^a-z0-9._~-]+", "-", name.lower()).strip("-.~_")
    return cleaned or "wistroproject"


def go_workspace_files(app: App, sdk: Path | None = None) -> dict[Path, str]:
    """What Go tooling (``go vet ./...``, gopls) needs at the project root: a ``go.mod`` (the
    project's module; written only when there is none, so it stays the user's and stable) and
    a generated ``go.work`` that uses the module and the Go SDK shipped inside the installed
    wistro package (a machine-specific path: keep ``go.work`` out of git). An existing
    ``go.work`` that ``wistro types`` did not write is left alone. Path -> text to write."""
    root = app.project.root.resolve()
    files: dict[Path, str] = {}
    mod = root / GO_MOD
    if not mod.exists():
        files[mod] = (
            f"module {module_path(app.project.name)}\n\ngo 1.21\n\nrequire {SDK_MODULE} v0.0.0\n"
        )
    work = root / GO_WORK
    sdk_path = (sdk or SDK_DIR).resolve().as_posix()
    if not re.fullmatch(r"[A-Za-z0-9_./+~-]+", sdk_path):
        sdk_path = json.dumps(sdk_path)
    text = (
        f"{GENERATED} for go vet and gopls; DO NOT EDIT.\n"
        "// It names the wistro Go SDK on this machine: keep it out of git.\n\n"
        f"go 1.21\n\nuse .\n\nuse {sdk_path}\n"
    )
    current = None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        current = work.read_text(encoding="utf-8")
    if current is None or (current.startswith(GENERATED) and current != text):
        files[work] = text
    return files


def write_go_workspace(app: App) -> list[Path]:
    """Write ``go_workspace_files(app)`` when the project has Go step files; the paths."""
    if not has_go_steps(app):
        return []
    files = go_workspace_files(app)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


def go_type_files(app: App, out_dir: str | Path | None = None) -> dict[Path, str]:
    """The ``wistro_types.go`` files of ``app``: one per folder of Go step files (see
    ``go_type_folders``), or one in ``out_dir`` (package ``wistrotypes``). Path -> text."""
    if out_dir is not None:
        return {Path(out_dir) / FILE_NAME: go_structs(app, PACKAGE)}
    texts: dict[str, str] = {}
    files = {}
    for folder, package in go_type_folders(app).items():
        if package not in texts:
            texts[package] = go_structs(app, package)
        files[folder / FILE_NAME] = texts[package]
    return files


def write_go_types(
    app: App, out_dir: str | Path | None = None, *, always: bool = False
) -> list[Path]:
    """Write ``go_type_files(app, out_dir)`` when the project has Go step files, even ones that
    do not compile yet (``always``, with ``out_dir``: in any case). Returns the paths written."""
    if not always and not has_go_steps(app):
        return []
    paths = []
    for path, text in go_type_files(app, out_dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
