/**
 * FlowGraph end to end in jsdom with the real Graphviz (no fake layout): every node of the
 * graph ends up as a `g.node[data-node-id]`, badges sit on real shapes, and a graph above the
 * worker threshold falls back to the main thread because jsdom has no `Worker`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { renderFlowGraph } from "../src/flowgraph";
import { createVizLayout, type VizRuntime } from "../src/layout";
import { FakeModel } from "./fake-model";

const layout = createVizLayout({
  loadRuntime: () => import("@viz-js/viz") as Promise<VizRuntime>,
  workerSource: "/* a worker cannot start in jsdom */",
});

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

afterEach(() => {
  document.body.innerHTML = "";
});

describe("FlowGraph with real Graphviz", () => {
  it("lays out a small graph; every node carries data-node-id", async () => {
    const graph = {
      nodes: [
        { id: "api:0", label: "POST /orders", kind: "api", flows: ["checkout"] },
        { id: "step:Charge card", label: "Charge card", kind: "step", flows: ["checkout"] },
        { id: "step:Fraud review", label: "Fraud review", kind: "noop", flows: ["checkout"] },
        { id: "end:fraud.cleared", label: "fraud.cleared", kind: "topic", flows: [] },
        { id: "cron:nightly", label: "nightly", kind: "cron", flows: [] },
        { id: "trigger:notebook", label: "notebook", kind: "trigger", flows: [] },
      ],
      edges: [
        { source: "api:0", target: "step:Charge card", topic: "order.placed" },
        { source: "step:Charge card", target: "step:Fraud review", topic: "payment.captured", conditional: true },
        { source: "step:Fraud review", target: "end:fraud.cleared", topic: "fraud.cleared", virtual: true },
      ],
    };
    const model = new FakeModel({ kind: "flow_graph", graph, flow: "", counts: {}, selected: "", details: {} });
    const el = document.createElement("div");
    document.body.appendChild(el);
    const cleanup = renderFlowGraph(model, el, { layout });
    await until(() => el.querySelectorAll("g.node[data-node-id]").length > 0);
    const ids = [...el.querySelectorAll("g.node[data-node-id]")].map((g) => g.getAttribute("data-node-id"));
    expect(ids.sort()).toEqual(graph.nodes.map((n) => n.id).sort());
    expect(el.querySelectorAll("g.edge[data-source][data-target]")).toHaveLength(3);
    expect(layout.lastMode).toBe("main");
    model.pythonSets("counts", { "step:Charge card": { deliveries: 7, errors: 1, running: 1 } });
    const g = el.querySelector('g.node[data-node-id="step:Charge card"]')!;
    const transform = g.querySelector(".wistro-badge.deliveries")!.getAttribute("transform")!;
    expect(transform).toMatch(/^translate\(-?[\d.]+,-?[\d.]+\)$/);
    expect(g.classList.contains("running")).toBe(true);
    cleanup();
  });

  it("falls back to the main thread for a large graph when Worker is unavailable", async () => {
    expect(typeof (globalThis as { Worker?: unknown }).Worker).toBe("undefined");
    const n = 320;
    const graph = {
      nodes: Array.from({ length: n }, (_, i) => ({ id: `s${i}`, label: `step ${i}`, kind: i % 5 ? "step" : "topic" })),
      edges: Array.from({ length: n - 1 }, (_, i) => ({ source: `s${Math.floor(i / 3)}`, target: `s${i + 1}`, topic: `t${i}` })),
    };
    const model = new FakeModel({ kind: "flow_graph", graph, flow: "", counts: {} });
    const el = document.createElement("div");
    const cleanup = renderFlowGraph(model, el, { layout });
    await until(() => el.querySelectorAll("g.node[data-node-id]").length >= n, 60_000);
    expect(el.querySelectorAll("g.node[data-node-id]")).toHaveLength(n);
    expect(layout.lastMode).toBe("main");
    cleanup();
  }, 90_000);
});
