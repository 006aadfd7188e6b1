/**
 * An emit form generated from a topic's JSON Schema: string, number, integer, boolean, enum,
 * object (nested fields) and array (JSON text) fields. `read()` checks required fields and
 * types in the browser and returns the payload or the errors per field; nothing is sent while
 * a field is wrong.
 */
import { el } from "./ui";

export type Schema = Record<string, any>;

export interface FormResult {
  value: unknown;
  errors: { path: string; message: string }[];
}

interface Field {
  /** The payload value, or an error message. */
  read(path: string, errors: FormResult["errors"]): unknown;
  /** Whether the user left it empty (an optional empty field is left out). */
  empty(): boolean;
  root: HTMLElement;
  mark(message: string | null): void;
}

/** `#/$defs/X` and `#/definitions/X` resolved against the root schema. */
function resolve(schema: Schema | undefined, root: Schema, depth = 0): Schema {
  let s: Schema = schema ?? {};
  while (typeof s.$ref === "string" && depth++ < 32) {
    const parts = s.$ref.replace(/^#\//, "").split("/");
    let target: any = root;
    for (const part of parts) target = target?.[decodeURIComponent(part)];
    if (!target || typeof target !== "object") break;
    const { $ref: _ignored, ...rest } = s;
    s = { ...target, ...rest };
  }
  // Optional[X] as pydantic writes it: anyOf [X, {type: null}]
  const alts = (s.anyOf ?? s.oneOf) as Schema[] | undefined;
  if (Array.isArray(alts)) {
    const real = alts.map((a) => resolve(a, root, depth)).filter((a) => a.type !== "null");
    if (real.length === 1) {
      const { anyOf: _a, oneOf: _o, ...rest } = s;
      return { ...real[0], ...rest, nullable: real.length < alts.length };
    }
  }
  if (Array.isArray(s.type)) {
    const types = (s.type as string[]).filter((t) => t !== "null");
    if (types.length === 1) return { ...s, type: types[0], nullable: types.length < s.type.length };
  }
  return s;
}

function kindOf(s: Schema): string {
  if (Array.isArray(s.enum)) return "enum";
  if ("const" in s) return "enum";
  if (typeof s.type === "string") return s.type;
  if (s.properties) return "object";
  if (s.items) return "array";
  return "json";
}

function typeError(kind: string, value: unknown): string | null {
  switch (kind) {
    case "string":
      return typeof value === "string" ? null : "must be a string";
    case "integer":
      return typeof value === "number" && Number.isInteger(value) ? null : "must be an integer";
    case "number":
      return typeof value === "number" && Number.isFinite(value) ? null : "must be a number";
    case "boolean":
      return typeof value === "boolean" ? null : "must be true or false";
    case "object":
      return value && typeof value === "object" && !Array.isArray(value) ? null : "must be an object";
    case "array":
      return Array.isArray(value) ? null : "must be an array";
    default:
      return null;
  }
}

/** Checks a JSON value (from a JSON text field) against a schema: types, required, enums. */
function checkValue(s: Schema, root: Schema, value: unknown, path: string, errors: FormResult["errors"]): void {
  const schema = resolve(s, root);
  if (value === null && schema.nullable) return;
  const kind = kindOf(schema);
  if (kind === "enum") {
    const options = Array.isArray(schema.enum) ? schema.enum : [schema.const];
    if (!options.some((o: unknown) => JSON.stringify(o) === JSON.stringify(value))) {
      errors.push({ path, message: `must be one of ${options.map((o: unknown) => JSON.stringify(o)).join(", ")}` });
    }
    return;
  }
  const err = typeError(kind, value);
  if (err) {
    errors.push({ path, message: err });
    return;
  }
  if (kind === "object") {
    const obj = value as Record<string, unknown>;
    for (const req of (schema.required ?? []) as string[]) {
      if (!(req in obj)) errors.push({ path: join(path, req), message: "is required" });
    }
    for (const [key, sub] of Object.entries((schema.properties ?? {}) as Record<string, Schema>)) {
      if (key in obj) checkValue(sub, root, obj[key], join(path, key), errors);
    }
  } else if (kind === "array" && schema.items) {
    (value as unknown[]).forEach((item, i) => checkValue(schema.items, root, item, `${path}[${i}]`, errors));
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function fieldRow(name: string, label: string, required: boolean, input: HTMLElement, help?: string): {
  row: HTMLElement;
  mark: (message: string | null) => void;
} {
  const error = el("div", { class: "wistro-wb-field-error" });
  const row = el(
    "div",
    { class: "wistro-wb-field", "data-field": name },
    el("label", { class: "wistro-wb-field-label" }, label, required ? el("span", { class: "wistro-wb-required", title: "required" }, " *") : null),
    input,
    help ? el("div", { class: "wistro-wb-help" }, help) : null,
    error,
  );
  return {
    row,
    mark: (message) => {
      error.textContent = message ?? "";
      row.classList.toggle("wistro-wb-invalid", !!message);
    },
  };
}

function buildField(name: string, s: Schema, root: Schema, required: boolean, path: string): Field {
  const schema = resolve(s, root);
  const kind = kindOf(schema);
  const label = String(schema.title ?? name);
  const help = typeof schema.description === "string" ? schema.description : undefined;
  const inputName = path || name;

  if (kind === "object" && schema.properties) {
    const req = new Set<string>((schema.required ?? []) as string[]);
    const children = Object.entries(schema.properties as Record<string, Schema>).map(([key, sub]) => ({
      key,
      field: buildField(key, sub, root, req.has(key), join(path, key)),
    }));
    const error = el("div", { class: "wistro-wb-field-error" });
    const box = el(
      "fieldset",
      { class: "wistro-wb-fieldset", "data-field": inputName },
      el("legend", null, label, required ? " *" : ""),
      ...children.map((c) => c.field.root),
      error,
    );
    return {
      root: box,
      empty: () => children.every((c) => c.field.empty()),
      mark: (m) => {
        error.textContent = m ?? "";
      },
      read: (p, errors) => {
        const out: Record<string, unknown> = {};
        for (const { key, field } of children) {
          const sub = join(p, key);
          if (field.empty()) {
            if (req.has(key)) errors.push({ path: sub, message: "is required" });
            continue;
          }
          const v = field.read(sub, errors);
          if (v !== undefined) out[key] = v;
        }
        return out;
      },
    };
  }

  if (kind === "boolean") {
    const input = el("input", { type: "checkbox", name: inputName }) as HTMLInputElement;
    if (schema.default === true) input.checked = true;
    const { row, mark } = fieldRow(inputName, label, false, input, help);
    return { root: row, empty: () => false, mark, read: () => input.checked };
  }

  if (kind === "enum") {
    const options: unknown[] = Array.isArray(schema.enum) ? schema.enum : [schema.const];
    const select = el(
      "select",
      { name: inputName },
      el("option", { value: "" }, required ? "— choose —" : "—"),
      ...options.map((o, i) => el("option", { value: String(i) }, typeof o === "string" ? o : JSON.stringify(o))),
    ) as HTMLSelectElement;
    if ("default" in schema) {
      const i = options.findIndex((o) => JSON.stringify(o) === JSON.stringify(schema.default));
      if (i >= 0) select.value = String(i);
    }
    const { row, mark } = fieldRow(inputName, label, required, select, help);
    return {
      root: row,
      empty: () => select.value === "",
      mark,
      read: () => options[Number(select.value)],
    };
  }

  if (kind === "string" || kind === "number" || kind === "integer") {
    const numeric = kind !== "string";
    const attrs: Record<string, string> = { name: inputName, type: numeric ? "number" : "text" };
    if (kind === "integer") attrs.step = "1";
    if (kind === "number") attrs.step = "any";
    if (schema.format === "date-time") attrs.placeholder = "2024-01-31T12:00:00Z";
    const input = el("input", attrs) as HTMLInputElement;
    if (schema.default !== undefined && schema.default !== null) input.value = String(schema.default);
    const { row, mark } = fieldRow(inputName, label, required, input, help);
    return {
      root: row,
      empty: () => input.value === "" && !(numeric && input.validity.badInput),
      mark,
      read: (p, errors) => {
        if (!numeric) {
          const v = input.value;
          if (typeof schema.minLength === "number" && v.length < schema.minLength) {
            errors.push({ path: p, message: `must have at least ${schema.minLength} character(s)` });
          }
          if (typeof schema.pattern === "string") {
            try {
              if (!new RegExp(schema.pattern, "u").test(v)) errors.push({ path: p, message: `must match ${schema.pattern}` });
            } catch {
              // a pattern the browser does not understand: the server checks it
            }
          }
          return v;
        }
        const text = input.value.trim();
        const n = Number(text);
        if (!text || !Number.isFinite(n)) {
          errors.push({ path: p, message: kind === "integer" ? "must be an integer" : "must be a number" });
          return undefined;
        }
        if (kind === "integer" && !Number.isInteger(n)) {
          errors.push({ path: p, message: "must be an integer" });
          return undefined;
        }
        if (typeof schema.minimum === "number" && n < schema.minimum) errors.push({ path: p, message: `must be ≥ ${schema.minimum}` });
        if (typeof schema.maximum === "number" && n > schema.maximum) errors.push({ path: p, message: `must be ≤ ${schema.maximum}` });
        return n;
      },
    };
  }

  // array, object without properties, anything else: JSON text checked against the schema
  const area = el("textarea", {
    name: inputName,
    rows: "2",
    placeholder: kind === "array" ? "[ ]  (JSON)" : kind === "object" ? "{ }  (JSON)" : "JSON",
    spellcheck: "false",
  }) as HTMLTextAreaElement;
  if (schema.default !== undefined) area.value = JSON.stringify(schema.default);
  const { row, mark } = fieldRow(inputName, label, required, area, help);
  return {
    root: row,
    empty: () => area.value.trim() === "",
    mark,
    read: (p, errors) => {
      let v: unknown;
      try {
        v = JSON.parse(area.value);
      } catch {
        errors.push({ path: p, message: "is not valid JSON" });
        return undefined;
      }
      checkValue(schema, root, v, p, errors);
      return v;
    },
  };
}

export class SchemaForm {
  readonly node: HTMLElement;
  private readonly top: Field;
  private readonly topPath: string;

  constructor(readonly schema: Schema | null | undefined) {
    const root = (schema && typeof schema === "object" ? schema : {}) as Schema;
    const resolved = resolve(root, root);
    const hasProps = kindOf(resolved) === "object" && resolved.properties && Object.keys(resolved.properties).length;
    // no properties (no schema, a free-form object, a scalar payload): one JSON field
    this.top = hasProps
      ? buildField("payload", resolved, root, true, "")
      : buildField("payload", { ...resolved, title: "payload (JSON)" }, root, true, "");
    this.topPath = hasProps ? "" : "payload";
    this.node = el("div", { class: "wistro-wb-form-fields" }, this.top.root);
  }

  /** The payload and the errors found (path -> message); marks the wrong fields. */
  read(): FormResult {
    const errors: FormResult["errors"] = [];
    let value: unknown;
    if (this.top.empty() && this.topPath) {
      errors.push({ path: this.topPath, message: "is required" });
    } else {
      value = this.top.read(this.topPath, errors);
    }
    this.node.querySelectorAll(".wistro-wb-invalid").forEach((n) => n.classList.remove("wistro-wb-invalid"));
    this.node.querySelectorAll(".wistro-wb-field-error").forEach((n) => (n.textContent = ""));
    for (const { path, message } of errors) {
      const target =
        this.node.querySelector<HTMLElement>(`[data-field="${CSS.escape(path)}"]`) ??
        this.node.querySelector<HTMLElement>(`[data-field="${CSS.escape(path.replace(/\[\d+\]$/, "").split("[")[0])}"]`);
      const slot = target?.querySelector(":scope > .wistro-wb-field-error");
      if (target && slot) {
        target.classList.add("wistro-wb-invalid");
        slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
      }
    }
    return { value, errors };
  }
}
