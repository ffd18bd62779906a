import { defineConfig } from "vite";

// Two builds into the Python package: `vite build` → meterflow.js (ES module),
// `vite build --mode iife` → meterflow.iife.js (a classic <script>; globals under `Meterflow`).
export default defineConfig(({ mode }) => {
  const iife = mode === "iife";
  return {
    build: {
      outDir: "../src/meterflow/http/embed_static",
      emptyOutDir: !iife,
      target: "es2021",
      sourcemap: false,
      minify: true,
      reportCompressedSize: true,
      lib: {
        entry: "src/index.ts",
        name: "Meterflow",
        formats: [iife ? "iife" : "es"],
        fileName: () => (iife ? "meterflow.iife.js" : "meterflow.js"),
      },
    },
  };
});
