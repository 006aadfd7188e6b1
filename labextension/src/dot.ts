/** From the synced `graph` (and `flow`) to Graphviz DOT text. Pure functions, no DOM. */
import {
  bottomUpOrder,
  components,
  homeFlow,
  longestPathRanks,
  packColumns,
  type Size,
  wrapRanks,
} from "./graphview";
import type { GraphData, GraphEdge, GraphNode, NodeKind } from "./types";

/** Above this many nodes, edges are drawn without labels (topics show as tooltips). */
export const LARGE_GRAPH = 300;

export const NODE_KINDS: NodeKind[] = ["step", "noop", "api", "cron", "topic", "trigger", "flow"];

/** Flow clusters are drawn up to this many nodes, long chains wrapped up to this many. */
export const MAX_CLUSTERED = 1500;
export const MAX_WRAPPED = 2000;
/** Graphs of at least this many disconnected parts have them packed in rows (Graphviz array
 *  packing) instead of stacked in one column. */
export const PACK_MIN_COMPONENTS = 3;
/** Width / height of the view the graph is fitted into, when it is not known. */
export const DEFAULT_ASPECT = 2;

const KIND_ALIASES: Record<string, NodeKind> = {
  event: "step",
  "trigger-api": "api",
  "trigger-cron": "cron",
  end: "topic",
};

/** The widget kind of a node; names used by `wistro graph` are accepted as aliases. */
export function nodeKind(node: GraphNode): NodeKind {
  const k = String(node.kind ?? "step");
  if ((NODE_KINDS as string[]).includes(k)) return k as NodeKind;
  return KIND_ALIASES[k] ?? "step";
}

/** Sorted union of the flows of all nodes. */
export function allFlows(graph: GraphData | null | undefined): string[] {
  const flows = new Set<string>();
  for (const n of graph?.nodes ?? []) for (const f of n.flows ?? []) if (f) flows.add(f);
  return [...flows].sort();
}

export interface FilteredGraph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

/**
 * The nodes of one flow ("" = everything): nodes listing the flow, plus nodes without any flow
 * (topics, triggers) that are connected to one of those; edges between kept nodes.
 */
export function filterGraph(graph: GraphData | null | undefined, flow: string): FilteredGraph {
  const nodes = (graph?.nodes ?? []).filter((n) => n && n.id !== undefined && n.id !== null);
  const ids = new Set(nodes.map((n) => String(n.id)));
  const edges = (graph?.edges ?? []).filter(
    (e) => e && ids.has(String(e.source)) && ids.has(String(e.target)),
  );
  if (!flow) return { nodes, edges };
  const members = new Set(
    nodes.filter((n) => (n.flows ?? []).includes(flow)).map((n) => String(n.id)),
  );
  const flowless = new Set(
    nodes.filter((n) => (n.flows ?? []).length === 0).map((n) => String(n.id)),
  );
  const keep = new Set(members);
  for (const e of edges) {
    const s = String(e.source);
    const t = String(e.target);
    if (members.has(s) && flowless.has(t)) keep.add(t);
    if (members.has(t) && flowless.has(s)) keep.add(s);
  }
  return {
    nodes: nodes.filter((n) => keep.has(String(n.id))),
    edges: edges.filter((e) => keep.has(String(e.source)) && keep.has(String(e.target))),
  };
}

/** A DOT double-quoted string. */
export function dotString(text: unknown): string {
  const s = String(text ?? "")
    .replace(/\\/g, "\\\\")
    .replace(/"/g, '\\"')
    .replace(/\r?\n/g, "\\n");
  return `"${s}"`;
}

// Shapes by kind. Colours come from CSS (theme aware); DOT only sets shape and line style.
const KIND_ATTRS: Record<NodeKind, string> = {
  step: 'shape=box, style="rounded,filled"',
  noop: 'shape=box, style="rounded,dashed,filled"',
  api: 'shape=cds, style="filled", margin="0.2,0.055"',
  cron: 'shape=hexagon, style="filled"',
  topic: 'shape=ellipse, style="filled", fontsize=9, height=0.3',
  trigger: 'shape=invhouse, style="filled"',
  flow: 'shape=box3d, style="filled", fontsize=12, margin="0.2,0.08"',
};

function truncate(text: string, max = 48): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export interface DotResult {
  dot: string;
  /** DOT node name ("n0", "n1", …) -> the node. */
  byName: Map<string, GraphNode>;
  /** Edge i of the DOT (SVG class `we<i>`). */
  edges: GraphEdge[];
  nodeCount: number;
  /** Graphviz cluster name ("cluster_0", …) -> its flow. */
  clusters: Map<string, string>;
  /** Whether long chains were wrapped into rows. */
  wrapped: boolean;
  /** Disconnected parts packed in rows of this many (0: not packed). */
  packedColumns: number;
}

export interface DotOptions {
  /** Draw each flow's nodes in a box labelled with the flow (when there are several). */
  clusters?: boolean;
  /** Wrap a graph more than this many ranks long into rows (0: never). Default 12. */
  maxRanks?: number;
  /** The graph is already filtered (focus, collapsed flows): use it as it is. */
  prefiltered?: boolean;
  /** Width / height of the view: disconnected parts are packed into rows to fit it. */
  aspect?: number;
}

/** Rough size in points of a node as Graphviz will draw it (for packing, before layout). */
export function estimateNodeSize(node: GraphNode): Size {
  const kind = nodeKind(node);
  const lines = truncate(String(node.label ?? node.id)).split("\n");
  const font = kind === "flow" ? 12 : kind === "topic" ? 9 : 11;
  const chars = Math.max(...lines.map((l) => l.length), 1);
  let w = Math.max(54, chars * font * 0.56 + 2 * (kind === "flow" ? 14 : 9));
  let h = Math.max(26, lines.length * font * 1.2 + 8);
  if (kind === "topic") w *= 1.3;
  if (kind === "flow") (w += 4), (h += 4);
  return { w, h };
}

/**
 * Each connected part's estimated size (rankdir=LR: ranks side by side, a rank's nodes one
 * above the other), the parts in the order given.
 */
export function estimateComponentSizes(graph: FilteredGraph, parts: string[][]): Size[] {
  const { rank } = longestPathRanks(graph);
  const byId = new Map(graph.nodes.map((n) => [String(n.id), n]));
  return parts.map((ids) => {
    const colW = new Map<number, number>();
    const colH = new Map<number, number>();
    for (const id of ids) {
      const r = rank.get(id) ?? 0;
      const s = estimateNodeSize(byId.get(id) ?? { id });
      colW.set(r, Math.max(colW.get(r) ?? 0, s.w));
      colH.set(r, (colH.get(r) ?? -22) + s.h + 22);
    }
    let w = 0;
    for (const x of colW.values()) w += x;
    w += 32 * Math.max(0, colW.size - 1);
    return { w, h: Math.max(...colH.values()) };
  });
}

/**
 * DOT for the (filtered) graph. Nodes are named `n<i>` so any id is safe; the SVG `<title>`
 * of each node/edge carries that name and is mapped back to the node id after layout.
 */
export function buildDot(
  graph: GraphData | null | undefined,
  flow: string,
  options: DotOptions = {},
): DotResult {
  const { nodes, edges } = options.prefiltered
    ? { nodes: graph?.nodes ?? [], edges: graph?.edges ?? [] }
    : filterGraph(graph, flow);
  const byName = new Map<string, GraphNode>();
  const nameOf = new Map<string, string>();
  const wrap =
    nodes.length <= MAX_WRAPPED && options.maxRanks !== 0
      ? wrapRanks({ nodes, edges }, options.maxRanks ?? 12)
      : null;
  const lines = [
    "digraph wistro {",
    `  rankdir=LR; bgcolor="transparent"; nodesep=0.3; ranksep=0.45;${wrap ? " newrank=true;" : ""}`,
    '  node [fontname="Helvetica", fontsize=11, height=0.36, margin="0.12,0.05"];',
    '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];',
  ];
  const nodeLine = (node: GraphNode, name: string) => {
    const kind = nodeKind(node);
    const label = truncate(String(node.label ?? node.id));
    return `${name} [label=${dotString(label)}, ${KIND_ATTRS[kind]}];`;
  };
  const groups = new Map<string, string[]>();
  const lineOf: string[] = [];
  nodes.forEach((node, i) => {
    const name = `n${i}`;
    byName.set(name, node);
    nameOf.set(String(node.id), name);
    const f = nodeKind(node) === "flow" ? "" : homeFlow(node);
    let g = groups.get(f);
    if (!g) groups.set(f, (g = []));
    g.push(`  ${nodeLine(node, name)}`);
    lineOf.push(`  ${nodeLine(node, name)}`);
  });
  const clusters = new Map<string, string>();
  let packed = 0;
  const flowNames = [...groups.keys()].filter(Boolean).sort();
  const clustered = !!options.clusters && flowNames.length >= 2 && nodes.length <= MAX_CLUSTERED;
  if (clustered) {
    lines.push(...(groups.get("") ?? []));
    flowNames.forEach((f, k) => {
      const name = `cluster_${k}`;
      clusters.set(name, f);
      lines.push(
        `  subgraph ${name} {`,
        `    label=${dotString(f)}; class="wflow"; style="rounded,dashed"; fontname="Helvetica"; fontsize=11; labeljust=l;`,
        ...groups.get(f)!.map((l) => `  ${l}`),
        "  }",
      );
    });
  } else {
    const parts = wrap ? [] : components({ nodes, edges });
    if (parts.length >= PACK_MIN_COMPONENTS) {
      // Disconnected parts (collapsed flows, separate flows) would stack in one tall column:
      // pack them in rows fitting the view. The nodes are declared part by part in the order
      // Graphviz fills its array (bottom row first), so that the grid reads top to bottom.
      const sizes = estimateComponentSizes({ nodes, edges }, parts);
      const columns = packColumns(sizes, options.aspect ?? DEFAULT_ASPECT, 12);
      lines[1] += ` pack=8; packmode="array_ic${columns}";`;
      const index = new Map(nodes.map((n, i) => [String(n.id), i]));
      for (const p of bottomUpOrder(parts.length, columns)) {
        for (const id of parts[p]) lines.push(lineOf[index.get(id)!]);
      }
      packed = columns;
    } else {
      for (const g of groups.values()) lines.push(...g);
    }
  }
  const edgeList: GraphEdge[] = [];
  for (const e of edges) {
    const s = nameOf.get(String(e.source));
    const t = nameOf.get(String(e.target));
    if (!s || !t) continue;
    // `class` ends up on the SVG <g class="edge …">: maps the drawn edge back to its data.
    const attrs: string[] = [`class="we${edgeList.length}"`];
    edgeList.push(e);
    const label = e.label ?? e.topic;
    if (label) {
      // Large graphs: edge labels would take most of the layout time; the topic is a tooltip.
      const key = nodes.length > LARGE_GRAPH ? "tooltip" : "label";
      attrs.push(`${key}=${dotString(truncate(String(label), 40))}`);
    }
    if (e.virtual) attrs.push('style="dashed"');
    if (wrap) {
      const col = (id: string) => (wrap.rank.get(id) ?? 0) % wrap.width;
      if (col(String(e.target)) <= col(String(e.source))) attrs.push("constraint=false");
    }
    lines.push(`  ${s} -> ${t} [${attrs.join(", ")}];`);
  }
  if (wrap) {
    // Rank r is drawn in column r % width, row floor(r / width): one rank=same group per
    // column, and invisible edges between the rows of a column keep the rows in order.
    const cols = new Map<number, Map<number, string[]>>();
    for (const node of nodes) {
      const id = String(node.id);
      const r = wrap.rank.get(id) ?? 0;
      const c = r % wrap.width;
      const row = Math.floor(r / wrap.width);
      let byRow = cols.get(c);
      if (!byRow) cols.set(c, (byRow = new Map()));
      let l = byRow.get(row);
      if (!l) byRow.set(row, (l = []));
      l.push(nameOf.get(id)!);
    }
    for (const byRow of cols.values()) {
      const rowsSorted = [...byRow.keys()].sort((a, b) => a - b);
      lines.push(`  { rank=same; ${rowsSorted.flatMap((r) => byRow.get(r)!).join("; ")}; }`);
      for (let i = 1; i < rowsSorted.length; i++) {
        const a = byRow.get(rowsSorted[i - 1])!;
        const b = byRow.get(rowsSorted[i])!;
        lines.push(`  ${a[a.length - 1]} -> ${b[0]} [style=invis];`);
      }
    }
  }
  lines.push("}");
  return {
    dot: lines.join("\n") + "\n",
    byName,
    edges: edgeList,
    nodeCount: nodes.length,
    clusters,
    wrapped: !!wrap,
    packedColumns: packed,
  };
}
