// Typed operations from the server's schema: a schema change that breaks a query the console
// sends breaks `npm run build` (codegen validates every document, tsc checks every use).
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["src/**/*.ts", "!src/gql/**/*"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        documentMode: "string",
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { Decimal: "string", DateTime: "string", JSON: "unknown" },
      },
    },
  },
};
export default config;
