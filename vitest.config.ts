import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Three projects:
// - edge: the Worker and its Durable Objects inside workerd (real SQLite storage);
// - unit: the pure core, the CLI and the agent's modules on Node.js;
// - e2e: whole processes on loopback (wrangler dev, agents, real clients), one file at a time
//   because each starts servers and the CI machine has two cores.
export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            // The edge tests' secrets (production: `wrangler secret put HOPWAY_ADMIN_TOKEN` / `HOPWAY_TOKEN_KEY`).
            miniflare: { bindings: { HOPWAY_ADMIN_TOKEN: "test-admin-token", HOPWAY_TOKEN_KEY: "test-token-key" } },
          }),
        ],
        test: { name: "edge", include: ["test/edge/**/*.test.ts"] },
      },
      {
        test: {
          name: "unit",
          environment: "node",
          include: [
            "test/core/**/*.test.ts",
            "test/cli/**/*.test.ts",
            "test/scripts/**/*.test.ts",
            "test/docs/**/*.test.ts",
            "test/support/**/*.test.ts",
            "k8s-agent/test/unit/**/*.test.ts",
          ],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "e2e",
          environment: "node",
          include: ["test/e2e/**/*.test.ts", "k8s-agent/test/e2e/**/*.test.ts"],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
