/**
 * A form generated from a topic's JSON Schema (string, number, integer, boolean, enum, nested
 * object, array; required fields; defaults), and `validateSchema`, the check run in the
 * browser before an event is sent. Local `$ref`s (`#/$defs/...`, pydantic's) and
 * `anyOf: [X, {type: null}]` (an Optional) are understood; anything else is treated loosely.
 */
import { h } from "./dom";

export type Schema = Record<string, any>;

/** `$ref` resolved against the root schema, an Optional's non-null branch picked. */
export function resolve(schema: Schema | null | undefined, root: Schema | null | undefined): Schema {
  let s: Schema = schema ?? {};
  for (let i = 0; i < 8 && typeof s.$ref === "string"; i++) {
    const ref = s.$ref as string;
    if (!ref.startsWith("#/")) break;
    let target: any = root;
    for (const part of ref.slice(2).split("/")) target = target?.[part];
    if (!target || typeof target !== "object") break;
    const { $ref: _drop, ...rest } = s;
    void _drop;
    s = { ...target, ...rest };
  }
  const alts = (s.anyOf ?? s.oneOf) as Schema[] | undefined;
  if (Array.isArray(alts) && !s.type) {
    const real = alts.filter((a) => a && a.type !== "null");
    if (real.length === 1) {
      const nullable = real.length < alts.length;
      return { ...resolve(real[0], root), ...(nullable ? { nullable: true } : {}), ...omit(s, "anyOf", "oneOf") };
    }
  }
  return s;
}

function omit(s: Schema, ...keys: string[]): Schema {
  const out: Schema = {};
  for (const [k, v] of Object.entries(s)) if (!keys.includes(k)) out[k] = v;
  return out;
}

function typeOf(s: Schema): string {
  if (Array.isArray(s.enum)) return "enum";
  const t = Array.isArray(s.type) ? s.type.find((x: string) => x !== "null") : s.type;
  if (typeof t === "string") return t;
  if (s.properties) return "object";
  if (s.items) return "array";
  return "any";
}

function label(path: string): string {
  return path || "payload";
}

/**
 * Errors of `value` against `schema`, one line each, naming the field (`amount_cents: required`,
 * `items[0].sku: must be a string`). Empty: valid.
 */
export function validateSchema(
  schemaIn: Schema | null | undefined,
  value: unknown,
  path = "",
  rootIn?: Schema | null,
): string[] {
  const root = rootIn ?? schemaIn ?? {};
  const s = resolve(schemaIn, root);
  const errors: string[] = [];
  const at = label(path);
  if (value === null && (s.nullable || s.type === "null" || (Array.isArray(s.type) && s.type.includes("null")))) {
    return errors;
  }
  if (value === undefined) return errors;
  const t = typeOf(s);
  if (t === "enum") {
    if (!s.enum.some((x: unknown) => JSON.stringify(x) === JSON.stringify(value))) {
      errors.push(`${at}: must be one of ${s.enum.map((x: unknown) => JSON.stringify(x)).join(", ")}`);
    }
    return errors;
  }
  switch (t) {
    case "string":
      if (typeof value !== "string") errors.push(`${at}: must be a string`);
      else {
        if (typeof s.minLength === "number" && value.length < s.minLength)
          errors.push(`${at}: at least ${s.minLength} characters`);
        if (typeof s.maxLength === "number" && value.length > s.maxLength)
          errors.push(`${at}: at most ${s.maxLength} characters`);
        if (typeof s.pattern === "string") {
          try {
            if (!new RegExp(s.pattern, "u").test(value)) errors.push(`${at}: must match ${s.pattern}`);
          } catch {
            /* a pattern JS cannot read: the kernel checks it */
          }
        }
      }
      break;
    case "integer":
    case "number":
      if (typeof value !== "number" || !Number.isFinite(value)) errors.push(`${at}: must be a number`);
      else if (t === "integer" && !Number.isInteger(value)) errors.push(`${at}: must be an integer`);
      else {
        if (typeof s.minimum === "number" && value < s.minimum) errors.push(`${at}: must be ≥ ${s.minimum}`);
        if (typeof s.maximum === "number" && value > s.maximum) errors.push(`${at}: must be ≤ ${s.maximum}`);
        if (typeof s.exclusiveMinimum === "number" && value <= s.exclusiveMinimum)
          errors.push(`${at}: must be > ${s.exclusiveMinimum}`);
        if (typeof s.exclusiveMaximum === "number" && value >= s.exclusiveMaximum)
          errors.push(`${at}: must be < ${s.exclusiveMaximum}`);
      }
      break;
    case "boolean":
      if (typeof value !== "boolean") errors.push(`${at}: must be true or false`);
      break;
    case "array":
      if (!Array.isArray(value)) errors.push(`${at}: must be a list`);
      else {
        if (typeof s.minItems === "number" && value.length < s.minItems)
          errors.push(`${at}: at least ${s.minItems} item${s.minItems === 1 ? "" : "s"}`);
        if (typeof s.maxItems === "number" && value.length > s.maxItems)
          errors.push(`${at}: at most ${s.maxItems} items`);
        value.forEach((v, i) => errors.push(...validateSchema(s.items, v, `${path}[${i}]`, root)));
      }
      break;
    case "object": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        errors.push(`${at}: must be an object`);
        break;
      }
      const obj = value as Record<string, unknown>;
      const props = (s.properties ?? {}) as Record<string, Schema>;
      for (const r of (s.required ?? []) as string[]) {
        if (obj[r] === undefined) errors.push(`${path ? `${path}.` : ""}${r}: required`);
      }
      for (const [k, v] of Object.entries(obj)) {
        const sub = path ? `${path}.${k}` : k;
        if (props[k]) errors.push(...validateSchema(props[k], v, sub, root));
        else if (s.additionalProperties === false) errors.push(`${sub}: not allowed`);
      }
      break;
    }
    default:
      break;
  }
  return errors;
}

/** The schema's default, else an empty value of its type (objects: their defaults filled). */
export function defaultValue(schemaIn: Schema | null | undefined, rootIn?: Schema | null): unknown {
  const root = rootIn ?? schemaIn ?? {};
  const s = resolve(schemaIn, root);
  if (s.default !== undefined) return s.default;
  if (typeOf(s) === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, p] of Object.entries((s.properties ?? {}) as Record<string, Schema>)) {
      const v = defaultValue(p, root);
      if (v !== undefined) out[k] = v;
    }
    return out;
  }
  return undefined;
}

// ------------------------------------------------------------------ the form

interface Editor {
  el: HTMLElement;
  /** The value entered; undefined: nothing entered (an optional field is left out). */
  read(): unknown;
}

let uid = 0;

function editorFor(schemaIn: Schema, value: unknown, path: string, root: Schema): Editor {
  const s = resolve(schemaIn, root);
  const t = typeOf(s);
  const name = path || "payload";
  if (t === "enum") {
    const select = h("select", { "data-field": name });
    select.append(h("option", { value: "" }, "—"));
    (s.enum as unknown[]).forEach((opt, i) =>
      select.append(h("option", { value: String(i) }, typeof opt === "string" ? opt : JSON.stringify(opt))),
    );
    const at = (s.enum as unknown[]).findIndex((x) => JSON.stringify(x) === JSON.stringify(value));
    select.value = at >= 0 ? String(at) : "";
    return { el: select, read: () => (select.value === "" ? undefined : s.enum[Number(select.value)]) };
  }
  if (t === "boolean") {
    const box = h("input", { type: "checkbox", "data-field": name });
    box.checked = value === true;
    return { el: box, read: () => box.checked };
  }
  if (t === "integer" || t === "number") {
    const input = h("input", {
      type: "number",
      "data-field": name,
      step: t === "integer" ? "1" : "any",
      min: typeof s.minimum === "number" ? s.minimum : null,
      max: typeof s.maximum === "number" ? s.maximum : null,
    });
    if (typeof value === "number") input.value = String(value);
    return {
      el: input,
      read: () => {
        const v = input.value.trim();
        return v === "" ? undefined : Number(v);
      },
    };
  }
  if (t === "string") {
    const input = h("input", { type: "text", "data-field": name, placeholder: s.format ?? s.pattern ?? null });
    if (typeof value === "string") input.value = value;
    return { el: input, read: () => (input.value === "" ? undefined : input.value) };
  }
  if (t === "object" && s.properties) {
    const box = h("div", { class: "wistro-form-object", "data-field": name });
    const required = new Set<string>((s.required ?? []) as string[]);
    const fields: [string, Editor][] = [];
    const obj = (value && typeof value === "object" ? value : {}) as Record<string, unknown>;
    for (const [k, p] of Object.entries(s.properties as Record<string, Schema>)) {
      const sub = path ? `${path}.${k}` : k;
      const ed = editorFor(p, obj[k], sub, root);
      const id = `wistro-f${++uid}`;
      ed.el.id = id;
      const ps = resolve(p, root);
      box.append(
        h(
          "div",
          { class: "wistro-form-row" },
          h("label", { for: id, title: ps.description ?? null }, k, required.has(k) ? h("span", { class: "wistro-req" }, " *") : null),
          ed.el,
        ),
      );
      fields.push([k, ed]);
    }
    return {
      el: box,
      read: () => {
        const out: Record<string, unknown> = {};
        for (const [k, ed] of fields) {
          const v = ed.read();
          if (v !== undefined) out[k] = v;
        }
        return out;
      },
    };
  }
  if (t === "array") {
    const box = h("div", { class: "wistro-form-array", "data-field": name });
    const list = h("div", { class: "wistro-form-items" });
    const items: Editor[] = [];
    const add = (v: unknown) => {
      const ed = editorFor(s.items ?? {}, v, `${path}[${items.length}]`, root);
      const rm = h("button", { type: "button", class: "wistro-form-remove", title: "Remove" }, "×");
      const row = h("div", { class: "wistro-form-item" }, ed.el, rm);
      items.push(ed);
      rm.addEventListener("click", () => {
        items.splice(items.indexOf(ed), 1);
        row.remove();
      });
      list.append(row);
    };
    for (const v of Array.isArray(value) ? value : []) add(v);
    const plus = h("button", { type: "button", class: "wistro-form-add" }, "+ item");
    plus.addEventListener("click", () => add(defaultValue(s.items ?? {}, root)));
    box.append(list, plus);
    return { el: box, read: () => items.map((ed) => ed.read()) };
  }
  // anything else: JSON text
  const area = h("textarea", { rows: 3, "data-field": name, class: "wistro-form-json" });
  area.value = value === undefined ? "" : JSON.stringify(value, null, 2);
  return {
    el: area,
    read: () => {
      const text = area.value.trim();
      if (!text) return undefined;
      try {
        return JSON.parse(text);
      } catch {
        return new InvalidJson(text);
      }
    },
  };
}

class InvalidJson {
  constructor(readonly text: string) {}
}

export interface SchemaForm {
  el: HTMLElement;
  /** The payload entered and its errors (validated against the schema). */
  read(): { value: unknown; errors: string[] };
}

/** A form for `schema` (null/empty: one JSON text field for the whole payload). */
export function buildSchemaForm(schema: Schema | null | undefined): SchemaForm {
  const root = schema ?? {};
  const ed = editorFor(root, defaultValue(root), "", root);
  const el = h("div", { class: "wistro-schema-form" }, ed.el);
  return {
    el,
    read: () => {
      const raw = ed.read();
      const bad: string[] = [];
      const value = stripInvalid(raw, "", bad);
      const top = value === undefined && typeOf(resolve(root, root)) === "object" ? {} : value;
      return { value: top, errors: [...bad, ...validateSchema(root, top)] };
    },
  };
}

function stripInvalid(v: unknown, path: string, bad: string[]): unknown {
  if (v instanceof InvalidJson) {
    bad.push(`${label(path)}: not valid JSON`);
    return undefined;
  }
  if (Array.isArray(v)) return v.map((x, i) => stripInvalid(x, `${path}[${i}]`, bad));
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = stripInvalid(x, path ? `${path}.${k}` : k, bad);
    return out;
  }
  return v;
}
