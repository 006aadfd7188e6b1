import { defineConfig } from "vitest/config";

// `virtual:viz-runtime` is the runtime module's source text in the bundle (build.mjs); tests
// that need it build it themselves, others get an empty string.
export default defineConfig({
  plugins: [
    {
      name: "viz-runtime-stub",
      resolveId: (id) => (id === "virtual:viz-runtime" ? "\0virtual:viz-runtime" : null),
      load: (id) => (id === "\0virtual:viz-runtime" ? "export default '';" : null),
    },
  ],
  // test/bundle.test.ts imports the built bundle from ../wistro_jupyter/static/
  server: { fs: { allow: [".."] } },
  test: {
    environment: "jsdom",
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
