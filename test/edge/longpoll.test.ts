// ETag / If-None-Match / ?wait= on route tables and record lists.
import { describe, expect, it } from "vitest";
import { call, newRealm, node } from "./helpers.ts";

describe("conditional GET and long-poll", () => {
  it("304 while unchanged, 200 with a new ETag after a change", async () => {
    const realm = await newRealm("etag");
    await call("PUT", `/v1/realms/${realm}/nodes/a`, { body: node("a") });
    await call("PUT", `/v1/realms/${realm}/nodes/b`, { body: node("b") });
    const first = await call("GET", `/v1/realms/${realm}/route-tables/a`);
    const etag = first.headers.get("etag")!;
    // The realm's version, then the table's form (docs/contract/edge-api.md §1.5).
    expect(etag).toMatch(/^".+\.2\.t2"$/);
    const same = await call("GET", `/v1/realms/${realm}/route-tables/a`, { headers: { "if-none-match": etag } });
    expect(same.status).toBe(304);
    await call("PUT", `/v1/realms/${realm}/nodes/c`, { body: node("c") });
    const changed = await call("GET", `/v1/realms/${realm}/route-tables/a`, { headers: { "if-none-match": etag } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get("etag")).not.toBe(etag);
    expect(changed.body.routes.map((r: { to: string }) => r.to)).toContain("c");
  });

  it("a waiting request wakes as soon as the version changes (well under a second)", async () => {
    const realm = await newRealm("wake");
    await call("PUT", `/v1/realms/${realm}/nodes/a`, { body: node("a") });
    const first = await call("GET", `/v1/realms/${realm}/route-tables/a`);
    const etag = first.headers.get("etag")!;
    const listFirst = await call("GET", `/v1/realms/${realm}/nodes`);
    const started = Date.now();
    const waiting = call("GET", `/v1/realms/${realm}/route-tables/a?wait=30`, { headers: { "if-none-match": etag } });
    const listWaiting = call("GET", `/v1/realms/${realm}/nodes?wait=30`, {
      headers: { "if-none-match": listFirst.headers.get("etag")! },
    });
    await new Promise((r) => setTimeout(r, 200));
    await call("PUT", `/v1/realms/${realm}/nodes/b`, { body: node("b") });
    const woke = await waiting;
    const elapsed = Date.now() - started;
    expect(woke.status).toBe(200);
    expect(woke.body.version).toBe(2);
    expect(elapsed).toBeLessThan(1_500);
    const list = await listWaiting;
    expect(list.status).toBe(200);
    expect(list.body.records.map((r: { name: string }) => r.name)).toEqual(["a", "b"]);
  });

  it("a wait that sees no change ends with 304 after the given time", async () => {
    const realm = await newRealm("idle");
    await call("PUT", `/v1/realms/${realm}/nodes/a`, { body: node("a") });
    const etag = (await call("GET", `/v1/realms/${realm}/route-tables/a`)).headers.get("etag")!;
    const started = Date.now();
    const r = await call("GET", `/v1/realms/${realm}/route-tables/a?wait=1`, { headers: { "if-none-match": etag } });
    expect(r.status).toBe(304);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    // A heartbeat is not a topology change: it must not wake waiters.
    const started2 = Date.now();
    const w = call("GET", `/v1/realms/${realm}/route-tables/a?wait=1`, { headers: { "if-none-match": etag } });
    await call("POST", `/v1/realms/${realm}/nodes/a/heartbeat`, { body: {} });
    expect((await w).status).toBe(304);
    expect(Date.now() - started2).toBeGreaterThanOrEqual(900);
  });

  it("writes that leave a node's route table alone do not wake its wait; one that changes it does", async () => {
    // Another tenant rewriting its own record (custom_data, in no route) changes the realm's
    // version, not this table: the waiting agent is not woken for each of those writes
    // (docs/contract/edge-api.md §1.5), and answers with the latest version when its time is up.
    const realm = await newRealm("unrelated");
    const base = `/v1/realms/${realm}`;
    await call("PUT", `${base}/nodes/v`, { body: node("v", "b") });
    await call("PUT", `${base}/nodes/t`, { body: node("t", "a") });
    const first = await call("GET", `${base}/route-tables/v`);
    const etag = first.headers.get("etag")!;
    const started = Date.now();
    const waiting = call("GET", `${base}/route-tables/v?wait=2`, { headers: { "if-none-match": etag } });
    await new Promise((r) => setTimeout(r, 200));
    const t = (await call("GET", `${base}/nodes/t`)).body.record;
    for (let i = 0; i < 5; i++) {
      expect((await call("PUT", `${base}/nodes/t`, { body: { ...t, custom_data: `churn ${i}` } })).status).toBe(200);
    }
    const answered = await waiting;
    expect(answered.status).toBe(200);
    // Woken by the first churn write it would carry first.body.version + 1.
    expect(answered.body.version).toBe(first.body.version + 5);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    expect({ ...answered.body, version: 0 }).toEqual({ ...first.body, version: 0 });

    // A write that does change the table (a new node v routes to) wakes it at once.
    const etag2 = answered.headers.get("etag")!;
    const started2 = Date.now();
    const waiting2 = call("GET", `${base}/route-tables/v?wait=10`, { headers: { "if-none-match": etag2 } });
    await new Promise((r) => setTimeout(r, 200));
    await call("PUT", `${base}/nodes/t`, { body: { ...t, custom_data: "churn again" } });
    await call("PUT", `${base}/nodes/v2`, { body: node("v2", "b") });
    const woke = await waiting2;
    expect(woke.status).toBe(200);
    expect(woke.body.routes.map((r: { to: string }) => r.to)).toContain("v2");
    expect(Date.now() - started2).toBeLessThan(5_000);
  });

  it("wait above 60 seconds is refused", async () => {
    const realm = await newRealm("cap");
    const r = await call("GET", `/v1/realms/${realm}/route-tables/a?wait=61`);
    expect(r.status).toBe(400);
    expect(r.body.error.path).toBe("wait");
  });
});
