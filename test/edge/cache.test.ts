// Repeated lookups at one version compute nothing again; a change is caught up by delta.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { cacheStatsForTest, clearRealmCacheForTest } from "../../src/edge/realm-cache.ts";
import { call, newRealm, node } from "./helpers.ts";

describe("per-isolate realm cache", () => {
  it("builds the realm and each table once per version, and catches up by delta", async () => {
    const realm = await newRealm("cache");
    const records = Array.from({ length: 50 }, (_, i) => node(`c${i}`));
    await call("POST", `/v1/realms/${realm}/import`, { body: records });
    clearRealmCacheForTest();
    const s0 = { ...cacheStatsForTest };
    for (let i = 0; i < 20; i++) {
      expect((await call("GET", `/v1/realms/${realm}/route-tables/c1`)).status).toBe(200);
      expect((await call("GET", `/v1/realms/${realm}/routes?from=c1&to=c2`)).status).toBe(200);
    }
    expect(cacheStatsForTest.builds - s0.builds).toBe(1);
    expect(cacheStatsForTest.tables - s0.tables).toBe(1);
    expect(cacheStatsForTest.tableHits - s0.tableHits).toBe(19);
    expect(cacheStatsForTest.routes - s0.routes).toBe(1);
    expect(cacheStatsForTest.resets - s0.resets).toBe(1);

    await call("PUT", `/v1/realms/${realm}/nodes/c50`, { body: node("c50") });
    const t = await call("GET", `/v1/realms/${realm}/route-tables/c1`);
    expect(t.body.routes.map((r: { to: string }) => r.to)).toContain("c50");
    expect(cacheStatsForTest.resets - s0.resets).toBe(1);
    expect(cacheStatsForTest.deltas - s0.deltas).toBe(1);
    expect(cacheStatsForTest.builds - s0.builds).toBe(2);
  });

  it("an isolate far behind (changelog pruned) or from another epoch reloads by pages", async () => {
    const realm = await newRealm("far");
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

describe("GET /changes", () => {
  it("gives the records changed since a version, waits for the next change, and says reset when it cannot", async () => {
    const realm = await newRealm("chg");
    const b = `/v1/realms/${realm}`;
    await call("PUT", `${b}/nodes/x1`, { body: node("x1") });
    const first = await call("GET", `${b}/changes`);
    expect(first.body).toMatchObject({ kind: "reset", version: 1 });
    const epoch = first.body.epoch as string;
    await call("PUT", `${b}/nodes/x2`, { body: node("x2") });
    await call("DELETE", `${b}/nodes/x1`);
    const delta = await call("GET", `${b}/changes?since=1&epoch=${epoch}`);
    expect(delta.body.kind).toBe("delta");
    expect(delta.body.version).toBe(3);
    const byName = Object.fromEntries(
      delta.body.changes.map((c: { name: string; record: { name: string } | null }) => [
        c.name,
        c.record?.name ?? null,
      ]),
    );
    expect(byName).toEqual({ x1: null, x2: "x2" });
    expect((await call("GET", `${b}/changes?since=3&epoch=${epoch}`)).body.kind).toBe("current");
    const waiting = call("GET", `${b}/changes?since=3&epoch=${epoch}&wait=20`);
    await new Promise((r) => setTimeout(r, 100));
    await call("PUT", `${b}/nodes/x3`, { body: node("x3") });
    const woke = await waiting;
    expect(woke.body).toMatchObject({ kind: "delta", version: 4, changes: [{ name: "x3" }] });
    expect((await call("GET", `${b}/changes?since=1&epoch=ffff`)).body.kind).toBe("reset");
    expect((await call("GET", `${b}/changes?since=-1`)).status).toBe(400);
    expect((await call("GET", `${b}/changes`, { token: "nope" })).status).toBe(401);
  });
});
