// Relay link status: relays report their links with the heartbeat; readers see them at GET /links.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RealmObject } from "../../durable-objects/realm.ts";
import { LinksAnswerSchema } from "../../src/core/wire.ts";
import { call, newRealm, node } from "./helpers.ts";

async function token(realm: string, role: "agent" | "reader", namespaces: string[] = []): Promise<string> {
  const r = await call("POST", `/v1/realms/${realm}/tokens`, { body: { role, namespaces } });
  expect(r.status).toBe(201);
  return r.body.token as string;
}

describe("relay link status", () => {
  it("shows what each relay last reported, to readers, strictly in the documented shape", async () => {
    const realm = await newRealm("links");
    const agent = await token(realm, "agent", ["ns1"]);
    const reader = await token(realm, "reader");
    for (const name of ["r1", "r2"]) {
      const put = await call("PUT", `/v1/realms/${realm}/nodes/${name}`, {
        body: { ...node(name), ttl_seconds: 30 },
        token: agent,
      });
      expect(put.status).toBe(201);
    }
    const hb = await call("POST", `/v1/realms/${realm}/nodes/r1/heartbeat`, {
      body: { links: [{ peer: "r2", up: true, streams: 3 }] },
      token: agent,
    });
    expect(hb.status).toBe(200);
    await call("POST", `/v1/realms/${realm}/nodes/r2/heartbeat`, {
      body: { links: [{ peer: "r1", up: false, streams: 0 }] },
      token: agent,
    });

    const got = await call("GET", `/v1/realms/${realm}/links`, { token: reader });
    expect(got.status).toBe(200);
    const parsed = LinksAnswerSchema.strict().parse(got.body);
    expect(parsed.links.map(({ reported_at: _, ...l }) => l)).toEqual([
      { from: "r1", peer: "r2", up: true, streams: 3 },
      { from: "r2", peer: "r1", up: false, streams: 0 },
    ]);
  });

  it("refuses a malformed report by field, and a report for another namespace's relay", async () => {
    const realm = await newRealm("links");
    const agent = await token(realm, "agent", ["ns1"]);
    const other = await token(realm, "agent", ["ns2"]);
    await call("PUT", `/v1/realms/${realm}/nodes/r1`, { body: { ...node("r1"), ttl_seconds: 30 }, token: agent });

    const bad = await call("POST", `/v1/realms/${realm}/nodes/r1/heartbeat`, {
      body: { links: [{ peer: "R2!", up: "yes", streams: -1 }] },
      token: agent,
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.path).toMatch(/^links\[0\]\./);

    const foreign = await call("POST", `/v1/realms/${realm}/nodes/r1/heartbeat`, {
      body: { links: [{ peer: "r9", up: true, streams: 1 }] },
      token: other,
    });
    expect(foreign.status).toBe(403);
    const got = await call("GET", `/v1/realms/${realm}/links`, { token: agent });
    expect(got.body.links).toEqual([]);
  });

  it("forgets a relay's links when its record goes or it stops heartbeating for three leases", async () => {
    const realm = await newRealm("links");
    const stub = env.REALM.get(env.REALM.idFromName(realm));
    const t0 = Date.now();
    await runInDurableObject(stub, (o: RealmObject) => {
      o.clockForTest = () => t0;
    });
    for (const name of ["r1", "r2"]) {
      await call("PUT", `/v1/realms/${realm}/nodes/${name}`, { body: { ...node(name), ttl_seconds: 30 } });
      await call("POST", `/v1/realms/${realm}/nodes/${name}/heartbeat`, {
        body: { links: [{ peer: name === "r1" ? "r2" : "r1", up: true, streams: 1 }] },
      });
    }
    await call("DELETE", `/v1/realms/${realm}/nodes/r2`);
    let got = await call("GET", `/v1/realms/${realm}/links`);
    expect(got.body.links.map((l: { from: string }) => l.from)).toEqual(["r1"]);

    // r1's record is still there (the alarm has not run), but its report is older than 3 × 30 s.
    await runInDurableObject(stub, (o: RealmObject) => {
      o.clockForTest = () => t0 + 91_000;
    });
    got = await call("GET", `/v1/realms/${realm}/links`);
    expect(got.body.links).toEqual([]);
  });
});
