// Key ownership through the real Worker and RealmObject: membership from the
// group record and the pods' scaling reports, owner/previous per key exactly
// as the core computes them, validation and access.
import { describe, expect, it } from "vitest";
import { type GroupMember, OwnershipIndex } from "../../src/core/index.ts";
import { call, newRealm } from "./helpers.ts";

const NS = "stateful";

/** One pod: the application record (a group member) and its agent's record on the same host. */
function pod(i: number): Record<string, unknown>[] {
  const host = { hostname: `kv-${i}` };
  return [
    {
      name: `kv-${i}`,
      host,
      metadata: { namespace_name: NS, kind: "app" },
      gateway: [{ priority: 1, address: `ipv4://10.8.0.${i + 1}:7000` }],
    },
    {
      name: `kv-agent-${i}`,
      host,
      metadata: { namespace_name: NS, kind: "relay" },
      gateway: [{ priority: 1, address: `ipv4://10.8.0.${i + 1}:1080` }],
    },
  ];
}
// Lists the StatefulSet's pods up to its maxReplicas: only those whose records exist are members,
// so pods starting and stopping change the membership without touching the group.
const GROUP = { type: "group", node_list: [0, 1, 2, 3, 4].map((i) => ({ node_name: `kv-${i}` })) };

async function setup(realm: string, pods: number[]) {
  const imp = await call("POST", `/v1/realms/${realm}/import`, { body: pods.flatMap(pod) });
  expect(imp.status, JSON.stringify(imp.body)).toBe(200);
  const g = await call("PUT", `/v1/realms/${realm}/nodes/kv`, { body: GROUP });
  expect(g.status, JSON.stringify(g.body)).toBe(201);
}

async function report(realm: string, i: number, load: number, holds: boolean) {
  const r = await call("POST", `/v1/realms/${realm}/nodes/kv-agent-${i}/heartbeat`, {
    body: { report: { workload: "kv", ordinal: i, load, holds_state: holds } },
  });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

const KEYS = Array.from({ length: 200 }, (_, i) => `user:${i}`);

async function owners(realm: string, token?: string) {
  const r = await call("POST", `/v1/realms/${realm}/owners`, { body: { group: "kv", keys: KEYS }, token });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body as {
    epoch: string;
    members: GroupMember[];
    owners: { key: string; owner: string | null; previous: string | null }[];
  };
}

function expectCoreAnswer(body: Awaited<ReturnType<typeof owners>>) {
  const idx = new OwnershipIndex(body.members);
  expect(body.epoch).toBe(idx.epoch);
  expect(body.owners).toEqual(KEYS.map((k) => idx.lookup(k)));
}

describe("GET/POST /v1/realms/{realm}/owners", () => {
  it("follows joins, drains and the end of migrations, answering what the core computes", async () => {
    const realm = await newRealm("own");
    await setup(realm, [0, 1, 2]);

    // No reports yet: members up, state unknown (counted as held), nothing draining.
    let b = await owners(realm);
    expect(b.members).toEqual([0, 1, 2].map((i) => ({ name: `kv-${i}`, draining: false, holds_state: null })));
    expect(b.owners.every((o) => o.previous === null && /^kv-[012]$/.test(o.owner ?? ""))).toBe(true);
    expectCoreAnswer(b);

    for (const i of [0, 1, 2]) await report(realm, i, 0.6, true);
    const three = await owners(realm);
    expect(three.members.every((m) => m.holds_state === true && !m.draining)).toBe(true);
    expectCoreAnswer(three);

    // kv-3 starts (its records appear) and has not pulled its keys yet.
    const imp3 = await call("POST", `/v1/realms/${realm}/import`, { body: pod(3) });
    expect(imp3.status, JSON.stringify(imp3.body)).toBe(200);
    await report(realm, 3, 0.6, false);
    b = await owners(realm);
    expectCoreAnswer(b);
    const movedTo3 = b.owners.filter((o, i) => o.owner !== three.owners[i]?.owner);
    expect(movedTo3.length).toBeGreaterThan(20);
    for (const o of movedTo3) {
      expect(o.owner).toBe("kv-3");
      expect(o.previous).toBe(three.owners.find((t) => t.key === o.key)?.owner);
    }
    expect(b.owners.filter((o) => o.previous !== null)).toEqual(movedTo3);

    // kv-3 has its state: settled.
    await report(realm, 3, 0.6, true);
    const four = await owners(realm);
    expect(four.owners.every((o) => o.previous === null)).toBe(true);

    // Load drops: load alone asks for 3 replicas, so ordinal 3 drains; its keys go back, naming it as previous.
    for (const i of [0, 1, 2]) await report(realm, i, 0.6, true);
    const hb = await report(realm, 3, 0, true);
    expect(hb.scaling.draining).toEqual([3]);
    b = await owners(realm);
    expectCoreAnswer(b);
    expect(b.members.find((m) => m.name === "kv-3")).toEqual({ name: "kv-3", draining: true, holds_state: true });
    for (const [i, o] of b.owners.entries()) {
      expect(o.owner).toBe(three.owners[i]?.owner);
      expect(o.previous).toBe(four.owners[i]?.owner === "kv-3" ? "kv-3" : null);
    }

    // kv-3 handed everything over and says so: settled on the old owners.
    await report(realm, 3, 0, false);
    b = await owners(realm);
    expect(b.owners).toEqual(three.owners);
  });

  it("answers GET for a few keys with a reader token, and the membership with an ETag", async () => {
    const realm = await newRealm("own");
    await setup(realm, [0, 1]);
    const reader = await call("POST", `/v1/realms/${realm}/tokens`, { body: { role: "reader" } });
    const token = reader.body.token as string;
    const r = await call("GET", `/v1/realms/${realm}/owners?group=kv&key=a&key=${encodeURIComponent("b/é")}`, {
      token,
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.owners.map((o: { key: string }) => o.key)).toEqual(["a", "b/é"]);
    const idx = new OwnershipIndex(r.body.members);
    expect(r.body.owners).toEqual([idx.lookup("a"), idx.lookup("b/é")]);

    const m = await call("GET", `/v1/realms/${realm}/groups/kv/membership`, { token });
    expect(m.status).toBe(200);
    expect(m.body).toMatchObject({ group: "kv", epoch: idx.epoch, members: r.body.members });
    const etag = m.headers.get("etag") ?? "";
    expect(etag).toContain(idx.epoch);
    const again = await call("GET", `/v1/realms/${realm}/groups/kv/membership`, {
      token,
      headers: { "if-none-match": etag },
    });
    expect(again.status).toBe(304);
    // A report changes the membership, and so the ETag.
    await report(realm, 0, 0.5, true);
    await report(realm, 1, 0.5, false);
    const changed = await call("GET", `/v1/realms/${realm}/groups/kv/membership`, {
      token,
      headers: { "if-none-match": etag },
    });
    expect(changed.status).toBe(200);
    expect(changed.body.members[1]).toEqual({ name: "kv-1", draining: false, holds_state: false });
  });

  it("refuses bad input naming the field, unknown groups, non-groups and missing tokens", async () => {
    const realm = await newRealm("own");
    await setup(realm, [0]);
    const cases: Array<[string, string, unknown, number, string, string | undefined]> = [
      ["GET", "/owners?key=a", undefined, 400, "invalid_input", "group"],
      ["GET", "/owners?group=kv", undefined, 400, "invalid_input", "key"],
      ["GET", "/owners?group=kv&key=a&color=red", undefined, 400, "invalid_input", "color"],
      ["GET", "/owners?group=KV!&key=a", undefined, 400, "invalid_input", "group"],
      ["GET", `/owners?group=kv&key=${"k".repeat(1025)}`, undefined, 400, "invalid_input", "key[0]"],
      ["GET", "/owners?group=nope&key=a", undefined, 404, "unknown_node", "group"],
      ["GET", "/owners?group=kv-0&key=a", undefined, 400, "invalid_input", "group"],
      ["POST", "/owners", { group: "kv", keys: [] }, 400, "invalid_input", "keys"],
      ["POST", "/owners", { group: "kv", keys: ["a", 7] }, 400, "invalid_input", "keys[1]"],
      ["POST", "/owners", { group: "kv", keys: ["a"], extra: 1 }, 400, "invalid_input", undefined],
      ["GET", "/groups/nope/membership", undefined, 404, "unknown_node", "group"],
    ];
    for (const [method, path, body, status, code, field] of cases) {
      const r = await call(method, `/v1/realms/${realm}${path}`, body === undefined ? {} : { body });
      expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(status);
      expect(r.body.error.code).toBe(code);
      if (field !== undefined) expect(r.body.error.path, `${method} ${path}`).toBe(field);
    }
    expect((await call("GET", `/v1/realms/${realm}/owners?group=kv&key=a`, { token: null })).status).toBe(401);
  });
});
