// State survives Durable Object eviction; an old schema migrates in place.
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { migrate, SCHEMA_VERSION } from "../../durable-objects/migrations.ts";
import type { RealmObject } from "../../durable-objects/realm.ts";
import { clearRealmCacheForTest } from "../../src/edge/realm-cache.ts";
import { call, newRealm, node, storedRealmState } from "./helpers.ts";

const stubOf = (realm: string) => env.REALM.get(env.REALM.idFromName(realm));

describe("durability", () => {
  it("eviction keeps records, leases, tokens and the version", async () => {
    const realm = await newRealm("evict");
    await call("PUT", `/v1/realms/${realm}/nodes/keep`, { body: node("keep") });
    await call("PUT", `/v1/realms/${realm}/nodes/lease`, { body: { ...node("lease"), ttl_seconds: 600 } });
    const reader = (await call("POST", `/v1/realms/${realm}/tokens`, { body: { role: "reader" } })).body.token;
    const before = await storedRealmState(realm);
    await evictDurableObject(stubOf(realm));
    clearRealmCacheForTest();
    const after = await storedRealmState(realm);
    expect(after).toEqual(before);
    expect(after).toMatchObject({ version: 2, records: 2 });
    expect(after.alarm).not.toBeNull();
    const list = await call("GET", `/v1/realms/${realm}/nodes`, { token: reader });
    expect(list.body.version).toBe(2);
    expect(list.body.records.map((r: { name: string }) => r.name)).toEqual(["keep", "lease"]);
    const lease = await call("GET", `/v1/realms/${realm}/nodes/lease`);
    expect(lease.body.ttl_seconds).toBe(600);
    // And it keeps counting from where it was.
    expect((await call("DELETE", `/v1/realms/${realm}/nodes/keep`)).body.version).toBe(3);
  });

  it("a realm stored by schema 1 migrates: records, leases and the version survive, new features work", async () => {
    const realm = await newRealm("migrate");
    const t0 = Date.now();
    await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) => {
      const sql = state.storage.sql;
      for (const t of ["records", "changelog", "tokens", "meta", "schema_version", "address_policy"])
        sql.exec(`DROP TABLE IF EXISTS ${t}`);
      // Schema 1, as the first release created it.
      sql.exec("CREATE TABLE schema_version (version INTEGER NOT NULL)");
      sql.exec("INSERT INTO schema_version VALUES (1)");
      sql.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
      sql.exec("INSERT INTO meta VALUES ('version', '41')");
      sql.exec("CREATE TABLE records (name TEXT PRIMARY KEY, json TEXT NOT NULL, expires_at INTEGER) WITHOUT ROWID");
      sql.exec(
        "INSERT INTO records VALUES (?, ?, NULL)",
        "old-a",
        JSON.stringify({ ...node("old-a", "team-a"), type: "node" }),
      );
      sql.exec(
        "INSERT INTO records VALUES (?, ?, ?)",
        "old-b",
        JSON.stringify({ ...node("old-b", "team-b"), type: "node" }),
        t0 + 3_600_000,
      );
    });
    // A restarted object migrates in its constructor, before it serves anything.
    await evictDurableObject(stubOf(realm));
    clearRealmCacheForTest();
    const schema = await runInDurableObject(
      stubOf(realm),
      (_i, state) => state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version,
    );
    expect(schema).toBe(SCHEMA_VERSION);
    const list = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(list.body.version).toBe(41);
    expect(list.body.records.map((r: { name: string }) => r.name)).toEqual(["old-a", "old-b"]);
    const b = await call("GET", `/v1/realms/${realm}/nodes/old-b`);
    expect(b.body.expires_at).toBe(new Date(t0 + 3_600_000).toISOString());
    // The backfilled namespace column drives token scopes.
    const agent = (
      await call("POST", `/v1/realms/${realm}/tokens`, { body: { role: "agent", namespaces: ["team-a"] } })
    ).body.token;
    expect((await call("DELETE", `/v1/realms/${realm}/nodes/old-b`, { token: agent })).status).toBe(403);
    expect((await call("DELETE", `/v1/realms/${realm}/nodes/old-a`, { token: agent })).body.version).toBe(42);
    // Listener declarations (a later schema) start empty and work.
    expect((await call("GET", `/v1/realms/${realm}/listeners`)).body).toEqual({ version: 0, listeners: [] });
    const declared = await call("PUT", `/v1/realms/${realm}/listeners/redis`, {
      body: { listen: "0.0.0.0:6379", target: "redis:6379" },
    });
    expect(declared.status).toBe(201);
    // Running the migrations again is a no-op.
    const again = await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) =>
      state.storage.transactionSync(() => migrate(state.storage.sql)),
    );
    expect(again).toBe(SCHEMA_VERSION);
  });

  it("a realm stored by schema 2 migrates to 3: data, tokens and leases stay, the address policy starts at its default", async () => {
    const realm = await newRealm("migrate2");
    await call("PUT", `/v1/realms/${realm}/nodes/keep`, { body: { ...node("keep", "b"), ttl_seconds: 600 } });
    const agent = (await call("POST", `/v1/realms/${realm}/tokens`, { body: { role: "agent", namespaces: ["b"] } }))
      .body.token;
    await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) => {
      const sql = state.storage.sql;
      // Back to schema 2 exactly as it shipped: no address_policy table.
      sql.exec("DROP TABLE address_policy");
      sql.exec("UPDATE schema_version SET version = 2");
    });
    await evictDurableObject(stubOf(realm));
    clearRealmCacheForTest();
    const tables = await runInDurableObject(stubOf(realm), (_i, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .toArray()
        .map((r) => r.name),
    );
    expect(tables).toContain("address_policy");
    expect((await call("GET", `/v1/realms/${realm}/nodes/keep`)).body.ttl_seconds).toBe(600);
    expect((await call("GET", `/v1/realms/${realm}/policy`)).body).toEqual({});
    // The token minted before the migration still works, and the default policy applies to it.
    const refused = await call("PUT", `/v1/realms/${realm}/nodes/lo`, {
      token: agent,
      body: { ...node("lo", "b"), gateway: [{ priority: 1, address: "ipv4://127.0.0.1:1" }] },
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("gateway_forbidden");
    expect(
      (await call("PUT", `/v1/realms/${realm}/policy`, { body: { default: { allow_loopback: true } } })).status,
    ).toBe(200);
    const allowed = await call("PUT", `/v1/realms/${realm}/nodes/lo`, {
      token: agent,
      body: { ...node("lo", "b"), gateway: [{ priority: 1, address: "ipv4://127.0.0.1:1" }] },
    });
    expect(allowed.status).toBe(201);
  });

  it("refuses storage from a newer schema instead of corrupting it", async () => {
    const realm = await newRealm("newer");
    const err = await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) => {
      state.storage.sql.exec("UPDATE schema_version SET version = 999");
      try {
        state.storage.transactionSync(() => migrate(state.storage.sql));
        return "ran";
      } catch (e) {
        state.storage.sql.exec("UPDATE schema_version SET version = ?", SCHEMA_VERSION);
        return String(e);
      }
    });
    expect(err).toContain("newer than this code");
  });
});
