// Listener declarations at the edge: who may declare what, validation by field, and the
// long-poll agents follow.
import { describe, expect, it } from "vitest";
import { ListenersAnswerSchema } from "../../src/core/listener.ts";
import { call, newRealm } from "./helpers.ts";

async function token(realm: string, role: "agent" | "reader", namespaces: string[] = []): Promise<string> {
  const r = await call("POST", `/v1/realms/${realm}/tokens`, { body: { role, namespaces } });
  expect(r.status).toBe(201);
  return r.body.token as string;
}

const decl = (extra: Record<string, unknown> = {}) => ({
  namespace: "ns1",
  relays: { metadata: { kind: "relay" } },
  listen: "0.0.0.0:6379",
  target: "redis-eu:6379",
  ...extra,
});

describe("listener declarations", () => {
  it("an agent token declares in its own namespace only; the admin anywhere; readers never", async () => {
    const realm = await newRealm("lis");
    const agent = await token(realm, "agent", ["ns1"]);
    const reader = await token(realm, "reader");

    const created = await call("PUT", `/v1/realms/${realm}/listeners/redis`, { body: decl(), token: agent });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ version: 1, name: "redis", created: true });
    const same = await call("PUT", `/v1/realms/${realm}/listeners/redis`, { body: decl(), token: agent });
    expect(same.status).toBe(200);
    expect(same.body.version).toBe(1);

    const foreign = await call("PUT", `/v1/realms/${realm}/listeners/pg`, {
      body: decl({ namespace: "ns2" }),
      token: agent,
    });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error).toMatchObject({ code: "namespace_forbidden", path: "namespace" });
    const everywhere = await call("PUT", `/v1/realms/${realm}/listeners/pg`, {
      body: decl({ namespace: undefined }),
      token: agent,
    });
    expect(everywhere.status).toBe(403);

    const admin = await call("PUT", `/v1/realms/${realm}/listeners/pg`, { body: decl({ namespace: undefined }) });
    expect(admin.status).toBe(201);
    // A tenant cannot take over (or remove) the admin's declaration by its name.
    const takeover = await call("PUT", `/v1/realms/${realm}/listeners/pg`, { body: decl(), token: agent });
    expect(takeover.status).toBe(403);
    const foreignDelete = await call("DELETE", `/v1/realms/${realm}/listeners/pg`, { token: agent });
    expect(foreignDelete.status).toBe(403);
    // Said of the declaration's own field, as for PUT.
    expect(foreignDelete.body.error).toMatchObject({ code: "namespace_forbidden", path: "namespace" });
    expect(foreignDelete.body.error.message).toContain("may only write listener declarations whose namespace");

    expect((await call("PUT", `/v1/realms/${realm}/listeners/x`, { body: decl(), token: reader })).status).toBe(403);
    const list = await call("GET", `/v1/realms/${realm}/listeners`, { token: reader });
    expect(list.status).toBe(200);
    const parsed = ListenersAnswerSchema.parse(list.body);
    expect(parsed.listeners.map((l) => [l.name, l.namespace ?? null])).toEqual([
      ["pg", null],
      ["redis", "ns1"],
    ]);
    expect(parsed.version).toBe(2);

    const removed = await call("DELETE", `/v1/realms/${realm}/listeners/redis`, { token: agent });
    expect(removed.body).toEqual({ version: 3, name: "redis" });
    expect((await call("DELETE", `/v1/realms/${realm}/listeners/redis`, { token: agent })).status).toBe(404);
  });

  it("a namespace holds at most 128 declarations, so no tenant uses up the realm's 1,024", async () => {
    const realm = await newRealm("lisq");
    const agent = await token(realm, "agent", ["ns1"]);
    const other = await token(realm, "agent", ["ns2"]);
    for (let i = 0; i < 128; i++) {
      const r = await call("PUT", `/v1/realms/${realm}/listeners/l${i}`, { body: decl(), token: agent });
      expect(r.status).toBe(201);
    }
    const over = await call("PUT", `/v1/realms/${realm}/listeners/l128`, { body: decl(), token: agent });
    expect(over.status).toBe(400);
    expect(over.body.error).toMatchObject({ code: "invalid_input", path: "namespace" });
    expect(over.body.error.message).toContain("at most 128");
    // Replacing one of its own still works; another namespace and the admin still declare.
    expect(
      (await call("PUT", `/v1/realms/${realm}/listeners/l0`, { body: decl({ listen: "0.0.0.0:7000" }), token: agent }))
        .status,
    ).toBe(200);
    expect(
      (await call("PUT", `/v1/realms/${realm}/listeners/pg`, { body: decl({ namespace: "ns2" }), token: other }))
        .status,
    ).toBe(201);
    expect(
      (await call("PUT", `/v1/realms/${realm}/listeners/all`, { body: decl({ namespace: undefined }) })).status,
    ).toBe(201);
    expect((await call("GET", `/v1/realms/${realm}/listeners`)).body.listeners).toHaveLength(130);
  });

  it("refuses a selector of more than 64 labels, naming the field", async () => {
    const realm = await newRealm("lisl");
    const labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    const r = await call("PUT", `/v1/realms/${realm}/listeners/big`, {
      body: decl({ relays: { metadata: { labels } } }),
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "invalid_input", path: "relays.metadata.labels" });
    expect((await call("GET", `/v1/realms/${realm}/listeners`)).body.listeners).toHaveLength(0);
  });

  it("names the bad field and stores nothing", async () => {
    const realm = await newRealm("lis");
    for (const [body, path] of [
      [decl({ listen: "localhost:6379" }), "listen"],
      [decl({ target: "10.0.0.1:6379" }), "target"],
      [decl({ target: "redis eu" }), "target"],
      [decl({ key: { from: "header" } }), "key"],
      [decl({ relays: { label: "x" } }), "relays"],
      [decl({ extra: 1 }), ""],
    ] as const) {
      const r = await call("PUT", `/v1/realms/${realm}/listeners/bad`, { body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.path ?? "", JSON.stringify(r.body)).toMatch(new RegExp(`^${path}`));
    }
    const list = await call("GET", `/v1/realms/${realm}/listeners`);
    expect(list.body).toEqual({ version: 0, listeners: [] });
  });

  it("answers 304 while unchanged, and wakes a waiting agent when a declaration changes", async () => {
    const realm = await newRealm("lis");
    const first = await call("GET", `/v1/realms/${realm}/listeners`);
    const etag = first.headers.get("etag") as string;
    expect(etag).toBe('"listeners-0"');
    expect((await call("GET", `/v1/realms/${realm}/listeners`, { headers: { "if-none-match": etag } })).status).toBe(
      304,
    );
    const t0 = Date.now();
    const waiting = call("GET", `/v1/realms/${realm}/listeners?wait=20`, { headers: { "if-none-match": etag } });
    await new Promise((r) => setTimeout(r, 200));
    await call("PUT", `/v1/realms/${realm}/listeners/redis`, { body: decl() });
    const woken = await waiting;
    expect(woken.status).toBe(200);
    expect(woken.body.listeners.map((l: { name: string }) => l.name)).toEqual(["redis"]);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("an agent follows its namespaces' declarations and the admin's: another namespace's churn neither reaches nor wakes it", async () => {
    const realm = await newRealm("lisns");
    const base = `/v1/realms/${realm}`;
    const victim = await token(realm, "agent", ["victim"]);
    const evil = await token(realm, "agent", ["evil"]);
    const reader = await token(realm, "reader");
    const put = async (name: string, body: Record<string, unknown>, tok?: string) =>
      expect((await call("PUT", `${base}/listeners/${name}`, { body, ...(tok ? { token: tok } : {}) })).status).toBe(
        201,
      );
    await put("shared", decl({ namespace: undefined, listen: "0.0.0.0:1000" }));
    await put("v1", decl({ namespace: "victim", listen: "0.0.0.0:1001" }), victim);
    await put("e1", decl({ namespace: "evil", listen: "0.0.0.0:1002" }), evil);
    const names = (r: { body: { listeners: Array<{ name: string }> } }) => r.body.listeners.map((l) => l.name);
    const mine = await call("GET", `${base}/listeners`, { token: victim });
    expect(names(mine)).toEqual(["shared", "v1"]);
    expect(names(await call("GET", `${base}/listeners`, { token: reader }))).toEqual(["e1", "shared", "v1"]);
    const etag = mine.headers.get("etag") as string;
    // The tenant rewrites its own declaration over and over while the victim's agent waits.
    const waiting = call("GET", `${base}/listeners?wait=1`, { token: victim, headers: { "if-none-match": etag } });
    for (let i = 0; i < 5; i++) {
      const r = await call("PUT", `${base}/listeners/e1`, {
        token: evil,
        body: decl({ namespace: "evil", listen: `0.0.0.0:${2000 + i}` }),
      });
      expect(r.status).toBe(200);
    }
    expect((await waiting).status).toBe(304);
    // A change of its own namespace, or the admin's, does reach it.
    await call("PUT", `${base}/listeners/v1`, {
      token: victim,
      body: decl({ namespace: "victim", listen: "0.0.0.0:1003" }),
    });
    const changed = await call("GET", `${base}/listeners`, { token: victim, headers: { "if-none-match": etag } });
    expect(changed.status).toBe(200);
    const again = changed.headers.get("etag") as string;
    expect((await call("DELETE", `${base}/listeners/shared`)).status).toBe(200);
    const adminChanged = await call("GET", `${base}/listeners`, { token: victim, headers: { "if-none-match": again } });
    expect(adminChanged.status).toBe(200);
    expect(names(adminChanged)).toEqual(["v1"]);
  });
});
