import { afterEach, describe, expect, it, vi } from "vitest";
import { buildDot } from "../src/dot";
import { renderFlowGraph } from "../src/flowgraph";
import {
  bottomUpOrder,
  collapseFlows,
  components,
  focusGraph,
  neighbourhood,
  packColumns,
  packGrid,
  searchNodes,
  wrapRanks,
} from "../src/graphview";
import type { LayoutFn } from "../src/layout";
import type { GraphData } from "../src/types";
import { fakeLayoutSvg } from "./fake-layout";
import { FakeModel, flush } from "./fake-model";

/** `flows` flows of `per` steps in a chain each, a topic nobody receives at the end of each. */
function project(flows: number, per: number): GraphData {
  const nodes: GraphData["nodes"] = [];
  const edges: GraphData["edges"] = [];
  for (let f = 0; f < flows; f++) {
    for (let i = 0; i < per; i++) {
      nodes!.push({ id: `step:f${f}s${i}`, label: `F${f} step ${i}`, kind: i ? "step" : "api",
        flows: [`flow${f}`], subscribes: i ? [`t${f}.${i - 1}`] : [], emits: [`t${f}.${i}`] });
      if (i) edges!.push({ source: `step:f${f}s${i - 1}`, target: `step:f${f}s${i}`, topic: `t${f}.${i - 1}` });
    }
    nodes!.push({ id: `end:t${f}.${per - 1}`, label: `t${f}.${per - 1}`, kind: "topic", flows: [], subscribes: [`t${f}.${per - 1}`] });
    edges!.push({ source: `step:f${f}s${per - 1}`, target: `end:t${f}.${per - 1}`, topic: `t${f}.${per - 1}` });
  }
  // one cross-flow edge
  if (flows > 1) edges!.push({ source: "step:f0s1", target: "step:f1s2", topic: "t0.1" });
  return { nodes, edges };
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  document.body.innerHTML = "";
});

function setup(graph: GraphData, state: Record<string, unknown> = {}) {
  const model = new FakeModel({ kind: "flow_graph", graph, flow: "", counts: {}, selected: "", details: {}, ...state });
  const layout = vi.fn<LayoutFn>(async (dot: string) => fakeLayoutSvg(dot));
  const el = document.createElement("div");
  document.body.appendChild(el);
  cleanups.push(renderFlowGraph(model, el, { layout }));
  return { model, layout, el };
}
const drawn = (el: Element) =>
  [...el.querySelectorAll("g.node[data-node-id]")].map((g) => g.getAttribute("data-node-id")!);

describe("search, focus, clusters (pure)", () => {
  const g = project(3, 5);
  it("searches labels and ids, best match first", () => {
    expect(searchNodes(g.nodes!, "f1 step 3")).toEqual(["step:f1s3"]);
    expect(searchNodes(g.nodes!, "STEP 4")).toEqual(["step:f0s4", "step:f1s4", "step:f2s4"]);
    expect(searchNodes(g.nodes!, "t2.4")[0]).toBe("end:t2.4"); // exact label first
    expect(searchNodes(g.nodes!, "  ")).toEqual([]);
  });

  it("focuses on N hops around a node, both directions", () => {
    expect([...neighbourhood(g.edges!, "step:f0s2", 1)].sort()).toEqual(["step:f0s1", "step:f0s2", "step:f0s3"]);
    const two = focusGraph(g, "step:f0s2", 2);
    expect(two.nodes!.map((n) => n.id).sort()).toEqual(
      ["step:f0s0", "step:f0s1", "step:f0s2", "step:f0s3", "step:f0s4", "step:f1s2"],
    );
    expect(two.edges!.every((e) => two.nodes!.some((n) => n.id === e.source))).toBe(true);
    expect(focusGraph(g, "step:f0s2", 0).nodes!.map((n) => n.id)).toEqual(["step:f0s2"]);
  });

  it("collapses flows into one node each, remapping edges and absorbing their topics", () => {
    const { graph, memberOf } = collapseFlows(g, new Set(["flow0", "flow2"]));
    const ids = graph.nodes!.map((n) => n.id);
    expect(ids.filter((i) => i.startsWith("flow:"))).toEqual(["flow:flow0", "flow:flow2"]);
    expect(ids).toContain("step:f1s0");
    expect(ids).not.toContain("end:t0.4"); // inside flow0 now
    expect(ids).toContain("end:t1.4");
    expect(memberOf.get("end:t2.4")).toBe("flow:flow2");
    expect(graph.nodes!.find((n) => n.id === "flow:flow0")!.label).toBe("flow0\n5 steps");
    expect(graph.edges).toContainEqual({ source: "flow:flow0", target: "step:f1s2", virtual: undefined });
    expect(graph.edges!.some((e) => e.source === e.target)).toBe(false);
  });

  it("wraps a 100-node chain into rows instead of one line", () => {
    const chain = project(1, 100);
    const w = wrapRanks(chain)!;
    expect(w.ranks).toBe(101);
    expect(w.width).toBe(11);
    const { dot, wrapped } = buildDot(chain, "");
    expect(wrapped).toBe(true);
    expect(dot).toContain("newrank=true");
    expect((dot.match(/rank=same/g) ?? []).length).toBe(11);
    expect(dot).toMatch(/constraint=false/); // the edge from a row's end to the next row
    expect(wrapRanks(project(1, 8))).toBeNull();
    // a cycle does not loop forever
    expect(wrapRanks({ nodes: [{ id: "a" }, { id: "b" }], edges: [{ source: "a", target: "b" }, { source: "b", target: "a" }] })).toBeNull();
  });

  it("draws each flow as a cluster in All flows", () => {
    const { dot, clusters } = buildDot(project(2, 3), "", { clusters: true });
    expect([...clusters.values()]).toEqual(["flow0", "flow1"]);
    expect(dot).toContain("subgraph cluster_0");
  });
});

describe("packing disconnected parts (pure)", () => {
  const overlap = (a: { x: number; y: number; w: number; h: number }, b: typeof a) =>
    a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

  it("50 collapsed flows: a grid about as wide as the view, not one column, no overlaps", () => {
    const g = collapseFlows(project(50, 4), new Set(Array.from({ length: 50 }, (_, i) => `flow${i}`))).graph;
    // project() links flow0 to flow1: 49 parts
    expect(components(g)).toHaveLength(49);
    const sizes = Array.from({ length: 50 }, () => ({ w: 70, h: 40 }));
    const square = packColumns(sizes, 1);
    const sq = packGrid(sizes, square);
    expect(square).toBeGreaterThan(4);
    expect(sq.w / sq.h).toBeGreaterThan(0.6);
    expect(sq.w / sq.h).toBeLessThan(1.6);
    const wide = packGrid(sizes, packColumns(sizes, 2.5));
    expect(wide.w / wide.h).toBeGreaterThan(1.6);
    expect(wide.w / wide.h).toBeLessThan(3.5);
    for (const grid of [sq, wide]) {
      grid.items.forEach((a, i) => grid.items.slice(i + 1).forEach((b) => expect(overlap(a, b)).toBe(false)));
    }
  });

  it("mixed sizes: columns as wide as their widest part; reading order for Graphviz", () => {
    const grid = packGrid([{ w: 10, h: 5 }, { w: 30, h: 5 }, { w: 10, h: 20 }, { w: 10, h: 5 }, { w: 10, h: 5 }], 2, 0);
    // 5 in rows of 2: the first row holds the remainder
    expect(grid.items.map((i) => [i.x, i.y])).toEqual([[0, 0], [0, 5], [30, 5], [0, 25], [30, 25]]);
    expect([grid.w, grid.h]).toEqual([40, 30]);
    // Graphviz fills rows from the bottom: slot 0.. -> bottom row first, the remainder on top
    expect(bottomUpOrder(5, 2)).toEqual([3, 4, 1, 2, 0]);
    expect(bottomUpOrder(4, 2)).toEqual([2, 3, 0, 1]);
    expect(packColumns([{ w: 10, h: 10 }], 2)).toBe(1);
  });

  it("buildDot packs 3+ disconnected parts in rows, leaves a connected graph alone", () => {
    const overview = collapseFlows(project(20, 4), new Set(Array.from({ length: 20 }, (_, i) => `flow${i}`))).graph;
    const res = buildDot(overview, "", { prefiltered: true, aspect: 2 });
    expect(res.packedColumns).toBeGreaterThan(3);
    expect(res.dot).toContain(`packmode="array_ic${res.packedColumns}"`);
    expect(buildDot(project(1, 5), "").packedColumns).toBe(0);
    expect(buildDot(project(1, 5), "").dot).not.toContain("packmode");
  });
});

describe("FlowGraph: large graphs", () => {
  it("starts a big project with its flows collapsed; a click expands one", async () => {
    const { el, model } = setup(project(10, 45)); // 460 nodes
    await flush();
    expect(drawn(el).filter((i) => i.startsWith("flow:"))).toHaveLength(10);
    expect(el.querySelector(".wistro-fg-info")!.textContent).toBe("10 shown of 460 nodes");
    const f3 = el.querySelector('g.node[data-node-id="flow:flow3"] text')!;
    f3.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    await flush();
    expect(drawn(el)).toContain("step:f3s7");
    expect(drawn(el)).not.toContain("flow:flow3");
    expect(model.get("selected")).toBe(""); // expanding is not selecting
    el.querySelector<HTMLButtonElement>(".wistro-collapse")!.click(); // some collapsed -> expand all
    await flush();
    expect(drawn(el)).toHaveLength(460);
  });

  it("search highlights matches (inside collapsed flows too) and Enter focuses", async () => {
    const { el, model } = setup(project(10, 45));
    await flush();
    const search = el.querySelector<HTMLInputElement>("input.wistro-search")!;
    search.value = "F4 step 12";
    search.dispatchEvent(new Event("input"));
    expect(el.querySelector(".wistro-match-info")!.textContent).toBe("1 match");
    expect(el.querySelector('g.node[data-node-id="flow:flow4"]')!.classList.contains("match")).toBe(true);
    search.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    await flush();
    expect(model.get("selected")).toBe("step:f4s12");
    expect(drawn(el).sort()).toEqual(["step:f4s10", "step:f4s11", "step:f4s12", "step:f4s13", "step:f4s14"]);
    expect(el.querySelector('g.node[data-node-id="step:f4s12"]')!.classList.contains("match")).toBe(true);
    // more hops
    const hops = el.querySelector<HTMLInputElement>("input.wistro-hops")!;
    expect(hops.value).toBe("2");
    hops.value = "3";
    hops.dispatchEvent(new Event("input")); // what typing (or Playwright's fill) sends
    await flush();
    expect(drawn(el)).toHaveLength(7);
    expect(hops.value).toBe("3");
    // out of range: clamped on change, 1..9
    hops.value = "12";
    hops.dispatchEvent(new Event("input"));
    hops.dispatchEvent(new Event("change"));
    await flush();
    expect(hops.value).toBe("9");
    expect(drawn(el)).toHaveLength(19);
    hops.value = "0";
    hops.dispatchEvent(new Event("change"));
    await flush();
    expect(hops.value).toBe("1");
    expect(drawn(el)).toHaveLength(3);
    hops.value = "";
    hops.dispatchEvent(new Event("input")); // cleared while typing: nothing changes yet
    await flush();
    expect(drawn(el)).toHaveLength(3);
    hops.value = "3";
    hops.dispatchEvent(new Event("change"));
    await flush();
    // Show all leaves focus mode
    const focus = el.querySelector<HTMLButtonElement>(".wistro-focus")!;
    expect(focus.textContent).toBe("Show all");
    focus.click();
    await flush();
    expect(drawn(el)).toHaveLength(10);
  });

  it("has an overview with the viewport rectangle", async () => {
    const { el } = setup(project(2, 4));
    await flush();
    const mini = el.querySelector("svg.wistro-minimap")!;
    expect(mini.querySelectorAll(".wistro-minimap-nodes rect")).toHaveLength(10);
    const vr = mini.querySelector("rect.wistro-minimap-view")!;
    const before = vr.getAttribute("width");
    el.querySelector<HTMLButtonElement>(".wistro-zoom-in")!.click();
    expect(Number(vr.getAttribute("width"))).toBeLessThan(Number(before));
  });

  it("lists every flow of the project, even when the graph holds one", async () => {
    const one = project(1, 3);
    const { el } = setup(one, { flow: "flow0", flows: ["flow0", "flow1", "billing"] });
    await flush();
    const options = [...el.querySelectorAll<HTMLOptionElement>("select.wistro-flow-select option")].map((o) => o.value);
    expect(options).toEqual(["", "billing", "flow0", "flow1"]);
  });
});

describe("FlowGraph: emit from the graph", () => {
  const SCHEMA = { type: "object", properties: { order_id: { type: "string" }, amount_cents: { type: "integer" } },
    required: ["order_id", "amount_cents"] };

  it("a topic node's form validates, sends {type: emit}, shows the reply, lights the run", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      const g = project(1, 3);
      const { el, model } = setup(g, { selected: "end:t0.2" });
      await flush();
      model.pythonSets("details", { config: {}, schema: SCHEMA, recent_runs: [],
        emit_topics: [{ topic: "t0.2", schema: SCHEMA }] });
      const panel = el.querySelector(".wistro-details")!;
      const send = panel.querySelector<HTMLButtonElement>(".wistro-emit-send")!;
      send.click();
      expect(model.sent).toEqual([]); // invalid: nothing sent
      expect(panel.querySelector(".wistro-emit-status.error")!.textContent).toContain("order_id: required");
      panel.querySelector<HTMLInputElement>('[data-field="order_id"]')!.value = "A1";
      panel.querySelector<HTMLInputElement>('[data-field="amount_cents"]')!.value = "1200";
      send.click();
      expect(model.sent).toEqual([{ type: "emit", topic: "t0.2", data: { order_id: "A1", amount_cents: 1200 }, node: "end:t0.2" }]);
      model.emit("msg:custom", { type: "emitted", trace_id: "tr-1" });
      expect(panel.querySelector(".wistro-emit-status.ok")!.textContent).toContain("tr-1");
      model.emit("msg:custom", { type: "error", message: "amount_cents: must be an integer" });
      expect(panel.querySelector(".wistro-emit-status.error")!.textContent).toBe("amount_cents: must be an integer");
      // the run's path lights up step by step, then fades
      model.emit("msg:custom", { type: "lit", items: [{ trace_id: "tr-1", node: "step:f0s0", state: "running" }] });
      const s0 = el.querySelector('g.node[data-node-id="step:f0s0"]')!;
      expect(s0.classList.contains("lit-running")).toBe(true);
      model.emit("msg:custom", { type: "lit", items: [
        { trace_id: "tr-1", node: "step:f0s0", state: "ok" },
        { trace_id: "tr-1", node: "step:f0s1", state: "error" }] });
      expect(s0.classList.contains("lit")).toBe(true);
      expect(el.querySelector('g.node[data-node-id="step:f0s1"]')!.classList.contains("lit-error")).toBe(true);
      expect(el.querySelector('g.edge[data-target="step:f0s1"]')!.classList.contains("lit")).toBe(true);
      vi.advanceTimersByTime(5000);
      expect(s0.classList.contains("lit")).toBe(true); // still visible after 5 s
      vi.advanceTimersByTime(1500);
      expect(s0.classList.contains("lit-fade")).toBe(true);
      vi.advanceTimersByTime(3000);
      expect(s0.classList.contains("lit")).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it("trigger nodes offer their topic, plain steps without details none yet", async () => {
    const g = project(1, 2);
    const { el, model } = setup(g, { selected: "step:f0s0" });
    await flush();
    model.pythonSets("details", { config: {}, schema: null, recent_runs: [] });
    // an api node: what it emits, any JSON without a schema
    expect(el.querySelector(".wistro-emit")!.textContent).toContain("t0.0");
    expect(el.querySelector(".wistro-emit textarea")).not.toBeNull();
  });

  it("the details panel overlays the graph: opening it keeps the graph's size", async () => {
    const { el, model } = setup(project(2, 3));
    await flush();
    const svg = el.querySelector("svg.wistro-graph-svg")!;
    const vb = svg.getAttribute("viewBox");
    model.pythonSets("selected", "step:f0s1");
    expect(getComputedStyle(el.querySelector(".wistro-details")!).position).toBe("absolute");
    expect(svg.getAttribute("viewBox")).toBe(vb);
  });
});
