import { describe, expect, it } from "vitest";
import { createApp } from "../../src/edge/app.ts";
import { call } from "./helpers.ts";

// The API description is generated from the zod schemas, but its list of paths
// is written by hand; this keeps that list in step with the routes the Worker
// actually serves, so a new endpoint cannot ship undocumented.
describe("/openapi.json", () => {
  it("documents every /v1 route the Worker serves, with the same methods", async () => {
    const doc = await call("GET", "/openapi.json", { token: null });
    expect(doc.status).toBe(200);
    const paths = doc.body.paths as Record<string, Record<string, unknown>>;

    const served = new Set<string>();
    for (const r of createApp().routes) {
      if (!r.path.startsWith("/v1/realms/") || r.method === "ALL") continue;
      const path = r.path.replace(/:([A-Za-z_]+)/g, "{$1}");
      served.add(`${r.method.toLowerCase()} ${path}`);
    }
    expect(served.size).toBeGreaterThan(10);

    const missing = [...served].filter((entry) => {
      const [method, path] = entry.split(" ") as [string, string];
      return paths[path]?.[method] === undefined;
    });
    expect(missing).toEqual([]);
  });
});
