// Key ownership through the real Worker and RealmObject: membership from the
// group record and the pods' scaling reports, owner/previous per key exactly
// as the core computes them, validation and access, and that a tenant of
// another namespace cannot join a group by registering a listed name.
import { describe, expect, it } from "vitest";
import { type GroupMember, OwnershipIndex } from "../../src/core/index.ts";
import { ADMIN as ADMIN_TOKEN, type Call, call, newRealm } from "./helpers.ts";

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
// Lists the StatefulSet's pods up to its maxReplicas: only those whose records exist (in the
// group's namespace) are members, so pods starting and stopping change the membership without
// touching the group.
const GROUP = {
  type: "group",
  metadata: { namespace_name: NS },
  node_list: [0, 1, 2, 3, 4].map((i) => ({ node_name: `kv-${i}` })),
};

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

describe("a group's namespace: who may join it and who may write it", () => {
  const TEAM_A = "team-a";

  async function tenants(realm: string) {
    const token = async (ns: string) => {
      const r = await call("POST", `/v1/realms/${realm}/tokens`, { body: { role: "agent", namespaces: [ns] } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return r.body.token as string;
    };
    return { teamA: await token(TEAM_A), teamB: await token(NS) };
  }

  /** kv-3 as a tenant registers it: a node of namespace `ns` with that tenant's own gateway. */
  const intruder = (ns: string) => ({
    metadata: { namespace_name: ns, kind: "app" },
    gateway: [{ priority: 1, address: "ipv4://10.66.0.3:7000" }],
  });

  /** What the three ways of asking about the group say about its members. */
  async function seenMembers(realm: string) {
    const m = await call("GET", `/v1/realms/${realm}/groups/kv/membership`);
    expect(m.status, JSON.stringify(m.body)).toBe(200);
    const o = await owners(realm);
    const r = await call("GET", `/v1/realms/${realm}/routes?from=kv-0&to=kv`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return {
      membership: (m.body.members as GroupMember[]).map((x) => x.name),
      owners: [...new Set(o.owners.map((x) => x.owner))].sort(),
      routes: (r.body.routes as { to: string }[]).map((x) => x.to),
    };
  }

  it("a listed but unregistered member name, registered by another namespace's token, is not a member", async () => {
    const realm = await newRealm("own");
    await setup(realm, [0, 1, 2]);
    const { teamA, teamB } = await tenants(realm);
    const before = await seenMembers(realm);
    expect(before).toEqual({
      membership: ["kv-0", "kv-1", "kv-2"],
      owners: ["kv-0", "kv-1", "kv-2"],
      // The route to a group lists its members; kv-0's to itself is `same_node`.
      routes: ["kv-0", "kv-1", "kv-2"],
    });

    // The attack: team-a's token may write its own namespace, so the write itself succeeds...
    const put = await call("PUT", `/v1/realms/${realm}/nodes/kv-3`, { token: teamA, body: intruder(TEAM_A) });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    // ...but kv-3 is in team-a, not in the group's namespace: no membership, no keys, no route.
    const after = await seenMembers(realm);
    expect(after).toEqual(before);

    // team-a cannot move kv-3 into the group's namespace either, nor touch the group.
    const moved = await call("PUT", `/v1/realms/${realm}/nodes/kv-3`, { token: teamA, body: intruder(NS) });
    expect(moved.status).toBe(403);
    expect(moved.body.error.code).toBe("namespace_forbidden");
    const retarget = await call("PUT", `/v1/realms/${realm}/nodes/kv`, {
      token: teamA,
      body: { ...GROUP, metadata: { namespace_name: TEAM_A } },
    });
    expect(retarget.status).toBe(403);
    expect(retarget.body.error.code).toBe("namespace_forbidden");
    expect((await call("DELETE", `/v1/realms/${realm}/nodes/kv`, { token: teamA })).status).toBe(403);

    // The same name registered in the group's namespace is a member. team-a keeps the name it just
    // deleted for a while (name_hold_seconds), as it would across its agent's restart, so the
    // group's tenant waits for that or, as here, the admin writes it.
    expect((await call("DELETE", `/v1/realms/${realm}/nodes/kv-3`, { token: teamA })).status).toBe(200);
    const held = await call("PUT", `/v1/realms/${realm}/nodes/kv-3`, { token: teamB, body: intruder(NS) });
    expect(held.body.error?.code).toBe("name_held");
    const own = await call("PUT", `/v1/realms/${realm}/nodes/kv-3`, { body: intruder(NS) });
    expect(own.status, JSON.stringify(own.body)).toBe(201);
    const joined = await seenMembers(realm);
    expect(joined.membership).toEqual(["kv-0", "kv-1", "kv-2", "kv-3"]);
    expect(joined.owners).toContain("kv-3");
    expect(joined.routes).toEqual(["kv-0", "kv-1", "kv-2", "kv-3"]);
  });

  it("a group written with any_namespace: true counts every namespace, as groups stored before did", async () => {
    const realm = await newRealm("own");
    await setup(realm, [0, 1, 2]);
    const { teamA } = await tenants(realm);
    const { metadata: _scoped, ...unscoped } = GROUP;
    const g = await call("PUT", `/v1/realms/${realm}/nodes/kv`, { body: { ...unscoped, any_namespace: true } });
    expect(g.status, JSON.stringify(g.body)).toBe(200);
    expect((await call("PUT", `/v1/realms/${realm}/nodes/kv-3`, { token: teamA, body: intruder(TEAM_A) })).status).toBe(
      201,
    );
    // What docs/stateful.md warns of: any tenant of the realm can join such a group.
    expect((await seenMembers(realm)).membership).toEqual(["kv-0", "kv-1", "kv-2", "kv-3"]);
  });

  it("refuses a group that names no namespace unless it says any_namespace, by PUT and by import", async () => {
    const realm = await newRealm("own");
    const { metadata: _scoped, ...unscoped } = GROUP;
    const put = await call("PUT", `/v1/realms/${realm}/nodes/kv`, { body: unscoped });
    expect(put.status).toBe(400);
    expect(put.body.error).toMatchObject({ code: "invalid_input", path: "metadata.namespace_name" });
    const both = await call("PUT", `/v1/realms/${realm}/nodes/kv`, { body: { ...GROUP, any_namespace: true } });
    expect(both.status).toBe(400);
    expect(both.body.error).toMatchObject({ code: "invalid_input", path: "any_namespace" });
    const imp = await call("POST", `/v1/realms/${realm}/import`, {
      body: [...pod(0), { name: "kv", ...unscoped, node_list: [{ node_name: "kv-0" }] }],
    });
    expect(imp.status).toBe(400);
    expect(imp.body.error).toMatchObject({ code: "invalid_input", path: "[2].metadata.namespace_name" });
    // In an import, a member of another namespace is refused outright: it could never count.
    const wrong = await call("POST", `/v1/realms/${realm}/import`, {
      body: [
        ...pod(0),
        { name: "kv", ...GROUP, metadata: { namespace_name: "elsewhere" }, node_list: [{ node_name: "kv-0" }] },
      ],
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.path).toBe("[2].node_list[0].node_name");
    expect((await call("GET", `/v1/realms/${realm}/nodes/kv`)).status).toBe(404);
  });

  it("a namespace token writes and deletes groups of its own namespace, and no other", async () => {
    const realm = await newRealm("own");
    const { teamA, teamB } = await tenants(realm);
    const write = (token: string, body: unknown): Promise<Call> =>
      call("PUT", `/v1/realms/${realm}/nodes/kv`, { token, body });
    const { metadata: _scoped, ...unscoped } = GROUP;
    // Outside its namespace, or in none (any_namespace): the admin's alone.
    for (const [token, body] of [
      [teamA, GROUP],
      [teamB, { ...unscoped, any_namespace: true }],
    ] as const) {
      const r = await write(token, body);
      expect(r.status, JSON.stringify(r.body)).toBe(403);
      expect(r.body.error).toMatchObject({ code: "namespace_forbidden", path: "metadata.namespace_name" });
    }
    expect((await write(teamB, GROUP)).status).toBe(201);
    expect((await write(teamB, { ...GROUP, node_list: [{ node_name: "kv-0" }] })).status).toBe(200);
    expect((await call("DELETE", `/v1/realms/${realm}/nodes/kv`, { token: teamA })).status).toBe(403);
    // A group the admin wrote without a namespace stays the admin's.
    expect((await call("DELETE", `/v1/realms/${realm}/nodes/kv`, { token: teamB })).status).toBe(200);
    expect((await write(ADMIN_TOKEN, { ...unscoped, any_namespace: true })).status).toBe(201);
    expect((await write(teamB, GROUP)).status).toBe(403);
    expect((await call("DELETE", `/v1/realms/${realm}/nodes/kv`, { token: teamB })).status).toBe(403);
  });
});
