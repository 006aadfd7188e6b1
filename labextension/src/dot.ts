/** From the synced `graph` (and `flow`) to Graphviz DOT text. Pure functions, no DOM. */
import type { GraphData, GraphEdge, GraphNode, NodeKind } from "./types";

/** Above this many nodes, edges are drawn without labels (topics show as tooltips). */
export const LARGE_GRAPH = 300;

export const NODE_KINDS: NodeKind[] = ["step", "noop", "api", "cron", "topic", "trigger"];

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
}

/**
 * DOT for the (filtered) graph. Nodes are named `n<i>` so any id is safe; the SVG `<title>`
 * of each node/edge carries that name and is mapped back to the node id after layout.
 */
export function buildDot(graph: GraphData | null | undefined, flow: string): DotResult {
  const { nodes, edges } = filterGraph(graph, flow);
  const byName = new Map<string, GraphNode>();
  const nameOf = new Map<string, string>();
  const lines = [
    "digraph wistro {",
    '  rankdir=LR; bgcolor="transparent"; nodesep=0.3; ranksep=0.45;',
    '  node [fontname="Helvetica", fontsize=11, height=0.36, margin="0.12,0.05"];',
    '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];',
  ];
  nodes.forEach((node, i) => {
    const name = `n${i}`;
    byName.set(name, node);
    nameOf.set(String(node.id), name);
    const kind = nodeKind(node);
    const label = truncate(String(node.label ?? node.id));
    lines.push(`  ${name} [label=${dotString(label)}, ${KIND_ATTRS[kind]}];`);
  });
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
    lines.push(`  ${s} -> ${t} [${attrs.join(", ")}];`);
  }
  lines.push("}");
  return { dot: lines.join("\n") + "\n", byName, edges: edgeList, nodeCount: nodes.length };
}
