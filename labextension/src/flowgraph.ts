/**
 * FlowGraph widget (`kind` = "flow_graph").
 *
 * Synced state: `graph`, `flow` (JS writes), `counts`, `selected` (JS writes), `details`.
 * Layout runs only when the DOT text changes (graph structure or flow); `counts`, `selected`
 * and `details` only touch classes, badges and the side panel.
 */
import { allFlows, buildDot, nodeKind, NODE_KINDS, type DotResult } from "./dot";
import { clear, formatDuration, h, prettyJson, svgEl, token } from "./dom";
import { cachedLayout, type LayoutFn } from "./layout";
import { ensureStyles } from "./styles";
import type { AnyModel, Cleanup, GraphNode, NodeCounts, NodeDetails } from "./types";

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
};

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

export function renderFlowGraph(
  model: AnyModel,
  el: HTMLElement,
  options: FlowGraphOptions = {},
): Cleanup {
  ensureStyles(el.ownerDocument ?? document);
  const layout: LayoutFn =
    options.layout ??
    defaultLayout ??
    (() => Promise.reject(new Error("no graph layout available")));

  // ------------------------------------------------------------ skeleton
  const flowSelect = h("select", { class: "wistro-flow-select", title: "Show one flow" });
  const info = h("span", { class: "wistro-muted wistro-fg-info" });
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
    info,
    h("span", { class: "wistro-spacer" }),
    zoomOut,
    zoomIn,
    zoomReset,
  );
  const status = h("div", { class: "wistro-fg-status" });
  const view = h("div", { class: "wistro-fg-view", tabindex: 0 }, status);
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

  const setStatus = (text: string, isError = false) => {
    status.textContent = text;
    status.classList.toggle("error", isError);
    status.hidden = !text;
  };

  // ------------------------------------------------------------ flow filter
  const updateFlowOptions = () => {
    const flows = allFlows(model.get("graph"));
    const flow = String(model.get("flow") ?? "");
    if (flow && !flows.includes(flow)) flows.push(flow);
    const key = flows.join("\u0000");
    if (key !== flowOptionsKey) {
      flowOptionsKey = key;
      clear(flowSelect);
      flowSelect.append(h("option", { value: "" }, "All flows"));
      for (const f of flows) flowSelect.append(h("option", { value: f }, f));
    }
    flowSelect.value = flow;
  };
  flowSelect.addEventListener("change", () => {
    model.set("flow", flowSelect.value);
    model.save_changes();
    renderGraph();
  });

  // ------------------------------------------------------------ layout + mount
  function renderGraph(): void {
    if (disposed) return;
    updateFlowOptions();
    const res = buildDot(model.get("graph"), String(model.get("flow") ?? ""));
    const previous = current;
    current = res;
    const n = res.nodeCount;
    info.textContent = `${n} node${n === 1 ? "" : "s"}`;
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
        // Large graph: parse in one task, mount in the next, so neither blocks for long.
        setTimeout(() => {
          if (disposed || current?.dot !== res.dot) return;
          const parsed = parseSvg(text);
          setTimeout(() => {
            if (!disposed && current?.dot === res.dot) mount(parsed, res.dot);
          }, 0);
        }, 0);
      },
      (err: unknown) => {
        if (disposed || current?.dot !== res.dot) return;
        unmount();
        setStatus(`Layout failed: ${err instanceof Error ? err.message : String(err)}`, true);
      },
    );
  }

  function unmount(): void {
    if (svg) svg.remove();
    svg = null;
    nodeEls = new Map();
    edgeEls = [];
    mountedDot = null;
  }

  function parseSvg(text: string): SVGSVGElement | null {
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const parsed = doc.documentElement;
    if (!parsed || parsed.nodeName.toLowerCase() !== "svg" || doc.querySelector("parsererror")) {
      return null;
    }
    // adopt (no copy) into the widget's document
    return (el.ownerDocument ?? document).adoptNode(parsed) as unknown as SVGSVGElement;
  }

  function mount(source: string | SVGSVGElement | null, dot: string): void {
    const next = typeof source === "string" ? parseSvg(source) : source;
    if (!next) {
      unmount();
      setStatus("Layout produced no SVG", true);
      return;
    }
    next.removeAttribute("width");
    next.removeAttribute("height");
    next.setAttribute("preserveAspectRatio", "xMidYMid meet");
    next.classList.add("wistro-graph-svg");
    // Graphviz ids ("node1", "graph0") would clash between widgets on one page.
    for (const g of Array.from(next.querySelectorAll("[id]"))) g.removeAttribute("id");
    for (const g of Array.from(next.querySelectorAll("g.node"))) {
      const title = g.querySelector(":scope > title");
      g.setAttribute("data-dot-name", title?.textContent ?? "");
    }
    for (const g of Array.from(next.querySelectorAll("g.edge"))) {
      const m = (g.getAttribute("class") ?? "").match(/\bwe(\d+)\b/);
      g.setAttribute("data-edge-index", m ? m[1] : "");
    }
    const vb = (next.getAttribute("viewBox") ?? "").split(/[\s,]+/).map(Number);
    base =
      vb.length === 4 && vb.every(Number.isFinite) && vb[2] > 0 && vb[3] > 0
        ? { x: vb[0], y: vb[1], w: vb[2], h: vb[3] }
        : { x: 0, y: 0, w: 100, h: 100 };
    if (svg) svg.remove();
    svg = next;
    mountedDot = dot;
    // Fit and decorate while detached: no style/layout work on the big SVG until it is inserted.
    fit();
    decorate();
    view.insertBefore(svg, status);
    setStatus("");
  }

  /** Node ids, kinds and tooltips from the current data onto the mounted SVG. */
  function decorate(): void {
    if (!svg || !current) return;
    nodeEls = new Map();
    for (const g of Array.from(svg.querySelectorAll<SVGGElement>("g.node"))) {
      const node = current.byName.get(g.getAttribute("data-dot-name") ?? "");
      if (!node) continue;
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
    edgeEls = [];
    for (const g of Array.from(svg.querySelectorAll<SVGGElement>("g.edge"))) {
      const edge = current.edges[Number(g.getAttribute("data-edge-index"))];
      if (!edge) continue;
      g.setAttribute("data-source", String(edge.source));
      g.setAttribute("data-target", String(edge.target));
      if (edge.topic) g.setAttribute("data-topic", String(edge.topic));
      g.classList.toggle("virtual", !!edge.virtual);
      g.classList.toggle("conditional", !!edge.conditional);
      const title = g.querySelector(":scope > title");
      if (title) title.textContent = String(edge.label ?? edge.topic ?? "");
      edgeEls.push(g);
    }
    applyCounts();
    applySelected();
  }

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
    const running = new Set<string>();
    for (const [id, g] of nodeEls) {
      const c = counts[id] ?? {};
      const deliveries = Number(c.deliveries ?? 0) || 0;
      const errors = Number(c.errors ?? 0) || 0;
      const isRunning = (Number(c.running ?? 0) || 0) > 0;
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

  // ------------------------------------------------------------ selection + details
  function applySelected(): void {
    const sel = String(model.get("selected") ?? "");
    for (const [id, g] of nodeEls) g.classList.toggle("selected", id === sel);
    renderDetails();
  }

  function nodeById(id: string): GraphNode | undefined {
    return ((model.get("graph")?.nodes ?? []) as GraphNode[]).find((n) => String(n.id) === id);
  }

  function renderDetails(): void {
    const sel = String(model.get("selected") ?? "");
    clear(details);
    if (!sel) {
      details.hidden = true;
      return;
    }
    details.hidden = false;
    const node = nodeById(sel);
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
  const setView = (v: View) => {
    viewBox = v;
    svg?.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
  };

  function fit(): void {
    const rect = view.getBoundingClientRect();
    if (rect.width > 0 && rect.height > 0) {
      const scale = Math.min(rect.width / base.w, rect.height / base.h, MAX_FIT_SCALE);
      const w = rect.width / scale;
      const hh = rect.height / scale;
      setView({ x: base.x - (w - base.w) / 2, y: base.y - (hh - base.h) / 2, w, h: hh });
    } else {
      setView({ ...base });
    }
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
  zoomReset.addEventListener("click", () => fit());
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
    else if (e.key === "0") fit();
  });

  // ------------------------------------------------------------ click a node
  view.addEventListener("click", (e: MouseEvent) => {
    if (suppressClick) return;
    const g = (e.target as Element | null)?.closest?.("g.node[data-node-id]");
    if (!g) return;
    const id = g.getAttribute("data-node-id") ?? "";
    model.set("selected", id);
    model.save_changes();
    applySelected();
  });

  // ------------------------------------------------------------ model wiring
  const onGraph = () => renderGraph();
  const onCounts = () => applyCounts();
  const onSelected = () => applySelected();
  const onDetails = () => renderDetails();
  model.on("change:graph", onGraph);
  model.on("change:flow", onGraph);
  model.on("change:counts", onCounts);
  model.on("change:selected", onSelected);
  model.on("change:details", onDetails);

  renderGraph();
  renderDetails();

  return () => {
    disposed = true;
    model.off("change:graph", onGraph);
    model.off("change:flow", onGraph);
    model.off("change:counts", onCounts);
    model.off("change:selected", onSelected);
    model.off("change:details", onDetails);
    view.removeEventListener("wheel", onWheel);
    root.remove();
  };
}
