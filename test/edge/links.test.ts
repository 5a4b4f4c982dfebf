// Relay link status: relays report their links with the heartbeat; readers see them at GET /links.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { LINK_ENTRIES_PER_NAMESPACE, type RealmObject } from "../../durable-objects/realm.ts";
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
    }
    for (const name of ["r1", "r2"]) {
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

  it("keeps only peers that are records, once each, and at most a namespace's share of entries", async () => {
    const realm = await newRealm("links");
    const b = await token(realm, "agent", ["b"]);
    const c = await token(realm, "agent", ["c"]);
    // 256 peers, and enough relays of namespace b to report past its share.
    const perReport = 256;
    const reporters = Math.ceil(LINK_ENTRIES_PER_NAMESPACE / perReport) + 1;
    const records = [
      ...Array.from({ length: perReport }, (_, i) => node(`p-${i}`, "b")),
      ...Array.from({ length: reporters }, (_, i) => node(`rb-${i}`, "b")),
      node("rc-0", "c"),
    ];
    expect((await call("POST", `/v1/realms/${realm}/import`, { body: records })).status).toBe(200);
    const full = Array.from({ length: perReport }, (_, i) => ({ peer: `p-${i}`, up: true, streams: 1 }));

    // Unknown peers and repeats are not kept.
    const mixed = await call("POST", `/v1/realms/${realm}/nodes/rb-0/heartbeat`, {
      body: { links: [full[0], { peer: "nobody", up: true, streams: 9 }, full[0], full[1]] },
      token: b,
    });
    expect(mixed.status).toBe(200);
    let got = await call("GET", `/v1/realms/${realm}/links`);
    expect(got.body.links.map((l: { peer: string }) => l.peer)).toEqual(["p-0", "p-1"]);

    for (let i = 0; i < reporters; i++) {
      const hb = await call("POST", `/v1/realms/${realm}/nodes/rb-${i}/heartbeat`, { body: { links: full }, token: b });
      // The lease is renewed whatever happens to the report.
      expect(hb.status).toBe(200);
    }
    // Another namespace keeps its whole report.
    const hc = await call("POST", `/v1/realms/${realm}/nodes/rc-0/heartbeat`, { body: { links: full }, token: c });
    expect(hc.status).toBe(200);
    got = await call("GET", `/v1/realms/${realm}/links`);
    const from = (prefix: string) => got.body.links.filter((l: { from: string }) => l.from.startsWith(prefix)).length;
    expect(from("rb-")).toBe(LINK_ENTRIES_PER_NAMESPACE);
    expect(from("rc-")).toBe(perReport);
    // A reporter's new report replaces its old one rather than adding to it.
    await call("POST", `/v1/realms/${realm}/nodes/rb-0/heartbeat`, { body: { links: full.slice(0, 1) }, token: b });
    await call("POST", `/v1/realms/${realm}/nodes/rb-${reporters - 1}/heartbeat`, { body: { links: full }, token: b });
    got = await call("GET", `/v1/realms/${realm}/links`);
    expect(from("rb-")).toBe(LINK_ENTRIES_PER_NAMESPACE);
  });
});
