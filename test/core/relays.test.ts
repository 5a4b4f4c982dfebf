// Which intermediates a route table marks as relays (src/core/relays.ts, docs/contract/edge-api.md §5.2).
// The relay refuses tunnels that end at a marked node, so a tenant must not be able to mark another
// namespace's application, while the reference topologies keep every relay marked.
import { describe, expect, it } from "vitest";
import { buildRealm, type HopwayRecord, linkPeers, type Realm, routeTable, tableRelays } from "../../src/core/index.ts";
import { topologyRecords as fixture } from "../support/topologies.ts";

function marksOf(realm: Realm, self: string): Map<string, boolean> {
  return new Map(tableRelays(realm, self, routeTable(realm, self)).map((m) => [m.node, m.aliases]));
}

function intermediates(realm: Realm, self: string): Set<string> {
  const out = new Set<string>();
  for (const r of routeTable(realm, self)) for (const h of (r.hops ?? []).slice(0, -1)) out.add(h.node);
  return out;
}

/** Route computation only: nothing dials these addresses. */
const victim: HopwayRecord[] = [
  {
    type: "node",
    name: "victim-relay",
    metadata: { namespace_name: "victim", kind: "relay" },
    gateway: [{ priority: 1, address: "ipv4://10.9.0.1:7001", match: { metadata: { namespace_name: "victim" } } }],
  },
  {
    type: "node",
    name: "victim-db",
    metadata: { namespace_name: "victim", kind: "app" },
    gateway: [{ priority: 1, address: "ipv4://10.9.0.2:5432", match: { metadata: { namespace_name: "victim" } } }],
    advertise_relay: { name: "victim-relay" },
  },
];

/** A tenant's record that names the victim's application as its relay, so it becomes an intermediate. */
const bait: HopwayRecord = {
  type: "node",
  name: "evil-bait",
  metadata: { namespace_name: "evil" },
  gateway: [{ priority: 0, address: "ipv4://10.66.0.1:1", match: { name: "victim-db" } }],
  advertise_relay: { name: "victim-db" },
};

/** The same through an alias: the tenant's own "relay" publishes the application's address. */
const alias: HopwayRecord[] = [
  {
    type: "node",
    name: "evil-alias",
    metadata: { namespace_name: "evil" },
    gateway: [{ priority: 0, address: "ipv4://10.9.0.2:5432" }],
  },
  {
    type: "node",
    name: "evil-t",
    metadata: { namespace_name: "evil" },
    gateway: [{ priority: 0, address: "ipv4://10.66.0.2:1", match: { name: "evil-alias" } }],
    advertise_relay: { name: "evil-alias" },
  },
];

describe("tableRelays", () => {
  it("marks every intermediate of the reference topologies, as the agent did before the list", () => {
    for (const file of ["cross-region.yaml", "cross-namespace.yaml"]) {
      const realm = buildRealm(fixture(file));
      let marked = 0;
      for (const r of realm.records) {
        if (r.type === "group") continue;
        const all = intermediates(realm, r.name);
        const marks = marksOf(realm, r.name);
        expect([...marks.keys()].sort(), `${file}: ${r.name}`).toEqual([...all].sort());
        marked += marks.size;
      }
      // A check that cannot pass vacuously: the topologies do route through relays.
      expect(marked, file).toBeGreaterThan(0);
    }
  });

  it("says which marks also mark aliases: the relay's upstream chain", () => {
    const realm = buildRealm(fixture("cross-region.yaml"));
    // relaysvr3 (namespace_3) is relaysvr1's upstream: vouched by relaysvr1's own chain.
    expect(marksOf(realm, "relaysvr1").get("relaysvr3")).toBe(true);
    // relaysvr2 (namespace_2) is on relaysvr1's routes only as app2's relay: its namespace vouches
    // for it by name, and only relaysvr1's own chain or namespace may mark addresses.
    expect(marksOf(realm, "relaysvr1").get("relaysvr2")).toBe(false);
  });

  it("does not let a tenant mark another namespace's application by naming it as its relay", () => {
    const realm = buildRealm([...victim, bait]);
    // The attack works on the resolver: victim-db is an intermediate of the route to evil-bait ...
    const toBait = routeTable(realm, "victim-relay").find((r) => r.to === "evil-bait");
    expect(toBait?.hops?.map((h) => h.node)).toEqual(["victim-db", "evil-bait"]);
    expect(intermediates(realm, "victim-relay").has("victim-db")).toBe(true);
    // ... but nobody who may vouch for it does.
    expect(marksOf(realm, "victim-relay").has("victim-db")).toBe(false);
  });

  it("does not let a tenant's own relay mark the addresses it copied from another namespace", () => {
    const realm = buildRealm([...victim, ...alias]);
    const marks = marksOf(realm, "victim-relay");
    // evil-t's namespace vouches for evil-alias by name, not for the addresses it lists.
    expect(marks.get("evil-alias")).toBe(false);
  });

  it("marks a node that a target of its own namespace routes through", () => {
    const records: HopwayRecord[] = [
      ...victim,
      {
        type: "node",
        name: "victim-app2",
        metadata: { namespace_name: "victim" },
        gateway: [{ priority: 1, address: "ipv4://10.9.0.3:80", match: { name: "victim-db" } }],
        advertise_relay: { name: "victim-db" },
      },
    ];
    // victim-app2 routes through victim-db, and its namespace is victim-db's: it vouches, by name.
    expect(marksOf(buildRealm(records), "victim-relay").get("victim-db")).toBe(false);
  });

  it("marks a node without a namespace (written by the admin) by name and by address", () => {
    const records: HopwayRecord[] = [
      ...victim,
      {
        type: "node",
        name: "shared-relay",
        metadata: { kind: "relay" },
        gateway: [{ priority: 1, address: "ipv4://10.8.0.1:7001" }],
      },
      {
        type: "node",
        name: "other-app",
        metadata: { namespace_name: "other" },
        gateway: [{ priority: 1, address: "ipv4://10.7.0.1:80", match: { name: "shared-relay" } }],
        advertise_relay: { name: "shared-relay" },
      },
    ];
    expect(marksOf(buildRealm(records), "victim-relay").get("shared-relay")).toBe(true);
  });
});

describe("linkPeers", () => {
  const accepts = (realm: Realm, dialer: string, relay: string) => {
    const p = linkPeers(realm, relay);
    return p.any || p.nodes.includes(dialer);
  };

  it("every link a route of the reference topologies needs is one its relay accepts", () => {
    for (const file of ["cross-region.yaml", "cross-namespace.yaml"]) {
      const realm = buildRealm(fixture(file));
      let links = 0;
      for (const r of realm.records) {
        if (r.type === "group") continue;
        for (const route of routeTable(realm, r.name)) {
          const hops = route.hops ?? [];
          // A relay hop (not the last) is reached by a link from the node before it.
          for (let i = 0; i < hops.length - 1; i++) {
            const before = i === 0 ? route.from : (hops[i - 1]?.node as string);
            if (realm.get(before)?.type !== "node") continue;
            expect(accepts(realm, before, hops[i]?.node as string), `${file}: ${before} → ${hops[i]?.node}`).toBe(true);
            links++;
          }
        }
      }
      expect(links, file).toBeGreaterThan(0);
    }
  });

  it("a relay whose gateways accept only its namespace takes no link from another namespace's relay", () => {
    const evil: HopwayRecord = { type: "node", name: "evil-e", metadata: { namespace_name: "evil", kind: "relay" } };
    const realm = buildRealm([...victim, evil]);
    expect(linkPeers(realm, "victim-relay")).toEqual({ any: false, nodes: ["victim-db"] });
  });

  it("a gateway without `match` takes links from every node", () => {
    const realm = buildRealm([...victim, bait]);
    // evil-bait's gateway accepts victim-db only; victim-relay's accepts its namespace.
    expect(linkPeers(realm, "evil-bait")).toEqual({ any: false, nodes: ["victim-db"] });
    const open = buildRealm([
      { type: "node", name: "r", gateway: [{ priority: 1, address: "ipv4://10.1.0.1:7001" }] },
      { type: "node", name: "a" },
      { type: "node", name: "b" },
    ]);
    expect(linkPeers(open, "r")).toEqual({ any: true, nodes: [] });
  });
});
