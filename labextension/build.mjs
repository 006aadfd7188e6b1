// npm run build: src/index.ts -> ../wistro_jupyter/static/widgets.js (one minified ES module,
// everything inlined: the Graphviz wasm is embedded once, as the string of the runtime module),
// and src/trace_view_entry.ts -> ../wistro_jupyter/static/trace_view.js (no Graphviz: small).
import * as esbuild from "esbuild";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { buildVizRuntime } from "./scripts/viz-runtime.mjs";

const outfile = fileURLToPath(new URL("../wistro_jupyter/static/widgets.js", import.meta.url));
mkdirSync(dirname(outfile), { recursive: true });

const runtimeSource = await buildVizRuntime();

/** Resolves `virtual:viz-runtime` to the runtime module's source text. */
const vizRuntimePlugin = {
  name: "viz-runtime",
  setup(build) {
    build.onResolve({ filter: /^virtual:viz-runtime$/ }, (args) => ({
      path: args.path,
      namespace: "viz-runtime",
    }));
    build.onLoad({ filter: /.*/, namespace: "viz-runtime" }, () => ({
      contents: runtimeSource,
      loader: "text",
    }));
  },
};

const common = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  minify: true,
  charset: "utf8",
  legalComments: "eof",
  logLevel: "warning",
};
const traceOutfile = fileURLToPath(new URL("../wistro_jupyter/static/trace_view.js", import.meta.url));
await esbuild.build({
  ...common,
  entryPoints: [fileURLToPath(new URL("./src/index.ts", import.meta.url))],
  outfile,
  plugins: [vizRuntimePlugin],
});
await esbuild.build({
  ...common,
  entryPoints: [fileURLToPath(new URL("./src/trace_view_entry.ts", import.meta.url))],
  outfile: traceOutfile,
});
const runDiffOutfile = fileURLToPath(new URL("../wistro_jupyter/static/run_diff.js", import.meta.url));
await esbuild.build({
  ...common,
  entryPoints: [fileURLToPath(new URL("./src/run_diff_entry.ts", import.meta.url))],
  outfile: runDiffOutfile,
});

for (const file of [outfile, traceOutfile, runDiffOutfile]) {
  const kib = (statSync(file).size / 1024).toFixed(0);
  console.log(`built ${file} (${kib} KiB)`);
}
