"""The HTTP endpoints of a project (api steps, wistro.yml ``api:`` entries) as data, their
OpenAPI 3.1 document and a self-contained docs page rendered from it (no CDN, no framework)."""

from __future__ import annotations

import copy
import html
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal

from wistro.config import ApiEndpointConfig
from wistro.core.step import StepRecord
from wistro.errors import ConfigError, LockError
from wistro.project.lock import read_lock

if TYPE_CHECKING:
    from wistro.app import App

RESERVED_PREFIX = "/_wistro/"
RESERVED_PATHS = ("/openapi.json", "/docs")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ERROR_SCHEMA_NAME = "WistroError"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "trace_id": {"type": "string"},
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "message"],
                        "properties": {
                            "path": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}
ACCEPTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id"],
    "properties": {"trace_id": {"type": "string"}},
}
DUPLICATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["duplicate"],
    "properties": {"duplicate": {"const": True}},
}
# The error responses the HTTP trigger itself produces, by status.
ERROR_RESPONSES = {
    "400": "Malformed request: invalid JSON or UTF-8, a lone surrogate, JSON nested too deeply, "
    "or a Host that is not trusted (`bad_host`)",
    "401": "Authentication failed",
    "403": "Not allowed",
    "404": "No such endpoint",
    "408": "The request body (or headers) did not arrive in time",
    "413": "Request body too large",
    "415": "The body is not declared as JSON (`Content-Type: application/json`)",
    "422": "Validation failed: `error.fields` lists each field path and problem",
    "500": "The handler failed: look up `error.trace_id` with `wistro trace`",
    "503": "Too many connections, or no room for more work: try again",
    "504": "The handler timed out: look up `error.trace_id` with `wistro trace`",
}
DUPLICATE_DESCRIPTION = "Already received (a replayed or redelivered webhook): nothing was started"
_PARAM = re.compile(r"\{([^{}:]+)(?::([^{}]+))?\}")
_CONVERTOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "path": {"type": "string"},
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}


@dataclass(frozen=True, eq=False)
class EndpointSpec:
    """One HTTP endpoint: an api step, or a wistro.yml ``api:`` entry that only emits."""

    method: str
    path: str  # as declared, with ``{param}`` placeholders
    name: str  # the step's name, or "POST /webhooks/stripe" for a wistro.yml entry
    kind: Literal["step", "config"]
    description: str | None
    flows: tuple[str, ...]
    body_schema: dict[str, Any] | None
    query_schema: dict[str, Any] | None
    responses: dict[str, dict[str, Any] | None]
    auth: dict[str, Any] | None
    where: str  # for error messages: "src/x.step.py: step 'X'" or "wistro.yml: api.0"
    record: StepRecord | None = None
    entry: ApiEndpointConfig | None = None
    strict: bool = False  # no lax coercion of the body

    @property
    def topic(self) -> str:
        """The run's topic in traces: ``POST /orders/{order_id}``."""
        return f"{self.method} {self.path}"

    def path_params(self) -> list[tuple[str, str]]:
        """``(name, convertor)`` of each path parameter, in order."""
        return [(m.group(1), m.group(2) or "str") for m in _PARAM.finditer(self.path)]

    def openapi_path(self) -> str:
        return _PARAM.sub(lambda m: "{" + m.group(1) + "}", self.path)


def _config_where(app: App, i: int) -> str:
    name = app.project.config_file.name if app.project.config_file else "wistro.yml"
    return f"{name}: api.{i}"


def endpoint_specs(app: App) -> list[EndpointSpec]:
    """Every endpoint to serve: the active api steps and the wistro.yml ``api:`` entries, sorted
    by path then method. Raises ``ConfigError`` for a reserved path or two endpoints on one
    method and path."""
    specs: list[EndpointSpec] = []
    for r in app.registry:
        if r.type != "api" or not r.active:
            continue
        t = r.trigger
        specs.append(
            EndpointSpec(
                method=str(t.get("method") or "POST").upper(),
                path=str(t.get("path") or ""),
                name=r.name,
                kind="step",
                description=r.description,
                flows=r.flows,
                body_schema=t.get("body_schema"),
                query_schema=t.get("query_schema"),
                responses=dict(t.get("responses") or {}),
                auth=t.get("auth"),
                where=f"{r.rel_file}: step {r.name!r}",
                record=r,
                strict=bool(t.get("strict")),
            )
        )
    topics = app.registry.topics.topics
    for i, ep in enumerate(app.project.config.api):
        topic = topics.get(ep.emits)
        method = ep.method.upper()
        specs.append(
            EndpointSpec(
                method=method,
                path=ep.path,
                name=f"{method} {ep.path}",
                kind="config",
                description=ep.description or f"Emits `{ep.emits}`",
                flows=tuple(ep.flows),
                body_schema=topic.schema if topic else ep.body,
                query_schema=None,
                responses={"202": ACCEPTED_SCHEMA},
                auth=ep.auth,
                where=_config_where(app, i),
                entry=ep,
                strict=ep.strict,
            )
        )
    seen: dict[tuple[str, str], EndpointSpec] = {}
    for s in specs:
        _check_path(s)
        key = (s.method, s.openapi_path())
        if key in seen:
            raise ConfigError(
                f"{s.method} {s.path} is also served by {seen[key].where}",
                file=s.where,
                hint="give one of them another path or method, or deactivate one",
            )
        seen[key] = s
    return sorted(specs, key=lambda s: (s.openapi_path(), s.method))


def _check_path(s: EndpointSpec) -> None:
    if not s.path.startswith("/"):
        raise ConfigError(f"path {s.path!r} must start with '/'", file=s.where, field="path")
    if s.path.startswith(RESERVED_PREFIX) or s.path in RESERVED_PATHS:
        raise ConfigError(
            f"path {s.path!r} is reserved by wistro",
            file=s.where,
            field="path",
            hint=f"paths under {RESERVED_PREFIX} and {', '.join(RESERVED_PATHS)} are built in",
        )
    for name, conv in s.path_params():
        if conv not in _CONVERTOR_SCHEMAS:
            raise ConfigError(
                f"unknown path parameter type {conv!r} in {{{name}:{conv}}}",
                file=s.where,
                field="path",
                hint=f"use one of {', '.join(_CONVERTOR_SCHEMAS)}",
            )


# ---------------------------------------------------------------- schemas


class _Components:
    """Collects ``$defs`` of every schema into ``components/schemas``, renaming on clashes."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {ERROR_SCHEMA_NAME: copy.deepcopy(ERROR_SCHEMA)}

    def add(self, schema: dict[str, Any]) -> dict[str, Any]:
        schema = copy.deepcopy(schema)
        schema.pop("$schema", None)
        defs: dict[str, Any] = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}
        rename: dict[str, str] = {}
        for name in defs:
            rename[name] = name
        for name, definition in defs.items():
            target, n = name, 2
            candidate = _rewrite(definition, rename)
            while target in self.schemas and self.schemas[target] != candidate:
                target, n = f"{name}{n}", n + 1
            rename[name] = target
        for name, definition in defs.items():
            self.schemas[rename[name]] = _rewrite(definition, rename)
        return _rewrite(schema, rename)


def _rewrite(value: Any, rename: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str):
                for prefix in ("#/$defs/", "#/definitions/"):
                    if v.startswith(prefix):
                        name = v[len(prefix) :]
                        v = "#/components/schemas/" + rename.get(name, name)
                out[k] = v
            else:
                out[k] = _rewrite(v, rename)
        return out
    if isinstance(value, list):
        return [_rewrite(v, rename) for v in value]
    return value


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_response(status: str) -> dict[str, Any]:
    return {
        "description": ERROR_RESPONSES[status],
        "content": _json_content({"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}),
    }


def _operation_id(spec: EndpointSpec, used: set[str]) -> str:
    base = re.sub(r"[^0-9A-Za-z]+", "_", spec.name if spec.kind == "step" else spec.topic)
    base = base.strip("_").lower() or "endpoint"
    op_id, n = base, 2
    while op_id in used:
        op_id, n = f"{base}_{n}", n + 1
    used.add(op_id)
    return op_id


def _dedupes(auth: dict[str, Any]) -> bool:
    try:
        from wistro.triggers.auth import protects_replays

        return protects_replays(auth)
    except (ImportError, ConfigError):
        return False


def _security(auth: dict[str, Any], schemes: dict[str, Any]) -> list[dict[str, list[str]]]:
    """The operation's ``security``; adds its scheme to ``schemes``."""
    try:
        from wistro.triggers.auth import describe_security

        scheme, requirement = describe_security(auth)
    except (ImportError, ConfigError):  # served endpoints were checked: a generic scheme
        kind = re.sub(r"[^0-9A-Za-z]+", "_", str(auth.get("type", "auth")))
        header = str(auth.get("header", "Authorization"))
        scheme, requirement = {"type": "apiKey", "in": "header", "name": header}, {kind: []}
    for name in requirement:
        schemes[name] = scheme
    return [requirement]


def _operation(
    spec: EndpointSpec, components: _Components, schemes: dict[str, Any], used: set[str]
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": _operation_id(spec, used), "summary": spec.name}
    if spec.description:
        op["description"] = spec.description
    if spec.flows:
        op["tags"] = list(spec.flows)
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(_CONVERTOR_SCHEMAS.get(conv, {"type": "string"})),
        }
        for name, conv in spec.path_params()
    ]
    if spec.query_schema is not None:
        query = components.add(spec.query_schema)
        required = set(query.get("required") or ())
        for name, prop in (query.get("properties") or {}).items():
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": prop,
            }
            if isinstance(prop, dict) and prop.get("description"):
                param["description"] = prop["description"]
            params.append(param)
    if params:
        op["parameters"] = params
    if spec.body_schema is not None:
        op["requestBody"] = {
            "required": True,
            "content": _json_content(components.add(spec.body_schema)),
        }
    elif spec.method in BODY_METHODS:
        op["requestBody"] = {"required": False, "content": _json_content({})}
    responses: dict[str, Any] = {}
    for code, schema in sorted(spec.responses.items()):
        try:
            phrase = HTTPStatus(int(code)).phrase
        except ValueError:
            phrase = "Response"
        response: dict[str, Any] = {"description": phrase}
        if schema is not None:
            response["content"] = _json_content(components.add(schema))
        responses[str(code)] = response
    errors = ["400", "404", "408", "413", "415", "422", "500", "503"]
    if spec.kind == "step":
        errors.append("504")
    if spec.auth:
        errors += ["401", "403"]
        op["security"] = _security(spec.auth, schemes)
        if _dedupes(spec.auth) and "200" not in responses:
            responses["200"] = {
                "description": DUPLICATE_DESCRIPTION,
                "content": _json_content(DUPLICATE_SCHEMA),
            }
    for code in sorted(errors):
        responses.setdefault(code, _error_response(code))
    if not spec.responses:
        responses["default"] = {"description": "The handler's response"}
    op["responses"] = responses
    return op


def project_version(app: App) -> str:
    """The lock's version hash when there is a lock (loaded or on disk), else ``unlocked``."""
    lock = app.lock
    if lock is None:
        try:
            lock = read_lock(app.project.lock_path)
        except (LockError, OSError, ValueError):
            return "unlocked"
    return str(lock.get("version") or "unlocked")


def openapi_document(app: App) -> dict[str, Any]:
    """OpenAPI 3.1 of every endpoint the HTTP trigger serves. Deterministic: the same project
    gives the same document."""
    components = _Components()
    schemes: dict[str, Any] = {}
    used: set[str] = set()
    paths: dict[str, dict[str, Any]] = {}
    for spec in endpoint_specs(app):
        item = paths.setdefault(spec.openapi_path(), {})
        item[spec.method.lower()] = _operation(spec, components, schemes, used)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": app.project.name,
            "version": project_version(app),
            "description": f"HTTP endpoints of the Wistro project {app.project.name!r}.",
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(components.schemas.items()))},
    }
    flows = sorted(
        {flow for item in paths.values() for op in item.values() for flow in op.get("tags", ())}
    )
    if flows:
        meta = app.project.config.flows
        doc["tags"] = [
            {"name": f, **({"description": d} if (d := _flow_text(meta.get(f))) else {})}
            for f in flows
        ]
    if schemes:
        doc["components"]["securitySchemes"] = dict(sorted(schemes.items()))
    return doc


def _flow_text(meta: Any) -> str | None:
    if meta is None:
        return None
    parts = [p for p in (meta.name, meta.description) if p]
    return ": ".join(parts) or None


# ---------------------------------------------------------------- docs page

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem}.version{color:#777;font-size:.8rem;word-break:break-all}
details{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.4rem .8rem}
summary{cursor:pointer;font-weight:600}
.m{display:inline-block;min-width:4.5rem;font-family:monospace;border-radius:4px;padding:0 .3rem;
color:#fff;background:#555;text-align:center}.GET{background:#2b7bb9}.POST{background:#2f9e44}
.PUT,.PATCH{background:#d9822b}.DELETE{background:#c92a2a}
code,pre,textarea,input{font-family:ui-monospace,monospace;font-size:.85rem}
pre{background:#f6f8fa;padding:.5rem;overflow:auto}textarea{width:100%;min-height:5rem}
table{border-collapse:collapse}td{padding:.1rem .6rem .1rem 0;vertical-align:top}
.out{white-space:pre-wrap}
"""

_JS = """
document.querySelectorAll("form.try").forEach(function (f) {
  f.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var out = f.querySelector(".out"), init = {method: f.dataset.method, headers: {}};
    var body = f.querySelector("textarea");
    if (body && body.value.trim()) {
      init.body = body.value; init.headers["content-type"] = "application/json";
    }
    out.textContent = "…";
    try {
      var r = await fetch(f.querySelector("input").value, init);
      var text = await r.text();
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) {}
      out.textContent = r.status + " " + r.statusText + "\\ntrace: " +
        (r.headers.get("x-wistro-trace-id") || "-") + "\\n\\n" + text;
    } catch (e) { out.textContent = String(e); }
  });
});
"""


def _pre(value: Any) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=2, sort_keys=True))}</pre>"


def _resolve(schema: Any, doc: dict[str, Any]) -> Any:
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        name = schema["$ref"].rsplit("/", 1)[-1]
        return doc.get("components", {}).get("schemas", {}).get(name, schema)
    return schema


def docs_html(doc: dict[str, Any]) -> str:
    """The docs page: every operation of ``doc`` with its parameters, body and responses, and
    a small form to try it. Self-contained: inline CSS and JS, nothing fetched from elsewhere."""
    info = doc.get("info", {})
    title = html.escape(str(info.get("title", "API")))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{title} · API docs</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1><div class='version'>version {html.escape(str(info.get('version')))}"
        " · <a href='/openapi.json'>openapi.json</a></div>",
    ]
    n = 0
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            n += 1
            m = method.upper()
            parts.append(
                f"<details class='op' id='{html.escape(op.get('operationId', ''))}'><summary>"
                f"<span class='m {m}'>{m}</span> <code>{html.escape(path)}</code> "
                f"— {html.escape(op.get('summary', ''))}</summary>"
            )
            if op.get("description"):
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            if op.get("tags"):
                parts.append(f"<p>flows: {html.escape(', '.join(op['tags']))}</p>")
            params = op.get("parameters") or []
            if params:
                rows = "".join(
                    f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                    f"<td>{'required' if p.get('required') else 'optional'}</td>"
                    f"<td><code>{html.escape(json.dumps(p.get('schema', {})))}</code></td></tr>"
                    for p in params
                )
                parts.append(f"<h4>Parameters</h4><table>{rows}</table>")
            body = op.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                parts.append(
                    "<h4>Request body (application/json)</h4>" + _pre(_resolve(schema, doc))
                )
            responses = op.get("responses", {})
            rows = "".join(
                f"<tr><td><code>{html.escape(code)}</code></td>"
                f"<td>{html.escape(r.get('description', ''))}</td></tr>"
                for code, r in responses.items()
            )
            parts.append(f"<h4>Responses</h4><table>{rows}</table>")
            parts.append(
                f"<h4>Try it</h4><form class='try' data-method='{m}'>"
                f"<input size='60' value='{html.escape(path)}'> <button>Send</button>"
                + ("<textarea placeholder='JSON body'></textarea>" if body else "")
                + "<pre class='out'></pre></form></details>"
            )
    if not n:
        parts.append("<p>This project serves no endpoints.</p>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "".join(parts)
