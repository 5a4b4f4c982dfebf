// Hostile tenants against the edge: what an agent token of one namespace may
// publish (the gateway address policy), what an agent may import, that its
// scaling reports stay in its namespace, and that no request without a
// credential for a realm makes storage appear.
import { evictDurableObject, listDurableObjectIds } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { callerFrom, mintToken } from "../../src/edge/auth.ts";
import { clearRealmCacheForTest } from "../../src/edge/realm-cache.ts";
import crossRegion from "../fixtures/topologies/cross-region.yaml?raw";
import { type Call, call, edgeFetch, freshRealm, newRealm, node } from "./helpers.ts";

async function token(realm: string, role: "agent" | "reader", namespaces: string[] = []): Promise<string> {
  const r = await call("POST", `/v1/realms/${realm}/tokens`, { body: { role, namespaces } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.token;
}

/** A relay in namespace `a` that tenant `b`'s record would make dial its gateway. */
const relayA = {
  name: "relay-a",
  metadata: { namespace_name: "a", kind: "relay" },
  gateway: [{ priority: 1, address: "ipv4://10.0.0.1:1234" }],
};

function tenantRecord(name: string, address: string | string[], ns = "b"): Record<string, unknown> {
  return {
    name,
    metadata: { namespace_name: ns },
    gateway: [
      { priority: 1, address: "ipv4://10.2.0.1:80" },
      { priority: 2, address, match: { name: "relay-a" } },
    ],
  };
}

describe("gateway address policy", () => {
  it("an agent token may not publish loopback, link-local, unspecified, multicast or unix gateways", async () => {
    const realm = await newRealm("gw");
    const base = `/v1/realms/${realm}`;
    expect((await call("PUT", `${base}/nodes/relay-a`, { body: relayA })).status).toBe(201);
    const agentB = await token(realm, "agent", ["b"]);
    const refused = [
      "ipv4://127.0.0.1:9090",
      "ipv6://[::1]:9090",
      "ipv6://[::ffff:127.0.0.1]:9090",
      "dns://localhost:9090",
      "dns://metrics.localhost:9090",
      "dns://127.1:9090",
      "ipv4://169.254.169.254:80",
      "ipv6://[fe80::1]:80",
      "ipv4://0.0.0.0:80",
      "ipv6://[::]:80",
      "ipv4://224.0.0.251:5353",
      "unix:///run/hopway/admin.sock",
    ];
    const before = (await call("GET", `${base}/nodes`)).body;
    for (const address of refused) {
      const r = await call("PUT", `${base}/nodes/evil`, { token: agentB, body: tenantRecord("evil", address) });
      expect(r.status, `${address}: ${JSON.stringify(r.body)}`).toBe(403);
      expect(r.body.error.code).toBe("gateway_forbidden");
      expect(r.body.error.path).toBe("gateway[1].address");
      expect(r.body.error.message).toContain(address);
    }
    // In a list of fallbacks, the exact entry is named.
    const listed = await call("PUT", `${base}/nodes/evil`, {
      token: agentB,
      body: tenantRecord("evil", ["ipv4://10.2.0.2:80", "ipv4://127.0.0.1:9090"]),
    });
    expect(listed.status).toBe(403);
    expect(listed.body.error.path).toBe("gateway[1].address[1]");
    expect((await call("GET", `${base}/nodes`)).body).toEqual(before);
    // Ordinary addresses, private ranges and DNS names included, are fine by default.
    const fine = await call("PUT", `${base}/nodes/ok`, {
      token: agentB,
      body: tenantRecord("ok", ["ipv4://192.168.7.7:80", "dns://relay.b.svc.cluster.local:7000"]),
    });
    expect(fine.status, JSON.stringify(fine.body)).toBe(201);
  });

  it("a refused import stores nothing and names the record's place in the text", async () => {
    const realm = await newRealm("gwimp");
    const base = `/v1/realms/${realm}`;
    const agentB = await token(realm, "agent", ["b"]);
    const before = (await call("GET", `${base}/nodes`)).body;
    const records = [
      tenantRecord("b0", "ipv4://10.2.0.10:80"),
      tenantRecord("b1", "ipv4://10.2.0.11:80"),
      tenantRecord("b2", "ipv4://10.2.0.12:80"),
      tenantRecord("b3", ["ipv4://10.2.0.13:80", "ipv4://127.0.0.1:9090"]),
    ];
    const r = await call("POST", `${base}/import`, { token: agentB, body: records });
    expect(r.status).toBe(403);
    expect(r.body.error).toMatchObject({ code: "gateway_forbidden", path: "[3].gateway[1].address[1]" });
    expect((await call("GET", `${base}/nodes`)).body).toEqual(before);
    // The configuration-map form names the map key.
    const yaml = [
      "relaysvr1:",
      "  discovery:",
      "    metadata: { namespace_name: b }",
      "    gateway:",
      "      - { priority: 1, address: 'ipv4://169.254.169.254:80' }",
    ].join("\n");
    const y = await call("POST", `${base}/import`, { token: agentB, raw: yaml, type: "application/yaml" });
    expect(y.status).toBe(403);
    expect(y.body.error.path).toBe("relaysvr1.discovery.gateway[0].address");
    expect((await call("GET", `${base}/nodes`)).body).toEqual(before);
    // Within its namespace and the policy, an agent's import is allowed and atomic.
    const good = await call("POST", `${base}/import`, { token: agentB, body: records.slice(0, 3) });
    expect(good.status, JSON.stringify(good.body)).toBe(200);
    expect(good.body.records).toBe(3);
  });

  it("the admin is not checked; the admin's policy opens or narrows a namespace, and survives eviction", async () => {
    const realm = await newRealm("gwpol");
    const base = `/v1/realms/${realm}`;
    // The admin's own demo topologies dial loopback.
    expect(
      (await call("PUT", `${base}/nodes/demo`, { body: tenantRecord("demo", "ipv4://127.0.0.1:8080") })).status,
    ).toBe(201);
    const agentB = await token(realm, "agent", ["b"]);
    const agentC = await token(realm, "agent", ["c"]);
    expect((await call("GET", `${base}/policy`)).body).toEqual({});
    for (const t of [agentB, await token(realm, "reader")]) {
      expect((await call("GET", `${base}/policy`, { token: t })).status).toBe(403);
      const put = await call("PUT", `${base}/policy`, { token: t, body: { default: { allow_loopback: true } } });
      expect(put.status).toBe(403);
      expect(put.body.error.code).toBe("forbidden");
    }
    const bad = await call("PUT", `${base}/policy`, { body: { default: { cidrs: ["10.0.0.0/40"], dns: ["*"] } } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.issues.map((i: { path: string }) => i.path)).toEqual(["default.cidrs[0]", "default.dns[0]"]);
    const unknownField = await call("PUT", `${base}/policy`, {
      body: { namespaces: { b: { allow_everything: true } } },
    });
    expect(unknownField.status).toBe(400);

    const policy = {
      default: { cidrs: ["10.0.0.0/8"], dns: ["*.svc.cluster.local"] },
      namespaces: { b: { allow_loopback: true, cidrs: ["127.0.0.0/8", "10.2.0.0/16"] } },
    };
    const set = await call("PUT", `${base}/policy`, { body: policy });
    expect(set.status).toBe(200);
    expect(set.body).toEqual(policy);
    await evictDurableObject(env.REALM.get(env.REALM.idFromName(realm)));
    clearRealmCacheForTest();
    expect((await call("GET", `${base}/policy`)).body).toEqual(policy);

    const put = (t: string, name: string, address: string, ns: string) =>
      call("PUT", `${base}/nodes/${name}`, { token: t, body: tenantRecord(name, address, ns) });
    expect((await put(agentB, "b-lo", "ipv4://127.0.0.1:8080", "b")).status).toBe(201);
    expect((await put(agentB, "b-far", "ipv4://10.3.0.1:80", "b")).body.error.code).toBe("gateway_forbidden");
    expect((await put(agentC, "c-lo", "ipv4://127.0.0.1:8080", "c")).body.error.code).toBe("gateway_forbidden");
    expect((await put(agentC, "c-ten", "ipv4://10.3.0.1:80", "c")).status).toBe(201);
    expect((await put(agentC, "c-pub", "ipv4://8.8.8.8:80", "c")).body.error.code).toBe("gateway_forbidden");
    expect((await put(agentC, "c-dns", "dns://x.c.svc.cluster.local:80", "c")).status).toBe(201);
    expect((await put(agentC, "c-ext", "dns://evil.example.com:80", "c")).body.error.code).toBe("gateway_forbidden");
  });
});

describe("record names a namespace may register", () => {
  it("a namespace limited to its names cannot take another's name while it is free; the admin and other names are unaffected", async () => {
    const realm = await newRealm("names");
    const base = `/v1/realms/${realm}`;
    const policy = {
      default: { names: [] },
      namespaces: { a: { names: ["a-*", "payments-db"] }, b: { names: ["b-*"] } },
    };
    expect((await call("PUT", `${base}/policy`, { body: policy })).status).toBe(200);
    const agentA = await token(realm, "agent", ["a"]);
    const agentB = await token(realm, "agent", ["b"]);
    const agentC = await token(realm, "agent", ["c"]);
    const rec = (name: string, ns: string) => ({
      name,
      metadata: { namespace_name: ns },
      gateway: [{ priority: 1, address: "ipv4://10.2.0.1:80" }],
    });
    expect(
      (await call("PUT", `${base}/nodes/payments-db`, { token: agentA, body: rec("payments-db", "a") })).status,
    ).toBe(201);
    // a's agent restarts and its record is gone for a moment: b cannot take the name meanwhile.
    expect((await call("DELETE", `${base}/nodes/payments-db`, { token: agentA })).status).toBe(200);
    const before = (await call("GET", `${base}/nodes`)).body.version;
    const taken = await call("PUT", `${base}/nodes/payments-db`, { token: agentB, body: rec("payments-db", "b") });
    expect(taken.status).toBe(403);
    expect(taken.body.error).toMatchObject({ code: "name_forbidden", path: "name" });
    expect(taken.body.error.message).toContain("'payments-db' is not among the names namespace 'b' may register (b-*)");
    const imported = await call("POST", `${base}/import`, {
      token: agentB,
      body: [rec("b-0", "b"), rec("payments-db", "b")],
    });
    expect(imported.status).toBe(403);
    expect(imported.body.error).toMatchObject({ code: "name_forbidden", path: "[1].name" });
    // A group is held to the names of the namespace it names.
    const group = await call("PUT", `${base}/nodes/payments`, {
      token: agentB,
      body: { type: "group", metadata: { namespace_name: "b" }, node_list: [{ node_name: "b-0" }] },
    });
    expect(group.body.error?.code).toBe("name_forbidden");
    // A namespace the policy does not list falls back to the default: no names at all.
    const c = await call("PUT", `${base}/nodes/c-0`, { token: agentC, body: rec("c-0", "c") });
    expect(c.body.error?.message).toContain("the realm's policy gives namespace 'c' no record names to register");
    expect((await call("GET", `${base}/nodes`)).body.version).toBe(before);
    // Within their names tenants go on; the admin is not held to the policy.
    expect((await call("PUT", `${base}/nodes/b-0`, { token: agentB, body: rec("b-0", "b") })).status).toBe(201);
    expect(
      (await call("PUT", `${base}/nodes/payments-db`, { token: agentA, body: rec("payments-db", "a") })).status,
    ).toBe(201);
    expect((await call("PUT", `${base}/nodes/anything`, { body: rec("anything", "c") })).status).toBe(201);
  });

  it("name patterns are validated by field", async () => {
    const realm = await newRealm("names");
    for (const bad of ["Payments", "a-*-b", "**", "-a", ""]) {
      const r = await call("PUT", `/v1/realms/${realm}/policy`, { body: { default: { names: [bad] } } });
      expect(r.status, bad).toBe(400);
      expect(r.body.error.path).toBe("default.names[0]");
    }
  });
});

describe("scaling reports are per namespace", () => {
  /** A pod's record: every cluster's base config names its StatefulSet `hopway-agent`. */
  const pod = (name: string, ns: string | null) => ({
    name,
    ...(ns === null ? {} : { metadata: { namespace_name: ns } }),
    gateway: [{ priority: 1, address: "ipv4://10.0.0.1:1234" }],
    ttl_seconds: 600,
  });
  const report = (ordinal: number, load: number, extra: Record<string, unknown> = {}) => ({
    report: { workload: "hopway-agent", ordinal, load, holds_state: false, ...extra },
  });

  it("another namespace's report of the same workload changes neither the draining list nor the scaling view", async () => {
    const realm = await newRealm("scalens");
    const base = `/v1/realms/${realm}`;
    const agentA = await token(realm, "agent", ["a"]);
    const agentB = await token(realm, "agent", ["b"]);
    for (let i = 0; i < 4; i++) {
      expect((await call("PUT", `${base}/nodes/a-${i}`, { token: agentA, body: pod(`a-${i}`, "a") })).status).toBe(201);
    }
    expect((await call("PUT", `${base}/nodes/b-0`, { token: agentB, body: pod("b-0", "b") })).status).toBe(201);
    expect((await call("PUT", `${base}/nodes/admin-0`, { body: pod("admin-0", null) })).status).toBe(201);
    const heartbeatA = async (load: number) => {
      let last: Call | undefined;
      for (let i = 0; i < 4; i++) {
        last = await call("POST", `${base}/nodes/a-${i}/heartbeat`, { token: agentA, body: report(i, load) });
        expect(last.status, JSON.stringify(last.body)).toBe(200);
      }
      return last!.body.scaling;
    };
    // Four busy pods: load asks for all four, nothing drains.
    expect((await heartbeatA(0.6)).draining).toEqual([]);

    // Tenant b reports its own record under the same workload name with max_replicas 1; a
    // record without a namespace (the admin's) does the same.
    const b = await call("POST", `${base}/nodes/b-0/heartbeat`, {
      token: agentB,
      body: report(0, 0, { max_replicas: 1 }),
    });
    expect(b.status).toBe(200);
    expect(b.body.scaling).toMatchObject({ draining: [], replicas_reporting: 1, desired_by_load: 1 });
    expect(
      (await call("POST", `${base}/nodes/admin-0/heartbeat`, { body: report(0, 0, { max_replicas: 1 }) })).body.scaling
        .replicas_reporting,
    ).toBe(1);
    const a = await heartbeatA(0.6);
    expect(a.draining).toEqual([]);
    expect(a).toMatchObject({ desired_by_load: 4, replicas_reporting: 4, total_load: 2.4 });

    // min_replicas: 100000 from b does not hold a's scale-in back either.
    await call("POST", `${base}/nodes/b-0/heartbeat`, { token: agentB, body: report(0, 0, { min_replicas: 100_000 }) });
    await call("POST", `${base}/nodes/admin-0/heartbeat`, { body: report(0, 0, { min_replicas: 100_000 }) });
    expect((await heartbeatA(0.1)).draining).toEqual([1, 2, 3]);

    // The workload view is per namespace too; an agent token's own namespace is its default.
    const viewA = await call("GET", `${base}/workloads/hopway-agent?namespace=a`, { token: agentB });
    expect(viewA.status).toBe(200);
    expect(viewA.body.namespace).toBe("a");
    expect(viewA.body.pods.map((p: { node: string }) => p.node)).toEqual(["a-0", "a-1", "a-2", "a-3"]);
    expect(viewA.body.scaling.draining).toEqual([1, 2, 3]);
    expect((await call("GET", `${base}/workloads/hopway-agent`, { token: agentA })).body).toEqual(viewA.body);
    const viewB = await call("GET", `${base}/workloads/hopway-agent`, { token: agentB });
    expect(viewB.body.pods.map((p: { node: string }) => p.node)).toEqual(["b-0"]);
    const none = await call("GET", `${base}/workloads/hopway-agent?namespace=`);
    expect(none.body).toMatchObject({ namespace: null, pods: [{ node: "admin-0" }] });
    // Without a namespace and with several reporting, the admin must name one.
    const ambiguous = await call("GET", `${base}/workloads/hopway-agent`);
    expect(ambiguous.status).toBe(400);
    expect(ambiguous.body.error).toMatchObject({ code: "invalid_input", path: "namespace" });
    expect((await call("GET", `${base}/workloads/hopway-agent?namespace=c`)).status).toBe(404);

    // Group membership (what a's agents follow) takes draining from a's reports only.
    expect(
      (
        await call("PUT", `${base}/nodes/kv`, {
          body: {
            type: "group",
            metadata: { namespace_name: "a" },
            node_list: [0, 1, 2, 3].map((i) => ({ node_name: `a-${i}` })),
          },
        })
      ).status,
    ).toBe(201);
    await heartbeatA(0.6);
    await call("POST", `${base}/nodes/b-0/heartbeat`, { token: agentB, body: report(0, 0, { max_replicas: 1 }) });
    const membership = await call("GET", `${base}/groups/kv/membership`, { token: agentA });
    expect(membership.status).toBe(200);
    expect(membership.body.members.map((m: { draining: boolean }) => m.draining)).toEqual([false, false, false, false]);
    // And it keeps a's draining pods draining for any caller, while b and the admin's record
    // report the same workload name (the look-up names the members' namespace).
    await heartbeatA(0.1);
    for (const who of [undefined, agentA, agentB]) {
      const m = await call("GET", `${base}/groups/kv/membership`, { token: who });
      expect(m.status).toBe(200);
      expect(m.body.members.map((x: { draining: boolean }) => x.draining)).toEqual([false, true, true, true]);
    }
  });

  it("a namespace's agent renews the leased group it wrote; its reports count in that namespace, never in the admin's", async () => {
    const realm = await newRealm("grouplease");
    const base = `/v1/realms/${realm}`;
    const agentA = await token(realm, "agent", ["a"]);
    const agentB = await token(realm, "agent", ["b"]);
    const group = { type: "group", metadata: { namespace_name: "a" }, node_list: [{ node_name: "a-0" }] };
    const put = await call("PUT", `${base}/nodes/kv`, { token: agentA, body: { ...group, ttl_seconds: 30 } });
    expect(put.status).toBe(201);
    const renewed = await call("POST", `${base}/nodes/kv/heartbeat`, { token: agentA, body: { ttl_seconds: 60 } });
    expect(renewed.status).toBe(200);
    expect((await call("GET", `${base}/nodes/kv`)).body.ttl_seconds).toBe(60);
    const foreign = await call("POST", `${base}/nodes/kv/heartbeat`, { token: agentB, body: {} });
    expect(foreign.status).toBe(403);
    expect(foreign.body.error.code).toBe("namespace_forbidden");
    // A report sent through the group lands in a's pool, not in the pool of records without a namespace.
    expect((await call("PUT", `${base}/nodes/admin-0`, { body: pod("admin-0", null) })).status).toBe(201);
    await call("POST", `${base}/nodes/admin-0/heartbeat`, { body: report(0, 0.5) });
    await call("POST", `${base}/nodes/kv/heartbeat`, { token: agentA, body: report(7, 0.5, { max_replicas: 1 }) });
    const admins = await call("GET", `${base}/workloads/hopway-agent?namespace=`);
    expect(admins.body.pods.map((p: { node: string }) => p.node)).toEqual(["admin-0"]);
    expect(admins.body.scaling.draining).toEqual([]);
  });

  it("a record moved to another namespace leaves its report behind", async () => {
    const realm = await newRealm("scalemove");
    const base = `/v1/realms/${realm}`;
    for (const [name, ns] of [
      ["a-0", "a"],
      ["a-1", "a"],
      ["b-0", "b"],
    ] as const) {
      expect((await call("PUT", `${base}/nodes/${name}`, { body: pod(name, ns) })).status).toBe(201);
    }
    await call("POST", `${base}/nodes/a-0/heartbeat`, { body: report(0, 0.6) });
    await call("POST", `${base}/nodes/a-1/heartbeat`, { body: report(1, 0.6, { max_replicas: 1 }) });
    await call("POST", `${base}/nodes/b-0/heartbeat`, { body: report(0, 0.6) });
    // The admin gives a-1 to namespace b: its report was a's, so b's view does not take it.
    expect((await call("PUT", `${base}/nodes/a-1`, { body: pod("a-1", "b") })).status).toBe(200);
    expect((await call("GET", `${base}/nodes/a-1`)).body.report).toBeNull();
    const b = await call("GET", `${base}/workloads/hopway-agent?namespace=b`);
    expect(b.body.pods.map((p: { node: string }) => p.node)).toEqual(["b-0"]);
    const a = await call("GET", `${base}/workloads/hopway-agent?namespace=a`);
    expect(a.body.pods.map((p: { node: string }) => p.node)).toEqual(["a-0"]);
    // A group moved the same way (its namespace is the one it names) leaves its report behind too.
    const group = (ns: string) => ({
      type: "group",
      metadata: { namespace_name: ns },
      node_list: [{ node_name: "a-0" }],
    });
    expect((await call("PUT", `${base}/nodes/g`, { body: group("a") })).status).toBe(201);
    await call("POST", `${base}/nodes/g/heartbeat`, { body: report(5, 0.9) });
    expect((await call("PUT", `${base}/nodes/g`, { body: group("b") })).status).toBe(200);
    expect((await call("GET", `${base}/nodes/g`)).body.report).toBeNull();
    const stillA = await call("GET", `${base}/workloads/hopway-agent?namespace=a`);
    expect(stillA.body.pods.map((p: { node: string }) => p.node)).toEqual(["a-0"]);
  });
});

describe("realms and self-authenticating tokens", () => {
  it("only the admin creates and lists realms; creating twice is harmless", async () => {
    const realm = freshRealm("create");
    const other = await newRealm("create-other");
    const agent = await token(other, "agent", ["a"]);
    expect((await call("PUT", `/v1/realms/${realm}`, { token: null })).status).toBe(401);
    expect((await call("PUT", `/v1/realms/${realm}`, { token: "garbage" })).status).toBe(401);
    expect((await call("PUT", `/v1/realms/${realm}`, { token: agent })).status).toBe(401);
    expect((await call("PUT", `/v1/realms/${other}`, { token: agent })).status).toBe(403);
    expect((await call("GET", `/v1/realms`, { token: agent })).status).toBe(401);
    expect((await call("GET", `/v1/realms/${realm}`)).status).toBe(404);
    const created = await call("PUT", `/v1/realms/${realm}`);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ realm, created: true });
    const again = await call("PUT", `/v1/realms/${realm}`);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ realm, created: false, created_at: created.body.created_at });
    expect((await call("GET", `/v1/realms/${realm}`)).status).toBe(200);
    const list = await call("GET", "/v1/realms");
    expect(list.body.realms.map((r: { name: string }) => r.name)).toEqual(expect.arrayContaining([realm, other]));
    expect((await call("PUT", "/v1/realms/Bad_Name")).body.error.path).toBe("realm");
  });

  it("1,000 requests without a valid credential to new realm names create no Durable Object", async () => {
    const known = await newRealm("known");
    const agent = await token(known, "agent", ["a"]);
    const count = async () => ({
      realms: (await listDurableObjectIds(env.REALM)).length,
      directory: (await listDurableObjectIds(env.DIRECTORY)).length,
    });
    const before = await count();
    expect(before.directory).toBe(1);
    const forged = `hwt2_${"0".repeat(16)}_${"1".repeat(48)}_${"2".repeat(32)}`;
    const legacy = `hwt_${"0".repeat(16)}_${"1".repeat(48)}`;
    const credentials: Array<string | null> = [null, "garbage", forged, legacy, agent];
    const statuses = new Map<number, number>();
    const n = 1000;
    for (let i = 0; i < n; i += 50) {
      const batch = Array.from({ length: 50 }, (_, j) => {
        const k = i + j;
        const realm = freshRealm(`ghost${k}`);
        const method = ["GET", "PUT", "POST", "DELETE"][k % 4]!;
        const path = method === "POST" ? `/v1/realms/${realm}/import` : `/v1/realms/${realm}/nodes/x`;
        return call(method, path, {
          token: credentials[k % credentials.length]!,
          ...(method === "GET" || method === "DELETE" ? {} : { body: method === "POST" ? [node("x")] : node("x") }),
        });
      });
      for (const r of await Promise.all(batch)) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
    expect([...statuses]).toEqual([[401, n]]);
    // The admin asking about unknown realms gets 404 and creates nothing either.
    for (let i = 0; i < 20; i++) {
      const r = await call("GET", `/v1/realms/${freshRealm("ghost-admin")}/nodes`);
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe("unknown_realm");
    }
    const after = await count();
    expect(after).toEqual(before);
    console.log(
      `edge: ${n} unauthenticated requests + 20 admin requests to new realm names → Durable Objects ${before.realms} before, ${after.realms} after`,
    );
  });

  it("a token verifies only for the realm it was minted for, and under the previous key during a rotation", async () => {
    const minted = await mintToken({ current: "k1", previous: undefined }, "realm-a");
    const header = `Bearer ${minted.token}`;
    const hash = await callerFrom(header, "admin", { current: "k1", previous: undefined }, "realm-a");
    expect(hash).toEqual({ kind: "token", hash: minted.hash });
    await expect(callerFrom(header, "admin", { current: "k1", previous: undefined }, "realm-b")).rejects.toThrow(
      /unknown token/,
    );
    await expect(callerFrom(header, "admin", { current: "k2", previous: "k1" }, "realm-a")).resolves.toEqual(hash);
    await expect(callerFrom(header, "admin", { current: "k2", previous: undefined }, "realm-a")).rejects.toThrow();
    // One flipped character anywhere in the token fails.
    const flipped = `${minted.token.slice(0, 30)}${minted.token[30] === "a" ? "b" : "a"}${minted.token.slice(31)}`;
    await expect(
      callerFrom(`Bearer ${flipped}`, "admin", { current: "k1", previous: undefined }, "realm-a"),
    ).rejects.toThrow();
    // Without a key, nothing is minted.
    await expect(mintToken({ current: undefined, previous: undefined }, "realm-a")).rejects.toThrow(/HOPWAY_TOKEN_KEY/);
  });

  it("a token of another realm, or minted before signatures, is 401 with a reason", async () => {
    const a = await newRealm("ra");
    const b = await newRealm("rb");
    const tokA = await token(a, "reader");
    expect((await call("GET", `/v1/realms/${a}/nodes`, { token: tokA })).status).toBe(200);
    const cross = await call("GET", `/v1/realms/${b}/nodes`, { token: tokA });
    expect(cross.status).toBe(401);
    const legacy = await call("GET", `/v1/realms/${a}/nodes`, { token: `hwt_${"a".repeat(16)}_${"b".repeat(48)}` });
    expect(legacy.status).toBe(401);
    expect(legacy.body.error.message).toContain("mint a new one");
    // Revocation still lives in the realm: a well-signed but revoked token is refused there.
    const id = (await call("GET", `/v1/realms/${a}/tokens`)).body.tokens[0].id;
    expect((await call("DELETE", `/v1/realms/${a}/tokens/${id}`)).status).toBe(200);
    expect((await call("GET", `/v1/realms/${a}/nodes`, { token: tokA })).status).toBe(401);
  });
});

describe("methods", () => {
  it("CONNECT reaches the Worker's connect handler and gets a 405 method_not_allowed, not a 500", async () => {
    const worker = (await import("../../src/index.ts")).default;
    const pipe = new TransformStream<Uint8Array, Uint8Array>();
    let closed = false;
    const socket = {
      readable: new ReadableStream(),
      writable: pipe.writable,
      close: async () => {
        closed = true;
      },
    } as unknown as Socket;
    const [, text] = await Promise.all([worker.connect(socket), new Response(pipe.readable).text()]);
    expect(text).toMatch(/^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    expect(text).toContain("Allow: GET, HEAD, POST, PUT, DELETE\r\n");
    const body = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
    expect(body.error.code).toBe("method_not_allowed");
    expect(closed).toBe(true);
  });

  it("other methods no endpoint takes are 405 with Allow", async () => {
    for (const method of ["PATCH", "OPTIONS", "TRACE", "PROPFIND"]) {
      const res = await edgeFetch("https://edge/v1/realms/x/nodes", { method });
      expect(res.status, method).toBe(405);
      expect(res.headers.get("allow")).toBe("GET, HEAD, POST, PUT, DELETE");
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("method_not_allowed");
    }
  });
});

describe("a tenant cannot make another namespace's application a relay", () => {
  it("the route table lists the intermediates to treat as relays, without the application a tenant named as its relay", async () => {
    const realm = await newRealm("relaymark");
    const base = `/v1/realms/${realm}`;
    const victim = await token(realm, "agent", ["victim"]);
    const evil = await token(realm, "agent", ["evil"]);
    const put = async (tok: string, record: Record<string, unknown>) => {
      const r = await call("PUT", `${base}/nodes/${String(record.name)}`, { token: tok, body: record });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    };
    await put(victim, {
      name: "victim-relay",
      metadata: { namespace_name: "victim", kind: "relay" },
      gateway: [{ priority: 1, address: "ipv4://10.9.0.1:7001", match: { metadata: { namespace_name: "victim" } } }],
    });
    await put(victim, {
      name: "victim-db",
      metadata: { namespace_name: "victim", kind: "app" },
      gateway: [{ priority: 1, address: "ipv4://10.9.0.2:5432", match: { metadata: { namespace_name: "victim" } } }],
      advertise_relay: { name: "victim-relay" },
    });
    await put(evil, {
      name: "evil-bait",
      metadata: { namespace_name: "evil" },
      gateway: [{ priority: 0, address: "ipv4://10.66.0.1:1", match: { name: "victim-db" } }],
      advertise_relay: { name: "victim-db" },
    });
    const r = await call("GET", `${base}/route-tables/victim-relay`, { token: victim });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const routes = r.body.routes as Array<{ to: string; hops: Array<{ node: string }> | null }>;
    // The resolver does route evil-bait through victim-db ...
    expect(routes.find((x) => x.to === "evil-bait")?.hops?.map((h) => h.node)).toEqual(["victim-db", "evil-bait"]);
    // ... and the table says it is no relay, so the agent keeps carrying tunnels to it.
    expect(r.body.relays).toEqual([]);
    // Links are taken only from nodes victim-relay's gateway accepts: not from another namespace's.
    expect(r.body.peers).toEqual({ any: false, nodes: ["victim-db"] });
  });
});

describe("one namespace cannot make route computation cost the realm", () => {
  it("a chain of advertise_relay selectors past the namespace's relay work bound: its routes say relay_limit, the victim's stand", async () => {
    const realm = await newRealm("chain");
    const base = `/v1/realms/${realm}`;
    const victim = await token(realm, "agent", ["victim"]);
    const evil = await token(realm, "agent", ["evil"]);
    for (const record of [
      {
        name: "victim-relay",
        metadata: { namespace_name: "victim", kind: "relay" },
        gateway: [{ priority: 1, address: "ipv4://10.9.0.1:7001" }],
      },
      {
        name: "victim-db",
        metadata: { namespace_name: "victim" },
        gateway: [{ priority: 1, address: "ipv4://10.9.0.2:5432", match: { name: "victim-relay" } }],
        advertise_relay: { name: "victim-relay" },
      },
    ]) {
      const r = await call("PUT", `${base}/nodes/${record.name}`, { token: victim, body: record });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    // e-0 advertises e-1, e-1 e-2, …: closures of sizes N down to 1, Σ k² ≈ 9·10⁶ units for 300,
    // past the 4,194,304 a namespace may spend (docs/contract/routing.md §3.8).
    const N = 300;
    const chain = Array.from({ length: N }, (_, i) => ({
      name: `e-${String(i).padStart(3, "0")}`,
      metadata: { namespace_name: "evil" },
      gateway: [
        { priority: 1, address: `ipv4://10.66.${i % 250}.1:1`, match: { metadata: { namespace_name: "evil" } } },
      ],
      ...(i + 1 < N ? { advertise_relay: { name: `e-${String(i + 1).padStart(3, "0")}` } } : {}),
    }));
    const imported = await call("POST", `${base}/import`, { token: evil, body: chain });
    expect(imported.status, JSON.stringify(imported.body)).toBe(200);
    const r = await call("GET", `${base}/route-tables/victim-relay`, { token: victim });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const routes = r.body.routes as Array<{ to: string; hops: unknown[] | null; reason?: string }>;
    // The victim's own route is as before: one hop.
    expect(routes.find((x) => x.to === "victim-db")?.hops).toHaveLength(1);
    // The chain's records whose relays the bound did not pay for have no route, and say why.
    const limited = routes.filter((x) => x.reason === "relay_limit");
    expect(limited.length).toBeGreaterThan(0);
    expect(limited.every((x) => x.to.startsWith("e-"))).toBe(true);
    expect(routes.filter((x) => x.to.startsWith("e-"))).toHaveLength(N);
  });
});

describe("shared namespaces: a tenant's node dressed as a relay joins no other namespace's routes", () => {
  const impostor = {
    name: "aaa-impostor",
    metadata: { namespace_name: "tenant_4", kind: "relay", labels: { "area.region": "any" } },
    // Route computation only: nothing dials this address.
    gateway: [{ priority: 0, address: "ipv4://10.66.0.1:1234" }],
    advertise_relay: { metadata: { kind: "relay", labels: { "area.region": "any" } } },
  };
  const REFERENCE = ["namespace_3", "namespace_1", "namespace_2"];

  it("without the setting it carries app2's tunnels to app1; with it, the reference route stands, and the change is a realm version", async () => {
    const realm = await newRealm("shared");
    const base = `/v1/realms/${realm}`;
    const imported = await call("POST", `${base}/import`, { raw: crossRegion, type: "application/yaml" });
    expect(imported.status, JSON.stringify(imported.body)).toBe(200);
    const tenant = await token(realm, "agent", ["tenant_4"]);
    const put = await call("PUT", `${base}/nodes/aaa-impostor`, { token: tenant, body: impostor });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    const route = async () =>
      ((await call("GET", `${base}/routes?from=app2&to=app1`)).body.hops as Array<{ node: string }>).map((h) => h.node);
    // The attack: relaysvr2's advertise_relay names no namespace, so the tenant's node is app2's way out.
    expect(await route()).toEqual(["aaa-impostor", "relaysvr1", "app1"]);

    const before = (await call("GET", `${base}/nodes`)).body;
    expect(before.shared_namespaces).toBeNull();
    const set = await call("PUT", `${base}/policy`, { body: { shared_namespaces: REFERENCE } });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body.shared_namespaces).toEqual(["namespace_1", "namespace_2", "namespace_3"]);
    expect(await route()).toEqual(["relaysvr2", "relaysvr3", "relaysvr1", "app1"]);
    const table = (await call("GET", `${base}/route-tables/relaysvr3`)).body;
    for (const r of table.routes as Array<{ to: string; hops: Array<{ node: string }> | null }>) {
      if (r.to !== "aaa-impostor") expect(r.hops?.map((h) => h.node) ?? []).not.toContain("aaa-impostor");
    }
    // It may still open links to the shared relay, as a tenant's relay: the table names its
    // namespace, so the relay holds the tenant to its share of the tunnel pool.
    expect(table.peers.tenants).toEqual([{ namespace: "tenant_4", nodes: ["aaa-impostor"] }]);
    // The table's ETag names its form: an agent holding this version from an edge that did not
    // send `tenants` (ETag without the form) gets the table again, not a 304.
    const tag = (await call("GET", `${base}/route-tables/relaysvr3`)).headers.get("etag") ?? "";
    expect(tag).toMatch(/^"[^".]+\.\d+\.t2"$/);
    const earlier = tag.replace(/\.t2"$/, '"');
    const refetched = await call("GET", `${base}/route-tables/relaysvr3`, { headers: { "if-none-match": earlier } });
    expect(refetched.status).toBe(200);
    expect(refetched.body.peers.tenants).toHaveLength(1);
    expect((await call("GET", `${base}/route-tables/relaysvr3`, { headers: { "if-none-match": tag } })).status).toBe(
      304,
    );

    // A realm version with no record in it: agents that resolve from the records learn the setting.
    const after = (await call("GET", `${base}/nodes`)).body;
    expect(after.version).toBe(before.version + 1);
    expect(after.shared_namespaces).toEqual(["namespace_1", "namespace_2", "namespace_3"]);
    const epoch = /"([0-9a-f]+)\./.exec((await call("GET", `${base}/nodes`)).headers.get("etag") ?? "")?.[1];
    const changes = await call("GET", `${base}/changes?since=${before.version}&epoch=${epoch}`);
    expect(changes.body).toMatchObject({
      kind: "delta",
      version: after.version,
      changes: [],
      shared_namespaces: ["namespace_1", "namespace_2", "namespace_3"],
    });
    // The same setting again, in another order, is no change.
    await call("PUT", `${base}/policy`, { body: { shared_namespaces: [...REFERENCE].reverse() } });
    expect((await call("GET", `${base}/nodes`)).body.version).toBe(after.version);

    // It survives the object's restart and a cold isolate cache.
    await evictDurableObject(env.REALM.get(env.REALM.idFromName(realm)));
    clearRealmCacheForTest();
    expect((await call("GET", `${base}/policy`)).body.shared_namespaces).toEqual(REFERENCE.toSorted());
    expect(await route()).toEqual(["relaysvr2", "relaysvr3", "relaysvr1", "app1"]);

    // Removing it opens every namespace again.
    await call("PUT", `${base}/policy`, { body: {} });
    expect(await route()).toEqual(["aaa-impostor", "relaysvr1", "app1"]);
  });

  it("a change wakes the long-polls of record lists at once, and of route tables it changes", async () => {
    const realm = await newRealm("sharedwait");
    const base = `/v1/realms/${realm}`;
    const relay = {
      metadata: { namespace_name: "ns_a", kind: "relay" },
      gateway: [{ priority: 0, address: "ipv4://10.0.0.1:1" }],
    };
    expect((await call("PUT", `${base}/nodes/r1`, { body: relay })).status).toBe(201);
    const nodesTag = (await call("GET", `${base}/nodes`)).headers.get("etag") ?? "";
    const tableTag = (await call("GET", `${base}/route-tables/r1`)).headers.get("etag") ?? "";
    const started = Date.now();
    const nodes = call("GET", `${base}/nodes?wait=20`, { headers: { "if-none-match": nodesTag } });
    // r1 has no routes, so the setting leaves its table as it was: that wait runs its time
    // (docs/contract/edge-api.md §1.5) and then answers the latest version.
    const table = call("GET", `${base}/route-tables/r1?wait=2`, { headers: { "if-none-match": tableTag } });
    await new Promise((r) => setTimeout(r, 200));
    expect((await call("PUT", `${base}/policy`, { body: { shared_namespaces: ["ns_b"] } })).status).toBe(200);
    const n = await nodes;
    expect(Date.now() - started).toBeLessThan(1_900);
    expect(n.status).toBe(200);
    expect(n.body.shared_namespaces).toEqual(["ns_b"]);
    const t = await table;
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    expect(t.status).toBe(200);
    expect(t.headers.get("etag")).not.toBe(tableTag);
  });

  it("PUT /policy/shared-namespaces sets only the setting and keeps the address and name rules", async () => {
    const realm = await newRealm("sharedonly");
    const base = `/v1/realms/${realm}`;
    const rules = { default: { allow_loopback: true }, namespaces: { ns_a: { names: ["a-*"] } } };
    expect((await call("PUT", `${base}/policy`, { body: rules })).status).toBe(200);
    const before = (await call("GET", `${base}/nodes`)).body.version;

    const set = await call("PUT", `${base}/policy/shared-namespaces`, {
      body: { shared_namespaces: ["ns_b", "ns_a"] },
    });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body).toEqual({ ...rules, shared_namespaces: ["ns_a", "ns_b"] });
    expect((await call("GET", `${base}/policy`)).body).toEqual(set.body);
    expect((await call("GET", `${base}/nodes`)).body).toMatchObject({
      version: before + 1,
      shared_namespaces: ["ns_a", "ns_b"],
    });
    // The kept rules still apply to a tenant's writes.
    const tenant = await token(realm, "agent", ["ns_a"]);
    const outside = await call("PUT", `${base}/nodes/b-1`, {
      token: tenant,
      body: { metadata: { namespace_name: "ns_a" }, gateway: [{ priority: 1, address: "ipv4://127.0.0.9:1" }] },
    });
    expect(outside.status).toBe(403);
    expect(outside.body.error.code).toBe("name_forbidden");

    // null shares every namespace again; the rules stay.
    const cleared = await call("PUT", `${base}/policy/shared-namespaces`, { body: { shared_namespaces: null } });
    expect(cleared.body).toEqual(rules);
    expect((await call("GET", `${base}/nodes`)).body.shared_namespaces).toBeNull();

    // A tenant is refused before its body is read, valid or not: no 400 tells it the policy's shape.
    for (const [method, path, body] of [
      ["PUT", "policy/shared-namespaces", { shared_namespaces: [] }],
      ["PUT", "policy/shared-namespaces", { shared_namespaces: "everyone" }],
      ["PUT", "policy", { shared_namespaces: [""], default: "open" }],
      ["PUT", "limits", { records_per_namespace: -1 }],
      ["PUT", "ca", { cert_lifetime_seconds: "forever" }],
      ["POST", "tokens", { role: "root" }],
    ] as const) {
      const r = await call(method, `${base}/${path}`, { token: tenant, body });
      expect(r.status, `${method} ${path} ${JSON.stringify(body)}`).toBe(403);
      expect(r.body.error.code).toBe("forbidden");
    }
    for (const [body, path] of [
      [{}, "shared_namespaces"],
      [{ shared_namespaces: ["ok", ""] }, "shared_namespaces[1]"],
      [{ shared_namespaces: [], default: {} }, "default"],
    ] as const) {
      const r = await call("PUT", `${base}/policy/shared-namespaces`, { body });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error.path).toBe(path);
    }
    expect((await call("GET", `${base}/policy`)).body).toEqual(rules);
  });

  it("only the admin sets it, and a bad value is a 400 naming the field that stores nothing", async () => {
    const realm = await newRealm("sharedbad");
    const base = `/v1/realms/${realm}`;
    const tenant = await token(realm, "agent", ["tenant_4"]);
    const byTenant = await call("PUT", `${base}/policy`, { token: tenant, body: { shared_namespaces: ["tenant_4"] } });
    expect(byTenant.status).toBe(403);
    for (const [body, path] of [
      [{ shared_namespaces: "namespace_1" }, "shared_namespaces"],
      [{ shared_namespaces: [""] }, "shared_namespaces[0]"],
      [{ shared_namespaces: ["ok", "bad\nname"] }, "shared_namespaces[1]"],
      [{ shared_namespaces: Array.from({ length: 1025 }, (_, i) => `ns${i}`) }, "shared_namespaces"],
    ] as const) {
      const r = await call("PUT", `${base}/policy`, { body });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error.path).toBe(path);
    }
    expect((await call("GET", `${base}/policy`)).body).toEqual({});
  });
});
