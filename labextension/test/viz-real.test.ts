// @vitest-environment node
/**
 * The real layout path, with the real Graphviz (wasm) — no fakes:
 * - @viz-js/viz on DOT built by buildDot;
 * - the runtime module string that the bundle embeds (built exactly as build.mjs does),
 *   imported as a module (the main-thread path) and run as a worker (the large-graph path,
 *   here in a worker_threads Worker with the few `self` shims a browser worker provides).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker as NodeWorker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildDot } from "../src/dot";
import { createVizLayout, type VizRuntime, type WorkerLike } from "../src/layout";
// @ts-expect-error -- plain JS build helper shared with build.mjs
import { buildVizRuntime } from "../scripts/viz-runtime.mjs";

const GRAPH = {
  nodes: [
    { id: "api:0", label: "POST /orders", kind: "api", flows: ["checkout"] },
    { id: "step:Charge card", label: "Charge card", kind: "step", flows: ["checkout"] },
    { id: "step:Fraud review", label: "Fraud review", kind: "noop", flows: ["checkout"] },
    { id: "end:fraud.cleared", label: "fraud.cleared", kind: "topic", flows: [] },
    { id: "cron:nightly", label: "nightly", kind: "cron", flows: ["reports"] },
  ],
  edges: [
    { source: "api:0", target: "step:Charge card", topic: "order.placed" },
    { source: "step:Charge card", target: "step:Fraud review", topic: "payment.captured" },
    { source: "step:Fraud review", target: "end:fraud.cleared", topic: "fraud.cleared", virtual: true },
  ],
};

function expectNodes(svg: string, names: string[], labels: string[]) {
  expect(svg).toMatch(/^<svg|<\?xml/);
  for (const n of names) expect(svg).toContain(`<title>${n}</title>`);
  for (const l of labels) expect(svg).toContain(l);
  expect((svg.match(/class="node"/g) ?? []).length).toBe(names.length);
  expect(svg).toMatch(/class="edge we0"/);
}

let dir: string;
let runtimeFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "wistro-viz-"));
  const source: string = await buildVizRuntime();
  runtimeFile = join(dir, "viz-runtime.mjs");
  writeFileSync(runtimeFile, source);
  // Worker entry: browser-worker shims, then the very same runtime module.
  writeFileSync(
    join(dir, "worker.mjs"),
    [
      'import { parentPort } from "node:worker_threads";',
      "globalThis.WorkerGlobalScope = class WorkerGlobalScope {};",
      "globalThis.self = globalThis;",
      "globalThis.postMessage = (m) => parentPort.postMessage(m);",
      // a browser worker dispatches messages only once its script has run: queue until then
      "let queue = [];",
      'parentPort.on("message", (data) => (queue ? queue.push(data) : globalThis.onmessage({ data })));',
      'await import("./viz-runtime.mjs");',
      "for (const data of queue.splice(0)) globalThis.onmessage({ data });",
      "queue = null;",
    ].join("\n"),
  );
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("real Graphviz layout", () => {
  it("packs 50 collapsed flows into a grid fitting the view's aspect, not one column", async () => {
    const { instance } = await import("@viz-js/viz");
    const viz = await instance();
    const nodes = Array.from({ length: 50 }, (_, i) => ({
      id: `flow:flow${String(i).padStart(2, "0")}`,
      label: `flow${String(i).padStart(2, "0")}\n100 steps`,
      kind: "flow",
      flows: [`flow${String(i).padStart(2, "0")}`],
    }));
    const { dot, byName, packedColumns } = buildDot({ nodes, edges: [] }, "", { prefiltered: true, aspect: 2.5 });
    const svg = viz.renderString(dot, { format: "svg", engine: "dot" });
    const [, , w, h] = svg.match(/viewBox="([^"]+)"/)![1].split(" ").map(Number);
    expect(w / h).toBeGreaterThan(1.5);
    expect(w / h).toBeLessThan(4);
    // each box: its polygon's bounds; read top to bottom, left to right, in flow order
    const boxes = [...svg.matchAll(/<title>(n\d+)<\/title>\n<polygon[^>]*points="([^"]+)"/g)].map((m) => {
      const pts = m[2].trim().split(" ").map((p) => p.split(",").map(Number));
      const xs = pts.map((p) => p[0]);
      const ys = pts.map((p) => p[1]);
      return { id: String(byName.get(m[1])!.id), x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys) };
    });
    expect(boxes).toHaveLength(50);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i];
        const b = boxes[j];
        expect(a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1).toBe(false);
      }
    }
    const rows = new Set(boxes.map((b) => Math.round(b.y0)));
    expect(rows.size).toBe(Math.ceil(50 / packedColumns));
    const reading = [...boxes].sort((a, b) => a.y0 - b.y0 || a.x0 - b.x0).map((b) => b.id);
    expect(reading).toEqual(nodes.map((n) => n.id));
  });

  it("@viz-js/viz lays out the DOT built from a graph", async () => {
    const { instance } = await import("@viz-js/viz");
    const viz = await instance();
    const { dot, byName } = buildDot(GRAPH, "checkout");
    const svg = viz.renderString(dot, { format: "svg" });
    expectNodes(svg, [...byName.keys()], ["POST /orders", "Charge card", "Fraud review", "fraud.cleared"]);
    expect(svg).not.toContain("nightly"); // filtered out
  });

  it("the embedded runtime module works on the main thread", async () => {
    const layout = createVizLayout({
      loadRuntime: () => import(pathToFileURL(runtimeFile).href) as Promise<VizRuntime>,
      workerSource: null,
    });
    const { dot, byName, nodeCount } = buildDot(GRAPH, "");
    const svg = await layout(dot, nodeCount);
    expect(layout.lastMode).toBe("main");
    expectNodes(svg, [...byName.keys()], ["POST /orders", "nightly"]);
  });

  it("the embedded runtime module works as a layout worker for large graphs", async () => {
    let started = 0;
    const createWorker = (): WorkerLike => {
      started++;
      const w = new NodeWorker(join(dir, "worker.mjs"));
      const adapter: WorkerLike = {
        onmessage: null,
        onerror: null,
        postMessage: (m) => w.postMessage(m),
        terminate: () => void w.terminate(),
      };
      w.on("message", (data) => adapter.onmessage?.({ data } as MessageEvent));
      w.on("error", (err) => adapter.onerror?.({ message: err.message } as ErrorEvent));
      return adapter;
    };
    const layout = createVizLayout({
      loadRuntime: () => Promise.reject(new Error("main thread must not be used")),
      workerSource: "(unused by this createWorker)",
      workerThreshold: 3,
      createWorker,
    });
    try {
      // 40 nodes in a chain > threshold 3: goes to the worker
      const big = {
        nodes: Array.from({ length: 40 }, (_, i) => ({ id: `s${i}`, label: `step ${i}`, kind: "step" })),
        edges: Array.from({ length: 39 }, (_, i) => ({ source: `s${i}`, target: `s${i + 1}`, topic: `t${i}` })),
      };
      const { dot, byName, nodeCount } = buildDot(big, "");
      const [a, b] = await Promise.all([layout(dot, nodeCount), layout(buildDot(GRAPH, "").dot, 5)]);
      expect(layout.lastMode).toBe("worker");
      expectNodes(a, [...byName.keys()], ["step 0", "step 39"]);
      expect(b).toContain("POST /orders");
      expect(started).toBe(1); // one worker, reused
      // a Graphviz syntax error comes back as an error, not a hang
      await expect(layout("digraph { a -> }", 10)).rejects.toThrow();
    } finally {
      layout.dispose();
    }
  }, 60_000);
});
