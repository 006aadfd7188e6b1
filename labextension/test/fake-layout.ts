/**
 * A deterministic fake of Graphviz: parses the DOT written by buildDot and returns an SVG with
 * the same structure Graphviz produces (g.node with <title>name</title> and a shape,
 * g.edge with the DOT `class` and <title>a->b</title>), nodes on a grid.
 */
export function fakeLayoutSvg(dot: string): string {
  const nodes: { name: string; label: string; shape: string }[] = [];
  const edges: { s: string; t: string; cls: string; label: string }[] = [];
  for (const line of dot.split("\n")) {
    let m = line.match(/^\s*(n\d+) -> (n\d+) \[(.*)\];$/);
    if (m) {
      edges.push({
        s: m[1],
        t: m[2],
        cls: m[3].match(/class="([^"]*)"/)?.[1] ?? "",
        label: m[3].match(/label="((?:[^"\\]|\\.)*)"/)?.[1] ?? "",
      });
      continue;
    }
    m = line.match(/^\s*(n\d+) \[(.*)\];$/);
    if (m) {
      nodes.push({
        name: m[1],
        label: m[2].match(/label="((?:[^"\\]|\\.)*)"/)?.[1] ?? m[1],
        shape: m[2].match(/shape=(\w+)/)?.[1] ?? "box",
      });
    }
  }
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const pos = new Map<string, [number, number]>();
  const cols = Math.max(1, Math.ceil(Math.sqrt(nodes.length)));
  nodes.forEach((n, i) => pos.set(n.name, [60 + (i % cols) * 140, -(30 + Math.floor(i / cols) * 60)]));
  const W = cols * 140 + 40;
  const H = Math.ceil(nodes.length / cols) * 60 + 20;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}pt" height="${H}pt" viewBox="0.00 0.00 ${W}.00 ${H}.00">`,
    `<g id="graph0" class="graph" transform="translate(4 ${H - 4})">`,
  ];
  nodes.forEach((n, i) => {
    const [x, y] = pos.get(n.name)!;
    const shape =
      n.shape === "ellipse"
        ? `<ellipse cx="${x}" cy="${y}" rx="50" ry="16"/>`
        : `<polygon points="${x - 50},${y - 16} ${x + 50},${y - 16} ${x + 50},${y + 16} ${x - 50},${y + 16}"/>`;
    parts.push(
      `<g id="node${i + 1}" class="node"><title>${n.name}</title>${shape}` +
        `<text text-anchor="middle" x="${x}" y="${y + 4}">${esc(n.label)}</text></g>`,
    );
  });
  edges.forEach((e, i) => {
    const [x1, y1] = pos.get(e.s)!;
    const [x2, y2] = pos.get(e.t)!;
    parts.push(
      `<g id="edge${i + 1}" class="edge ${e.cls}"><title>${e.s}&#45;&gt;${e.t}</title>` +
        `<path d="M${x1 + 50},${y1}C${x1 + 60},${y1} ${x2 - 60},${y2} ${x2 - 50},${y2}"/>` +
        `<polygon points="${x2 - 50},${y2} ${x2 - 58},${y2 - 3} ${x2 - 58},${y2 + 3}"/>` +
        `<text x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2}">${esc(e.label)}</text></g>`,
    );
  });
  parts.push("</g></svg>");
  return parts.join("\n");
}
