/**
 * The TraceView-only bundle (`static/trace_view.js`): no Graphviz, so a live trace widget per
 * `%wistro emit` stays small. The combined bundle (`widgets.js`) serves both kinds.
 */
import { h } from "./dom";
import { ensureStyles } from "./styles";
import { renderTraceView } from "./traceview";
import type { Cleanup, RenderProps } from "./types";

function render({ model, el }: RenderProps): Cleanup {
  const kind = String(model.get("kind") ?? "");
  if (kind === "trace_view") return renderTraceView(model, el);
  ensureStyles(el.ownerDocument ?? document);
  const box = h(
    "div",
    { class: "wistro-widget wistro-unknown" },
    `Wistro trace bundle: cannot render kind ${JSON.stringify(kind)}`,
  );
  el.appendChild(box);
  return () => box.remove();
}

export default { render };
