import { afterEach, describe, expect, it, vi } from "vitest";
import { buildDot, filterGraph, nodeKind } from "../src/dot";
import { renderFlowGraph } from "../src/flowgraph";
import type { LayoutFn } from "../src/layout";
import widget from "../src/index";
import { fakeLayoutSvg } from "./fake-layout";
import { FakeModel, flush } from "./fake-model";

const GRAPH = {
  nodes: [
    { id: "api:0", label: "POST /orders", kind: "api", flows: ["checkout"], active: true },
    { id: "step:Charge card", label: "Charge card", kind: "step", language: "python",
      flows: ["checkout"], description: "Charges the card", subscribes: ["order.placed"],
      emits: ["payment.captured"], active: true },
    { id: "step:Send receipt", label: "Send receipt", kind: "step", language: "typescript",
      flows: ["checkout"], subscribes: ["payment.captured"], emits: [], active: false },
    { id: "step:Fraud review", label: "Fraud review", kind: "noop", flows: ["checkout"],
      subscribes: ["payment.captured"], emits: ["fraud.cleared"], active: true },
    { id: "end:fraud.cleared", label: "fraud.cleared", kind: "topic", flows: [] },
    { id: "cron:nightly", label: "nightly\n0 2 * * *", kind: "cron", flows: ["reports"] },
    { id: "step:Build report", label: "Build report", kind: "step", flows: ["reports"] },
  ],
  edges: [
    { source: "api:0", target: "step:Charge card", topic: "order.placed", label: "order.placed" },
    { source: "step:Charge card", target: "step:Send receipt", topic: "payment.captured",
      label: "payment.captured" },
    { source: "step:Charge card", target: "step:Fraud review", topic: "payment.captured",
      label: "payment.captured", conditional: true },
    { source: "step:Fraud review", target: "end:fraud.cleared", topic: "fraud.cleared",
      label: "fraud.cleared", virtual: true },
    { source: "cron:nightly", target: "step:Build report", topic: "report.requested",
      label: "report.requested" },
  ],
};

function setup(state: Record<string, unknown> = {}) {
  const model = new FakeModel({
    kind: "flow_graph", graph: GRAPH, flow: "", counts: {}, selected: "", details: {}, ...state,
  });
  const layout = vi.fn<LayoutFn>(async (dot: string) => fakeLayoutSvg(dot));
  const el = document.createElement("div");
  document.body.appendChild(el);
  const cleanup = renderFlowGraph(model, el, { layout });
  cleanups.push(cleanup);
  return { model, layout, el, cleanup };
}

const cleanups: (() => void)[] = [];

const ids = (el: Element) =>
  [...el.querySelectorAll("g.node[data-node-id]")].map((g) => g.getAttribute("data-node-id"));
const node = (el: Element, id: string) =>
  [...el.querySelectorAll<SVGGElement>("g.node[data-node-id]")].find(
    (g) => g.getAttribute("data-node-id") === id,
  )!;

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  document.body.innerHTML = "";
});

describe("DOT", () => {
  it("maps wistro graph kinds to widget kinds", () => {
    expect(nodeKind({ id: "a", kind: "event" })).toBe("step");
    expect(nodeKind({ id: "a", kind: "trigger-cron" })).toBe("cron");
    expect(nodeKind({ id: "a", kind: "end" })).toBe("topic");
    expect(nodeKind({ id: "a", kind: "noop" })).toBe("noop");
  });

  it("escapes labels and keeps every node and edge", () => {
    const { dot, nodeCount, edges } = buildDot(
      { nodes: [{ id: 'a"1', label: 'say "hi"\\now' }, { id: "b" }], edges: [{ source: 'a"1', target: "b" }] },
      "",
    );
    expect(nodeCount).toBe(2);
    expect(edges).toHaveLength(1);
    expect(dot).toContain('label="say \\"hi\\"\\\\now"');
    expect(dot).toContain("n0 -> n1");
  });

  it("filters by flow, keeping flowless topics attached to the flow", () => {
    const f = filterGraph(GRAPH, "checkout");
    expect(f.nodes.map((n) => n.id).sort()).toEqual(
      ["api:0", "end:fraud.cleared", "step:Charge card", "step:Fraud review", "step:Send receipt"],
    );
    expect(f.edges).toHaveLength(4);
  });
});

describe("FlowGraph", () => {
  it("renders one [data-node-id] per node, edges, and shapes by kind", async () => {
    const { el, layout } = setup();
    await flush();
    expect(layout).toHaveBeenCalledTimes(1);
    expect(ids(el).sort()).toEqual(GRAPH.nodes.map((n) => n.id).sort());
    expect(el.querySelectorAll("[data-node-id]")).toHaveLength(GRAPH.nodes.length);
    expect(el.querySelectorAll("g.edge")).toHaveLength(GRAPH.edges.length);
    expect(node(el, "api:0").classList.contains("kind-api")).toBe(true);
    expect(node(el, "step:Charge card").classList.contains("kind-step")).toBe(true);
    expect(node(el, "step:Fraud review").classList.contains("kind-noop")).toBe(true);
    expect(node(el, "end:fraud.cleared").classList.contains("kind-topic")).toBe(true);
    expect(node(el, "cron:nightly").classList.contains("kind-cron")).toBe(true);
    expect(node(el, "step:Send receipt").classList.contains("inactive")).toBe(true);
    const virtual = el.querySelector('g.edge[data-target="end:fraud.cleared"]')!;
    expect(virtual.classList.contains("virtual")).toBe(true);
    expect(el.querySelector('g.edge[data-target="step:Fraud review"]')!.classList.contains("conditional")).toBe(true);
    expect(el.querySelector('g.edge[data-source="api:0"]')!.getAttribute("data-topic")).toBe("order.placed");
    // the DOT handed to the layout sets distinct shapes per kind
    const dot = layout.mock.calls[0][0];
    expect(dot).toMatch(/shape=cds/);
    expect(dot).toMatch(/shape=hexagon/);
    expect(dot).toMatch(/rounded,dashed/);
    // legend, no duplicate Graphviz ids, styles injected once
    expect(el.querySelectorAll(".wistro-legend [class^=kind-]")).toHaveLength(7);
    expect(el.querySelector("svg [id]")).toBeNull();
    expect(document.querySelectorAll("#wistro-widgets-style")).toHaveLength(1);
  });

  it("flow filter writes `flow` and re-renders only that flow's nodes", async () => {
    const { el, model, layout } = setup();
    await flush();
    const select = el.querySelector<HTMLSelectElement>("select.wistro-flow-select")!;
    expect([...select.options].map((o) => o.value)).toEqual(["", "checkout", "reports"]);
    select.value = "reports";
    select.dispatchEvent(new Event("change"));
    await flush();
    expect(model.get("flow")).toBe("reports");
    expect(model.saves).toBeGreaterThan(0);
    expect(ids(el).sort()).toEqual(["cron:nightly", "step:Build report"]);
    expect(layout).toHaveBeenCalledTimes(2);
    // Python setting the flow works the same way
    model.pythonSets("flow", "checkout");
    await flush();
    expect(ids(el)).toHaveLength(5);
    expect(select.value).toBe("checkout");
    // back to a flow already laid out: served from the cache
    model.pythonSets("flow", "reports");
    await flush();
    expect(ids(el).sort()).toEqual(["cron:nightly", "step:Build report"]);
    expect(layout).toHaveBeenCalledTimes(3);
  });

  it("clicking a node sets `selected` and calls save_changes", async () => {
    const { el, model } = setup();
    await flush();
    const text = node(el, "step:Charge card").querySelector("text")!;
    text.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(model.get("selected")).toBe("step:Charge card");
    expect(model.saves).toBe(1);
    expect(node(el, "step:Charge card").classList.contains("selected")).toBe(true);
    const panel = el.querySelector<HTMLElement>(".wistro-details")!;
    expect(panel.hidden).toBe(false);
    expect(panel.textContent).toContain("Loading details");
  });

  it("counts update badges and classes without re-running the layout", async () => {
    const { el, model, layout } = setup();
    await flush();
    expect(layout).toHaveBeenCalledTimes(1);
    const svgBefore = el.querySelector("svg");
    model.pythonSets("counts", { "step:Charge card": { deliveries: 3, errors: 0, running: 1 } });
    const charge = node(el, "step:Charge card");
    expect(charge.classList.contains("running")).toBe(true);
    expect(charge.querySelector(".wistro-badge.deliveries text")!.textContent).toBe("3");
    expect(charge.querySelector(".wistro-badge.err")).toBeNull();
    expect(el.querySelector('g.edge[data-target="step:Charge card"]')!.classList.contains("active")).toBe(true);
    model.pythonSets("counts", { "step:Charge card": { deliveries: 1200, errors: 2, running: 0 } });
    expect(charge.classList.contains("running")).toBe(false);
    expect(charge.classList.contains("has-errors")).toBe(true);
    expect(charge.querySelector(".wistro-badge.deliveries text")!.textContent).toBe("1.2k");
    expect(charge.querySelector(".wistro-badge.err text")!.textContent).toBe("2");
    model.pythonSets("counts", {});
    expect(charge.querySelector(".wistro-badge")).toBeNull();
    await flush();
    expect(layout).toHaveBeenCalledTimes(1);
    expect(el.querySelector("svg")).toBe(svgBefore);
    // a new graph object with the same structure does not lay out again either
    model.pythonSets("graph", JSON.parse(JSON.stringify(GRAPH)));
    await flush();
    expect(layout).toHaveBeenCalledTimes(1);
  });

  it("renders `details` in the side panel", async () => {
    const { el, model } = setup({ selected: "step:Charge card" });
    await flush();
    model.pythonSets("details", {
      config: { type: "event", name: "Charge card", subscribes: ["order.placed"] },
      schema: { type: "object", properties: { order_id: { type: "string" } } },
      source: "async def handler(order, ctx):\n    pass\n",
      file: "src/checkout/charge_card.step.py",
      recent_runs: [
        { trace_id: "t-1", status: "ok", duration_ms: 12.5 },
        { trace_id: "t-2", status: "error", duration_ms: 1500 },
      ],
    });
    const panel = el.querySelector<HTMLElement>(".wistro-details")!;
    expect(panel.hidden).toBe(false);
    expect(panel.querySelector(".wistro-config pre")!.textContent).toContain('"name": "Charge card"');
    expect(panel.querySelector(".wistro-schema pre")!.textContent).toContain("order_id");
    expect(panel.querySelector(".wistro-source pre")!.textContent).toContain("async def handler");
    expect(panel.querySelector(".wistro-file")!.textContent).toBe("src/checkout/charge_card.step.py");
    const runs = panel.querySelectorAll(".wistro-recent-runs tr.status-ok, .wistro-recent-runs tr.status-error");
    expect(runs).toHaveLength(2);
    expect(panel.textContent).toContain("1.50 s");
    panel.querySelector<HTMLElement>(".wistro-link")!.click();
    expect(model.sent).toEqual([{ type: "open_trace", trace_id: "t-1" }]);
    // schema null shows "none"; closing clears the selection
    model.pythonSets("details", { config: {}, schema: null, source: "", recent_runs: [] });
    expect(panel.querySelector(".wistro-schema")!.textContent).toContain("none");
    panel.querySelector<HTMLButtonElement>(".wistro-details-close")!.click();
    expect(model.get("selected")).toBe("");
    expect(panel.hidden).toBe(true);
  });

  it("zooms and pans through the viewBox, and Fit restores it", async () => {
    const { el } = setup();
    await flush();
    const svg = el.querySelector("svg")!;
    const initial = svg.getAttribute("viewBox")!;
    el.querySelector<HTMLButtonElement>(".wistro-zoom-in")!.click();
    const zoomed = svg.getAttribute("viewBox")!.split(" ").map(Number);
    expect(zoomed[2]).toBeLessThan(Number(initial.split(" ")[2]));
    el.querySelector(".wistro-fg-view")!.dispatchEvent(new WheelEvent("wheel", { deltaY: 200, bubbles: true, cancelable: true }));
    expect(Number(svg.getAttribute("viewBox")!.split(" ")[2])).toBeGreaterThan(zoomed[2]);
    el.querySelector<HTMLButtonElement>(".wistro-zoom-reset")!.click();
    expect(svg.getAttribute("viewBox")).toBe(initial);
  });

  it("shows layout errors and cleans up its listeners", async () => {
    const model = new FakeModel({ kind: "flow_graph", graph: GRAPH, flow: "", counts: {} });
    const el = document.createElement("div");
    const cleanup = renderFlowGraph(model, el, { layout: async () => { throw new Error("boom"); } });
    await flush();
    expect(el.querySelector(".wistro-fg-status.error")!.textContent).toContain("boom");
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(el.children).toHaveLength(0);
  });

  it("the default export dispatches on `kind`", () => {
    const el = document.createElement("div");
    const model = new FakeModel({ kind: "trace_view", trace: {} });
    const cleanup = widget.render({ model, el });
    expect(el.querySelector(".wistro-traceview")).not.toBeNull();
    cleanup();
    const other = document.createElement("div");
    widget.render({ model: new FakeModel({ kind: "nope" }), el: other });
    expect(other.textContent).toContain("unknown kind");
  });
});
