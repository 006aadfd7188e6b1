/**
 * The Graphviz runtime, built separately into one ES module string (see scripts/viz-runtime.mjs).
 *
 * - Imported on the main thread (from a Blob URL): use the exported `instance`.
 * - Started as a module Worker (from a Blob URL of the same text): answers
 *   `{id, dot}` messages with `{id, svg}` or `{id, error}`.
 */
import { instance } from "@viz-js/viz";

export { instance };

declare const WorkerGlobalScope: unknown;

interface WorkerScope {
  onmessage: ((ev: { data: { id: number; dot: string } }) => void) | null;
  postMessage(msg: unknown): void;
}

if (typeof WorkerGlobalScope !== "undefined") {
  const scope = self as unknown as WorkerScope;
  const viz = instance();
  scope.onmessage = (ev) => {
    const { id, dot } = ev.data;
    viz.then(
      (v) => scope.postMessage({ id, svg: v.renderString(dot, { format: "svg", engine: "dot" }) }),
    ).catch((err: unknown) =>
      scope.postMessage({ id, error: err instanceof Error ? err.message : String(err) }),
    );
  };
}
