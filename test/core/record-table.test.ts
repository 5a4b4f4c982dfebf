import { describe, expect, it } from "vitest";
import {
  buildRealm,
  describeIssues,
  parseRecords,
  RecordSchema,
  resolveRoute,
  routeTable,
} from "../../src/core/index.ts";
import { CLIENT_GATEWAY_CASES, fullRecord, RECORD_CASES } from "./record-table.cases.ts";

const paths = (problems: ReadonlyArray<{ path: string }>): string[] => [...new Set(problems.map((p) => p.path))];

describe("the record table, field by field (core)", () => {
  it("has cases for every record type and variant", () => {
    expect(RECORD_CASES.length).toBeGreaterThan(150);
    expect(CLIENT_GATEWAY_CASES.map((c) => c.variant).sort()).toEqual(["empty", "present"]);
  });

  for (const c of RECORD_CASES) {
    it(`${c.id}: ${c.accept ? "accepted" : `refused at ${c.path}`}`, () => {
      const r = RecordSchema.safeParse(c.record);
      expect(r.success).toBe(c.accept);
      // One field to blame, however many of its rules it breaks.
      if (!r.success) expect(paths(describeIssues(r.error))).toEqual([c.path]);
      // The importer (the edge's POST /import, `hopway routes --topology`) names the record by its place.
      const imported = parseRecords([c.record]);
      expect(imported.ok).toBe(c.accept);
      if (!imported.ok) expect(paths(imported.problems)).toEqual([`[0].${c.path}`]);
    });
  }
});

describe("a client's gateways play no part in routing", () => {
  const relay = fullRecord("relay");
  const app = { ...fullRecord("node"), advertise_relay: { name: "relay1" } };
  // Gateways that would accept every dialer, were the record a node.
  const gateways = [{ priority: 0, address: "ipv4://127.0.0.9:1" }];
  const client = { ...fullRecord("client"), gateway: gateways };
  const bare = { ...fullRecord("client"), gateway: [] };

  it("routes to and from the client are the same with and without them", () => {
    const withGw = buildRealm([relay, app, client].map((r) => RecordSchema.parse(r)));
    const without = buildRealm([relay, app, bare].map((r) => RecordSchema.parse(r)));
    for (const [from, to] of [
      ["client1", "app1"],
      ["app1", "client1"],
      ["relay1", "client1"],
    ] as const) {
      expect(resolveRoute(withGw, from, to)).toEqual(resolveRoute(without, from, to));
    }
    expect(routeTable(withGw, "app1")).toEqual(routeTable(without, "app1"));
    const toClient = resolveRoute(withGw, "app1", "client1");
    expect(toClient.hops?.at(-1)).toMatchObject({ node: "client1", address: null, priority: 0 });
    for (const route of routeTable(withGw, "relay1")) {
      for (const hop of route.hops ?? []) expect(hop.address).not.toBe("ipv4://127.0.0.9:1");
    }
  });
});
