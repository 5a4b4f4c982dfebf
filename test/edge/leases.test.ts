// Leases expire through the Durable Object's alarm, with time injected so the test is deterministic.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { RealmObject } from "../../durable-objects/realm.ts";
import { call, newRealm, node, setClock, storedRealmState, stubOf } from "./helpers.ts";

const relay = (name: string, ns: string) => ({
  name,
  metadata: { namespace_name: ns },
  gateway: [{ priority: 1, address: "ipv4://10.0.0.1:1234" }],
  advertise_relay: { name: "hub" },
});

describe("leases", () => {
  it("an expired lease removes the record, bumps the version once, and routes change", async () => {
    const realm = await newRealm("lease");
    const t0 = Date.now();
    await setClock(realm, t0);
    // src can reach dst only through hub; hub is a lease.
    await call("PUT", `/v1/realms/${realm}/nodes/dst`, {
      body: {
        name: "dst",
        metadata: { namespace_name: "b" },
        gateway: [{ priority: 1, address: "ipv4://10.0.0.2:1", match: { name: "hub" } }],
        advertise_relay: { name: "hub" },
      },
    });
    await call("PUT", `/v1/realms/${realm}/nodes/src`, {
      body: { name: "src", metadata: { namespace_name: "a" }, advertise_relay: { name: "hub" }, gateway: [] },
    });
    const hub = await call("PUT", `/v1/realms/${realm}/nodes/hub`, {
      body: { ...relay("hub", "a"), advertise_relay: undefined, ttl_seconds: 30 },
    });
    expect(hub.status).toBe(201);
    expect(hub.body.expires_at).toBe(new Date(t0 + 30_000).toISOString());
    const v = hub.body.version;
    const before = await call("GET", `/v1/realms/${realm}/routes?from=src&to=dst`);
    expect(before.body.hops?.map((h: { node: string }) => h.node)).toEqual(["hub", "dst"]);

    // Not yet due: the alarm runs and changes nothing.
    await setClock(realm, t0 + 29_000);
    await runDurableObjectAlarm(stubOf(realm));
    expect((await call("GET", `/v1/realms/${realm}/nodes/hub`)).status).toBe(200);

    // A heartbeat renews it for another 30 s from "now", without a version bump.
    const hb = await call("POST", `/v1/realms/${realm}/nodes/hub/heartbeat`, { body: {} });
    expect(hb.status).toBe(200);
    expect(hb.body).toMatchObject({ version: v, expires_at: new Date(t0 + 59_000).toISOString() });

    await setClock(realm, t0 + 59_001);
    expect(await runDurableObjectAlarm(stubOf(realm))).toBe(true);
    const gone = await call("GET", `/v1/realms/${realm}/nodes/hub`);
    expect(gone.status).toBe(404);
    const after = await call("GET", `/v1/realms/${realm}/routes?from=src&to=dst`);
    expect(after.body.version).toBe(v + 1);
    expect(after.body.hops).toBeNull();

    // Idempotent: running the alarm again (or a stale one firing) changes nothing.
    await runInDurableObject(stubOf(realm), (instance: RealmObject) => instance.alarm());
    const again = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(again.body.version).toBe(v + 1);
    expect(again.body.records.map((r: { name: string }) => r.name).sort()).toEqual(["dst", "src"]);
    expect((await storedRealmState(realm)).alarm).toBeNull();
  });

  it("the alarm is rescheduled for the next expiry; several due leases go in one version", async () => {
    const realm = await newRealm("multi");
    const t0 = Date.now();
    await setClock(realm, t0);
    for (const [name, ttl] of [
      ["l1", 10],
      ["l2", 10],
      ["l3", 100],
    ] as const) {
      await call("PUT", `/v1/realms/${realm}/nodes/${name}`, { body: { ...node(name), ttl_seconds: ttl } });
    }
    expect((await storedRealmState(realm)).alarm).toBe(t0 + 10_000);
    await setClock(realm, t0 + 10_000);
    await runDurableObjectAlarm(stubOf(realm));
    const s = await storedRealmState(realm);
    expect(s).toMatchObject({ version: 4, records: 1, alarm: t0 + 100_000 });
  });

  it("heartbeat of an unknown or lapsed lease is 404 so the agent registers again", async () => {
    const realm = await newRealm("lapsed");
    const t0 = Date.now();
    await setClock(realm, t0);
    await call("PUT", `/v1/realms/${realm}/nodes/p1`, { body: { ...node("p1"), ttl_seconds: 5 } });
    await setClock(realm, t0 + 6_000);
    const hb = await call("POST", `/v1/realms/${realm}/nodes/p1/heartbeat`, { body: { ttl_seconds: 5 } });
    expect(hb.status).toBe(404);
    expect(hb.body.error).toMatchObject({ code: "unknown_node", path: "name" });
    const list = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(list.body).toMatchObject({ version: 2, records: [] });
    const unknown = await call("POST", `/v1/realms/${realm}/nodes/never/heartbeat`, { body: {} });
    expect(unknown.status).toBe(404);
  });

  it("heartbeat reports feed the workload's scaling view; a draining pod learns it from its heartbeat", async () => {
    const realm = await newRealm("scale");
    for (let i = 0; i < 3; i++) {
      await call("PUT", `/v1/realms/${realm}/nodes/relay-${i}`, { body: { ...node(`relay-${i}`), ttl_seconds: 60 } });
    }
    // Total load 0.9 at a 0.7 target asks for 2 replicas: ordinal 2 must drain.
    const loads = [0.5, 0.3, 0.1];
    let last: { body: { scaling?: { draining: number[]; state_floor: number } } } | undefined;
    for (let i = 0; i < 3; i++) {
      last = await call("POST", `/v1/realms/${realm}/nodes/relay-${i}/heartbeat`, {
        body: { report: { workload: "relay", ordinal: i, load: loads[i], holds_state: true, state_items: 10 } },
      });
    }
    expect(last?.body.scaling?.draining).toEqual([2]);
    expect(last?.body.scaling?.state_floor).toBe(3);
    const view = await call("GET", `/v1/realms/${realm}/workloads/relay`);
    expect(view.status).toBe(200);
    expect(view.body.pods).toHaveLength(3);
    expect(view.body.scaling.desired_by_load).toBe(2);
    // The pod's state moved away: the floor drops.
    await call("POST", `/v1/realms/${realm}/nodes/relay-2/heartbeat`, {
      body: { report: { workload: "relay", ordinal: 2, load: 0.1, holds_state: false } },
    });
    const after = await call("GET", `/v1/realms/${realm}/workloads/relay`);
    expect(after.body.scaling.state_floor).toBe(2);
    expect((await call("GET", `/v1/realms/${realm}/workloads/nothing`)).status).toBe(404);
  });

  it("leases that ended while the edge was not serving get their TTL again instead of all expiring at once", async () => {
    const realm = await newRealm("outage");
    const t0 = Date.now();
    await setClock(realm, t0);
    for (const [name, ttl] of [
      ["p1", 30],
      ["p2", 30],
      ["p3", 60],
    ] as const) {
      await call("PUT", `/v1/realms/${realm}/nodes/${name}`, { body: { ...node(name), ttl_seconds: ttl } });
    }
    const v = (await call("GET", `/v1/realms/${realm}/nodes`)).body.version;
    // The edge is away for ten minutes: no alarm ran, nobody could renew. It comes back at t1.
    const t1 = t0 + 600_000;
    await setClock(realm, t1);
    expect(await runDurableObjectAlarm(stubOf(realm))).toBe(true);
    const list = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(list.body.version).toBe(v);
    expect(list.body.records.map((r: { name: string }) => r.name)).toEqual(["p1", "p2", "p3"]);
    expect((await call("GET", `/v1/realms/${realm}/nodes/p1`)).body.expires_at).toBe(
      new Date(t1 + 30_000).toISOString(),
    );
    expect((await call("GET", `/v1/realms/${realm}/nodes/p3`)).body.expires_at).toBe(
      new Date(t1 + 60_000).toISOString(),
    );
    // Idempotent: the alarm again, or another event, changes nothing.
    await runInDurableObject(stubOf(realm), (instance: RealmObject) => instance.alarm());
    expect((await storedRealmState(realm)).alarm).toBe(t1 + 30_000);
    // p1's node is back and renews; p2's is gone for good and expires on time, once.
    await setClock(realm, t1 + 20_000);
    const hb = await call("POST", `/v1/realms/${realm}/nodes/p1/heartbeat`, { body: {} });
    expect(hb.status).toBe(200);
    await setClock(realm, t1 + 30_000);
    await runDurableObjectAlarm(stubOf(realm));
    const after = await call("GET", `/v1/realms/${realm}/nodes`);
    expect(after.body.records.map((r: { name: string }) => r.name)).toEqual(["p1", "p3"]);
    expect(after.body.version).toBe(v + 1);
  });

  it("after an outage, a heartbeat that arrives before the alarm renews instead of answering 404", async () => {
    const realm = await newRealm("outage-hb");
    const t0 = Date.now();
    await setClock(realm, t0);
    await call("PUT", `/v1/realms/${realm}/nodes/p1`, { body: { ...node("p1"), ttl_seconds: 5 } });
    await setClock(realm, t0 + 120_000);
    const hb = await call("POST", `/v1/realms/${realm}/nodes/p1/heartbeat`, { body: {} });
    expect(hb.status).toBe(200);
    expect(hb.body.expires_at).toBe(new Date(t0 + 125_000).toISOString());
    expect((await call("GET", `/v1/realms/${realm}/nodes`)).body.version).toBe(1);
  });

  it("after an outage, a second instance's write that arrives first finds the lease the catch-up keeps", async () => {
    const realm = await newRealm("outage-instance");
    const base = `/v1/realms/${realm}`;
    const t0 = Date.now();
    await setClock(realm, t0);
    const put = (instance: string) =>
      call("PUT", `${base}/nodes/p1`, {
        headers: { "hopway-instance": instance },
        body: { ...node("p1"), ttl_seconds: 5 },
      });
    expect((await put("pod-a")).status).toBe(201);
    await setClock(realm, t0 + 120_000);
    // The edge was away: pod-a's lease runs again from now, as its heartbeat would find it.
    expect((await put("pod-b")).body.error?.code).toBe("name_in_use");
    expect(
      (await call("POST", `${base}/nodes/p1/heartbeat`, { headers: { "hopway-instance": "pod-a" }, body: {} })).status,
    ).toBe(200);
  });

  it("a live lease stays with the agent instance that took it: a second agent of the same name gets 409 name_in_use", async () => {
    const realm = await newRealm("instance");
    const base = `/v1/realms/${realm}`;
    const agent = (await call("POST", `${base}/tokens`, { body: { role: "agent", namespaces: ["ns1"] } })).body
      .token as string;
    const as = (instance: string) => ({ token: agent, headers: { "hopway-instance": instance } });
    const t0 = Date.now();
    await setClock(realm, t0);
    const first = node("r-0");
    const second = node("r-0");
    expect(
      (await call("PUT", `${base}/nodes/r-0`, { ...as("pod-a"), body: { ...first, ttl_seconds: 30 } })).status,
    ).toBe(201);
    const v = (await call("GET", `${base}/nodes`)).body.version;

    // Another instance can neither replace, renew nor delete it while the lease lives.
    const put = await call("PUT", `${base}/nodes/r-0`, { ...as("pod-b"), body: { ...second, ttl_seconds: 30 } });
    expect(put.status).toBe(409);
    expect(put.body.error).toMatchObject({ code: "name_in_use", path: "name" });
    expect(put.body.error.message).toContain("instance 'pod-a'");
    expect(put.body.error.message).toContain(new Date(t0 + 30_000).toISOString());
    const hb = await call("POST", `${base}/nodes/r-0/heartbeat`, { ...as("pod-b"), body: {} });
    expect(hb.body.error?.code).toBe("name_in_use");
    expect((await call("DELETE", `${base}/nodes/r-0`, as("pod-b"))).body.error?.code).toBe("name_in_use");
    const stored = await call("GET", `${base}/nodes/r-0`);
    expect(stored.body.record.gateway).toEqual(first.gateway);
    expect(stored.body.expires_at).toBe(new Date(t0 + 30_000).toISOString());
    expect((await call("GET", `${base}/nodes`)).body.version).toBe(v);

    // The holder renews and re-registers as before.
    await setClock(realm, t0 + 10_000);
    expect((await call("POST", `${base}/nodes/r-0/heartbeat`, { ...as("pod-a"), body: {} })).status).toBe(200);
    expect(
      (await call("PUT", `${base}/nodes/r-0`, { ...as("pod-a"), body: { ...first, ttl_seconds: 30 } })).status,
    ).toBe(200);
    // A write without an instance (the admin, an older agent) is not checked, and leaves the record unclaimed...
    expect((await call("PUT", `${base}/nodes/r-0`, { token: agent, body: { ...first, ttl_seconds: 30 } })).status).toBe(
      200,
    );
    // ...until the next instance that writes it: then that one holds it.
    expect((await call("POST", `${base}/nodes/r-0/heartbeat`, { ...as("pod-b"), body: {} })).status).toBe(200);
    expect((await call("POST", `${base}/nodes/r-0/heartbeat`, { ...as("pod-a"), body: {} })).body.error?.code).toBe(
      "name_in_use",
    );

    // Once the lease has ended, another instance takes the name.
    await setClock(realm, t0 + 41_000);
    expect(
      (await call("PUT", `${base}/nodes/r-0`, { ...as("pod-a"), body: { ...first, ttl_seconds: 30 } })).status,
    ).toBe(200);
    // And the instance that holds it deletes it.
    expect((await call("DELETE", `${base}/nodes/r-0`, as("pod-a"))).status).toBe(200);
  });

  it("a malformed Hopway-Instance is 400 naming the header, and stores nothing", async () => {
    const realm = await newRealm("instance-bad");
    const base = `/v1/realms/${realm}`;
    for (const bad of ["", "-x", "a b", "x".repeat(129), "a/b"]) {
      const put = await call("PUT", `${base}/nodes/r-0`, {
        headers: { "hopway-instance": bad },
        body: { ...node("r-0"), ttl_seconds: 30 },
      });
      expect(put.status, JSON.stringify(bad)).toBe(400);
      expect(put.body.error.issues ?? [put.body.error]).toContainEqual(
        expect.objectContaining({ path: "Hopway-Instance" }),
      );
    }
    expect((await call("GET", `${base}/nodes`)).body.records).toEqual([]);
    expect((await call("PUT", `${base}/nodes/r-0`, { body: node("r-0") })).status).toBe(201);
    for (const [method, path] of [
      ["POST", `${base}/nodes/r-0/heartbeat`],
      ["DELETE", `${base}/nodes/r-0`],
    ] as const) {
      const r = await call(method, path, { headers: { "hopway-instance": "a b" } });
      expect(r.status).toBe(400);
      expect(r.body.error.path).toBe("Hopway-Instance");
    }
    // A bad body and a bad header are said together.
    const both = await call("POST", `${base}/nodes/r-0/heartbeat`, {
      headers: { "hopway-instance": "a b" },
      body: { ttl_seconds: 0 },
    });
    expect(both.status).toBe(400);
    expect(both.body.error.issues.map((i: { path: string }) => i.path)).toEqual(["ttl_seconds", "Hopway-Instance"]);
    expect((await call("GET", `${base}/nodes/r-0`)).status).toBe(200);
  });
});
