// The resolver conformance suite, written against the RouteResolver interface
// only, so that every implementation runs the very same cases: the plain
// reference resolver, the indexed realm, and anything that serves routes later
// (the edge can call runResolverConformance with a factory that goes through
// its own API). Expected answers are written out by hand or come from
// expected-routes.json (the routes of docs/contract/routing.md §6), never from
// another resolver.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  type EdgeError,
  type HopwayRecord,
  type HopwayRecordInput,
  parseRecords,
  parseTopologyText,
  type Route,
  type RouteResolver,
  rendezvousWeight,
} from "../../src/core/index.ts";

export type ResolverFactory = (records: readonly HopwayRecord[]) => RouteResolver;

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "../fixtures/topologies");

export function loadFixture(file: string): HopwayRecord[] {
  const parsed = parseTopologyText(readFileSync(join(FIXTURES, file), "utf8"));
  if (!parsed.ok) throw new Error(`${file}: ${JSON.stringify(parsed.problems)}`);
  return parsed.records;
}

/** Validated records from literal input, so every case is also a valid import. */
export function records(input: HopwayRecordInput[]): HopwayRecord[] {
  const parsed = parseRecords(input);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  return parsed.records;
}

type Gw = [priority: number, address: string | string[], match?: Record<string, unknown>];
export interface NodeSpec {
  ns?: string;
  kind?: string;
  labels?: Record<string, string>;
  hostname?: string;
  gw?: Gw[];
  adv?: Record<string, unknown> | Record<string, unknown>[];
  type?: "node" | "client";
}
/** A compact way to write records in tests. */
export function node(name: string, spec: NodeSpec = {}): HopwayRecordInput {
  const metadata: Record<string, unknown> = {};
  if (spec.ns !== undefined) metadata.namespace_name = spec.ns;
  if (spec.kind !== undefined) metadata.kind = spec.kind;
  if (spec.labels !== undefined) metadata.labels = spec.labels;
  return {
    name,
    type: spec.type ?? "node",
    ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
    ...(spec.hostname !== undefined ? { host: { hostname: spec.hostname } } : {}),
    ...(spec.gw !== undefined && spec.type !== "client"
      ? { gateway: spec.gw.map(([priority, address, match]) => ({ priority, address, ...(match ? { match } : {}) })) }
      : {}),
    ...(spec.adv !== undefined ? { advertise_relay: spec.adv } : {}),
  } as HopwayRecordInput;
}

/** node/address/priority of each hop: what expected-routes.json pins (alternatives are extra). */
export function brief(route: Route): Array<{ node: string; address: string | null; priority: number }> | null {
  return route.hops?.map((h) => ({ node: h.node, address: h.address, priority: h.priority })) ?? null;
}

const ns = (namespace_name: string) => ({ metadata: { namespace_name } });
const relaysOf = (namespace_name: string) => ({ metadata: { namespace_name, kind: "relay" } });

export function runResolverConformance(name: string, make: ResolverFactory): void {
  describe(`resolver conformance: ${name}`, () => {
    const expected = JSON.parse(readFileSync(join(FIXTURES, "expected-routes.json"), "utf8")) as Record<
      string,
      Array<{ from: string; to: string; hops: unknown }>
    >;
    for (const [file, routes] of Object.entries(expected)) {
      it(`gives every route of ${file} in expected-routes.json`, () => {
        const recs = loadFixture(file);
        const resolver = make(recs);
        const names = recs.map((r) => r.name);
        // The file lists every ordered pair of distinct records.
        expect(routes.length).toBe(names.length * (names.length - 1));
        for (const want of routes) {
          const got = resolver.resolveRoute(want.from, want.to);
          expect({ from: got.from, to: got.to, hops: brief(got) }).toEqual(want);
          for (const hop of got.hops ?? []) expect(hop.alternatives).toEqual([]);
        }
        // The table of each node is the same set of routes.
        for (const from of names) {
          const table = resolver.routeTable(from);
          expect(table.map((r) => r.to).sort()).toEqual(names.filter((n) => n !== from).sort());
          for (const r of table) expect(r).toEqual(resolver.resolveRoute(from, r.to));
        }
      });
    }

    it("cross-region: app2 reaches app1 through relaysvr2, relaysvr3 and relaysvr1", () => {
      const route = make(loadFixture("cross-region.yaml")).resolveRoute("app2", "app1");
      expect(brief(route)).toEqual([
        { node: "relaysvr2", address: "ipv4://10.1.1.1:1234", priority: 1 },
        { node: "relaysvr3", address: "ipv4://192.18.0.1:1234", priority: 2 },
        { node: "relaysvr1", address: "ipv4://192.16.0.1:1234", priority: 3 },
        { node: "app1", address: "ipv4://10.0.0.1:1234", priority: 1 },
      ]);
    });

    describe("who can dial whom", () => {
      const target = node("t", {
        ns: "x",
        gw: [
          [5, "ipv4://10.0.0.5:1", {}],
          [2, ["dns://t.x.svc:2", "ipv4://10.0.0.2:2"], ns("x")],
          [2, "ipv4://10.0.0.3:3", ns("x")],
          [1, "ipv4://10.0.0.1:4", { metadata: { labels: { a: "1", b: "2" } } }],
          [0, "ipv4://10.0.0.9:9", { metadata: { labels: { region: "any" } } }],
          [3, "ipv4://10.0.0.7:7", { name: "named" }],
        ],
      });
      const cases: Array<[string, NodeSpec, string, { address: string; priority: number; alternatives: string[] }]> = [
        [
          "smallest matching priority, first declared on ties, fallbacks in order",
          { ns: "x" },
          "s",
          {
            address: "dns://t.x.svc:2",
            priority: 2,
            alternatives: ["ipv4://10.0.0.2:2"],
          },
        ],
        [
          "an empty match selector accepts anyone",
          { ns: "y" },
          "s",
          { address: "ipv4://10.0.0.5:1", priority: 5, alternatives: [] },
        ],
        [
          "labels: a superset of the selector's labels matches",
          { ns: "y", labels: { a: "1", b: "2", c: "3" } },
          "s",
          {
            address: "ipv4://10.0.0.1:4",
            priority: 1,
            alternatives: [],
          },
        ],
        [
          "labels: a subset does not match",
          { ns: "y", labels: { a: "1" } },
          "s",
          { address: "ipv4://10.0.0.5:1", priority: 5, alternatives: [] },
        ],
        [
          'labels: "any" is a literal value, not a wildcard',
          { ns: "y", labels: { region: "CN" } },
          "s",
          {
            address: "ipv4://10.0.0.5:1",
            priority: 5,
            alternatives: [],
          },
        ],
        [
          'labels: the literal value "any" matches',
          { ns: "y", labels: { region: "any" } },
          "s",
          {
            address: "ipv4://10.0.0.9:9",
            priority: 0,
            alternatives: [],
          },
        ],
        [
          "name selectors match the dialer's name",
          { ns: "y" },
          "named",
          { address: "ipv4://10.0.0.7:7", priority: 3, alternatives: [] },
        ],
      ];
      for (const [title, spec, sourceName, want] of cases) {
        it(title, () => {
          const route = make(records([target, node(sourceName, spec)])).resolveRoute(sourceName, "t");
          expect(route.hops).toEqual([{ node: "t", ...want }]);
        });
      }
      it("tells dialers apart by exactly the values selectors compare (pid 0, names, unique labels)", () => {
        const r = make(
          records([
            {
              name: "t",
              gateway: [
                { priority: 1, address: "ipv4://10.0.0.1:1", match: { host: { pid: 0 } } },
                { priority: 2, address: "ipv4://10.0.0.2:1", match: { name: "p1" } },
                { priority: 3, address: "ipv4://10.0.0.3:1", match: { metadata: { labels: { pod: "p2" } } } },
              ],
            },
            { name: "p0", host: { hostname: "h", pid: 0 }, metadata: { labels: { pod: "p0" } } },
            { name: "p1", host: { hostname: "h", pid: 1 }, metadata: { labels: { pod: "p1" } } },
            { name: "p2", host: { hostname: "h", pid: 2 }, metadata: { labels: { pod: "p2" } } },
            { name: "p3", host: { hostname: "h", pid: 3 }, metadata: { labels: { pod: "p3" } } },
            { name: "p4" },
          ]),
        );
        expect(["p0", "p1", "p2", "p3", "p4"].map((p) => r.resolveRoute(p, "t").hops?.[0]?.address ?? "none")).toEqual([
          "ipv4://10.0.0.1:1",
          "ipv4://10.0.0.2:1",
          "ipv4://10.0.0.3:1",
          "none",
          "none",
        ]);
      });
      it("a target with no gateway that matches, or no gateway at all, has no route", () => {
        const r = make(
          records([node("t", { gw: [[1, "ipv4://10.0.0.1:1", ns("x")]] }), node("u"), node("s", { ns: "y" })]),
        );
        expect(r.resolveRoute("s", "t")).toMatchObject({ hops: null, reason: "no_matching_gateway" });
        expect(r.resolveRoute("s", "u")).toMatchObject({ hops: null, reason: "no_matching_gateway" });
      });
    });

    describe("unix:// addresses only from the same host", () => {
      const recs = records([
        node("t", {
          ns: "x",
          hostname: "h1",
          gw: [
            [0, "unix:///run/t.sock", {}],
            [1, ["unix:///run/t2.sock", "ipv4://10.0.0.1:1"], {}],
          ],
        }),
        node("same", { ns: "x", hostname: "h1" }),
        node("other-ns", { ns: "y", hostname: "h1" }),
        node("other-host", { ns: "x", hostname: "h2" }),
        node("no-host", { ns: "x" }),
      ]);
      it("same namespace and hostname: the unix gateway", () => {
        expect(make(recs).resolveRoute("same", "t").hops).toEqual([
          { node: "t", address: "unix:///run/t.sock", priority: 0, alternatives: [] },
        ]);
      });
      for (const from of ["other-ns", "other-host", "no-host"]) {
        it(`${from}: unix addresses are dropped, gateways left without an address skipped`, () => {
          expect(make(recs).resolveRoute(from, "t").hops).toEqual([
            { node: "t", address: "ipv4://10.0.0.1:1", priority: 1, alternatives: [] },
          ]);
        });
      }
    });

    describe("relays", () => {
      // Two namespaces, each with an app and a relay service of three pods.
      const relayPods = (n: string, count: number) =>
        Array.from({ length: count }, (_, i) =>
          node(`${n}-relay-${i}`, {
            ns: n,
            kind: "relay",
            gw: [
              [1, `ipv4://10.${n === "a" ? 1 : 2}.0.${i}:1`, ns(n)],
              [2, `ipv4://172.${n === "a" ? 1 : 2}.0.${i}:1`, { metadata: { kind: "relay" } }],
            ],
          }),
        );
      const apps = (n: string, count: number) =>
        Array.from({ length: count }, (_, i) =>
          node(`${n}-app-${i}`, {
            ns: n,
            kind: "app",
            gw: [[1, `ipv4://10.${n === "a" ? 1 : 2}.1.${i}:1`, ns(n)]],
            adv: relaysOf(n),
          }),
        );
      const recs = records([...relayPods("a", 3), ...relayPods("b", 3), ...apps("a", 40), ...apps("b", 40)]);
      const best = (chooser: string, pods: string[]) =>
        [...pods].sort((x, y) => rendezvousWeight(chooser, y) - rendezvousWeight(chooser, x) || (x < y ? -1 : 1))[0];
      const podsA = [0, 1, 2].map((i) => `a-relay-${i}`);
      const podsB = [0, 1, 2].map((i) => `b-relay-${i}`);

      it("picks the egress pod by hash(source, relay) and the ingress pod by hash(target, relay)", () => {
        const r = make(recs);
        const used = new Set<string>();
        for (let i = 0; i < 40; i++) {
          const from = `a-app-${i}`;
          const to = `b-app-${(i * 7) % 40}`;
          const route = r.resolveRoute(from, to);
          expect(route.hops?.map((h) => h.node)).toEqual([best(from, podsA), best(to, podsB), to]);
          expect(route.hops?.map((h) => h.priority)).toEqual([1, 2, 1]);
          used.add(route.hops![0]!.node);
        }
        // 40 sources over 3 pods: every pod carries some (a constant answer would fail).
        expect(used.size).toBe(3);
      });

      it("is deterministic and independent of record order", () => {
        const a = make(recs);
        const b = make([...recs].reverse());
        for (const from of ["a-app-1", "b-app-3", "a-relay-2"]) {
          const byTo = (routes: Route[]) => [...routes].sort((x, y) => (x.to < y.to ? -1 : 1));
          expect(byTo(b.routeTable(from))).toEqual(byTo(a.routeTable(from)));
        }
      });

      it("fewer hops beat a smaller priority sum, then the smaller sum wins", () => {
        const r = make(
          records([
            node("s", { ns: "s", adv: { metadata: { kind: "relay" } } }),
            node("cheap1", { kind: "relay", gw: [[0, "ipv4://10.9.0.1:1", ns("s")]] }),
            node("cheap2", { kind: "relay", gw: [[0, "ipv4://10.9.0.2:1", { name: "cheap1" }]] }),
            node("dear", { kind: "relay", gw: [[50, "ipv4://10.9.0.3:1", ns("s")]] }),
            node("mid", { kind: "relay", gw: [[5, "ipv4://10.9.0.4:1", ns("s")]] }),
            node("t", {
              gw: [
                [1, "ipv4://10.9.1.1:1", { name: "cheap2" }],
                [40, "ipv4://10.9.1.2:1", { name: "dear" }],
                [30, "ipv4://10.9.1.3:1", { name: "mid" }],
              ],
            }),
          ]),
        );
        // s→cheap1→cheap2→t costs 1 but has 3 hops; s→mid→t (35) beats s→dear→t (90).
        expect(r.resolveRoute("s", "t").hops?.map((h) => h.node)).toEqual(["mid", "t"]);
      });

      it("uses only relays in egress(source) ∪ ingress(target)", () => {
        const r = make(
          records([
            node("s", { ns: "s" }),
            node("r", { kind: "relay", gw: [[1, "ipv4://10.9.0.1:1", {}]] }),
            node("closed", { kind: "relay", gw: [[1, "ipv4://10.9.0.2:1", { name: "r" }]] }),
            node("t", { gw: [[1, "ipv4://10.9.1.1:1", { name: "r" }]] }),
            node("t2", { gw: [[1, "ipv4://10.9.1.2:1", { name: "r" }]], adv: { name: "r" } }),
            node("t3", { gw: [[1, "ipv4://10.9.1.3:1", { name: "closed" }]], adv: { name: "closed" } }),
          ]),
        );
        // r could dial t, but nobody advertises it for s or t: no eligible dialer matches t's gateways.
        expect(r.resolveRoute("s", "t")).toMatchObject({ hops: null, reason: "no_matching_gateway" });
        expect(r.resolveRoute("s", "t2").hops?.map((h) => h.node)).toEqual(["r", "t2"]);
        // closed is eligible and can dial t3, but s cannot reach closed.
        expect(r.resolveRoute("s", "t3")).toMatchObject({ hops: null, reason: "no_relay_chain" });
      });

      it("follows advertise_relay transitively (the closures)", () => {
        const r = make(
          records([
            node("s", { adv: { name: "r1" } }),
            node("r1", { gw: [[1, "ipv4://10.9.0.1:1", { name: "s" }]], adv: { name: "r2" } }),
            node("r2", { gw: [[1, "ipv4://10.9.0.2:1", { name: "r1" }]], adv: [{ name: "r3" }, { name: "s" }] }),
            node("r3", { gw: [[1, "ipv4://10.9.0.3:1", { name: "r2" }]] }),
            node("t", { gw: [[1, "ipv4://10.9.1.1:1", { name: "r3" }]] }),
          ]),
        );
        expect(r.resolveRoute("s", "t").hops?.map((h) => h.node)).toEqual(["r1", "r2", "r3", "t"]);
      });

      const chain = (relays: number) =>
        records([
          node("s", { labels: { pos: "0" }, adv: { metadata: { kind: "relay" } } }),
          ...Array.from({ length: relays }, (_, i) =>
            node(`r${i + 1}`, {
              kind: "relay",
              labels: { pos: String(i + 1) },
              gw: [[1, `ipv4://10.8.0.${i + 1}:1`, { metadata: { labels: { pos: String(i) } } }]],
            }),
          ),
          node("t", { gw: [[1, "ipv4://10.8.1.1:1", { metadata: { labels: { pos: String(relays) } } }]] }),
        ]);
      it("allows 8 hops", () => {
        expect(make(chain(7)).resolveRoute("s", "t").hops).toHaveLength(8);
      });
      it("refuses 9 hops with reason hop_limit", () => {
        expect(make(chain(8)).resolveRoute("s", "t")).toMatchObject({ hops: null, reason: "hop_limit" });
      });
    });

    describe("clients", () => {
      const recs = records([
        ...[0, 1, 2].map((i) =>
          node(`relay-${i}`, { ns: "a", kind: "relay", gw: [[1, `ipv4://10.1.0.${i}:1`, ns("a")]] }),
        ),
        node("app", { ns: "a", gw: [[1, "ipv4://10.1.1.1:1", ns("a")]], adv: relaysOf("a") }),
        ...Array.from({ length: 12 }, (_, i) => node(`client-${i}`, { type: "client", ns: "a", adv: relaysOf("a") })),
        node("lost", { type: "client", ns: "a", adv: relaysOf("nowhere") }),
      ]);
      const pods = ["relay-0", "relay-1", "relay-2"];
      const attached = (c: string) =>
        [...pods].sort((x, y) => rendezvousWeight(c, y) - rendezvousWeight(c, x) || (x < y ? -1 : 1))[0]!;
      it("a route from a client starts at its relay with address null and priority 0", () => {
        const r = make(recs);
        for (let i = 0; i < 12; i++) {
          expect(r.resolveRoute(`client-${i}`, "app").hops).toEqual([
            { node: attached(`client-${i}`), address: null, priority: 0, alternatives: [] },
            { node: "app", address: "ipv4://10.1.1.1:1", priority: 1, alternatives: [] },
          ]);
        }
        expect(new Set(Array.from({ length: 12 }, (_, i) => attached(`client-${i}`))).size).toBeGreaterThan(1);
      });
      it("a route to a client ends with the hop from its relay, address null and priority 0", () => {
        const r = make(recs);
        const relay = attached("client-3");
        expect(brief(r.resolveRoute("app", "client-3"))).toEqual([
          { node: relay, address: `ipv4://10.1.0.${relay.at(-1)}:1`, priority: 1 },
          { node: "client-3", address: null, priority: 0 },
        ]);
        expect(brief(r.resolveRoute(relay, "client-3"))).toEqual([{ node: "client-3", address: null, priority: 0 }]);
        expect(brief(r.resolveRoute("client-3", relay))).toEqual([{ node: relay, address: null, priority: 0 }]);
      });
      it("client to client goes through both attachment relays", () => {
        const r = make(recs);
        const a = attached("client-0");
        const b = attached("client-1");
        const want: Array<{ node: string; address: string | null; priority: number }> = [
          { node: a, address: null, priority: 0 },
        ];
        if (a !== b) want.push({ node: b, address: `ipv4://10.1.0.${b.at(-1)}:1`, priority: 1 });
        want.push({ node: "client-1", address: null, priority: 0 });
        expect(brief(r.resolveRoute("client-0", "client-1"))).toEqual(want);
      });
      it("a client whose advertise_relay names nothing is not attached", () => {
        const r = make(recs);
        expect(r.resolveRoute("lost", "app")).toMatchObject({ hops: null, reason: "client_not_attached" });
        expect(r.resolveRoute("app", "lost")).toMatchObject({ hops: null, reason: "client_not_attached" });
      });
      it("a client is never dialed directly, even by a gateway-less peer on its namespace", () => {
        const r = make(records([node("c", { type: "client", ns: "a" }), node("s", { ns: "a" })]));
        expect(r.resolveRoute("s", "c")).toMatchObject({ hops: null, reason: "client_not_attached" });
      });
    });

    describe("groups, names and tables", () => {
      const recs = records([
        node("s", { ns: "x" }),
        node("m1", { ns: "x", gw: [[1, "ipv4://10.0.0.1:1", ns("x")]] }),
        node("m2", { ns: "x", gw: [[1, "ipv4://10.0.0.2:1", ns("y")]] }),
        {
          name: "g",
          type: "group",
          metadata: { namespace_name: "x" },
          node_list: [{ node_name: "m2" }, { node_name: "m1" }],
        },
      ]);
      it("a group target gives one route per member, in node_list order", () => {
        const routes = make(recs).resolveRoutes("s", "g");
        expect(routes.map((r) => [r.to, r.reason ?? "ok"])).toEqual([
          ["m2", "no_matching_gateway"],
          ["m1", "ok"],
        ]);
      });
      it("members missing from the realm are skipped", () => {
        // The importer refuses such a group; a realm can still meet one after a member deregisters.
        const withGone = recs.map((r) =>
          r.type === "group" ? { ...r, node_list: [...r.node_list, { node_name: "gone" }] } : r,
        );
        expect(
          make(withGone)
            .resolveRoutes("s", "g")
            .map((r) => r.to),
        ).toEqual(["m2", "m1"]);
      });
      it("a member that is now a client is routed to; one that is now a group is skipped", () => {
        const live = [
          ...recs.map((r) =>
            r.type === "group" ? { ...r, node_list: [...r.node_list, { node_name: "c" }, { node_name: "g2" }] } : r,
          ),
          ...records([node("c", { type: "client", ns: "x", adv: { name: "m1" } })]),
          { name: "g2", type: "group" as const, node_list: [] },
        ];
        expect(
          make(live)
            .resolveRoutes("s", "g")
            .map((r) => [r.to, r.hops?.length ?? r.reason]),
        ).toEqual([
          ["m2", "no_matching_gateway"],
          ["m1", 1],
          ["c", 2],
        ]);
      });
      // A group that names a namespace counts only members in it (docs/contract/records.md §1.4):
      // a tenant of another namespace registering a listed name that is free gets no route from
      // the group. Live realms: the importer refuses such members, but they can register later.
      describe("a group that names a namespace counts only its members in it", () => {
        const live = records([
          node("s", { ns: "team-b" }),
          node("kv-0", { ns: "team-b", gw: [[1, "ipv4://10.1.0.1:1"]] }),
          node("kv-1", { ns: "team-b", gw: [[1, "ipv4://10.1.0.2:1"]] }),
        ]);
        const group = (scope: { metadata?: { namespace_name: string }; any_namespace?: boolean }): HopwayRecord => ({
          name: "kv",
          type: "group",
          ...scope,
          node_list: ["kv-0", "kv-1", "kv-2", "kv-3"].map((node_name) => ({ node_name })),
        });
        const teamB = { metadata: { namespace_name: "team-b" } };
        const gw2: NodeSpec["gw"] = [[1, "ipv4://10.1.0.3:1"]];
        const cases: Array<
          [title: string, joiners: HopwayRecordInput[], scope: Parameters<typeof group>[0], to: string[]]
        > = [
          ["only the members that exist", [], teamB, ["kv-0", "kv-1"]],
          [
            "not a listed node of another namespace",
            [node("kv-2", { ns: "team-a", gw: gw2 })],
            teamB,
            ["kv-0", "kv-1"],
          ],
          ["not a listed node of no namespace", [node("kv-2", { gw: gw2 })], teamB, ["kv-0", "kv-1"]],
          [
            "not a listed client of another namespace",
            [node("kv-3", { type: "client", ns: "team-a", adv: { name: "kv-0" } })],
            teamB,
            ["kv-0", "kv-1"],
          ],
          [
            "a listed node of its namespace",
            [node("kv-2", { ns: "team-b", gw: gw2 })],
            teamB,
            ["kv-0", "kv-1", "kv-2"],
          ],
          [
            "a listed client of its namespace",
            [node("kv-3", { type: "client", ns: "team-b", adv: { name: "kv-0" } })],
            teamB,
            ["kv-0", "kv-1", "kv-3"],
          ],
          [
            "without a namespace: any namespace",
            [node("kv-2", { ns: "team-a", gw: gw2 })],
            {},
            ["kv-0", "kv-1", "kv-2"],
          ],
          [
            "any_namespace: any namespace",
            [node("kv-2", { ns: "team-a", gw: gw2 })],
            { any_namespace: true },
            ["kv-0", "kv-1", "kv-2"],
          ],
        ];
        for (const [title, joiners, scope, to] of cases) {
          it(title, () => {
            const routes = make([...live, ...records(joiners), group(scope)]).resolveRoutes("s", "kv");
            expect(routes.map((r) => r.to)).toEqual(to);
            expect(routes.every((r) => r.hops !== null)).toBe(true);
          });
        }
      });
      it("resolveRoute on a group answers group_endpoint", () => {
        expect(make(recs).resolveRoute("s", "g")).toMatchObject({ hops: null, reason: "group_endpoint" });
        expect(make(recs).resolveRoute("g", "s")).toMatchObject({ hops: null, reason: "group_endpoint" });
      });
      it("a route to oneself is same_node", () => {
        expect(make(recs).resolveRoute("s", "s")).toMatchObject({ hops: null, reason: "same_node" });
      });
      it("an unknown name is unknown_node (404)", () => {
        const r = make(recs);
        for (const f of [
          () => r.resolveRoute("nope", "s"),
          () => r.resolveRoute("s", "nope"),
          () => r.routeTable("nope"),
        ]) {
          try {
            f();
            expect.unreachable();
          } catch (e) {
            expect((e as EdgeError).code).toBe("unknown_node");
            expect((e as EdgeError).status).toBe(404);
          }
        }
      });
      it("a route table covers every other non-group record, with a detail where there is no route", () => {
        const table = make(recs).routeTable("s");
        expect(table.map((r) => r.to).sort()).toEqual(["m1", "m2"]);
        for (const r of table) if (r.hops === null) expect(r.detail).toBeTruthy();
      });
    });
  });
}
