/** The RunDiff-only bundle (`static/run_diff.js`): no Graphviz, so an eval comparison stays small. */
import { renderRunDiff } from "./rundiff";
import type { Cleanup, RenderProps } from "./types";

function render({ model, el }: RenderProps): Cleanup {
  return renderRunDiff(model, el);
}

export default { render };
