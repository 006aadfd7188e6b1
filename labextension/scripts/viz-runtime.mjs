// Builds the self-contained Graphviz runtime (src/viz-runtime.ts + @viz-js/viz, wasm inlined)
// as ONE minified ES module *string*. The widget bundle embeds that string once and uses it
// twice: imported from a Blob URL on the main thread (small graphs) and started as a module
// Worker from a Blob URL (large graphs). Used by build.mjs and by the Node tests.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";

export const runtimeEntry = fileURLToPath(new URL("../src/viz-runtime.ts", import.meta.url));

export async function buildVizRuntime() {
  const result = await esbuild.build({
    entryPoints: [runtimeEntry],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    minify: true,
    charset: "utf8",
    legalComments: "inline",
    write: false,
    logLevel: "silent",
  });
  return result.outputFiles[0].text;
}
