/**
 * What part of the graph is drawn: search, focus on a neighbourhood, flows collapsed to one
 * node each, and long chains wrapped into rows. Pure functions on `GraphData`, no DOM.
 */
import type { GraphData, GraphEdge, GraphNode } from "./types";

/** Node id of a collapsed flow. */
export const CLUSTER_PREFIX = "flow:";

export function clusterId(flow: string): string {
  return `${CLUSTER_PREFIX}${flow}`;
}

export function isCluster(id: string): boolean {
  return id.startsWith(CLUSTER_PREFIX);
}

/** The flow a node is drawn in: its first flow (sorted), or "" for flowless nodes. */
export function homeFlow(node: GraphNode): string {
  const flows = (node.flows ?? []).filter(Boolean);
  return flows.length ? [...flows].sort()[0] : "";
}

/**
 * Ids of the nodes whose label or id contains every word of `query` (case-insensitive), best
 * first: exact label, label prefix, then the rest in graph order. Empty query: nothing.
 */
export function searchNodes(nodes: GraphNode[], query: string, limit = 200): string[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return [];
  const q = words.join(" ");
  const scored: { id: string; score: number; i: number }[] = [];
  nodes.forEach((n, i) => {
    const label = String(n.label ?? n.id).toLowerCase();
    const hay = `${label} ${String(n.id).toLowerCase()}`;
    if (!words.every((w) => hay.includes(w))) return;
    const score = label === q ? 0 : label.startsWith(q) ? 1 : 2;
    scored.push({ id: String(n.id), score, i });
  });
  scored.sort((a, b) => a.score - b.score || a.i - b.i);
  return scored.slice(0, limit).map((s) => s.id);
}

/** Nodes at most `hops` edges away from `start`, either direction (start included). */
export function neighbourhood(edges: GraphEdge[], start: string, hops: number): Set<string> {
  const adj = new Map<string, string[]>();
  const link = (a: string, b: string) => {
    let l = adj.get(a);
    if (!l) adj.set(a, (l = []));
    l.push(b);
  };
  for (const e of edges) {
    link(String(e.source), String(e.target));
    link(String(e.target), String(e.source));
  }
  const seen = new Set([start]);
  let frontier = [start];
  for (let d = 0; d < hops && frontier.length; d++) {
    const next: string[] = [];
    for (const id of frontier) {
      for (const m of adj.get(id) ?? []) {
        if (!seen.has(m)) {
          seen.add(m);
          next.push(m);
        }
      }
    }
    frontier = next;
  }
  return seen;
}

/** The subgraph of the nodes in `keep`. */
export function subgraph(graph: GraphData, keep: Set<string>): GraphData {
  return {
    nodes: (graph.nodes ?? []).filter((n) => keep.has(String(n.id))),
    edges: (graph.edges ?? []).filter(
      (e) => keep.has(String(e.source)) && keep.has(String(e.target)),
    ),
  };
}

/** The neighbourhood of `id`, `hops` out, as a graph. */
export function focusGraph(graph: GraphData, id: string, hops: number): GraphData {
  return subgraph(graph, neighbourhood(graph.edges ?? [], id, Math.max(0, hops)));
}

export interface Collapsed {
  graph: GraphData;
  /** node id -> the cluster node drawn in its place (only for nodes that were collapsed). */
  memberOf: Map<string, string>;
}

/**
 * Each flow in `collapsed` drawn as one node (`flow:<name>`, kind "flow", label with its step
 * count). A flowless node (topic, trigger) whose neighbours all sit in one collapsed flow goes
 * into that flow too. Edges are remapped to the cluster nodes; duplicates and self-loops go.
 */
export function collapseFlows(graph: GraphData, collapsed: Set<string>): Collapsed {
  const nodes = graph.nodes ?? [];
  const edges = graph.edges ?? [];
  const memberOf = new Map<string, string>();
  if (!collapsed.size) return { graph: { nodes, edges }, memberOf };
  const sizes = new Map<string, number>();
  for (const n of nodes) {
    const f = homeFlow(n);
    if (f && collapsed.has(f)) {
      memberOf.set(String(n.id), clusterId(f));
      sizes.set(f, (sizes.get(f) ?? 0) + 1);
    }
  }
  // flowless nodes hanging only off one collapsed flow
  const around = new Map<string, Set<string>>();
  const note = (flowless: string, other: string) => {
    let s = around.get(flowless);
    if (!s) around.set(flowless, (s = new Set()));
    s.add(memberOf.get(other) ?? other);
  };
  const flowless = new Set(nodes.filter((n) => !homeFlow(n)).map((n) => String(n.id)));
  for (const e of edges) {
    const s = String(e.source);
    const t = String(e.target);
    if (flowless.has(s)) note(s, t);
    if (flowless.has(t)) note(t, s);
  }
  for (const [id, set] of around) {
    if (set.size === 1) {
      const only = [...set][0];
      if (isCluster(only)) memberOf.set(id, only);
    }
  }
  const out: GraphNode[] = [];
  const emitted = new Set<string>();
  for (const n of nodes) {
    const id = String(n.id);
    const c = memberOf.get(id);
    if (!c) {
      out.push(n);
      continue;
    }
    if (emitted.has(c)) continue;
    emitted.add(c);
    const flow = c.slice(CLUSTER_PREFIX.length);
    const k = sizes.get(flow) ?? 0;
    out.push({
      id: c,
      label: `${flow}\n${k} step${k === 1 ? "" : "s"}`,
      kind: "flow",
      flows: [flow],
      description: `flow ${flow} (collapsed): click to expand`,
    });
  }
  const seen = new Set<string>();
  const outEdges: GraphEdge[] = [];
  for (const e of edges) {
    const s = memberOf.get(String(e.source)) ?? String(e.source);
    const t = memberOf.get(String(e.target)) ?? String(e.target);
    if (s === t) continue;
    const collapsedEdge = s !== String(e.source) || t !== String(e.target);
    const key = collapsedEdge ? `${s}\u0000${t}` : `${s}\u0000${t}\u0000${e.topic ?? ""}`;
    if (seen.has(key)) continue;
    seen.add(key);
    outEdges.push(collapsedEdge ? { source: s, target: t, virtual: e.virtual } : e);
  }
  return { graph: { nodes: out, edges: outEdges }, memberOf };
}

/** Longest-path ranks (sources at 0; edges closing a cycle are ignored), and how many. */
export function longestPathRanks(graph: GraphData): { rank: Map<string, number>; ranks: number } {
  const nodes = (graph.nodes ?? []).map((n) => String(n.id));
  const out = new Map<string, string[]>(nodes.map((id) => [id, []]));
  for (const e of graph.edges ?? []) {
    const s = String(e.source);
    const t = String(e.target);
    if (s !== t && out.has(s) && out.has(t)) out.get(s)!.push(t);
  }
  // iterative DFS: topological order, back edges dropped
  const state = new Map<string, number>(); // 1 on stack, 2 done
  const order: string[] = [];
  const dag = new Map<string, string[]>(nodes.map((id) => [id, []]));
  for (const root of nodes) {
    if (state.has(root)) continue;
    const stack: [string, number][] = [[root, 0]];
    state.set(root, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const kids = out.get(top[0])!;
      if (top[1] < kids.length) {
        const k = kids[top[1]++];
        const st = state.get(k);
        if (st === 1) continue; // back edge
        dag.get(top[0])!.push(k);
        if (st === undefined) {
          state.set(k, 1);
          stack.push([k, 0]);
        }
      } else {
        state.set(top[0], 2);
        order.push(top[0]);
        stack.pop();
      }
    }
  }
  const rank = new Map<string, number>(nodes.map((id) => [id, 0]));
  let ranks = nodes.length ? 1 : 0;
  for (let i = order.length - 1; i >= 0; i--) {
    const id = order[i];
    const r = rank.get(id)!;
    for (const k of dag.get(id)!) {
      if (rank.get(k)! < r + 1) {
        rank.set(k, r + 1);
        ranks = Math.max(ranks, r + 2);
      }
    }
  }
  return { rank, ranks };
}

/**
 * Longest-path ranks for wrapping a long chain: with more than `maxRanks` ranks, rank r goes
 * to column r % width and row floor(r / width). Returns null when the graph is short enough to
 * draw as it is.
 */
export function wrapRanks(
  graph: GraphData,
  maxRanks = 12,
): { rank: Map<string, number>; width: number; ranks: number } | null {
  const { rank, ranks } = longestPathRanks(graph);
  if (ranks <= maxRanks) return null;
  const width = Math.min(Math.max(Math.ceil(Math.sqrt(ranks)), 4), maxRanks);
  return { rank, width, ranks };
}

// ------------------------------------------------------------------ packing components

/** Connected components (edges either way), each in graph order, ordered by first node. */
export function components(graph: GraphData): string[][] {
  const ids = (graph.nodes ?? []).map((n) => String(n.id));
  const parent = new Map<string, string>(ids.map((id) => [id, id]));
  const find = (x: string): string => {
    let r = x;
    while (parent.get(r) !== r) r = parent.get(r)!;
    while (parent.get(x) !== r) {
      const next = parent.get(x)!;
      parent.set(x, r);
      x = next;
    }
    return r;
  };
  for (const e of graph.edges ?? []) {
    const s = String(e.source);
    const t = String(e.target);
    if (!parent.has(s) || !parent.has(t)) continue;
    const a = find(s);
    const b = find(t);
    if (a !== b) parent.set(b, a);
  }
  const byRoot = new Map<string, string[]>();
  for (const id of ids) {
    const r = find(id);
    let l = byRoot.get(r);
    if (!l) byRoot.set(r, (l = []));
    l.push(id);
  }
  return [...byRoot.values()];
}

export interface Size {
  w: number;
  h: number;
}

export interface Placed extends Size {
  x: number;
  y: number;
}

/**
 * Items in rows of `columns`, in reading order (left to right, top to bottom), each column as
 * wide as its widest item and each row as tall as its tallest, `gap` between them. The first
 * row holds the remainder (`n % columns` items, or a full row): what Graphviz's
 * `packmode="array_i…"` draws, whose first row is at the bottom, read upside down.
 */
export function packGrid(sizes: Size[], columns: number, gap = 8): { items: Placed[]; w: number; h: number } {
  const n = sizes.length;
  const c = Math.max(1, Math.min(columns, n || 1));
  const rows = Math.ceil(n / c);
  const first = n - (rows - 1) * c; // items in the top row
  const rowOf = (p: number) => (p < first ? 0 : 1 + Math.floor((p - first) / c));
  const colOf = (p: number) => (p < first ? p : (p - first) % c);
  const colW = new Array<number>(c).fill(0);
  const rowH = new Array<number>(rows).fill(0);
  sizes.forEach((s, p) => {
    colW[colOf(p)] = Math.max(colW[colOf(p)], s.w);
    rowH[rowOf(p)] = Math.max(rowH[rowOf(p)], s.h);
  });
  const colX: number[] = [];
  let x = 0;
  for (const w of colW) {
    colX.push(x);
    x += w + gap;
  }
  const rowY: number[] = [];
  let y = 0;
  for (const hh of rowH) {
    rowY.push(y);
    y += hh + gap;
  }
  const items = sizes.map((s, p) => ({ x: colX[colOf(p)], y: rowY[rowOf(p)], w: s.w, h: s.h }));
  return { items, w: Math.max(0, x - gap), h: Math.max(0, y - gap) };
}

/**
 * How many columns to pack `sizes` into so that the grid, fitted into a view `aspect` times
 * as wide as it is tall, is drawn as large as it can be.
 */
export function packColumns(sizes: Size[], aspect: number, gap = 8): number {
  const n = sizes.length;
  if (n <= 1) return 1;
  const a = aspect > 0 && Number.isFinite(aspect) ? aspect : 2;
  let best = 1;
  let bestScale = -1;
  for (let c = 1; c <= Math.min(n, 400); c++) {
    const g = packGrid(sizes, c, gap);
    const scale = Math.min(a / Math.max(g.w, 1), 1 / Math.max(g.h, 1));
    if (scale > bestScale * 1.0001) {
      best = c;
      bestScale = scale;
    }
  }
  return best;
}

/**
 * The order to give Graphviz the items of a grid read top to bottom: its array packing fills
 * rows from the bottom up, the last (partial) row on top. Slot s (Graphviz order) -> the
 * reading position of the item to put there.
 */
export function bottomUpOrder(n: number, columns: number): number[] {
  const c = Math.max(1, Math.min(columns, n || 1));
  const rows = Math.ceil(n / c);
  const first = n - (rows - 1) * c;
  const order: number[] = [];
  for (let s = 0; s < n; s++) {
    const rowFromBottom = Math.floor(s / c);
    const col = s % c;
    const readingRow = rows - 1 - rowFromBottom;
    order.push(readingRow === 0 ? col : first + (readingRow - 1) * c + col);
  }
  return order;
}
