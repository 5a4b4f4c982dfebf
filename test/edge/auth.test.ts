// Token scopes: 401 without or with an unknown token, 403 for the wrong role or namespace.
import { describe, expect, it } from "vitest";
import { call, mintToken, newRealm, node } from "./helpers.ts";

describe("auth", () => {
  it("the 401/403 matrix", async () => {
    const realm = await newRealm("auth");
    const other = await newRealm("auth-other");
    await call("PUT", `/v1/realms/${realm}/nodes/in-b`, { body: node("in-b", "b") });
    const agent = await mintToken(realm, "agent", ["a"]);
    const reader = await mintToken(realm, "reader");
    const foreign = await mintToken(other, "agent", ["a"]);
    expect(agent.token).toMatch(/^hwt2_[0-9a-f]{16}_[0-9a-f]{48}_[0-9a-f]{32}$/);

    const base = `/v1/realms/${realm}`;
    const cases: [string, string, string | null, unknown, number, string?][] = [
      // no token / bad token / token of another realm
      ["GET", `${base}/nodes`, null, undefined, 401, "unauthorized"],
      ["GET", `${base}/nodes`, "wrong", undefined, 401, "unauthorized"],
      ["GET", `${base}/nodes`, foreign.token, undefined, 401, "unauthorized"],
      // readers read, never write
      ["GET", `${base}/nodes`, reader.token, undefined, 200],
      ["GET", `${base}/route-tables/in-b`, reader.token, undefined, 200],
      ["PUT", `${base}/nodes/r1`, reader.token, node("r1", "a"), 403, "forbidden"],
      ["DELETE", `${base}/nodes/in-b`, reader.token, undefined, 403, "forbidden"],
      ["POST", `${base}/tokens`, reader.token, { role: "reader" }, 403, "forbidden"],
      // agents write their namespaces only, and read
      ["PUT", `${base}/nodes/a1`, agent.token, node("a1", "a"), 201],
      ["GET", `${base}/nodes/a1`, agent.token, undefined, 200],
      ["PUT", `${base}/nodes/b1`, agent.token, node("b1", "b"), 403, "namespace_forbidden"],
      ["PUT", `${base}/nodes/nons`, agent.token, { gateway: [] }, 403, "namespace_forbidden"],
      // no hijacking another namespace's name by moving it into mine
      ["PUT", `${base}/nodes/in-b`, agent.token, node("in-b", "a"), 403, "namespace_forbidden"],
      ["DELETE", `${base}/nodes/in-b`, agent.token, undefined, 403, "namespace_forbidden"],
      ["POST", `${base}/nodes/in-b/heartbeat`, agent.token, {}, 403, "namespace_forbidden"],
      ["POST", `${base}/nodes/a1/heartbeat`, agent.token, { ttl_seconds: 30 }, 200],
      ["POST", `${base}/tokens`, agent.token, { role: "reader" }, 403, "forbidden"],
      ["GET", `${base}/tokens`, agent.token, undefined, 403, "forbidden"],
    ];
    for (const [method, path, tok, body, status, code] of cases) {
      const r = await call(method, path, { token: tok, body });
      expect(r.status, `${method} ${path} as ${tok?.slice(0, 12)}: ${JSON.stringify(r.body)}`).toBe(status);
      if (code !== undefined) expect(r.body.error.code).toBe(code);
    }
    // An agent import is all-or-nothing on namespaces too.
    const imp = await call("POST", `${base}/import`, { token: agent.token, body: [node("a2", "a"), node("b2", "b")] });
    expect(imp.status).toBe(403);
    // The refusal names the record at fault, by its place in the import.
    expect(imp.body.error).toMatchObject({ code: "namespace_forbidden", path: "[1].metadata.namespace_name" });
    expect(imp.body.error.message).toContain("record 'b2'");
    expect((await call("GET", `${base}/nodes/a2`)).status).toBe(404);
  });

  it("tokens are listed without secrets, stored only as hashes, and revocable", async () => {
    const realm = await newRealm("tok");
    const t = await mintToken(realm, "reader");
    const list = await call("GET", `/v1/realms/${realm}/tokens`);
    expect(list.body.tokens).toEqual([{ id: t.id, role: "reader", namespaces: [], created_at: expect.any(String) }]);
    expect(JSON.stringify(list.body)).not.toContain(t.token);
    expect((await call("GET", `/v1/realms/${realm}/nodes`, { token: t.token })).status).toBe(200);
    expect((await call("DELETE", `/v1/realms/${realm}/tokens/${t.id}`)).status).toBe(200);
    expect((await call("GET", `/v1/realms/${realm}/nodes`, { token: t.token })).status).toBe(401);
    expect((await call("DELETE", `/v1/realms/${realm}/tokens/${t.id}`)).status).toBe(404);
    const agentNoNs = await call("POST", `/v1/realms/${realm}/tokens`, { body: { role: "agent", namespaces: [] } });
    expect(agentNoNs.status).toBe(400);
    expect(agentNoNs.body.error.path).toBe("namespaces");
    const readerWithNs = await call("POST", `/v1/realms/${realm}/tokens`, {
      body: { role: "reader", namespaces: ["a"] },
    });
    expect(readerWithNs.status).toBe(400);
    expect(readerWithNs.body.error.path).toBe("namespaces");
  });

  it("the database holds the SHA-256 of a token, never the token", async () => {
    const { runInDurableObject } = await import("cloudflare:test");
    const { env } = await import("cloudflare:workers");
    const realm = await newRealm("hash");
    const t = await mintToken(realm, "agent", ["x"]);
    const rows = await runInDurableObject(env.REALM.get(env.REALM.idFromName(realm)), (_i, state) =>
      state.storage.sql.exec<{ hash: string }>("SELECT * FROM tokens").toArray(),
    );
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(t.token.slice(20));
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(t.token));
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    expect(rows[0]?.hash).toBe(hex);
  });
});
