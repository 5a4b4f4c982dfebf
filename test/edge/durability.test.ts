// State survives Durable Object eviction; an old schema migrates in place.
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { migrate, SCHEMA_VERSION } from "../../durable-objects/migrations.ts";
import type { RealmObject } from "../../durable-objects/realm.ts";
import { clearRealmCacheForTest } from "../../src/edge/realm-cache.ts";
import {
  call,
  newRealm,
  node,
  recordsBeforeInstance,
  recordsBeforeOwnerNamespace,
  recordsBeforeReportNamespace,
  storedRealmState,
  stubOf,
} from "./helpers.ts";

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
      for (const t of [
        "records",
        "changelog",
        "tokens",
        "meta",
        "schema_version",
        "address_policy",
        "ca_issued",
        "ca_authorities",
      ])
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
      // Back to schema 2 exactly as it shipped: no address_policy or CA tables, reports not per namespace.
      sql.exec("DROP TABLE address_policy");
      sql.exec("DROP TABLE ca_issued");
      sql.exec("DROP TABLE ca_authorities");
      recordsBeforeReportNamespace(sql);
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

  it("a realm stored by schema 5 migrates: stored reports and issued certificates get their namespace", async () => {
    const realm = await newRealm("migrate5");
    const base = `/v1/realms/${realm}`;
    const agent = async (ns: string) =>
      (await call("POST", `${base}/tokens`, { body: { role: "agent", namespaces: [ns] } })).body.token as string;
    const [agentA, agentB] = [await agent("a"), await agent("b")];
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const spki = new Uint8Array((await crypto.subtle.exportKey("spki", keys.publicKey)) as ArrayBuffer);
    const pem = `-----BEGIN PUBLIC KEY-----\n${btoa(String.fromCharCode(...spki))}\n-----END PUBLIC KEY-----\n`;
    for (const [name, ns] of [
      ["a-0", "a"],
      ["gone", "a"],
      ["b-0", "b"],
      ["admin-0", null],
    ] as const) {
      const body = ns === null ? { ...node(name), metadata: {} } : node(name, ns);
      expect((await call("PUT", `${base}/nodes/${name}`, { body })).status).toBe(201);
      const report = { workload: "w", ordinal: 0, load: 0.5, holds_state: false };
      expect((await call("POST", `${base}/nodes/${name}/heartbeat`, { body: { report } })).status).toBe(200);
    }
    for (const name of ["a-0", "gone"]) {
      const cert = await call("POST", `${base}/relays/${name}/certificate`, { body: { public_key: pem } });
      expect(cert.status).toBe(200);
    }
    expect((await call("DELETE", `${base}/nodes/gone`)).status).toBe(200);
    await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) => {
      const sql = state.storage.sql;
      // Back to schema 5 as it shipped: one report pool per workload name, certificates by name only.
      recordsBeforeReportNamespace(sql);
      // A later schema's index on the columns that schema 5 did not have yet.
      sql.exec("DROP INDEX ca_issued_namespace");
      sql.exec("ALTER TABLE ca_issued DROP COLUMN namespace_known");
      sql.exec("ALTER TABLE ca_issued DROP COLUMN namespace");
      sql.exec("UPDATE schema_version SET version = 5");
    });
    await evictDurableObject(stubOf(realm));
    clearRealmCacheForTest();
    const issued = await runInDurableObject(stubOf(realm), (_i, state) => {
      const sql = state.storage.sql;
      return {
        schema: sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version,
        rows: sql
          .exec("SELECT name, namespace, namespace_known FROM ca_issued ORDER BY name")
          .toArray()
          .map((r) => ({ ...r })),
      };
    });
    expect(issued).toEqual({
      schema: SCHEMA_VERSION,
      rows: [
        { name: "a-0", namespace: "a", namespace_known: 1 },
        { name: "gone", namespace: null, namespace_known: 0 },
      ],
    });
    // Each stored report counts in its record's namespace only.
    for (const [q, pods] of [
      ["a", ["a-0"]],
      ["b", ["b-0"]],
      ["", ["admin-0"]],
    ] as const) {
      const view = await call("GET", `${base}/workloads/w?namespace=${q}`);
      expect(view.status).toBe(200);
      expect(view.body.pods.map((p: { node: string }) => p.node)).toEqual(pods);
      expect(view.body.scaling.replicas_reporting).toBe(1);
    }
    // a-0's certificate is a's: b may not take the name once a lets it go.
    expect((await call("DELETE", `${base}/nodes/a-0`, { token: agentA })).status).toBe(200);
    const taken = await call("PUT", `${base}/nodes/a-0`, { token: agentB, body: node("a-0", "b") });
    expect(taken.status).toBe(409);
    expect(taken.body.error.code).toBe("name_certified");
    // Whose `gone`'s certificate was cannot be known: it does not block the name, and still holds its CA.
    expect((await call("PUT", `${base}/nodes/gone`, { token: agentB, body: node("gone", "b") })).status).toBe(201);
    const ca = await call("GET", `${base}/ca`);
    expect(ca.body.authorities[0].outstanding_certificates).toBe(2);
  });

  it("a realm stored by schema 7 migrates: each record, a group too, is owned by its namespace and counts there", async () => {
    const realm = await newRealm("migrate7");
    const base = `/v1/realms/${realm}`;
    const agentB = (await call("POST", `${base}/tokens`, { body: { role: "agent", namespaces: ["b"] } })).body
      .token as string;
    const group = { type: "group", metadata: { namespace_name: "b" }, node_list: [{ node_name: "b-0" }] };
    expect((await call("PUT", `${base}/nodes/kv`, { body: group })).status).toBe(201);
    expect((await call("PUT", `${base}/nodes/b-0`, { body: node("b-0", "b") })).status).toBe(201);
    expect((await call("PUT", `${base}/nodes/bare`, { body: { ...node("bare"), metadata: {} } })).status).toBe(201);
    await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) => {
      recordsBeforeOwnerNamespace(state.storage.sql);
      state.storage.sql.exec("UPDATE schema_version SET version = 7");
    });
    await evictDurableObject(stubOf(realm));
    clearRealmCacheForTest();
    const limits = await call("GET", `${base}/limits`);
    expect(limits.body.usage.records).toBe(3);
    expect(Object.keys(limits.body.usage.namespaces)).toEqual(["b"]);
    expect(limits.body.usage.namespaces.b.records).toBe(2);
    // b's tokens write b's group from its stored owner, as before the migration from its JSON.
    expect(
      (await call("PUT", `${base}/nodes/kv`, { token: agentB, body: { ...group, node_list: [{ node_name: "b-1" }] } }))
        .status,
    ).toBe(200);
    expect((await call("DELETE", `${base}/nodes/kv`, { token: agentB })).status).toBe(200);
    expect((await call("DELETE", `${base}/nodes/bare`, { token: agentB })).status).toBe(403);
    // Name holds (a later schema) start empty and work: b keeps the name it just deleted.
    const agentC = (await call("POST", `${base}/tokens`, { body: { role: "agent", namespaces: ["c"] } })).body
      .token as string;
    const taken = await call("PUT", `${base}/nodes/kv`, {
      token: agentC,
      body: { ...group, metadata: { namespace_name: "c" } },
    });
    expect(taken.body.error?.code).toBe("name_held");
  });

  it("a realm stored by schema 9 migrates: its leases are unclaimed until an agent instance writes them", async () => {
    const realm = await newRealm("migrate9");
    const base = `/v1/realms/${realm}`;
    expect((await call("PUT", `${base}/nodes/r-0`, { body: { ...node("r-0"), ttl_seconds: 60 } })).status).toBe(201);
    await runInDurableObject(stubOf(realm), (_instance: RealmObject, state) => {
      recordsBeforeInstance(state.storage.sql);
      state.storage.sql.exec("UPDATE schema_version SET version = 9");
    });
    await evictDurableObject(stubOf(realm));
    clearRealmCacheForTest();
    const as = (instance: string) => ({ headers: { "hopway-instance": instance }, body: {} });
    // The agent that registered it before the upgrade renews it and so claims it; another may not then.
    expect((await call("POST", `${base}/nodes/r-0/heartbeat`, as("pod-a"))).status).toBe(200);
    expect((await call("POST", `${base}/nodes/r-0/heartbeat`, as("pod-b"))).body.error?.code).toBe("name_in_use");
    const schema = await runInDurableObject(
      stubOf(realm),
      (_i, state) => state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version,
    );
    expect(schema).toBe(SCHEMA_VERSION);
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
