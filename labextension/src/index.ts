/**
 * Wistro's anywidget ESM bundle. Both Python widget classes point `_esm` at this one file;
 * `render` dispatches on the synced `kind` trait ("flow_graph" | "trace_view" | "run_diff").
 */
import vizRuntimeSource from "virtual:viz-runtime";
import { renderFlowGraph, setDefaultLayout } from "./flowgraph";
import { createVizLayout, importModuleSource, type VizLayout, type VizRuntime } from "./layout";
import { h } from "./dom";
import { ensureStyles } from "./styles";
import { renderRunDiff } from "./rundiff";
import { renderTraceView } from "./traceview";
import type { Cleanup, RenderProps } from "./types";

// One Graphviz instance and one layout worker per page, shared by every widget and by every
// copy of this module (anywidget may import the bundle more than once).
const SHARED = Symbol.for("wistro.widgets.layout.v1");
type Host = typeof globalThis & { [SHARED]?: VizLayout };
const host = globalThis as Host;
const layout =
  host[SHARED] ??
  (host[SHARED] = createVizLayout({
    loadRuntime: () => importModuleSource<VizRuntime>(vizRuntimeSource),
    workerSource: vizRuntimeSource,
    // Every layout in the worker: compiling Graphviz on the main thread alone blocks it for
    // ~250 ms; the main thread lays out only where no worker can start.
    workerThreshold: 0,
  }));
setDefaultLayout(layout);

function render({ model, el }: RenderProps): Cleanup {
  const kind = String(model.get("kind") ?? "");
  if (kind === "flow_graph") return renderFlowGraph(model, el);
  if (kind === "trace_view") return renderTraceView(model, el);
  if (kind === "run_diff") return renderRunDiff(model, el);
  ensureStyles(el.ownerDocument ?? document);
  const box = h(
    "div",
    { class: "wistro-widget wistro-unknown" },
    `Wistro widget: unknown kind ${JSON.stringify(kind)} (expected "flow_graph", "trace_view" or "run_diff")`,
  );
  el.appendChild(box);
  return () => box.remove();
}

export default { render };
