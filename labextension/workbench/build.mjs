// npm run build:lib: src/index.ts (and what it imports from ../src, the FlowGraph renderer) ->
// lib/index.js, one ES module. JupyterLab's and Lumino's packages stay imports (the lab
// extension build shares them with JupyterLab), and so does @viz-js/viz (Graphviz as wasm):
// `jupyter-builder build .` then puts it in a chunk of its own, loaded the first time a graph is
// drawn. `npm run build` runs both steps: lib/ -> ../../wistro_jupyter/labextension/.
import * as esbuild from "esbuild";

await esbuild.build({
  entryPoints: ["src/index.ts"],
  outfile: "lib/index.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  charset: "utf8",
  legalComments: "eof",
  logLevel: "warning",
  external: ["@jupyterlab/*", "@lumino/*", "@viz-js/viz"],
});
console.log("built lib/index.js");
