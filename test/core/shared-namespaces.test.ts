// Shared namespaces (docs/contract/records.md §2.3): with the realm's setting, a selector that names
// no namespace reaches only its own record's namespace, records without one and the shared
// namespaces. The attack it closes: a tenant's node that carries a reference relay's labels joins
// the relay chains of every namespace whose selectors name none, and carries their tunnels.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  advertisedRelays,
  buildRealm,
  canDial,
  egressRelays,
  type HopwayRecord,
  type HopwayRecordInput,
  linkPeers,
  matchesSelector,
  parseRecords,
  routeTable,
  type SharedNamespaces,
  selectorReaches,
} from "../../src/core/index.ts";
import { relaySelectionForTest } from "../../src/core/realm.ts";
import { topologyRecords as fixture, IMPOSTOR_RELAY as impostor } from "../support/topologies.ts";

const REFERENCE_NAMESPACES: SharedNamespaces = new Set(["namespace_1", "namespace_2", "namespace_3"]);

describe("shared namespaces on the cross-region reference topology", () => {
  const records = fixture("cross-region.yaml");

  it("sharing the topology's own namespaces routes exactly as the setting's absence does", () => {
    const open = buildRealm(records);
    const shared = buildRealm(records, {}, REFERENCE_NAMESPACES);
    for (const r of records)
      if (r.type !== "group") expect(routeTable(shared, r.name)).toEqual(routeTable(open, r.name));
  });

  it("without the setting, a tenant's node with a relay's labels joins the relay chains of other namespaces", () => {
    const realm = buildRealm([...records, impostor]);
    expect(advertisedRelays(realm, "relaysvr1")).toContain("aaa-impostor");
    expect(egressRelays(realm, "app2")).toContain("aaa-impostor");
    expect(canDial(realm, "aaa-impostor", "relaysvr3")).toBe(true);
  });

  it("with it, the tenant's node is in no other namespace's chain and changes no route; it uses the shared relays as any tenant may", () => {
    const clean = buildRealm(records, {}, REFERENCE_NAMESPACES);
    const realm = buildRealm([...records, impostor], {}, REFERENCE_NAMESPACES);
    for (const r of records) {
      if (r.type === "group") continue;
      expect(egressRelays(realm, r.name)).not.toContain("aaa-impostor");
      // Nobody routes through it: every route but the ones to it is what it was without it.
      expect(routeTable(realm, r.name).filter((t) => t.to !== "aaa-impostor")).toEqual(routeTable(clean, r.name));
    }
    // The shared namespaces' relays serve every namespace, so it may dial them, as a tenant's relay
    // uses the regional relays; no application's gateway (each names its namespace) admits it.
    expect(canDial(realm, "aaa-impostor", "relaysvr3")).toBe(true);
    for (const app of ["app1", "app2"]) expect(canDial(realm, "aaa-impostor", app)).toBe(false);
    // Its own relays are what its selector reaches in its namespace and the shared ones.
    expect(advertisedRelays(realm, "aaa-impostor")).toEqual(["relaysvr3"]);
  });

  it("with it, one tenant's node dials no other tenant's gateway that names no namespace", () => {
    const victim: HopwayRecord = {
      type: "node",
      name: "victim-relay",
      metadata: { namespace_name: "tenant_5", kind: "relay", labels: { "area.region": "any" } },
      gateway: [{ priority: 1, address: "ipv4://10.55.0.1:1234", match: { metadata: { kind: "relay" } } }],
    };
    const realm = buildRealm([...records, impostor, victim], {}, REFERENCE_NAMESPACES);
    expect(canDial(realm, "aaa-impostor", "victim-relay")).toBe(false);
    expect(canDial(realm, "relaysvr3", "victim-relay")).toBe(true);
    expect(linkPeers(realm, "victim-relay").nodes).toEqual(["relaysvr1", "relaysvr2", "relaysvr3"]);
    expect(canDial(buildRealm([...records, impostor, victim]), "aaa-impostor", "victim-relay")).toBe(true);
  });

  it("the shared relays list the tenant's nodes that may link to them by namespace; the shared ones and their own are not listed", () => {
    const second: HopwayRecord = { ...impostor, name: "bbb-impostor" };
    const other: HopwayRecord = {
      ...impostor,
      name: "ccc-other",
      metadata: { ...impostor.metadata, namespace_name: "tenant_5" },
    };
    const realm = buildRealm([...records, impostor, second, other], {}, REFERENCE_NAMESPACES);
    const peers = linkPeers(realm, "relaysvr3");
    // They may dial the regional relay as any tenant's relay may; `tenants` is what says whose they are.
    expect(peers.nodes).toEqual(expect.arrayContaining(["aaa-impostor", "bbb-impostor", "ccc-other", "relaysvr1"]));
    expect(peers.tenants).toEqual([
      { namespace: "tenant_4", nodes: ["aaa-impostor", "bbb-impostor"] },
      { namespace: "tenant_5", nodes: ["ccc-other"] },
    ]);
    // The tenant's own node lists its own namespace's peers under no tenant: they are its own.
    expect(linkPeers(realm, "aaa-impostor").tenants).toBeUndefined();
    // Without the setting there are no tenants: every namespace is shared.
    expect(linkPeers(buildRealm([...records, impostor, second, other]), "relaysvr3").tenants).toBeUndefined();
    // Nor on the topology alone, whose namespaces are all shared.
    for (const r of records) {
      if (r.type === "node")
        expect(linkPeers(buildRealm(records, {}, REFERENCE_NAMESPACES), r.name).tenants).toBeUndefined();
    }
  });

  it("a namespace that names the tenant's namespace still chooses it", () => {
    const chooser: HopwayRecord = {
      type: "node",
      name: "app-choosing",
      metadata: { namespace_name: "namespace_1", kind: "app" },
      gateway: [{ priority: 1, address: "ipv4://10.0.9.1:1234", match: { metadata: { namespace_name: "tenant_4" } } }],
      advertise_relay: { metadata: { namespace_name: "tenant_4", kind: "relay" } },
    };
    const realm = buildRealm([...records, impostor, chooser], {}, REFERENCE_NAMESPACES);
    expect(advertisedRelays(realm, "app-choosing")).toEqual(["aaa-impostor"]);
    expect(canDial(realm, "aaa-impostor", "app-choosing")).toBe(true);
  });
});

describe("the reach of a selector that names no namespace", () => {
  const node = (name: string, ns: string | undefined, extra: Partial<HopwayRecord> = {}): HopwayRecord =>
    ({
      type: "node",
      name,
      metadata: { ...(ns !== undefined ? { namespace_name: ns } : {}), kind: "relay" },
      gateway: [{ priority: 1, address: `ipv4://10.1.0.${name.length}:1` }],
      ...extra,
    }) as HopwayRecord;
  const selectAll = { advertise_relay: { metadata: { kind: "relay" } } };

  const EVERY = ["admin-r", "a-r", "b-r", "c-r"];
  /** `relays`: what its advertise_relay reaches; `dialers`: whom a gateway without `match` admits. */
  const cases: Array<{
    what: string;
    owner: string | undefined;
    shared: string[];
    relays: string[];
    dialers: string[];
  }> = [
    {
      what: "a tenant's record, nothing shared",
      owner: "a",
      shared: [],
      relays: ["admin-r", "a-r"],
      dialers: ["admin-r", "a-r"],
    },
    {
      what: "a tenant's record, b shared",
      owner: "a",
      shared: ["b"],
      relays: ["admin-r", "a-r", "b-r"],
      dialers: ["admin-r", "a-r", "b-r"],
    },
    {
      what: "a shared namespace's record: its gateways serve everyone, its relays stay within reach",
      owner: "a",
      shared: ["a"],
      relays: ["admin-r", "a-r"],
      dialers: EVERY,
    },
    {
      what: "an admin record, nothing shared",
      owner: undefined,
      shared: [],
      relays: ["admin-r"],
      dialers: EVERY,
    },
    {
      what: "an admin record, c shared",
      owner: undefined,
      shared: ["c"],
      relays: ["admin-r", "c-r"],
      dialers: EVERY,
    },
  ];
  for (const c of cases) {
    it(c.what, () => {
      const records = [
        node("admin-r", undefined),
        node("a-r", "a"),
        node("b-r", "b"),
        node("c-r", "c"),
        node("chooser", c.owner, selectAll),
      ];
      const realm = buildRealm(records, {}, new Set(c.shared));
      expect(advertisedRelays(realm, "chooser")).toEqual(c.relays);
      const dialers = records.filter((r) => r.name !== "chooser" && canDial(realm, r.name, "chooser"));
      expect(dialers.map((r) => r.name)).toEqual(c.dialers);
      // Without the setting both reach every namespace.
      const open = buildRealm(records);
      expect(advertisedRelays(open, "chooser")).toEqual(EVERY);
      expect(
        records.filter((r) => r.name !== "chooser" && canDial(open, r.name, "chooser")).map((r) => r.name),
      ).toEqual(EVERY);
    });
  }

  it("two targets with the same gateways in two namespaces each admit their own namespace's dialers", () => {
    const records = [
      node("a-t", "a"),
      node("b-t", "b"),
      node("a-d", "a"),
      node("b-d", "b"),
      node("admin-d", undefined),
    ];
    const realm = buildRealm(records, {}, new Set());
    const admitted = (target: string) => records.filter((r) => canDial(realm, r.name, target)).map((r) => r.name);
    expect(admitted("a-t")).toEqual(["a-d", "admin-d"]);
    expect(admitted("b-t")).toEqual(["b-d", "admin-d"]);
  });

  it("one advertise_relay value written in two namespaces selects per namespace", () => {
    const records = [node("a-r", "a"), node("b-r", "b"), node("a-x", "a", selectAll), node("b-x", "b", selectAll)];
    const realm = buildRealm(records, {}, new Set());
    expect(advertisedRelays(realm, "a-x")).toEqual(["a-r"]);
    expect(advertisedRelays(realm, "b-x")).toEqual(["b-r"]);
  });
});

describe("selecting relays through the reach-split indexes", () => {
  it("selects exactly what a scan selects, from ascending candidates that hold nothing out of reach", () => {
    const ns = fc.constantFrom(undefined, "a", "b", "c");
    const field = <T>(...values: T[]) => fc.constantFrom(undefined, ...values);
    const record = fc.tuple(ns, field("relay", "app"), field("x", "y"), field("h1", "h2"), fc.boolean());
    const selector = fc.tuple(ns, field("relay", "app"), field("x", "y"), field("h1", "h2"), field(0, 3, 7, 29));
    fc.assert(
      fc.property(
        fc.array(record, { minLength: 1, maxLength: 30 }),
        fc.subarray(["a", "b", "c"]),
        fc.array(selector, { minLength: 1, maxLength: 6 }),
        (nodes, sharedList, sels) => {
          const metadata = (n?: string, kind?: string, label?: string) => ({
            ...(n !== undefined ? { namespace_name: n } : {}),
            ...(kind !== undefined ? { kind } : {}),
            ...(label !== undefined ? { labels: { t: label } } : {}),
          });
          const input: HopwayRecordInput[] = nodes.map(([n, kind, label, hostname, client], i) => ({
            name: `r${String(i).padStart(2, "0")}`,
            ...(client ? { type: "client" } : { gateway: [{ priority: 1, address: `ipv4://10.0.0.${i + 1}:1` }] }),
            ...(hostname !== undefined ? { host: { hostname } } : {}),
            metadata: metadata(n, kind, label),
          }));
          const selectors = sels.map(([n, kind, label, hostname, name]) => ({
            ...(name !== undefined ? { name: `r${String(name).padStart(2, "0")}` } : {}),
            ...(hostname !== undefined ? { host: { hostname } } : {}),
            metadata: metadata(n, kind, label),
          }));
          // The realm indexes only what some advertise_relay asks for.
          input.push({ name: "zz", type: "client", advertise_relay: selectors });
          const parsed = parseRecords(input);
          if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
          const records = parsed.records;
          const shared = new Set(sharedList);
          const realm = buildRealm(records, {}, shared);
          for (const sel of selectors) {
            for (const owner of [undefined, "a", "b", "c"]) {
              const reached = (i: number) => selectorReaches("relay", sel, owner, records[i]!, shared);
              const want = records.flatMap((r, i) =>
                r.type === "node" && matchesSelector(sel, r) && reached(i) ? [i] : [],
              );
              const { candidates, selected } = relaySelectionForTest(realm, sel, owner);
              expect(selected).toEqual(want);
              for (let k = 1; k < candidates.length; k++) expect(candidates[k]!).toBeGreaterThan(candidates[k - 1]!);
              // What prices a selector that names no namespace lies in its reach (docs/contract/routing.md §3.8).
              if (sel.metadata.namespace_name === undefined) expect(candidates.every(reached)).toBe(true);
            }
          }
        },
      ),
      { numRuns: 500, seed: 0x5e1ec7 },
    );
  });
});
