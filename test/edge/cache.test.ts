// Repeated lookups at one version compute nothing again; a change is caught up by delta.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { cacheStats, clearRealmCache } from "../../src/edge/realm-cache.ts";
import { call, freshRealm, node } from "./helpers.ts";

describe("per-isolate realm cache", () => {
  it("builds the realm and each table once per version, and catches up by delta", async () => {
    const realm = freshRealm("cache");
    const records = Array.from({ length: 50 }, (_, i) => node(`c${i}`));
    await call("POST", `/v1/realms/${realm}/import`, { body: records });
    clearRealmCache();
    const s0 = { ...cacheStats };
    for (let i = 0; i < 20; i++) {
      expect((await call("GET", `/v1/realms/${realm}/route-tables/c1`)).status).toBe(200);
      expect((await call("GET", `/v1/realms/${realm}/routes?from=c1&to=c2`)).status).toBe(200);
    }
    expect(cacheStats.builds - s0.builds).toBe(1);
    expect(cacheStats.tables - s0.tables).toBe(1);
    expect(cacheStats.tableHits - s0.tableHits).toBe(19);
    expect(cacheStats.routes - s0.routes).toBe(1);
    expect(cacheStats.resets - s0.resets).toBe(1);

    await call("PUT", `/v1/realms/${realm}/nodes/c50`, { body: node("c50") });
    const t = await call("GET", `/v1/realms/${realm}/route-tables/c1`);
    expect(t.body.routes.map((r: { to: string }) => r.to)).toContain("c50");
    expect(cacheStats.resets - s0.resets).toBe(1);
    expect(cacheStats.deltas - s0.deltas).toBe(1);
    expect(cacheStats.builds - s0.builds).toBe(2);
  });

  it("an isolate far behind (changelog pruned) or from another epoch reloads by pages", async () => {
    const realm = freshRealm("far");
    await call("POST", `/v1/realms/${realm}/import`, { body: [node("f1"), node("f2")] });
    const stub = env.REALM.get(env.REALM.idFromName(realm));
    const admin = { kind: "admin" } as const;
    const r = await stub.changes(admin, "not-the-epoch", 1);
    expect(r.ok && r.changes.kind).toBe("reset");
    const ahead = await stub.changes(admin, r.ok ? r.changes.epoch : "", 99);
    expect(ahead.ok && ahead.changes.kind).toBe("reset");
    const delta = await stub.changes(admin, r.ok ? r.changes.epoch : "", 0);
    expect(delta.ok && delta.changes.kind === "delta" && delta.changes.changes.map((c) => c.name).sort()).toEqual([
      "f1",
      "f2",
    ]);
  });
});
