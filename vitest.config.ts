import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [cloudflareTest({ wrangler: { configPath: "./wrangler.toml" } })],
        test: { name: "edge", include: ["test/edge/**/*.test.ts"] },
      },
      {
        test: {
          name: "node",
          include: ["test/core/**/*.test.ts", "test/cli/**/*.test.ts", "k8s-agent/test/**/*.test.ts"],
          environment: "node",
        },
      },
    ],
  },
});
