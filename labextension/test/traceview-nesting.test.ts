import { afterEach, describe, expect, it } from "vitest";
import { renderTraceView, spanTree } from "../src/traceview";
import { FakeModel } from "./fake-model";

// place -> charge (emitted payment.captured) -> receipt + pack (pack emitted by charge too);
// reserve caused by pack. parent_id given for one span only: the others come from events.
const TRACE = {
  run: { trace_id: "t1", status: "ok", start: 0, end: 1 },
  spans: [
    { id: "s-pack", step: "Pack", status: "ok", start: 0.3, end: 0.5, event_id: "e3" },
    { id: "s-charge", step: "Charge", status: "ok", start: 0.1, end: 0.2, event_id: "e1" },
    { id: "s-receipt", step: "Receipt", status: "ok", start: 0.25, end: 0.3, event_id: "e2", parent_id: "s-charge" },
    { id: "s-reserve", step: "Reserve", status: "ok", start: 0.6, end: 0.7, event_id: "e4" },
    { id: "s-other", step: "Other", status: "ok", start: 0.05, end: 0.07, event_id: "e1" },
  ],
  events: [
    { id: "e1", topic: "order.placed", parent_span_id: null },
    { id: "e2", topic: "payment.captured", parent_span_id: "s-charge" },
    { id: "e3", topic: "payment.captured", parent_span_id: "s-charge" },
    { id: "e4", topic: "order.packed", parent_span_id: "s-pack" },
  ],
  logs: [], state_ops: [],
};

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe("TraceView nests spans by cause", () => {
  it("builds the tree from parent_id and from events' parent_span_id", () => {
    const t = spanTree(TRACE);
    expect(t.order.map((s) => s.step)).toEqual(["Other", "Charge", "Receipt", "Pack", "Reserve"]);
    expect(t.depth.get("s-reserve")).toBe(2);
    expect(t.parent.get("s-pack")).toBe("s-charge");
    expect(t.parent.get("s-charge")).toBeNull();
    // a cycle and an unknown parent make roots, nothing is lost
    const odd = spanTree({ spans: [{ id: "a", parent_id: "b" }, { id: "b", parent_id: "a" }, { id: "c", parent_id: "zz" }] });
    expect(odd.order.map((s) => s.id).sort()).toEqual(["a", "b", "c"]);
  });

  it("indents rows by depth and collapses a parent's subtree", () => {
    const el = document.createElement("div");
    const model = new FakeModel({ kind: "trace_view", trace: TRACE, filter_step: "", filter_status: "" });
    cleanups.push(renderTraceView(model, el));
    const rows = () => [...el.querySelectorAll<HTMLElement>(".span-row")];
    expect(rows().map((r) => `${r.dataset.step}:${r.dataset.depth}`)).toEqual(
      ["Other:0", "Charge:0", "Receipt:1", "Pack:1", "Reserve:2"],
    );
    expect(rows()[3].dataset.parentId).toBe("s-charge");
    const visible = () => rows().filter((r) => !r.hidden).map((r) => r.dataset.step);
    const toggle = el.querySelector<HTMLElement>('.span-row[data-step="Charge"] .span-toggle')!;
    expect(toggle.textContent).toBe("▾");
    toggle.click();
    expect(visible()).toEqual(["Other", "Charge"]);
    expect(el.querySelector('.span-row[data-step="Charge"] .span-toggle')!.textContent).toBe("▸");
    expect(el.querySelector(".wistro-tv-detail")!.hasAttribute("hidden")).toBe(true); // not a selection
    el.querySelector<HTMLElement>('.span-row[data-step="Charge"] .span-toggle')!.click();
    expect(visible()).toEqual(["Other", "Charge", "Receipt", "Pack", "Reserve"]);
    // collapsing Pack hides only Reserve; an update keeps the state
    el.querySelector<HTMLElement>('.span-row[data-step="Pack"] .span-toggle')!.click();
    model.pythonSets("trace", JSON.parse(JSON.stringify(TRACE)));
    expect(visible()).toEqual(["Other", "Charge", "Receipt", "Pack"]);
  });
});
