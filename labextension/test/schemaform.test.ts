import { describe, expect, it } from "vitest";
import { buildSchemaForm, defaultValue, validateSchema } from "../src/schemaform";

const ORDER = {
  type: "object",
  properties: {
    order_id: { type: "string", minLength: 1 },
    amount_cents: { type: "integer", minimum: 0 },
    express: { type: "boolean", default: false },
    currency: { enum: ["EUR", "USD"], default: "EUR" },
    address: {
      type: "object",
      properties: { city: { type: "string" }, zip: { type: "string", pattern: "^[0-9]{5}$" } },
      required: ["city"],
    },
    items: { type: "array", items: { $ref: "#/$defs/Item" }, minItems: 1 },
    note: { anyOf: [{ type: "string" }, { type: "null" }], default: null },
  },
  required: ["order_id", "amount_cents", "items"],
  $defs: { Item: { type: "object", properties: { sku: { type: "string" }, qty: { type: "integer" } }, required: ["sku"] } },
};

const field = (el: Element, name: string) =>
  el.querySelector<HTMLInputElement | HTMLSelectElement>(`[data-field="${name}"]`)!;

describe("validateSchema", () => {
  it("names the field of each error", () => {
    expect(validateSchema(ORDER, { order_id: "A1", amount_cents: 5, items: [{ sku: "x" }] })).toEqual([]);
    expect(validateSchema(ORDER, { amount_cents: 1.5, items: [] })).toEqual([
      "order_id: required",
      "amount_cents: must be an integer",
      "items: at least 1 item",
    ]);
    expect(validateSchema(ORDER, { order_id: 3, amount_cents: -1, items: [{ qty: "2" }] })).toEqual([
      "order_id: must be a string",
      "amount_cents: must be ≥ 0",
      "items[0].sku: required",
      "items[0].qty: must be a number",
    ]);
    expect(validateSchema(ORDER, { order_id: "A", amount_cents: 1, items: [{ sku: "s" }], currency: "GBP", address: { zip: "1" } })).toEqual([
      'currency: must be one of "EUR", "USD"',
      "address.city: required",
      "address.zip: must match ^[0-9]{5}$",
    ]);
    expect(validateSchema(ORDER, { order_id: "A", amount_cents: 1, items: [{ sku: "s" }], note: null })).toEqual([]);
    expect(validateSchema({ type: "object", additionalProperties: false, properties: {} }, { x: 1 })).toEqual(["x: not allowed"]);
  });

  it("fills defaults", () => {
    expect(defaultValue(ORDER)).toEqual({ express: false, currency: "EUR", address: {}, note: null });
  });
});

describe("buildSchemaForm", () => {
  it("has a field per property, typed, required marked, defaults filled", () => {
    const form = buildSchemaForm(ORDER);
    expect(field(form.el, "order_id").getAttribute("type")).toBe("text");
    expect(field(form.el, "amount_cents").getAttribute("type")).toBe("number");
    expect(field(form.el, "amount_cents").getAttribute("step")).toBe("1");
    expect((field(form.el, "express") as HTMLInputElement).type).toBe("checkbox");
    expect(field(form.el, "currency").tagName).toBe("SELECT");
    expect(field(form.el, "address.city")).not.toBeNull();
    expect(form.el.querySelectorAll(".wistro-req")).toHaveLength(4); // 3 + address.city
    const { value, errors } = form.read();
    expect(value).toEqual({ express: false, currency: "EUR", address: {}, items: [] });
    expect(errors).toEqual(["order_id: required", "amount_cents: required", "address.city: required", "items: at least 1 item"]);
  });

  it("reads what was typed, arrays included, and validates it", () => {
    const form = buildSchemaForm(ORDER);
    (field(form.el, "order_id") as HTMLInputElement).value = "A7";
    (field(form.el, "amount_cents") as HTMLInputElement).value = "1200";
    (field(form.el, "address.city") as HTMLInputElement).value = "Lyon";
    form.el.querySelector<HTMLButtonElement>(".wistro-form-add")!.click();
    (field(form.el, "items[0].sku") as HTMLInputElement).value = "SKU-1";
    (field(form.el, "items[0].qty") as HTMLInputElement).value = "2";
    const { value, errors } = form.read();
    expect(errors).toEqual([]);
    expect(value).toEqual({
      order_id: "A7", amount_cents: 1200, express: false, currency: "EUR",
      address: { city: "Lyon" }, items: [{ sku: "SKU-1", qty: 2 }],
    });
    (field(form.el, "amount_cents") as HTMLInputElement).value = "12.5";
    expect(form.read().errors).toEqual(["amount_cents: must be an integer"]);
  });

  it("without a schema: one JSON field", () => {
    const form = buildSchemaForm(null);
    const area = form.el.querySelector("textarea")!;
    area.value = '{"a": 1}';
    expect(form.read()).toEqual({ value: { a: 1 }, errors: [] });
    area.value = "{nope";
    expect(form.read().errors).toEqual(["payload: not valid JSON"]);
  });
});
