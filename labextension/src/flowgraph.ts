/**
 * FlowGraph widget (`kind` = "flow_graph").
 *
 * Synced state: `graph`, `flows` (every flow of the project), `flow` (JS writes), `counts`,
 * `selected` (JS writes), `details`. Layout runs only when the DOT text changes (graph
 * structure, flow, focus, collapsed flows); `counts`, `selected` and `details` only touch
 * classes, badges and the side panel.
 *
 * Custom messages: the browser sends `{type: "emit", topic, data}` from a node's emit form;
 * the kernel answers `{type: "emitted", trace_id}` or `{type: "error", message}`, then
 * `{type: "lit", items: [{trace_id, node, state}]}` while that run's steps start and finish.
 */
import {
  allFlows,
  buildDot,
  DEFAULT_ASPECT,
  filterGraph,
  nodeKind,
  NODE_KINDS,
  type DotResult,
} from "./dot";
import { clear, formatDuration, h, prettyJson, svgEl, token } from "./dom";
import { collapseFlows, focusGraph, homeFlow, isCluster, searchNodes } from "./graphview";
import { cachedLayout, type LayoutFn } from "./layout";
import { buildSchemaForm, type Schema } from "./schemaform";
import { ensureStyles } from "./styles";
import type { AnyModel, Cleanup, GraphData, GraphNode, NodeCounts, NodeDetails } from "./types";

export interface FlowGraphOptions {
  /** DOT -> SVG text; defaults to the layout set with `setDefaultLayout` (real Graphviz). */
  layout?: LayoutFn;
}

let defaultLayout: LayoutFn | null = null;

export function setDefaultLayout(fn: LayoutFn | null): void {
  defaultLayout = fn;
}

const KIND_NAMES: Record<string, string> = {
  step: "Step",
  noop: "No-op",
  api: "API endpoint",
  cron: "Cron",
  topic: "Topic",
  trigger: "Trigger",
  flow: "Flow (collapsed)",
};

/** "All flows" of a project with more nodes than this starts with every flow collapsed. */
export const AUTO_COLLAPSE = 400;
/** SVG elements parsed and attached per task when mounting a large graph. */
export const MOUNT_CHUNK = 400;
/** How long a lit path stays fully lit after its step ended, then how long it fades (ms). */
export const LIT_HOLD_MS = 6000;
export const LIT_FADE_MS = 2500;
const MINIMAP_MAX_NODES = 3000;

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

interface View {
  x: number;
  y: number;
  w: number;
  h: number;
}

const MAX_FIT_SCALE = 1.5; // px per SVG unit when fitting a small graph
const MIN_FOCUS_SCALE = 1.0; // focus mode: labels at their size (11 px) at the default zoom

/** Bounding box of a Graphviz node from its shape attributes (no getBBox in jsdom). */
function shapeBox(g: Element): Box | null {
  const xs: number[] = [];
  const ys: number[] = [];
  const pushPairs = (nums: number[]) => {
    for (let i = 0; i + 1 < nums.length; i += 2) {
      xs.push(nums[i]);
      ys.push(nums[i + 1]);
    }
  };
  const numbers = (s: string | null) =>
    (s ?? "").match(/-?\d*\.?\d+(?:e[-+]?\d+)?/gi)?.map(Number) ?? [];
  for (const child of Array.from(g.children)) {
    const tag = child.tagName.toLowerCase();
    if (tag === "ellipse") {
      const cx = Number(child.getAttribute("cx"));
      const cy = Number(child.getAttribute("cy"));
      const rx = Number(child.getAttribute("rx"));
      const ry = Number(child.getAttribute("ry"));
      xs.push(cx - rx, cx + rx);
      ys.push(cy - ry, cy + ry);
    } else if (tag === "polygon" || tag === "polyline") {
      pushPairs(numbers(child.getAttribute("points")));
    } else if (tag === "path") {
      pushPairs(numbers(child.getAttribute("d")));
    }
  }
  if (!xs.length) {
    const text = g.querySelector("text");
    if (!text) return null;
    const x = Number(text.getAttribute("x"));
    const y = Number(text.getAttribute("y"));
    return { x0: x - 20, y0: y - 12, x1: x + 20, y1: y + 4 };
  }
  return { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
}

function compact(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

/** The topics a node's emit form can send to: a topic node's topic, what a trigger emits,
 *  what a step receives. */
export function emitTopicsOf(node: GraphNode | undefined): string[] {
  if (!node) return [];
  const kind = nodeKind(node);
  if (kind === "topic") return [...(node.subscribes ?? [])];
  if (kind === "api" || kind === "cron" || kind === "trigger") return [...(node.emits ?? [])];
  if (kind === "step") return [...(node.subscribes ?? [])];
  return [];
}

interface Lit {
  state: string;
  trace: string;
  timer: ReturnType<typeof setTimeout> | null;
}

/**
 * Mounts the FlowGraph on `el` (any element: a notebook output, a side panel). Returns the
 * cleanup function.
 */
export function renderFlowGraph(
  model: AnyModel,
  el: HTMLElement,
  options: FlowGraphOptions = {},
): Cleanup {
  const doc = el.ownerDocument ?? document;
  ensureStyles(doc);
  const layout: LayoutFn =
    options.layout ??
    defaultLayout ??
    (() => Promise.reject(new Error("no graph layout available")));

  // ------------------------------------------------------------ skeleton
  const flowSelect = h("select", { class: "wistro-flow-select", title: "Show one flow" });
  const info = h("span", { class: "wistro-muted wistro-fg-info" });
  const search = h("input", {
    class: "wistro-search",
    type: "search",
    placeholder: "Search nodes…",
    title: "Type a name: matching nodes are highlighted; Enter focuses on the next match",
  });
  const matchInfo = h("span", { class: "wistro-muted wistro-match-info" });
  const focusBtn = h(
    "button",
    { class: "wistro-focus", type: "button", title: "Show only the selected node's neighbourhood" },
    "Focus",
  );
  const hopsInput = h("input", {
    class: "wistro-hops",
    type: "number",
    min: 1,
    max: 9,
    value: 2,
    title: "Hops out from the focused node",
  });
  const collapseBtn = h(
    "button",
    { class: "wistro-collapse", type: "button", title: "Collapse or expand every flow" },
    "Collapse flows",
  );
  const zoomOut = h("button", { class: "wistro-zoom-out", title: "Zoom out", type: "button" }, "−");
  const zoomIn = h("button", { class: "wistro-zoom-in", title: "Zoom in", type: "button" }, "+");
  const zoomReset = h(
    "button",
    { class: "wistro-zoom-reset", title: "Fit the graph", type: "button" },
    "Fit",
  );
  const toolbar = h(
    "div",
    { class: "wistro-toolbar" },
    h("label", null, "Flow", flowSelect),
    search,
    matchInfo,
    focusBtn,
    h("label", { class: "wistro-hops-label" }, "hops", hopsInput),
    collapseBtn,
    info,
    h("span", { class: "wistro-spacer" }),
    zoomOut,
    zoomIn,
    zoomReset,
  );
  const status = h("div", { class: "wistro-fg-status" });
  const minimap = svgEl("svg", { class: "wistro-minimap", preserveAspectRatio: "xMidYMid meet" });
  const miniNodes = svgEl("g", { class: "wistro-minimap-nodes" });
  const miniView = svgEl("rect", { class: "wistro-minimap-view" });
  minimap.append(miniNodes, miniView);
  const view = h("div", { class: "wistro-fg-view", tabindex: 0 }, status);
  view.appendChild(minimap as unknown as Node);
  const details = h("div", { class: "wistro-details", hidden: true });
  const legend = h(
    "div",
    { class: "wistro-legend" },
    ...NODE_KINDS.map((k) => h("span", { class: `kind-${k}` }, h("i"), KIND_NAMES[k])),
    h("span", { class: "wistro-muted" }, "dashed edge: drawn by a no-op"),
  );
  const root = h(
    "div",
    { class: "wistro-widget wistro-flowgraph" },
    toolbar,
    h("div", { class: "wistro-fg-body" }, view, details),
    legend,
  );
  el.appendChild(root);

  // ------------------------------------------------------------ state
  let disposed = false;
  let current: DotResult | null = null; // latest graph + flow
  let mountedDot: string | null = null; // the DOT of the SVG on screen
  let svg: SVGSVGElement | null = null;
  let nodeEls = new Map<string, SVGGElement>();
  let edgeEls: SVGGElement[] = [];
  const boxes = new WeakMap<Element, Box | null>();
  let base: View = { x: 0, y: 0, w: 1, h: 1 };
  let viewBox: View = { ...base };
  let flowOptionsKey = "";
  /** Flows drawn as one node; null: not chosen yet (decided by the graph's size). */
  let collapsed: Set<string> | null = null;
  let memberOf = new Map<string, string>(); // node -> the cluster node drawn in its place
  let focus: string | null = null;
  let matches: string[] = [];
  let matchIndex = -1;
  const lit = new Map<string, Lit>(); // node id -> its light
  let mounting = 0; // generation of the chunked mount under way

  const setStatus = (text: string, isError = false) => {
    status.textContent = text;
    status.classList.toggle("error", isError);
    status.hidden = !text;
  };

  const fullGraph = (): GraphData => model.get("graph") ?? {};
  const currentFlow = () => String(model.get("flow") ?? "");

  // ------------------------------------------------------------ flow filter
  const updateFlowOptions = () => {
    const flows = new Set(allFlows(fullGraph()));
    for (const f of (model.get("flows") ?? []) as unknown[]) if (f) flows.add(String(f));
    const flow = currentFlow();
    if (flow) flows.add(flow);
    const sorted = [...flows].sort();
    const key = sorted.join("\u0000");
    if (key !== flowOptionsKey) {
      flowOptionsKey = key;
      clear(flowSelect);
      flowSelect.append(h("option", { value: "" }, "All flows"));
      for (const f of sorted) flowSelect.append(h("option", { value: f }, f));
    }
    flowSelect.value = flow;
  };
  flowSelect.addEventListener("change", () => {
    model.set("flow", flowSelect.value);
    model.save_changes();
    renderGraph();
  });

  // ------------------------------------------------------------ what is drawn
  function drawnGraph(): { graph: GraphData; clusters: boolean } {
    const flow = currentFlow();
    const filtered = filterGraph(fullGraph(), flow);
    if (focus !== null && filtered.nodes.some((n) => String(n.id) === focus)) {
      memberOf = new Map();
      return { graph: focusGraph(filtered, focus, readHops()), clusters: false };
    }
    focus = null;
    const flows = new Set(filtered.nodes.map(homeFlow).filter(Boolean));
    if (collapsed === null) {
      collapsed = !flow && flows.size > 1 && filtered.nodes.length > AUTO_COLLAPSE ? flows : new Set();
    }
    const c = collapseFlows(filtered, flow ? new Set() : collapsed);
    memberOf = c.memberOf;
    return { graph: c.graph, clusters: !flow };
  }

  /** The hops box's value as 1..9 (2 when it holds no number). */
  function readHops(): number {
    const raw = hopsInput.value.trim();
    const n = raw === "" ? NaN : Number(raw);
    return Number.isFinite(n) ? Math.max(1, Math.min(9, Math.round(n))) : 2;
  }

  function updateControls(): void {
    focusBtn.textContent = focus ? "Show all" : "Focus";
    focusBtn.classList.toggle("on", !!focus);
    focusBtn.disabled = !focus && !String(model.get("selected") ?? "");
    const anyCollapsed = !!collapsed && collapsed.size > 0;
    collapseBtn.textContent = anyCollapsed ? "Expand flows" : "Collapse flows";
    collapseBtn.hidden = !!currentFlow() || !!focus || allFlows(fullGraph()).length < 2;
  }

  // ------------------------------------------------------------ layout + mount
  function renderGraph(): void {
    if (disposed) return;
    updateFlowOptions();
    const drawn = drawnGraph();
    updateControls();
    const res = buildDot(drawn.graph, "", {
      prefiltered: true,
      clusters: drawn.clusters,
      aspect: viewAspect(),
    });
    const previous = current;
    current = res;
    const n = res.nodeCount;
    const total = filterGraph(fullGraph(), currentFlow()).nodes.length;
    info.textContent =
      n === total ? `${n} node${n === 1 ? "" : "s"}` : `${n} shown of ${total} nodes`;
    if (res.dot === mountedDot) {
      setStatus(n ? "" : "Nothing to show");
      decorate();
      return;
    }
    if (previous && previous.dot === res.dot) return; // this layout is already under way
    if (n === 0) {
      unmount();
      mountedDot = res.dot;
      setStatus("Nothing to show");
      return;
    }
    setStatus(n > 300 ? `Laying out ${n} nodes…` : "Laying out…");
    cachedLayout(layout, res.dot, n).then(
      (text) => {
        if (disposed || current?.dot !== res.dot) return; // stale
        if (n <= 300) return mount(text, res.dot);
        mountChunked(text, res.dot);
      },
      (err: unknown) => {
        if (disposed || current?.dot !== res.dot) return;
        unmount();
        setStatus(`Layout failed: ${err instanceof Error ? err.message : String(err)}`, true);
      },
    );
  }

  /** Width / height of the graph view (the default before it is laid out on the page). */
  function viewAspect(): number {
    const r = view.getBoundingClientRect();
    return r.width > 0 && r.height > 0 ? r.width / r.height : DEFAULT_ASPECT;
  }

  function unmount(): void {
    mounting++;
    if (svg) svg.remove();
    svg = null;
    nodeEls = new Map();
    edgeEls = [];
    mountedDot = null;
    clear(miniNodes);
  }

  function parseSvg(text: string): SVGSVGElement | null {
    const parsed = new DOMParser().parseFromString(text, "image/svg+xml");
    const top = parsed.documentElement;
    if (!top || top.nodeName.toLowerCase() !== "svg" || parsed.querySelector("parsererror")) {
      return null;
    }
    // adopt (no copy) into the widget's document
    return doc.adoptNode(top) as unknown as SVGSVGElement;
  }

  /** Ids off, data attributes on, for the elements of one batch (nodes, edges, clusters). */
  function prepare(root: ParentNode): void {
    // Graphviz ids ("node1", "graph0") would clash between widgets on one page.
    for (const g of Array.from(root.querySelectorAll("[id]"))) g.removeAttribute("id");
    for (const g of Array.from(root.querySelectorAll("g.node, g.cluster"))) {
      const title = g.querySelector(":scope > title");
      g.setAttribute("data-dot-name", title?.textContent ?? "");
    }
    for (const g of Array.from(root.querySelectorAll("g.edge"))) {
      const m = (g.getAttribute("class") ?? "").match(/\bwe(\d+)\b/);
      g.setAttribute("data-edge-index", m ? m[1] : "");
    }
  }

  function setBase(next: SVGSVGElement): void {
    next.removeAttribute("width");
    next.removeAttribute("height");
    next.setAttribute("preserveAspectRatio", "xMidYMid meet");
    next.classList.add("wistro-graph-svg");
    const vb = (next.getAttribute("viewBox") ?? "").split(/[\s,]+/).map(Number);
    base =
      vb.length === 4 && vb.every(Number.isFinite) && vb[2] > 0 && vb[3] > 0
        ? { x: vb[0], y: vb[1], w: vb[2], h: vb[3] }
        : { x: 0, y: 0, w: 100, h: 100 };
  }

  function mount(source: string | SVGSVGElement | null, dot: string): void {
    mounting++;
    const next = typeof source === "string" ? parseSvg(source) : source;
    if (!next) {
      unmount();
      setStatus("Layout produced no SVG", true);
      return;
    }
    setBase(next);
    prepare(next);
    if (svg) svg.remove();
    svg = next;
    mountedDot = dot;
    // Fit and decorate while detached: no style/layout work on the big SVG until it is inserted.
    fit();
    decorate();
    view.insertBefore(svg, status);
    setStatus("");
    drawMinimap();
  }

  /**
   * A large SVG in pieces: the skeleton (the <svg> and its graph <g>) first, then the nodes,
   * edges and clusters MOUNT_CHUNK at a time, each batch parsed, decorated and attached in a
   * task of its own, so no task blocks the page for long.
   */
  function mountChunked(text: string, dot: string): void {
    const gen = ++mounting;
    const open = text.search(/<g id="graph0"[^>]*>/);
    const firstItem = text.indexOf("\n<!-- ", open);
    const close = text.lastIndexOf("</g>");
    if (open < 0 || firstItem < 0 || close < firstItem) {
      setTimeout(() => gen === mounting && !disposed && mount(text, dot), 0);
      return;
    }
    const body = text.slice(firstItem, close);
    const items = body.split("\n<!-- ");
    const skeleton = parseSvg(text.slice(0, firstItem) + "\n" + text.slice(close));
    if (!skeleton) return mount(null, dot);
    setBase(skeleton);
    prepare(skeleton);
    const graphG = skeleton.querySelector("g.graph") ?? skeleton;
    if (svg) svg.remove();
    svg = skeleton;
    mountedDot = dot;
    nodeEls = new Map();
    edgeEls = [];
    fit();
    view.insertBefore(svg, status);
    let at = 0;
    const step = () => {
      if (disposed || gen !== mounting) return;
      const batch = items.slice(at, at + MOUNT_CHUNK).filter(Boolean);
      at += MOUNT_CHUNK;
      const part = parseSvg(
        `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><g>\n<!-- ${batch.join("\n<!-- ")}</g></svg>`,
      );
      if (part) {
        const holder = part.firstElementChild ?? part;
        prepare(holder);
        decorateIn(holder, false);
        const frag = doc.createDocumentFragment();
        while (holder.firstChild) frag.appendChild(holder.firstChild);
        graphG.appendChild(frag);
      }
      const shown = Math.min(at, items.length);
      if (at < items.length) {
        setStatus(`Drawing… ${Math.round((100 * shown) / items.length)}%`);
        setTimeout(step, 0);
      } else {
        setStatus("");
        applyCounts();
        applySelected();
        applySearch();
        applyLit();
        drawMinimap();
      }
    };
    setStatus("Drawing…");
    setTimeout(step, 0);
  }

  function decorateNode(g: SVGGElement): void {
    if (!current) return;
    const node = current.byName.get(g.getAttribute("data-dot-name") ?? "");
    if (!node) return;
    const id = String(node.id);
    const kind = nodeKind(node);
    g.setAttribute("data-node-id", id);
    g.setAttribute("data-kind", kind);
    for (const k of NODE_KINDS) g.classList.toggle(`kind-${k}`, k === kind);
    g.classList.toggle("inactive", node.active === false);
    const title = g.querySelector(":scope > title");
    if (title) {
      const extra = node.description ? `\n${node.description}` : "";
      const off = node.active === false ? " — inactive" : "";
      title.textContent = `${node.label ?? id} (${KIND_NAMES[kind]})${off}${extra}`;
    }
    nodeEls.set(id, g);
  }

  function decorateEdge(g: SVGGElement): void {
    if (!current) return;
    const index = g.getAttribute("data-edge-index");
    const edge = index ? current.edges[Number(index)] : undefined;
    if (!edge) return;
    g.setAttribute("data-source", String(edge.source));
    g.setAttribute("data-target", String(edge.target));
    if (edge.topic) g.setAttribute("data-topic", String(edge.topic));
    g.classList.toggle("virtual", !!edge.virtual);
    g.classList.toggle("conditional", !!edge.conditional);
    const title = g.querySelector(":scope > title");
    if (title) title.textContent = String(edge.label ?? edge.topic ?? "");
    edgeEls.push(g);
  }

  function decorateCluster(g: SVGGElement): void {
    const flow = current?.clusters.get(g.getAttribute("data-dot-name") ?? "");
    if (flow === undefined) return;
    g.setAttribute("data-flow", flow);
    const title = g.querySelector(":scope > title");
    if (title) title.textContent = `flow ${flow}: click to collapse`;
  }

  function decorateIn(root: ParentNode, reset: boolean): void {
    if (reset) {
      nodeEls = new Map();
      edgeEls = [];
    }
    for (const g of Array.from(root.querySelectorAll<SVGGElement>("g.node"))) decorateNode(g);
    for (const g of Array.from(root.querySelectorAll<SVGGElement>("g.edge"))) decorateEdge(g);
    for (const g of Array.from(root.querySelectorAll<SVGGElement>("g.cluster"))) decorateCluster(g);
  }

  /** Node ids, kinds and tooltips from the current data onto the mounted SVG. */
  function decorate(): void {
    if (!svg || !current) return;
    decorateIn(svg, true);
    applyCounts();
    applySelected();
    applySearch();
    applyLit();
  }

  // ------------------------------------------------------------ minimap
  function drawMinimap(): void {
    clear(miniNodes);
    const big = nodeEls.size > MINIMAP_MAX_NODES;
    minimap.setAttribute("viewBox", `${base.x} ${base.y} ${base.w} ${base.h}`);
    const rects: string[] = [];
    if (!big) {
      const graphG = svg?.querySelector("g.graph");
      const tr = (graphG?.getAttribute("transform") ?? "").match(
        /translate\(\s*(-?[\d.]+)[ ,]+(-?[\d.]+)\s*\)/,
      );
      const dx = tr ? Number(tr[1]) : 0;
      const dy = tr ? Number(tr[2]) : 0;
      for (const g of nodeEls.values()) {
        let box = boxes.get(g);
        if (box === undefined) boxes.set(g, (box = shapeBox(g)));
        if (!box) continue;
        const k = g.getAttribute("data-kind") ?? "step";
        rects.push(
          `<rect class="kind-${k}" x="${box.x0 + dx}" y="${box.y0 + dy}" width="${box.x1 - box.x0}" height="${box.y1 - box.y0}"/>`,
        );
      }
    }
    if (rects.length) {
      const part = parseSvg(`<svg xmlns="http://www.w3.org/2000/svg"><g>${rects.join("")}</g></svg>`);
      const g = part?.firstElementChild;
      if (g) miniNodes.append(...Array.from(g.childNodes));
    }
    minimap.classList.toggle("hidden", !svg);
    updateMiniView();
  }

  function updateMiniView(): void {
    miniView.setAttribute("x", String(viewBox.x));
    miniView.setAttribute("y", String(viewBox.y));
    miniView.setAttribute("width", String(viewBox.w));
    miniView.setAttribute("height", String(viewBox.h));
    miniView.setAttribute("stroke-width", String(Math.max(base.w, base.h) / 150));
  }

  let miniDrag = false;
  const miniPan = (e: PointerEvent) => {
    const r = minimap.getBoundingClientRect();
    if (!(r.width > 0 && r.height > 0)) return;
    const scale = Math.min(r.width / base.w, r.height / base.h);
    const ox = (r.width - base.w * scale) / 2;
    const oy = (r.height - base.h * scale) / 2;
    const x = base.x + (e.clientX - r.left - ox) / scale;
    const y = base.y + (e.clientY - r.top - oy) / scale;
    setView({ ...viewBox, x: x - viewBox.w / 2, y: y - viewBox.h / 2 });
  };
  minimap.addEventListener("pointerdown", (e: PointerEvent) => {
    e.stopPropagation();
    miniDrag = true;
    miniPan(e);
  });
  minimap.addEventListener("pointermove", (e: PointerEvent) => {
    if (miniDrag) {
      e.stopPropagation();
      miniPan(e);
    }
  });
  const endMini = () => (miniDrag = false);
  minimap.addEventListener("pointerup", endMini);
  minimap.addEventListener("pointerleave", endMini);
  minimap.addEventListener("click", (e) => e.stopPropagation());

  // ------------------------------------------------------------ live counts
  function badge(g: SVGGElement, cls: string, value: number, corner: "top" | "bottom"): void {
    let b = g.querySelector<SVGGElement>(`:scope > g.wistro-badge.${cls}`);
    if (!value) {
      if (b) b.remove();
      return;
    }
    let box = boxes.get(g);
    if (box === undefined) boxes.set(g, (box = shapeBox(g)));
    if (!box) return;
    const text = compact(value);
    const w = 9 + 5.6 * text.length;
    if (!b) {
      b = svgEl("g", { class: `wistro-badge ${cls}` });
      b.append(svgEl("rect", { height: 13, rx: 6.5, ry: 6.5, y: -6.5 }), svgEl("text", { y: 3.2 }));
      g.appendChild(b);
    }
    const rect = b.querySelector("rect")!;
    const label = b.querySelector("text")!;
    rect.setAttribute("x", String(-w / 2));
    rect.setAttribute("width", String(w));
    label.setAttribute("text-anchor", "middle");
    label.setAttribute("x", "0");
    if (label.textContent !== text) label.textContent = text;
    const y = corner === "top" ? box.y0 : box.y1;
    b.setAttribute("transform", `translate(${box.x1 - 2},${y})`);
  }

  function applyCounts(): void {
    const counts = (model.get("counts") ?? {}) as Record<string, NodeCounts>;
    // a collapsed flow shows the sum of its members
    const summed = new Map<string, { deliveries: number; errors: number; running: number }>();
    for (const [id, c] of Object.entries(counts)) {
      const drawnId = memberOf.get(id) ?? id;
      let t = summed.get(drawnId);
      if (!t) summed.set(drawnId, (t = { deliveries: 0, errors: 0, running: 0 }));
      t.deliveries += Number(c?.deliveries ?? 0) || 0;
      t.errors += Number(c?.errors ?? 0) || 0;
      t.running += Number(c?.running ?? 0) || 0;
    }
    const running = new Set<string>();
    for (const [id, g] of nodeEls) {
      const c = summed.get(id);
      const deliveries = c?.deliveries ?? 0;
      const errors = c?.errors ?? 0;
      const isRunning = (c?.running ?? 0) > 0;
      if (isRunning) running.add(id);
      g.classList.toggle("running", isRunning);
      g.classList.toggle("has-errors", errors > 0);
      g.classList.toggle("has-deliveries", deliveries > 0);
      badge(g, "deliveries", deliveries, "top");
      badge(g, "err", errors, "bottom");
    }
    for (const g of edgeEls) {
      g.classList.toggle("active", running.has(g.getAttribute("data-target") ?? ""));
    }
  }

  // ------------------------------------------------------------ lit path of a run
  const drawnIdOf = (id: string) => memberOf.get(id) ?? id;

  function applyLit(): void {
    const byDrawn = new Map<string, Lit>();
    for (const [id, l] of lit) byDrawn.set(drawnIdOf(id), l);
    for (const [id, g] of nodeEls) {
      const l = byDrawn.get(id);
      g.classList.toggle("lit", !!l);
      g.classList.toggle("lit-running", l?.state === "running");
      g.classList.toggle("lit-error", l?.state === "error");
      g.classList.toggle("lit-fade", l?.state === "fade");
    }
    for (const g of edgeEls) {
      const t = byDrawn.get(g.getAttribute("data-target") ?? "");
      const s = byDrawn.get(g.getAttribute("data-source") ?? "");
      const on = !!t && !!s && t.trace === s.trace;
      g.classList.toggle("lit", on);
      g.classList.toggle("lit-fade", on && (t!.state === "fade" || s!.state === "fade"));
    }
  }

  function light(node: string, state: string, trace: string): void {
    const old = lit.get(node);
    if (old?.timer) clearTimeout(old.timer);
    const l: Lit = { state, trace, timer: null };
    lit.set(node, l);
    if (state !== "running") {
      l.timer = setTimeout(() => {
        l.state = "fade";
        applyLit();
        l.timer = setTimeout(() => {
          if (lit.get(node) === l) lit.delete(node);
          applyLit();
        }, LIT_FADE_MS);
      }, LIT_HOLD_MS);
    }
  }

  // ------------------------------------------------------------ search
  function applySearch(): void {
    const hits = new Set(matches.map(drawnIdOf));
    for (const [id, g] of nodeEls) g.classList.toggle("match", hits.has(id));
    root.classList.toggle("searching", matches.length > 0);
    const q = search.value.trim();
    matchInfo.textContent = q ? `${matches.length || "no"} match${matches.length === 1 ? "" : "es"}` : "";
  }

  search.addEventListener("input", () => {
    const nodes = filterGraph(fullGraph(), currentFlow()).nodes;
    matches = searchNodes(nodes, search.value);
    matchIndex = -1;
    applySearch();
  });
  search.addEventListener("keydown", (e: KeyboardEvent) => {
    if (e.key === "Enter" && matches.length) {
      e.preventDefault();
      matchIndex = (matchIndex + 1) % matches.length;
      focusOn(matches[matchIndex]);
    } else if (e.key === "Escape") {
      search.value = "";
      matches = [];
      applySearch();
    }
  });

  // ------------------------------------------------------------ focus + clusters
  function select(id: string): void {
    model.set("selected", id);
    model.save_changes();
    applySelected();
  }

  function focusOn(id: string): void {
    focus = id;
    select(id);
    renderGraph();
  }

  focusBtn.addEventListener("click", () => {
    if (focus) {
      focus = null;
      renderGraph();
      return;
    }
    const sel = String(model.get("selected") ?? "");
    if (sel && !isCluster(sel)) focusOn(sel);
  });
  // The hops box behaves as a number input: typing replaces its value (all of it is selected
  // when it gets the focus), each input event applies a valid value (1..9) at once, and on
  // change (Enter, leaving the box, the arrows) the value shown is clamped to 1..9.
  let appliedHops = readHops();
  const applyHops = () => {
    const n = readHops();
    if (n === appliedHops) return;
    appliedHops = n;
    if (focus) renderGraph();
  };
  hopsInput.addEventListener("focus", () => hopsInput.select());
  hopsInput.addEventListener("input", () => {
    const raw = hopsInput.value.trim();
    if (raw !== "" && Number.isFinite(Number(raw))) applyHops();
  });
  hopsInput.addEventListener("change", () => {
    hopsInput.value = String(readHops());
    applyHops();
  });
  // digits typed here are for the box, not JupyterLab's notebook shortcuts
  hopsInput.addEventListener("keydown", (e: KeyboardEvent) => e.stopPropagation());
  collapseBtn.addEventListener("click", () => {
    const flows = allFlows(fullGraph());
    collapsed = collapsed && collapsed.size ? new Set() : new Set(flows);
    renderGraph();
  });

  // ------------------------------------------------------------ selection + details
  function applySelected(): void {
    const sel = String(model.get("selected") ?? "");
    for (const [id, g] of nodeEls) g.classList.toggle("selected", id === sel);
    updateControls();
    renderDetails();
  }

  function nodeById(id: string): GraphNode | undefined {
    return ((fullGraph().nodes ?? []) as GraphNode[]).find((n) => String(n.id) === id);
  }

  let emitForm: { topic: string; el: HTMLElement } | null = null;

  function renderEmit(node: GraphNode | undefined, d: NodeDetails): HTMLElement | null {
    const offered = d.emit_topics?.length
      ? d.emit_topics
      : emitTopicsOf(node).map((topic) => ({
          topic,
          schema: nodeKind(node!) === "topic" ? (d.schema ?? null) : null,
        }));
    if (!offered.length) return null;
    const box = h("div", { class: "wistro-section wistro-emit" }, h("h4", null, "Emit an event"));
    const topicSelect = h("select", { class: "wistro-emit-topic" });
    for (const t of offered) topicSelect.append(h("option", { value: t.topic }, t.topic));
    const formHolder = h("div", { class: "wistro-emit-form" });
    const messages = h("div", { class: "wistro-emit-status", role: "status" });
    const send = h("button", { type: "button", class: "wistro-emit-send" }, "Emit");
    let form = buildSchemaForm(null);
    const show = () => {
      const chosen = offered.find((t) => t.topic === topicSelect.value) ?? offered[0];
      form = buildSchemaForm((chosen.schema ?? null) as Schema | null);
      clear(formHolder);
      formHolder.append(form.el);
      emitForm = { topic: chosen.topic, el: messages };
    };
    topicSelect.addEventListener("change", show);
    send.addEventListener("click", () => {
      const { value, errors } = form.read();
      clear(messages);
      messages.className = "wistro-emit-status";
      if (errors.length) {
        messages.classList.add("error");
        for (const e of errors) messages.append(h("div", null, e));
        return;
      }
      const topic = topicSelect.value || offered[0].topic;
      emitForm = { topic, el: messages };
      messages.append(`Sending ${topic}…`);
      model.send({ type: "emit", topic, data: value, node: node ? String(node.id) : "" });
    });
    box.append(
      offered.length > 1 ? h("label", null, "topic ", topicSelect) : h("div", { class: "wistro-muted" }, `topic ${offered[0].topic}`),
      formHolder,
      h("div", { class: "wistro-emit-actions" }, send),
      messages,
    );
    show();
    return box;
  }

  function onCustom(msg: unknown): void {
    const m = (msg ?? {}) as { type?: string; trace_id?: string; message?: string; items?: unknown };
    if (m.type === "emitted") {
      if (emitForm?.el.isConnected) {
        clear(emitForm.el);
        emitForm.el.className = "wistro-emit-status ok";
        emitForm.el.append(`Emitted ${emitForm.topic}: trace ${String(m.trace_id ?? "")}`);
      }
    } else if (m.type === "error") {
      if (emitForm?.el.isConnected) {
        clear(emitForm.el);
        emitForm.el.className = "wistro-emit-status error";
        emitForm.el.append(String(m.message ?? "error"));
      }
    } else if (m.type === "lit" && Array.isArray(m.items)) {
      for (const it of m.items as { trace_id?: string; node?: string; state?: string }[]) {
        if (it && it.node) light(String(it.node), String(it.state ?? "ok"), String(it.trace_id ?? ""));
      }
      applyLit();
    }
  }

  function renderDetails(): void {
    const sel = String(model.get("selected") ?? "");
    clear(details);
    emitForm = null;
    if (!sel) {
      details.hidden = true;
      return;
    }
    details.hidden = false;
    const node = nodeById(sel);
    if (!node && isCluster(sel)) {
      details.hidden = true;
      return;
    }
    const kind = node ? nodeKind(node) : "step";
    const close = h("button", { class: "wistro-details-close", title: "Close", type: "button" }, "×");
    close.addEventListener("click", () => {
      model.set("selected", "");
      model.save_changes();
      applySelected();
    });
    details.append(
      h(
        "div",
        { class: "wistro-details-head" },
        h("strong", null, String(node?.label ?? sel)),
        h("span", { class: `wistro-kind-tag kind-${kind}` }, KIND_NAMES[kind]),
        close,
      ),
    );
    if (node?.description) details.append(h("div", { class: "wistro-muted" }, node.description));
    const d = (model.get("details") ?? {}) as NodeDetails;
    if (d.file) details.append(h("div", { class: "wistro-file" }, String(d.file)));
    if (node) {
      const rows: [string, string][] = [];
      if (node.language) rows.push(["language", node.language]);
      if (node.flows?.length) rows.push(["flows", node.flows.join(", ")]);
      if (node.subscribes?.length) rows.push(["subscribes", node.subscribes.join(", ")]);
      if (node.emits?.length) rows.push(["emits", node.emits.join(", ")]);
      if (node.active === false) rows.push(["active", "no"]);
      if (rows.length) {
        details.append(
          h(
            "table",
            { class: "wistro-node-meta" },
            ...rows.map(([k, v]) => h("tr", null, h("th", null, k), h("td", null, v))),
          ),
        );
      }
    }
    if (!d || Object.keys(d).length === 0) {
      details.append(h("div", { class: "wistro-muted wistro-details-loading" }, "Loading details…"));
      return;
    }
    const emit = renderEmit(node, d);
    if (emit) details.append(emit);
    const section = (cls: string, title: string, body: Node) =>
      details.append(h("div", { class: `wistro-section ${cls}` }, h("h4", null, title), body));
    section("wistro-config", "Config", h("pre", null, prettyJson(d.config ?? {})));
    section(
      "wistro-schema",
      "Input schema",
      d.schema ? h("pre", null, prettyJson(d.schema)) : h("div", { class: "wistro-muted" }, "none"),
    );
    if (d.source) section("wistro-source", "Source", h("pre", null, String(d.source)));
    const runs = d.recent_runs ?? [];
    const table = h(
      "table",
      { class: "wistro-recent-runs" },
      h("tr", null, h("th", null, "trace"), h("th", null, "status"), h("th", null, "duration")),
    );
    for (const r of runs) {
      const link = h("span", { class: "wistro-link", title: "Open this trace" }, String(r.trace_id));
      link.addEventListener("click", () => model.send({ type: "open_trace", trace_id: r.trace_id }));
      table.append(
        h(
          "tr",
          { class: `status-${token(r.status)}` },
          h("td", null, link),
          h("td", { class: "status-cell" }, String(r.status ?? "")),
          h("td", null, formatDuration(r.duration_ms)),
        ),
      );
    }
    section(
      "wistro-runs",
      "Recent runs",
      runs.length ? table : h("div", { class: "wistro-muted" }, "no runs yet"),
    );
  }

  // ------------------------------------------------------------ pan + zoom (viewBox)
  function setView(v: View): void {
    viewBox = v;
    svg?.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    updateMiniView();
  }

  /** The whole graph in view (at most MAX_FIT_SCALE px per unit). In focus mode never below
   *  MIN_FOCUS_SCALE: labels stay legible, the view centred on the focused node. */
  function fit(minScale = focus ? MIN_FOCUS_SCALE : 0): void {
    const rect = view.getBoundingClientRect();
    if (rect.width > 0 && rect.height > 0) {
      const fitScale = Math.min(rect.width / base.w, rect.height / base.h, MAX_FIT_SCALE);
      const scale = Math.max(fitScale, minScale);
      const w = rect.width / scale;
      const hh = rect.height / scale;
      let cx = base.x + base.w / 2;
      let cy = base.y + base.h / 2;
      if (scale > fitScale && focus) {
        const c = focusCentre();
        if (c) [cx, cy] = c;
      }
      setView({ x: cx - w / 2, y: cy - hh / 2, w, h: hh });
    } else {
      setView({ ...base });
    }
  }

  function focusCentre(): [number, number] | null {
    if (!svg || !focus || !current) return null;
    let name = "";
    for (const [n, node] of current.byName) if (String(node.id) === focus) name = n;
    const g = Array.from(svg.querySelectorAll("g.node")).find(
      (x) => x.getAttribute("data-dot-name") === name,
    );
    const box = g ? shapeBox(g) : null;
    if (!box) return null;
    const tr = (svg.querySelector("g.graph")?.getAttribute("transform") ?? "").match(
      /translate\(\s*(-?[\d.]+)[ ,]+(-?[\d.]+)\s*\)/,
    );
    const dx = tr ? Number(tr[1]) : 0;
    const dy = tr ? Number(tr[2]) : 0;
    return [(box.x0 + box.x1) / 2 + dx, (box.y0 + box.y1) / 2 + dy];
  }

  /** px per SVG unit and the letterbox offsets of preserveAspectRatio="xMidYMid meet". */
  function mapping() {
    const rect = view.getBoundingClientRect();
    if (!(rect.width > 0 && rect.height > 0)) return null;
    const scale = Math.min(rect.width / viewBox.w, rect.height / viewBox.h);
    return {
      rect,
      scale,
      ox: (rect.width - viewBox.w * scale) / 2,
      oy: (rect.height - viewBox.h * scale) / 2,
    };
  }

  function zoomAt(factor: number, clientX?: number, clientY?: number): void {
    if (!svg) return;
    const m = mapping();
    let cx = viewBox.x + viewBox.w / 2;
    let cy = viewBox.y + viewBox.h / 2;
    if (m && clientX !== undefined && clientY !== undefined) {
      cx = viewBox.x + (clientX - m.rect.left - m.ox) / m.scale;
      cy = viewBox.y + (clientY - m.rect.top - m.oy) / m.scale;
    }
    const maxW = Math.max(base.w, base.h) * 20;
    const minW = Math.max(base.w, 50) / 40;
    const w = Math.min(Math.max(viewBox.w / factor, minW), maxW);
    const f = viewBox.w / w;
    setView({
      x: cx - (cx - viewBox.x) / f,
      y: cy - (cy - viewBox.y) / f,
      w,
      h: viewBox.h / f,
    });
  }

  zoomIn.addEventListener("click", () => zoomAt(1.25));
  zoomOut.addEventListener("click", () => zoomAt(1 / 1.25));
  zoomReset.addEventListener("click", () => fit(0));
  const onWheel = (e: WheelEvent) => {
    if (!svg) return;
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 0.05 : e.deltaMode === 2 ? 1 : 0.0015;
    zoomAt(Math.exp(-e.deltaY * unit), e.clientX, e.clientY);
  };
  view.addEventListener("wheel", onWheel, { passive: false });

  let drag: { x: number; y: number; start: View; moved: boolean; pointer: number } | null = null;
  let suppressClick = false;
  view.addEventListener("pointerdown", (e: PointerEvent) => {
    if (e.button !== 0 || !svg) return;
    drag = { x: e.clientX, y: e.clientY, start: { ...viewBox }, moved: false, pointer: e.pointerId };
  });
  view.addEventListener("pointermove", (e: PointerEvent) => {
    if (!drag) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!drag.moved) {
      drag.moved = true;
      view.classList.add("dragging");
      try {
        view.setPointerCapture?.(drag.pointer);
      } catch {
        /* not capturable (synthetic event) */
      }
    }
    const m = mapping();
    const scale = m ? m.scale : 1;
    setView({ ...drag.start, x: drag.start.x - dx / scale, y: drag.start.y - dy / scale });
  });
  const endDrag = () => {
    if (drag?.moved) {
      suppressClick = true;
      setTimeout(() => (suppressClick = false), 0);
    }
    drag = null;
    view.classList.remove("dragging");
  };
  view.addEventListener("pointerup", endDrag);
  view.addEventListener("pointercancel", endDrag);
  view.addEventListener("keydown", (e: KeyboardEvent) => {
    if (e.key === "+" || e.key === "=") zoomAt(1.25);
    else if (e.key === "-") zoomAt(1 / 1.25);
    else if (e.key === "0") fit(0);
  });

  // ------------------------------------------------------------ click a node or a cluster
  view.addEventListener("click", (e: MouseEvent) => {
    if (suppressClick) return;
    const target = e.target as Element | null;
    const g = target?.closest?.("g.node[data-node-id]");
    if (g) {
      const id = g.getAttribute("data-node-id") ?? "";
      if (isCluster(id)) {
        // expand a collapsed flow
        collapsed?.delete(id.slice("flow:".length));
        renderGraph();
        return;
      }
      select(id);
      return;
    }
    const cluster = target?.closest?.("g.cluster[data-flow]");
    if (cluster) {
      if (!collapsed) collapsed = new Set();
      collapsed.add(cluster.getAttribute("data-flow") ?? "");
      renderGraph();
    }
  });

  // ------------------------------------------------------------ model wiring
  const onGraph = () => renderGraph();
  const onFlow = () => {
    focus = null;
    renderGraph();
  };
  const onCounts = () => applyCounts();
  const onSelected = () => applySelected();
  const onDetails = () => renderDetails();
  model.on("change:graph", onGraph);
  model.on("change:flows", onGraph);
  model.on("change:flow", onFlow);
  model.on("change:counts", onCounts);
  model.on("change:selected", onSelected);
  model.on("change:details", onDetails);
  model.on("msg:custom", onCustom);

  renderGraph();
  renderDetails();

  return () => {
    disposed = true;
    mounting++;
    for (const l of lit.values()) if (l.timer) clearTimeout(l.timer);
    lit.clear();
    model.off("change:graph", onGraph);
    model.off("change:flows", onGraph);
    model.off("change:flow", onFlow);
    model.off("change:counts", onCounts);
    model.off("change:selected", onSelected);
    model.off("change:details", onDetails);
    model.off("msg:custom", onCustom);
    view.removeEventListener("wheel", onWheel);
    root.remove();
  };
}
