import { defineConfig } from "vite";

// Three pages into the Python package, served by meterflow under /console/:
// index.html (the console), portal.html (/portal), ide.html (the GraphiQL page of /graphql).
// GraphiQL (React) is a separate chunk that only its view and ide.html load.
export default defineConfig({
  base: "/console/",
  build: {
    outDir: "../src/meterflow/http/console_static",
    emptyOutDir: true,
    target: "es2021",
    sourcemap: false,
    reportCompressedSize: true,
    chunkSizeWarningLimit: 2000,
    rollupOptions: {
      input: { index: "index.html", portal: "portal.html", ide: "ide.html" },
      onwarn(warning, warn) {
        // GraphiQL's React dependencies mark modules "use client" (for server components).
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
    },
  },
});
