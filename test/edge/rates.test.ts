// Write budgets (docs/contract/edge-api.md §14.1): one tenant's token writing as
// fast as it can is refused past its budget, before the realm's object does any
// work for it, while other tokens and the admin go on. A refused write stores nothing.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RealmObject } from "../../durable-objects/realm.ts";
import { writeFloodKey } from "../../src/edge/app.ts";
import { call, mintToken, newRealm, node, setClock, stubOf } from "./helpers.ts";

describe("write budgets", () => {
  it("refuses a token's writes past its budget with 429 and Retry-After, stores nothing, and lets others through", async () => {
    const realm = await newRealm("rate");
    const base = `/v1/realms/${realm}`;
    const t0 = Date.UTC(2026, 11, 2);
    await setClock(realm, t0);
    expect(
      (await call("PUT", `${base}/limits`, { body: { token_writes_per_second: 2, token_write_burst: 3 } })).status,
    ).toBe(200);
    const tenant = await mintToken(realm, "agent", ["a"]);
    const victim = await mintToken(realm, "agent", ["b"]);

    for (let i = 0; i < 3; i++) {
      expect(
        (await call("PUT", `${base}/nodes/a-${i}`, { token: tenant.token, body: node(`a-${i}`, "a") })).status,
      ).toBe(201);
    }
    const refused = await call("PUT", `${base}/nodes/a-3`, { token: tenant.token, body: node("a-3", "a") });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe("rate_limited");
    expect(refused.body.error.message).toContain(tenant.id);
    expect(refused.body.error.message).toContain("write budget, 2 per second and 3 at once");
    // Half a second refills one write at 2 per second.
    expect(refused.headers.get("retry-after")).toBe("1");
    expect((await call("GET", `${base}/nodes/a-3`)).status).toBe(404);
    // Reads are not budgeted: the tenant still reads what it wrote.
    expect((await call("GET", `${base}/nodes/a-0`, { token: tenant.token })).status).toBe(200);
    expect((await call("GET", `${base}/routes?from=a-0&to=a-1`, { token: tenant.token })).status).toBe(200);

    // Another namespace's token, and the admin, are not held back by the tenant's budget.
    expect((await call("PUT", `${base}/nodes/b-0`, { token: victim.token, body: node("b-0", "b") })).status).toBe(201);
    for (let i = 0; i < 5; i++) {
      expect((await call("PUT", `${base}/nodes/adm-${i}`, { body: node(`adm-${i}`, "a") })).status).toBe(201);
    }

    // After the Retry-After the tenant's write passes, and its bucket refills at its rate.
    await setClock(realm, t0 + 1000);
    expect((await call("PUT", `${base}/nodes/a-3`, { token: tenant.token, body: node("a-3", "a") })).status).toBe(201);
    expect((await call("PUT", `${base}/nodes/a-4`, { token: tenant.token, body: node("a-4", "a") })).status).toBe(201);
    expect((await call("PUT", `${base}/nodes/a-5`, { token: tenant.token, body: node("a-5", "a") })).status).toBe(429);
  });

  it("every kind of write counts: heartbeats, deletions, imports, listener declarations", async () => {
    const realm = await newRealm("rate-kinds");
    const base = `/v1/realms/${realm}`;
    const t0 = Date.UTC(2026, 11, 2);
    await setClock(realm, t0);
    await call("PUT", `${base}/limits`, { body: { token_writes_per_second: 1, token_write_burst: 5 } });
    const t = await mintToken(realm, "agent", ["a"]);
    const as = { token: t.token };
    expect(
      (await call("PUT", `${base}/nodes/a-0`, { ...as, body: { ...node("a-0", "a"), ttl_seconds: 60 } })).status,
    ).toBe(201);
    expect((await call("POST", `${base}/nodes/a-0/heartbeat`, { ...as, body: { ttl_seconds: 60 } })).status).toBe(200);
    const imported = await call("POST", `${base}/import`, { ...as, body: [node("a-1", "a"), node("a-2", "a")] });
    expect(imported.status).toBe(200);
    const listener = { namespace: "a", listen: "0.0.0.0:6379", target: "a-1:6379" };
    expect((await call("PUT", `${base}/listeners/l-0`, { ...as, body: listener })).status).toBe(201);
    expect((await call("DELETE", `${base}/nodes/a-2`, as)).status).toBe(200);
    // Five writes of five kinds took the burst; each kind is now refused, and stores nothing.
    const refusals = [
      await call("POST", `${base}/nodes/a-0/heartbeat`, { ...as, body: { ttl_seconds: 60 } }),
      await call("POST", `${base}/import`, { ...as, body: [node("a-3", "a")] }),
      await call("PUT", `${base}/listeners/l-1`, { ...as, body: listener }),
      await call("DELETE", `${base}/nodes/a-1`, as),
      await call("PUT", `${base}/nodes/a-4`, { ...as, body: node("a-4", "a") }),
    ];
    expect(refusals.map((r) => [r.status, r.body.error.code])).toEqual(Array(5).fill([429, "rate_limited"]));
    const names = (await call("GET", `${base}/nodes`)).body.records.map((r: { name: string }) => r.name);
    expect(names.sort()).toEqual(["a-0", "a-1"]);
    expect((await call("GET", `${base}/listeners`)).body.listeners.map((l: { name: string }) => l.name)).toEqual([
      "l-0",
    ]);
  });

  it("writes that change records have their own, smaller budget; renewals do not spend it", async () => {
    const realm = await newRealm("rate-changes");
    const base = `/v1/realms/${realm}`;
    const t0 = Date.UTC(2026, 11, 2);
    await setClock(realm, t0);
    const set = await call("PUT", `${base}/limits`, { body: { token_changes_per_second: 1, token_change_burst: 2 } });
    expect([set.body.token_writes_per_second, set.body.token_changes_per_second, set.body.token_change_burst]).toEqual([
      200, 1, 2,
    ]);
    const tenant = await mintToken(realm, "agent", ["a"]);
    const victim = await mintToken(realm, "agent", ["b"]);
    const as = { token: tenant.token };
    const a0 = { ...node("a-0", "a"), ttl_seconds: 60 };
    expect((await call("PUT", `${base}/nodes/a-0`, { ...as, body: a0 })).status).toBe(201);
    const version = (await call("GET", `${base}/nodes/a-0`)).body.version;
    // The same record again renews its lease and moves no version: not a change, as a heartbeat.
    for (let i = 0; i < 5; i++) {
      expect((await call("PUT", `${base}/nodes/a-0`, { ...as, body: a0 })).status).toBe(200);
      expect((await call("POST", `${base}/nodes/a-0/heartbeat`, { ...as, body: {} })).status).toBe(200);
    }
    expect((await call("PUT", `${base}/nodes/a-0`, { ...as, body: { ...a0, custom_data: "1" } })).status).toBe(200);
    const churn = await call("PUT", `${base}/nodes/a-0`, { ...as, body: { ...a0, custom_data: "2" } });
    expect(churn.status).toBe(429);
    expect(churn.body.error.message).toContain(
      "change budget (writes that change records), 1 per second and 2 at once",
    );
    expect(churn.headers.get("retry-after")).toBe("1");
    expect((await call("DELETE", `${base}/nodes/a-0`, as)).status).toBe(429);
    expect((await call("POST", `${base}/import`, { ...as, body: [node("a-1", "a")] })).status).toBe(429);
    // Nothing of the refused changes was stored, and renewals still pass.
    const now = (await call("GET", `${base}/nodes/a-0`)).body;
    expect([now.version, now.record.custom_data]).toEqual([version + 1, "1"]);
    expect((await call("POST", `${base}/nodes/a-0/heartbeat`, { ...as, body: {} })).status).toBe(200);
    // Another token's budget is its own: its whole burst is there.
    for (let i = 0; i < 2; i++) {
      expect(
        (await call("PUT", `${base}/nodes/b-${i}`, { token: victim.token, body: node(`b-${i}`, "b") })).status,
      ).toBe(201);
    }
    await setClock(realm, t0 + 1000);
    expect((await call("DELETE", `${base}/nodes/a-0`, as)).status).toBe(200);
  });

  it("a token of its own may have another budget, or none", async () => {
    const realm = await newRealm("rate-own");
    const base = `/v1/realms/${realm}`;
    await setClock(realm, Date.UTC(2026, 11, 2));
    const big = await mintToken(realm, "agent", ["a"]);
    const small = await mintToken(realm, "agent", ["b"]);
    const set = await call("PUT", `${base}/limits`, {
      body: { token_writes_per_second: 1, token_write_burst: 1, tokens: { [big.id]: { writes_per_second: 0 } } },
    });
    expect(set.status).toBe(200);
    expect(set.body.tokens).toEqual({ [big.id]: { writes_per_second: 0 } });
    for (let i = 0; i < 10; i++) {
      expect((await call("PUT", `${base}/nodes/a-${i}`, { token: big.token, body: node(`a-${i}`, "a") })).status).toBe(
        201,
      );
    }
    expect((await call("PUT", `${base}/nodes/b-0`, { token: small.token, body: node("b-0", "b") })).status).toBe(201);
    expect((await call("PUT", `${base}/nodes/b-1`, { token: small.token, body: node("b-1", "b") })).status).toBe(429);
    // A fraction is a slower rate: one write every 4 s.
    await call("PUT", `${base}/limits`, {
      body: { tokens: { [small.id]: { writes_per_second: 0.25, write_burst: 1 } } },
    });
    const slow = await call("PUT", `${base}/nodes/b-1`, { token: small.token, body: node("b-1", "b") });
    expect([slow.status, slow.headers.get("retry-after")]).toEqual([429, "4"]);
  });

  it("a flood of writes stops at the Worker's per-token bound, before the realm's object", async () => {
    const realm = await newRealm("rate-flood");
    const base = `/v1/realms/${realm}`;
    const flooder = await mintToken(realm, "agent", ["a"]);
    const other = await mintToken(realm, "agent", ["b"]);
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(flooder.token));
    const hash = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    const key = writeFloodKey(realm, hash);
    // Spend the binding's window (wrangler.toml: 5,000 per 10 s) as that many writes would. Its
    // windows are aligned to the clock, so a window that ends meanwhile starts the count again.
    let spent = 0;
    while (spent < 15_000 && (await env.TOKEN_WRITES.limit({ key })).success) spent++;
    expect(spent).toBeGreaterThanOrEqual(1);
    expect(spent).toBeLessThan(15_000);
    const refused = await call("PUT", `${base}/nodes/a-0`, { token: flooder.token, body: node("a-0", "a") });
    expect([refused.status, refused.body.error.code, refused.headers.get("retry-after")]).toEqual([
      429,
      "rate_limited",
      "10",
    ]);
    // The object never saw it: no bucket charged, nothing stored.
    expect(await runInDurableObject(stubOf(realm), (o: RealmObject) => o.writeBucketsForTest())).toBe(0);
    expect((await call("GET", `${base}/nodes/a-0`)).status).toBe(404);
    // Reads, another token's writes and the admin's go on.
    expect((await call("GET", `${base}/nodes`, { token: flooder.token })).status).toBe(200);
    expect((await call("PUT", `${base}/nodes/b-0`, { token: other.token, body: node("b-0", "b") })).status).toBe(201);
    expect((await call("PUT", `${base}/nodes/a-0`, { body: node("a-0", "a") })).status).toBe(201);
  }, 30_000);

  it("keeps no bucket for a token the realm does not know", async () => {
    const realm = await newRealm("rate-unknown");
    const base = `/v1/realms/${realm}`;
    const t = await mintToken(realm, "agent", ["a"]);
    expect((await call("DELETE", `${base}/tokens/${t.id}`)).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      expect((await call("PUT", `${base}/nodes/a-${i}`, { token: t.token, body: node(`a-${i}`, "a") })).status).toBe(
        401,
      );
    }
    const held = await runInDurableObject(stubOf(realm), (instance: RealmObject) => instance.writeBucketsForTest());
    expect(held).toBe(0);
  });

  it("bad settings name the field and change nothing", async () => {
    const realm = await newRealm("rate-bad");
    const base = `/v1/realms/${realm}`;
    const bad: Array<[unknown, string]> = [
      [{ token_writes_per_second: -1 }, "token_writes_per_second"],
      [{ token_writes_per_second: "1" }, "token_writes_per_second"],
      [{ token_write_burst: 1.5 }, "token_write_burst"],
      [{ token_write_burst: 0 }, "token_write_burst"],
      [{ token_changes_per_second: 100_001 }, "token_changes_per_second"],
      [{ token_change_burst: "10" }, "token_change_burst"],
      [{ tokens: { nothex: {} } }, "tokens.nothex"],
      [{ tokens: { "0123456789abcdef": { burst: 1 } } }, 'tokens["0123456789abcdef"].burst'],
    ];
    for (const [body, path] of bad) {
      const r = await call("PUT", `${base}/limits`, { body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.path).toBe(path);
    }
    const view = (await call("GET", `${base}/limits`)).body;
    expect([
      view.token_writes_per_second,
      view.token_write_burst,
      view.token_changes_per_second,
      view.token_change_burst,
      view.tokens,
    ]).toEqual([200, 2_000, 10, 500, {}]);
    // An agent token may not set its own budget.
    const t = await mintToken(realm, "agent", ["a"]);
    expect((await call("PUT", `${base}/limits`, { token: t.token, body: { token_writes_per_second: 0 } })).status).toBe(
      403,
    );
  });
});
