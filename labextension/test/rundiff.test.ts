import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import widget from "../src/index";
import { orderRows, renderRunDiff, type RdComparison, type RdDiff } from "../src/rundiff";
import { FakeModel } from "./fake-model";

function comparison(): RdComparison {
  return {
    a: { label: "before", eval_id: "e1", version: "aaa" },
    b: { label: "after", eval_id: "e2", version: "bbb" },
    scorers: ["payload_equals"],
    summary: [
      { scorer: "payload_equals", mean_a: 1, mean_b: 0.5, diff: -0.5, ci_low: -0.8, ci_high: -0.2,
        p_value: 0.03, verdict: "regressed" },
    ],
    counts: { unchanged: 1, regressed: 2, improved: 1 },
    warnings: ["scorers not in both evals are left out: x"],
    n_rows: 4,
    steps: [{ step: "Price", change: "modified", file: "src/price.step.py", n_regressions: 2, n_first_divergent: 2 }],
    // deliberately not in display order: the widget puts regressions first
    rows: [
      { sample_id: "s-ok", status: "unchanged", first_divergent_step: null,
        scores: { payload_equals: { a: 1, b: 1 } } },
      { sample_id: "s-up", status: "improved", first_divergent_step: "Notify",
        scores: { payload_equals: { a: 0, b: 1 } } },
      { sample_id: "s-r1", status: "regressed", first_divergent_step: "Price",
        scores: { payload_equals: { a: 1, b: 0 } } },
      { sample_id: "s-r2", status: "regressed", first_divergent_step: "Price",
        scores: { payload_equals: { a: 1, b: 0 } } },
    ],
  };
}

function diffOf(id: string): RdDiff {
  return {
    sample_id: id,
    status: "regressed",
    first_divergent_step: "Price",
    worse: ["payload_equals"],
    a: { label: "before" },
    b: { label: "after" },
    steps: [
      { step: "Validate", differs: false, source_changed: null,
        a: { status: ["ok"], emits: [{ topic: "order.validated", data: { amount: 100 } }] },
        b: { status: ["ok"], emits: [{ topic: "order.validated", data: { amount: 100 } }] } },
      { step: "Price", differs: true, source_changed: "modified",
        a: { status: ["ok"], emits: [{ topic: "order.priced", data: { total: 120 } }] },
        b: { status: ["ok"], emits: [{ topic: "order.priced", data: { total: 125 } }] } },
      { step: "Audit", differs: true, source_changed: "added", a: null,
        b: { status: ["ok"], emits: [] } },
    ],
    payload_diff: [
      { step: "Price", topic: "order.priced", path: "$.total", change: "changed", a: 120, b: 125 },
    ],
    state_diff: [{ path: "$.orders.A1.total", change: "changed", a: 120, b: 125 }],
    code_diff: [
      { step: "Price", change: "modified", file: "src/price.step.py", available: true, in_run: true,
        diff: "--- a/src/price.step.py (before)\n+++ b/src/price.step.py (after)\n@@ -1,3 +1,3 @@\n config = {}\n-TAX = 0.2\n+TAX = 0.25\n" },
      { step: "Old", change: "modified", file: "src/old.step.py", available: false, in_run: false,
        diff: "", note: "the source of Old (src/old.step.py) as before ran it is no longer available" },
    ],
  };
}

const cleanups: (() => void)[] = [];

function setup(extra: Record<string, unknown> = {}) {
  const model = new FakeModel({ kind: "run_diff", comparison: comparison(), selected: "", diff: {}, ...extra });
  const el = document.createElement("div");
  document.body.appendChild(el);
  const cleanup = renderRunDiff(model, el);
  cleanups.push(cleanup);
  return { model, el, cleanup };
}

const rowEls = (el: Element) => [...el.querySelectorAll<HTMLTableRowElement>("tr.rd-row")];

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  document.body.innerHTML = "";
});

describe("RunDiff", () => {
  it("renders the rows with status badges, regressions first", () => {
    const { el } = setup();
    const rows = rowEls(el);
    expect(rows.map((r) => r.dataset.sample)).toEqual(["s-r1", "s-r2", "s-up", "s-ok"]);
    expect(rows[0].querySelector(".wistro-status")!.classList.contains("status-regressed")).toBe(true);
    expect(rows[0].querySelector(".rd-first-step")!.textContent).toBe("Price");
    expect(rows[0].textContent).toContain("1 → 0");
    expect(rows[3].querySelector(".wistro-status")!.textContent).toBe("unchanged");
    expect(el.querySelector(".rd-head")!.textContent).toContain("before → after");
    expect(el.querySelector(".rd-warn")!.textContent).toContain("left out");
    expect(el.querySelector(".rd-summary-table")!.textContent).toContain("regressed");
    expect(el.querySelector(".rd-changed")!.textContent).toContain("Price (modified; 2 first divergent");
    expect(el.querySelector(".rd-detail")!.textContent).toContain("Select a sample");
  });

  it("orders rows by status, stable within a status", () => {
    const rows = orderRows([
      { sample_id: "1", status: "only_b" },
      { sample_id: "2", status: "new_error" },
      { sample_id: "3", status: "regressed" },
      { sample_id: "4", status: "fixed_error" },
      { sample_id: "5", status: "regressed" },
    ]);
    expect(rows.map((r) => r.sample_id)).toEqual(["3", "5", "2", "4", "1"]);
  });

  it("clicking a row sets `selected` and marks it", () => {
    const { el, model } = setup();
    rowEls(el)[1].querySelector("code")!.click();
    expect(model.get("selected")).toBe("s-r2");
    expect(model.saves).toBe(1);
    expect(rowEls(el)[1].classList.contains("selected")).toBe(true);
    expect(rowEls(el)[0].classList.contains("selected")).toBe(false);
    expect(el.querySelector(".rd-detail")!.textContent).toContain("Loading");
    model.pythonSets("selected", "s-ok");
    expect(rowEls(el)[3].classList.contains("selected")).toBe(true);
  });

  it("shows the selected sample's steps side by side, JSON diff and code diff", () => {
    const { el, model } = setup({ selected: "s-r1" });
    model.pythonSets("diff", diffOf("s-r1"));
    const detail = el.querySelector(".rd-detail")!;
    expect(detail.querySelector(".rd-first-divergent")!.textContent).toBe("Price");
    const steps = [...detail.querySelectorAll<HTMLTableRowElement>("tr.rd-step")];
    expect(steps.map((s) => s.dataset.step)).toEqual(["Validate", "Price", "Audit"]);
    expect(steps[0].classList.contains("differs")).toBe(false);
    expect(steps[1].classList.contains("differs")).toBe(true);
    expect(steps[1].classList.contains("first-divergent")).toBe(true);
    const cells = steps[1].querySelectorAll("td");
    expect(cells[2].textContent).toContain('{"total":120}');
    expect(cells[4].textContent).toContain('{"total":125}');
    expect(steps[2].querySelectorAll("td")[2].textContent).toContain("did not run");

    const json = detail.querySelector(".rd-json")!;
    const jrow = json.querySelector("tr.rd-json-row")!;
    expect(jrow.classList.contains("rd-change-changed")).toBe(true);
    expect(jrow.textContent).toContain("$.total");
    expect(detail.querySelector(".rd-state")!.textContent).toContain("$.orders.A1.total");

    const code = detail.querySelector<HTMLElement>(".rd-code-step[data-step='Price']")!;
    const lines = [...code.querySelectorAll<HTMLElement>(".rd-line")];
    expect(lines.filter((l) => l.classList.contains("del")).map((l) => l.textContent)).toEqual(["-TAX = 0.2"]);
    expect(lines.filter((l) => l.classList.contains("add")).map((l) => l.textContent)).toEqual(["+TAX = 0.25"]);
    expect(lines.some((l) => l.classList.contains("hunk"))).toBe(true);
    const old = detail.querySelector<HTMLElement>(".rd-code-step[data-step='Old']")!;
    expect(old.querySelector(".rd-note")!.textContent).toContain("no longer available");
    expect(old.querySelector("pre")).toBeNull();
    expect(old.textContent).toContain("not in this sample's runs");
  });

  it("shows an error diff, re-renders on a new comparison and cleans up", () => {
    const { el, model, cleanup } = setup();
    model.pythonSets("diff", { sample_id: "zz", error: "no sample 'zz' in this comparison" });
    expect(el.querySelector(".rd-detail .rd-note")!.textContent).toContain("no sample");
    const c = comparison();
    c.rows = c.rows!.slice(0, 1);
    model.pythonSets("comparison", c);
    expect(rowEls(el)).toHaveLength(1);
    model.pythonSets("comparison", { rows: [] });
    expect(el.querySelector(".rd-empty")!.textContent).toBe("No samples");
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(el.querySelector(".wistro-rundiff")).toBeNull();
  });
});

describe("RunDiff through the bundles", () => {
  it("the default export of the widget module dispatches kind run_diff", () => {
    const el = document.createElement("div");
    const model = new FakeModel({ kind: "run_diff", comparison: comparison(), selected: "", diff: {} });
    const cleanup = widget.render({ model, el });
    expect(el.querySelectorAll("tr.rd-row")).toHaveLength(4);
    cleanup();
    expect(model.listenerCount()).toBe(0);
  });

  const built = resolve(dirname(fileURLToPath(import.meta.url)), "../../wistro_jupyter/static/widgets.js");
  it.skipIf(!existsSync(built))("the built widgets.js renders kind run_diff", async () => {
    const mod = await import(/* @vite-ignore */ built);
    const el = document.createElement("div");
    const model = new FakeModel({ kind: "run_diff", comparison: comparison(), selected: "s-r1", diff: diffOf("s-r1") });
    const cleanup = mod.default.render({ model, el });
    expect(el.querySelector(".rd-first-divergent")!.textContent).toBe("Price");
    expect(el.querySelectorAll("tr.rd-row")[0].getAttribute("data-sample")).toBe("s-r1");
    cleanup();
  });
});
