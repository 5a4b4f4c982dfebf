// The reference topologies, imported through the API, give the routes docs/contract/routing.md §6 lists.
import { describe, expect, it } from "vitest";
import crossNamespace from "../fixtures/topologies/cross-namespace.yaml?raw";
import crossRegion from "../fixtures/topologies/cross-region.yaml?raw";
import expected from "../fixtures/topologies/expected-routes.json";
import { call, newRealm } from "./helpers.ts";

const TOPOLOGIES: Record<string, string> = {
  "cross-namespace.yaml": crossNamespace,
  "cross-region.yaml": crossRegion,
};

interface ExpectedRoute {
  from: string;
  to: string;
  hops: { node: string; address: string | null; priority: number }[] | null;
}

describe("reference topologies through the API", () => {
  for (const [file, routes] of Object.entries(expected as Record<string, ExpectedRoute[]>)) {
    it(`${file}: every expected route, from /routes and from /route-tables`, async () => {
      const realm = await newRealm("ref");
      const imported = await call("POST", `/v1/realms/${realm}/import`, {
        raw: TOPOLOGIES[file]!,
        type: "application/yaml",
      });
      expect(imported.status, JSON.stringify(imported.body)).toBe(200);
      expect(imported.body).toEqual({ version: 1, records: expect.any(Number) });
      expect(routes.length).toBeGreaterThan(0);

      const tables = new Map<string, { routes: ExpectedRoute[] }>();
      for (const want of routes) {
        const got = await call("GET", `/v1/realms/${realm}/routes?from=${want.from}&to=${want.to}`);
        expect(got.status).toBe(200);
        expect(got.body.version).toBe(1);
        const hops = got.body.hops?.map((h: ExpectedRoute["hops"] & object) => h) ?? null;
        const slim = hops?.map((h: { node: string; address: string | null; priority: number }) => ({
          node: h.node,
          address: h.address,
          priority: h.priority,
        }));
        expect({ from: got.body.from, to: got.body.to, hops: slim ?? null }, `${want.from} -> ${want.to}`).toEqual(
          want,
        );

        if (!tables.has(want.from)) {
          const t = await call("GET", `/v1/realms/${realm}/route-tables/${want.from}`);
          expect(t.status).toBe(200);
          expect(t.body.node).toBe(want.from);
          tables.set(want.from, t.body);
        }
        const fromTable = tables.get(want.from)!.routes.find((r) => r.to === want.to);
        expect(fromTable?.hops ?? null).toEqual(got.body.hops);
      }
    });
  }

  it("the cross-region example: app2 reaches app1 through relaysvr2, relaysvr3, relaysvr1", async () => {
    const realm = await newRealm("xr");
    await call("POST", `/v1/realms/${realm}/import`, { raw: crossRegion, type: "application/yaml" });
    const got = await call("GET", `/v1/realms/${realm}/routes?from=app2&to=app1`);
    expect(got.body.hops.map((h: { node: string }) => h.node)).toEqual(["relaysvr2", "relaysvr3", "relaysvr1", "app1"]);
  });

  it("unknown names are 404 unknown_node naming the parameter", async () => {
    const realm = await newRealm("unk");
    await call("POST", `/v1/realms/${realm}/import`, { raw: crossRegion, type: "application/yaml" });
    const a = await call("GET", `/v1/realms/${realm}/routes?from=app2&to=nope`);
    expect(a.status).toBe(404);
    expect(a.body.error).toMatchObject({ code: "unknown_node", path: "to" });
    const b = await call("GET", `/v1/realms/${realm}/route-tables/nope`);
    expect(b.status).toBe(404);
    expect(b.body.error.code).toBe("unknown_node");
  });

  it("a route to a group answers one route per member", async () => {
    const realm = await newRealm("grp");
    const gw = (ip: string) => [{ priority: 1, address: `ipv4://${ip}:1` }];
    const imp = await call("POST", `/v1/realms/${realm}/import`, {
      body: [
        { name: "src", metadata: { namespace_name: "n" }, gateway: gw("10.0.0.1") },
        { name: "m1", metadata: { namespace_name: "n" }, gateway: gw("10.0.0.2") },
        { name: "m2", metadata: { namespace_name: "n" }, gateway: gw("10.0.0.3") },
        {
          name: "g",
          type: "group",
          metadata: { namespace_name: "n" },
          node_list: [{ node_name: "m1" }, { node_name: "m2" }],
        },
      ],
    });
    expect(imp.status, JSON.stringify(imp.body)).toBe(200);
    const r = await call("GET", `/v1/realms/${realm}/routes?from=src&to=g`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.routes.map((m: { to: string; hops: unknown[] }) => [m.to, m.hops.length])).toEqual([
      ["m1", 1],
      ["m2", 1],
    ]);
  });

  it("JSON imports work too and a later change moves the routes", async () => {
    const realm = await newRealm("json");
    const records = [
      { name: "a", metadata: { namespace_name: "n" }, gateway: [{ priority: 1, address: "ipv4://10.0.0.1:1" }] },
      { name: "b", metadata: { namespace_name: "n" }, gateway: [{ priority: 1, address: "ipv4://10.0.0.2:1" }] },
    ];
    const imp = await call("POST", `/v1/realms/${realm}/import`, { body: records });
    expect(imp.body).toEqual({ version: 1, records: 2 });
    const before = await call("GET", `/v1/realms/${realm}/routes?from=a&to=b`);
    expect(before.body.hops).toHaveLength(1);
    // b now only accepts dialers from another namespace: no route any more.
    await call("PUT", `/v1/realms/${realm}/nodes/b`, {
      body: {
        ...records[1],
        gateway: [{ priority: 1, address: "ipv4://10.0.0.2:1", match: { metadata: { namespace_name: "other" } } }],
      },
    });
    const after = await call("GET", `/v1/realms/${realm}/routes?from=a&to=b`);
    expect(after.body.version).toBe(2);
    expect(after.body.hops).toBeNull();
    expect(after.body.reason).toBeDefined();
  });
});
