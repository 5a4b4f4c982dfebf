// Record limits: one tenant cannot fill the realm every other tenant's routes
// are computed from (docs/contract/edge-api.md §14). A write that would add
// past a limit stores nothing; one that keeps or lowers a count always passes.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RealmObject } from "../../durable-objects/realm.ts";
import { call, newRealm, node, setClock, storedRealmState, stubOf } from "./helpers.ts";

async function agentToken(realm: string, namespaces: string[]): Promise<string> {
  const r = await call("POST", `/v1/realms/${realm}/tokens`, { body: { role: "agent", namespaces } });
  expect(r.status).toBe(201);
  return r.body.token as string;
}

describe("record limits", () => {
  it("reads its defaults and each namespace's count, admin only; bad settings name the field", async () => {
    const realm = await newRealm("lim");
    const base = `/v1/realms/${realm}`;
    expect((await call("GET", `${base}/limits`)).body).toEqual({
      records_per_realm: 60_000,
      bytes_per_realm: 32 * 1024 * 1024,
      records_per_namespace: 10_000,
      bytes_per_namespace: 16 * 1024 * 1024,
      namespaces: {},
      name_hold_seconds: 900,
      token_writes_per_second: 200,
      token_write_burst: 2_000,
      token_changes_per_second: 10,
      token_change_burst: 500,
      tokens: {},
      usage: { records: 0, bytes: 0, namespaces: {} },
    });
    await call("PUT", `${base}/nodes/a-0`, { body: node("a-0", "a") });
    await call("PUT", `${base}/nodes/bare`, { body: { ...node("bare"), metadata: {} } });
    await call("PUT", `${base}/nodes/kv`, {
      body: { type: "group", metadata: { namespace_name: "b" }, node_list: [{ node_name: "b-0" }] },
    });
    const set = await call("PUT", `${base}/limits`, {
      body: { records_per_namespace: 50, namespaces: { b: { records: 2 } } },
    });
    expect(set.status).toBe(200);
    expect(set.body).toEqual({
      records_per_realm: 60_000,
      bytes_per_realm: 32 * 1024 * 1024,
      records_per_namespace: 50,
      bytes_per_namespace: 16 * 1024 * 1024,
      namespaces: { b: { records: 2 } },
      name_hold_seconds: 900,
      token_writes_per_second: 200,
      token_write_burst: 2_000,
      token_changes_per_second: 10,
      token_change_burst: 500,
      tokens: {},
      // A group counts in the namespace it names; a record without one only in the realm.
      usage: {
        records: 3,
        bytes: set.body.usage.bytes,
        namespaces: { a: { records: 1, bytes: expect.any(Number) }, b: { records: 1, bytes: expect.any(Number) } },
      },
    });

    const agent = await agentToken(realm, ["a"]);
    for (const [method, body] of [
      ["GET", undefined],
      ["PUT", { records_per_namespace: 1_000_000 }],
    ] as const) {
      const r = await call(method, `${base}/limits`, { token: agent, ...(body ? { body } : {}) });
      expect(r.status, method).toBe(403);
      expect(r.body.error.code).toBe("forbidden");
    }
    for (const [body, path] of [
      [{ records_per_namespace: -1 }, "records_per_namespace"],
      [{ records_per_realm: 1.5 }, "records_per_realm"],
      [{ namespaces: { b: { records: "many" } } }, "namespaces.b.records"],
      [{ namespaces: { b: 5 } }, "namespaces.b"],
      [{ per_namespace: 5 }, ""],
    ] as const) {
      const r = await call("PUT", `${base}/limits`, { body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe("invalid_input");
      if (path !== "") expect(r.body.error.path).toBe(path);
    }
    // Nothing of the refused settings was kept.
    expect((await call("GET", `${base}/limits`)).body.namespaces).toEqual({ b: { records: 2 } });
  });

  it("a tenant at its namespace's limit adds nothing more; renewals, replacements and other namespaces go on", async () => {
    const realm = await newRealm("lim");
    const base = `/v1/realms/${realm}`;
    expect((await call("PUT", `${base}/limits`, { body: { namespaces: { b: { records: 3 } } } })).status).toBe(200);
    const agentB = await agentToken(realm, ["b"]);
    const agentA = await agentToken(realm, ["a"]);
    for (const name of ["b-0", "b-1"]) {
      expect((await call("PUT", `${base}/nodes/${name}`, { token: agentB, body: node(name, "b") })).status).toBe(201);
    }
    // The group is b's third record.
    const group = { type: "group", metadata: { namespace_name: "b" }, node_list: [{ node_name: "b-0" }] };
    expect((await call("PUT", `${base}/nodes/kv`, { token: agentB, body: group })).status).toBe(201);
    const before = await storedRealmState(realm);

    const over = await call("PUT", `${base}/nodes/b-3`, { token: agentB, body: node("b-3", "b") });
    expect(over.status).toBe(403);
    expect(over.body.error).toMatchObject({ code: "quota_exceeded", path: "metadata.namespace_name" });
    expect(over.body.error.message).toContain("namespace 'b' holds 3 records and may hold 3");
    // The admin is held to the limit too: it raises the limit instead.
    const asAdmin = await call("PUT", `${base}/nodes/b-3`, { body: node("b-3", "b") });
    expect(asAdmin.body.error?.code).toBe("quota_exceeded");
    const imported = await call("POST", `${base}/import`, {
      token: agentB,
      body: [node("b-0", "b"), node("b-4", "b"), node("b-5", "b")],
    });
    expect(imported.status).toBe(403);
    expect(imported.body.error).toMatchObject({ code: "quota_exceeded", path: "[1].metadata.namespace_name" });
    expect(await storedRealmState(realm)).toEqual(before);

    // Replacing, renewing and re-importing what b holds adds nothing.
    const replaced = await call("PUT", `${base}/nodes/b-1`, {
      token: agentB,
      body: { ...node("b-1", "b"), ttl_seconds: 60 },
    });
    expect(replaced.status).toBe(200);
    expect((await call("POST", `${base}/nodes/b-1/heartbeat`, { token: agentB, body: {} })).status).toBe(200);
    const again = await call("POST", `${base}/import`, {
      token: agentB,
      body: [node("b-0", "b"), { ...group, name: "kv" }],
    });
    expect(again.status).toBe(200);
    // Another namespace is not affected by b being full.
    expect((await call("PUT", `${base}/nodes/a-0`, { token: agentA, body: node("a-0", "a") })).status).toBe(201);
    // Deleting one makes room for one.
    expect((await call("DELETE", `${base}/nodes/b-0`, { token: agentB })).status).toBe(200);
    expect((await call("PUT", `${base}/nodes/b-3`, { token: agentB, body: node("b-3", "b") })).status).toBe(201);
  });

  it("bytes: large records fill a namespace's bytes before its count; what is held stays exact through every kind of write", async () => {
    const realm = await newRealm("lim");
    const base = `/v1/realms/${realm}`;
    const t0 = Date.now();
    await setClock(realm, t0);
    expect((await call("PUT", `${base}/limits`, { body: { namespaces: { a: { bytes: 100_000 } } } })).status).toBe(200);
    const agent = await agentToken(realm, ["a", "b"]);
    const big = (name: string, ns: string, kib: number) => ({ ...node(name, ns), custom_data: "x".repeat(kib * 1024) });
    expect((await call("PUT", `${base}/nodes/big-0`, { token: agent, body: big("big-0", "a", 40) })).status).toBe(201);
    expect((await call("PUT", `${base}/nodes/big-1`, { token: agent, body: big("big-1", "a", 40) })).status).toBe(201);
    const over = await call("PUT", `${base}/nodes/big-2`, { token: agent, body: big("big-2", "a", 40) });
    expect(over.status).toBe(403);
    expect(over.body.error).toMatchObject({ code: "quota_exceeded", path: "metadata.namespace_name" });
    expect(over.body.error.message).toMatch(/^namespace 'a' holds \d+ bytes of records and may hold 100000/);
    // Growing a record in place is growth too; shrinking is not.
    expect(
      (await call("PUT", `${base}/nodes/big-1`, { token: agent, body: big("big-1", "a", 60) })).body.error?.code,
    ).toBe("quota_exceeded");
    expect((await call("PUT", `${base}/nodes/big-1`, { token: agent, body: big("big-1", "a", 1) })).status).toBe(200);
    // Every kind of write: a move, an import, a delete, a lease that runs out.
    expect((await call("PUT", `${base}/nodes/big-0`, { token: agent, body: big("big-0", "b", 2) })).status).toBe(200);
    await call("POST", `${base}/import`, { token: agent, body: [node("i-0", "a"), node("i-1", "b")] });
    expect((await call("DELETE", `${base}/nodes/i-0`, { token: agent })).status).toBe(200);
    await call("PUT", `${base}/nodes/lease`, { token: agent, body: { ...node("lease", "b"), ttl_seconds: 5 } });
    await setClock(realm, t0 + 6_000);
    expect(await runDurableObjectAlarm(stubOf(realm))).toBe(true);
    // What the realm keeps in memory equals what a scan of its table says.
    const [kept, scanned] = await runInDurableObject(stubOf(realm), (instance: RealmObject, state) => {
      const r = instance.getLimits({ kind: "admin" });
      const rows = state.storage.sql
        .exec<{ ns: string | null; n: number; b: number }>(
          "SELECT owner_namespace AS ns, count(*) AS n, sum(length(CAST(json AS BLOB))) AS b FROM records GROUP BY owner_namespace",
        )
        .toArray();
      return ["limits" in r ? r.limits.usage : null, rows] as const;
    });
    const fromScan = Object.fromEntries(
      scanned.filter((r) => r.ns !== null).map((r) => [r.ns, { records: r.n, bytes: r.b }]),
    );
    const keptNamespaces = Object.fromEntries(
      Object.entries(kept?.namespaces ?? {}).map(([ns, u]) => [ns, { records: u.records, bytes: u.bytes }]),
    );
    expect(keptNamespaces).toEqual(fromScan);
    expect(kept?.records).toBe(scanned.reduce((sum, r) => sum + r.n, 0));
    expect(kept?.bytes).toBe(scanned.reduce((sum, r) => sum + r.b, 0));
    expect(Object.keys(fromScan).sort()).toEqual(["a", "b"]);
  });

  it("namespaces named after Object members are counted and limited like any other", async () => {
    const realm = await newRealm("lim");
    const base = `/v1/realms/${realm}`;
    expect((await call("PUT", `${base}/limits`, { body: { records_per_namespace: 1, namespaces: {} } })).status).toBe(
      200,
    );
    for (const ns of ["constructor", "__proto__"]) {
      const agent = await agentToken(realm, [ns]);
      const key = ns.replace(/_/g, "");
      expect((await call("PUT", `${base}/nodes/${key}-0`, { token: agent, body: node(`${key}-0`, ns) })).status).toBe(
        201,
      );
      const over = await call("PUT", `${base}/nodes/${key}-1`, { token: agent, body: node(`${key}-1`, ns) });
      expect(over.body.error?.code, ns).toBe("quota_exceeded");
    }
    const usage = await runInDurableObject(stubOf(realm), (instance: RealmObject) => {
      const r = instance.getLimits({ kind: "admin" });
      return "limits" in r ? Object.entries(r.limits.usage.namespaces).map(([ns, u]) => [ns, u.records]) : [];
    });
    expect(usage).toEqual([
      ["__proto__", 1],
      ["constructor", 1],
    ]);
  });

  it("moving a record counts it in its new namespace and frees its old one; an import counts what it adds net", async () => {
    const realm = await newRealm("lim");
    const base = `/v1/realms/${realm}`;
    expect((await call("PUT", `${base}/limits`, { body: { records_per_namespace: 2 } })).status).toBe(200);
    const agent = await agentToken(realm, ["a", "b"]);
    await call("POST", `${base}/import`, {
      token: agent,
      body: [node("a-0", "a"), node("a-1", "a"), node("b-0", "b")],
    });
    // b holds one: a-0 may move there, a-1 after it may not.
    expect((await call("PUT", `${base}/nodes/a-0`, { token: agent, body: node("a-0", "b") })).status).toBe(200);
    const full = await call("PUT", `${base}/nodes/a-1`, { token: agent, body: node("a-1", "b") });
    expect(full.body.error).toMatchObject({ code: "quota_exceeded", path: "metadata.namespace_name" });
    // One import that moves b-0 out of b and adds b-9 in keeps b at two.
    const swap = await call("POST", `${base}/import`, { token: agent, body: [node("b-0", "a"), node("b-9", "b")] });
    expect(swap.status).toBe(200);
    const usage = (await call("GET", `${base}/limits`)).body.usage.namespaces;
    expect([usage.a.records, usage.b.records]).toEqual([2, 2]);
  });

  it("the realm's limit counts every record, those without a namespace too; lowering a limit keeps what is stored", async () => {
    const realm = await newRealm("lim");
    const base = `/v1/realms/${realm}`;
    expect((await call("PUT", `${base}/limits`, { body: { records_per_realm: 3 } })).status).toBe(200);
    await call("POST", `${base}/import`, { body: [node("x-0", "x"), { ...node("bare"), metadata: {} }] });
    expect((await call("PUT", `${base}/nodes/y-0`, { body: node("y-0", "y") })).status).toBe(201);
    const over = await call("PUT", `${base}/nodes/bare2`, { body: { ...node("bare2"), metadata: {} } });
    expect(over.status).toBe(403);
    expect(over.body.error).toMatchObject({ code: "quota_exceeded", path: "name" });
    expect(over.body.error.message).toContain("the realm holds 3 records and may hold 3");

    // A limit set below what a namespace holds: its records stay and can still be replaced.
    expect((await call("PUT", `${base}/limits`, { body: { namespaces: { x: { records: 0 } } } })).status).toBe(200);
    expect((await call("GET", `${base}/nodes/x-0`)).status).toBe(200);
    expect((await call("PUT", `${base}/nodes/x-0`, { body: { ...node("x-0", "x"), ttl_seconds: 30 } })).status).toBe(
      200,
    );
    expect((await call("PUT", `${base}/nodes/x-1`, { body: node("x-1", "x") })).body.error.code).toBe("quota_exceeded");
  });
});

describe("a name stays with its namespace for a while after its record went away", () => {
  it("deleted or expired, another namespace cannot take the name until name_hold_seconds pass; its own namespace and the admin can", async () => {
    const realm = await newRealm("hold");
    const base = `/v1/realms/${realm}`;
    const t0 = Date.now();
    await setClock(realm, t0);
    const agentA = await agentToken(realm, ["a"]);
    const agentB = await agentToken(realm, ["b"]);
    // a's agent shuts down and deletes its record; b's token wants the name meanwhile.
    expect(
      (await call("PUT", `${base}/nodes/payments-db`, { token: agentA, body: node("payments-db", "a") })).status,
    ).toBe(201);
    expect((await call("DELETE", `${base}/nodes/payments-db`, { token: agentA })).status).toBe(200);
    const before = await storedRealmState(realm);
    const taken = await call("PUT", `${base}/nodes/payments-db`, { token: agentB, body: node("payments-db", "b") });
    expect(taken.status).toBe(409);
    expect(taken.body.error).toMatchObject({ code: "name_held", path: "name" });
    expect(taken.body.error.message).toContain(`until ${new Date(t0 + 900_000).toISOString()}`);
    const imported = await call("POST", `${base}/import`, {
      token: agentB,
      body: [node("b-0", "b"), node("payments-db", "b")],
    });
    expect(imported.body.error).toMatchObject({ code: "name_held", path: "[1].name" });
    expect(await storedRealmState(realm)).toEqual(before);
    // a's next pod registers it again.
    expect(
      (await call("PUT", `${base}/nodes/payments-db`, { token: agentA, body: node("payments-db", "a") })).status,
    ).toBe(201);

    // A lease that runs out holds its name the same way.
    const leased = await call("PUT", `${base}/nodes/a-lease`, {
      token: agentA,
      body: { ...node("a-lease", "a"), ttl_seconds: 30 },
    });
    expect(leased.status).toBe(201);
    await setClock(realm, t0 + 31_000);
    expect(await runDurableObjectAlarm(stubOf(realm))).toBe(true);
    expect((await call("GET", `${base}/nodes/a-lease`)).status).toBe(404);
    const early = await call("PUT", `${base}/nodes/a-lease`, { token: agentB, body: node("a-lease", "b") });
    expect(early.body.error?.code).toBe("name_held");
    // After the hold, the name is free; the admin never waits.
    await setClock(realm, t0 + 31_000 + 900_001);
    expect((await call("PUT", `${base}/nodes/a-lease`, { token: agentB, body: node("a-lease", "b") })).status).toBe(
      201,
    );
    expect((await call("DELETE", `${base}/nodes/payments-db`, { token: agentA })).status).toBe(200);
    expect((await call("PUT", `${base}/nodes/payments-db`, { body: node("payments-db", "b") })).status).toBe(201);
  });

  it("name_hold_seconds 0 holds nothing; a namespace holds at most as many names as it may hold records", async () => {
    const realm = await newRealm("hold");
    const base = `/v1/realms/${realm}`;
    const agentA = await agentToken(realm, ["a"]);
    const agentB = await agentToken(realm, ["b"]);
    expect((await call("PUT", `${base}/limits`, { body: { namespaces: { a: { records: 2 } } } })).status).toBe(200);
    // a churns three names with room for two: the third it deletes is not held.
    for (const name of ["a-0", "a-1", "a-2"]) {
      expect((await call("PUT", `${base}/nodes/${name}`, { token: agentA, body: node(name, "a") })).status).toBe(201);
      expect((await call("DELETE", `${base}/nodes/${name}`, { token: agentA })).status).toBe(200);
    }
    const codes = [];
    for (const name of ["a-0", "a-1", "a-2"]) {
      codes.push((await call("PUT", `${base}/nodes/${name}`, { token: agentB, body: node(name, "b") })).status);
    }
    expect(codes).toEqual([409, 409, 201]);

    expect((await call("PUT", `${base}/limits`, { body: { name_hold_seconds: 0 } })).status).toBe(200);
    // 0 also ends the holds that run: a-0 and a-1 are free at once.
    expect((await call("GET", `${base}/limits`)).body.usage.namespaces.a).toBeUndefined();
    for (const name of ["a-0", "a-1"]) {
      expect((await call("PUT", `${base}/nodes/${name}`, { token: agentB, body: node(name, "b") })).status).toBe(201);
    }
    expect((await call("PUT", `${base}/nodes/a-9`, { token: agentA, body: node("a-9", "a") })).status).toBe(201);
    expect((await call("DELETE", `${base}/nodes/a-9`, { token: agentA })).status).toBe(200);
    expect((await call("PUT", `${base}/nodes/a-9`, { token: agentB, body: node("a-9", "b") })).status).toBe(201);
  });

  it("the admin's deletion holds no name; a token of the holding namespace may move the name on; live holds show in usage", async () => {
    const realm = await newRealm("hold");
    const base = `/v1/realms/${realm}`;
    const agentA = await agentToken(realm, ["a"]);
    const agentB = await agentToken(realm, ["b"]);
    const agentAB = await agentToken(realm, ["a", "b"]);
    // A squatter's record the admin evicts: the rightful namespace registers the name at once.
    expect(
      (await call("PUT", `${base}/nodes/payments-db`, { token: agentA, body: node("payments-db", "a") })).status,
    ).toBe(201);
    expect((await call("DELETE", `${base}/nodes/payments-db`)).status).toBe(200);
    expect(
      (await call("PUT", `${base}/nodes/payments-db`, { token: agentB, body: node("payments-db", "b") })).status,
    ).toBe(201);
    // a deletes its own: the hold shows in usage, and a token for a and b may move the name to b.
    expect((await call("PUT", `${base}/nodes/a-0`, { token: agentA, body: node("a-0", "a") })).status).toBe(201);
    expect((await call("DELETE", `${base}/nodes/a-0`, { token: agentA })).status).toBe(200);
    expect((await call("GET", `${base}/limits`)).body.usage.namespaces.a).toEqual({
      records: 0,
      bytes: 0,
      held_names: 1,
    });
    expect((await call("PUT", `${base}/nodes/a-0`, { token: agentAB, body: node("a-0", "b") })).status).toBe(201);
  });

  it("holds that ended are removed from storage when the next one is made", async () => {
    const realm = await newRealm("hold");
    const base = `/v1/realms/${realm}`;
    const t0 = Date.now();
    await setClock(realm, t0);
    const agentA = await agentToken(realm, ["a"]);
    const churn = async (prefix: string) => {
      const names = [0, 1, 2].map((i) => `${prefix}-${i}`);
      await call("POST", `${base}/import`, { token: agentA, body: names.map((n) => node(n, "a")) });
      for (const n of names) expect((await call("DELETE", `${base}/nodes/${n}`, { token: agentA })).status).toBe(200);
    };
    const rows = () =>
      runInDurableObject(
        stubOf(realm),
        (_i: RealmObject, state) =>
          state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM name_holds").one().n,
      );
    await churn("x");
    expect(await rows()).toBe(3);
    await setClock(realm, t0 + 901_000);
    await churn("y");
    expect(await rows()).toBe(3);
  });
});

describe("record sizes", () => {
  it("bytes are UTF-8: a record of emoji counts four bytes each, as stored", async () => {
    const realm = await newRealm("size");
    const base = `/v1/realms/${realm}`;
    expect((await call("PUT", `${base}/limits`, { body: { namespaces: { a: { bytes: 150_000 } } } })).status).toBe(200);
    const agent = await agentToken(realm, ["a"]);
    // 20,000 emoji: 40,000 UTF-16 units, 20,000 characters, 80,000 UTF-8 bytes.
    const emoji = (name: string) => ({ ...node(name, "a"), custom_data: "\u{1F600}".repeat(20_000) });
    expect((await call("PUT", `${base}/nodes/e-0`, { token: agent, body: emoji("e-0") })).status).toBe(201);
    const second = await call("PUT", `${base}/nodes/e-1`, { token: agent, body: emoji("e-1") });
    expect(second.body.error?.code).toBe("quota_exceeded");
    const [kept, scanned] = await runInDurableObject(stubOf(realm), (instance: RealmObject, state) => {
      const r = instance.getLimits({ kind: "admin" });
      const b = state.storage.sql
        .exec<{ b: number }>("SELECT sum(length(CAST(json AS BLOB))) AS b FROM records WHERE owner_namespace = 'a'")
        .one().b;
      return ["limits" in r ? r.limits.usage.namespaces.a?.bytes : -1, b] as const;
    });
    expect(kept).toBe(scanned);
    expect(kept).toBeGreaterThan(80_000);
  });

  it("an import with a record over 256 KiB is refused whole, naming it", async () => {
    const realm = await newRealm("size");
    const base = `/v1/realms/${realm}`;
    const huge = {
      ...node("huge", "a"),
      advertise_relay: Array.from({ length: 64 }, (_, i) => ({
        metadata: {
          labels: Object.fromEntries(Array.from({ length: 64 }, (_, j) => [`k${j}`, `v${i}-${"x".repeat(58)}`])),
        },
      })),
    };
    const before = await storedRealmState(realm);
    const r = await call("POST", `${base}/import`, { body: [node("ok-0", "a"), huge] });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "invalid_input", path: "[1]" });
    expect(r.body.error.message).toContain("a record is at most 262144");
    expect(await storedRealmState(realm)).toEqual(before);
  });

  it("a write that fails inside its transaction leaves the usage as the table has it", async () => {
    const realm = await newRealm("size");
    const base = `/v1/realms/${realm}`;
    const agent = await agentToken(realm, ["a"]);
    await call("POST", `${base}/import`, { token: agent, body: [node("a-0", "a"), node("a-1", "a")] });
    const usage = async () => (await call("GET", `${base}/limits`)).body.usage;
    const before = await usage();
    // SQLite refusing one value (as Cloudflare's does past 2 MB) after the transaction's first row.
    await runInDurableObject(stubOf(realm), (_i: RealmObject, state) => {
      const sql = state.storage.sql as SqlStorage & { execForTest?: SqlStorage["exec"] };
      sql.execForTest = sql.exec.bind(sql);
      sql.exec = ((query: string, ...args: unknown[]) => {
        if (query.trimStart().startsWith("INSERT INTO records") && args.includes("a-big")) {
          throw new Error("string or blob too big");
        }
        return sql.execForTest?.(query, ...(args as SqlStorageValue[]));
      }) as SqlStorage["exec"];
    });
    const failed = await call("POST", `${base}/import`, {
      token: agent,
      body: [{ ...node("a-0", "a"), gateway: [] }, node("a-big", "a")],
    });
    expect(failed.status).toBe(500);
    await runInDurableObject(stubOf(realm), (_i: RealmObject, state) => {
      const sql = state.storage.sql as SqlStorage & { execForTest?: SqlStorage["exec"] };
      if (sql.execForTest) sql.exec = sql.execForTest;
    });
    expect(await usage()).toEqual(before);
    expect((await call("GET", `${base}/nodes`)).body.records).toHaveLength(2);
  });
});
