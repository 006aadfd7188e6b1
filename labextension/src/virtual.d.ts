/** The Graphviz runtime module (src/viz-runtime.ts + @viz-js/viz) as source text; see build.mjs. */
declare module "virtual:viz-runtime" {
  const source: string;
  export default source;
}
