/**
 * Smoke test of the built bundle (../wistro_jupyter/static/widgets.js, from `npm run build`):
 * it is one self-contained ES module whose default export renders both kinds. Skipped when the
 * bundle has not been built yet.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { FakeModel } from "./fake-model";

const here = dirname(fileURLToPath(import.meta.url));
const bundle = resolve(here, "../../wistro_jupyter/static/widgets.js");
const built = existsSync(bundle);

describe.skipIf(!built)("built bundle", () => {
  it("is a single ES module with no imports and the Graphviz wasm inlined", () => {
    const text = readFileSync(bundle, "utf8");
    expect(text).not.toMatch(/\bimport\s*[\w{*]+[^;]*\bfrom\s*["']/);
    expect(text).not.toMatch(/https?:\/\/(cdn|unpkg|esm\.sh|jsdelivr)/);
    expect(text).toContain("asm"); // the wasm binary, embedded as a string
    expect(text).toMatch(/export\s*\{[^}]*\bas default\b/);
    expect(statSync(bundle).size).toBeLessThan(4 * 1024 * 1024);
  });

  it("renders both widget kinds through its default export", async () => {
    const mod = await import(/* @vite-ignore */ bundle);
    expect(typeof mod.default.render).toBe("function");
    // anywidget's current form: only a default export (a named `render` makes it warn)
    expect(mod.render).toBeUndefined();
    const el = document.createElement("div");
    const model = new FakeModel({
      kind: "trace_view",
      trace: { run: { trace_id: "t", status: "ok", start: 1, end: 2 },
        spans: [{ id: "a", step: "A", status: "ok", start: 1, end: 1.5 }] },
      filter_step: "", filter_status: "",
    });
    const cleanup = mod.default.render({ model, el });
    expect(el.querySelectorAll(".span-row[data-step='A']")).toHaveLength(1);
    cleanup();
    const el2 = document.createElement("div");
    const fg = new FakeModel({ kind: "flow_graph", graph: { nodes: [{ id: "x", kind: "step" }], edges: [] },
      flow: "", counts: {}, selected: "", details: {} });
    const cleanup2 = mod.default.render({ model: fg, el: el2 });
    expect(el2.querySelector(".wistro-flowgraph")).not.toBeNull();
    cleanup2();
  });
});
