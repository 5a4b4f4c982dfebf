// The per-namespace bounds of docs/contract/routing.md §3.8: what one namespace's records may cost
// the routes of every other namespace. The attacks are the security review's: a chain of
// advertise_relay selectors (closures and searches growing as N², N³) and fat relays chained in
// front of many tiny targets (route tables inflated far past what an agent reads). Counts, sizes,
// routes and reasons only: no timings.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildRealm,
  type HopwayRecord,
  type HopwayRecordInput,
  parseRecords,
  RELAY_WORK_PER_NAMESPACE,
  type Route,
  resolveRoute,
  routeTable,
  TABLE_BYTES_PER_NAMESPACE,
} from "../../src/core/index.ts";
import { closureStatsForTest } from "../../src/core/realm.ts";

function parse(input: HopwayRecordInput[]): HopwayRecord[] {
  const parsed = parseRecords(input);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems.slice(0, 3)));
  return parsed.records;
}

/** An ordinary namespace: a relay, and two apps that reach each other through it. Loopback: nothing dials. */
function victim(): HopwayRecordInput[] {
  return [
    {
      name: "victim-relay",
      metadata: { namespace_name: "victim", kind: "relay" },
      gateway: [{ priority: 1, address: "ipv4://127.0.9.1:7001" }],
    },
    ...["victim-app", "victim-app2"].map((name, i) => ({
      name,
      metadata: { namespace_name: "victim" },
      gateway: [{ priority: 1, address: `ipv4://127.0.9.${i + 2}:80`, match: { metadata: { kind: "relay" } } }],
      advertise_relay: { name: "victim-relay" },
    })),
  ];
}

/**
 * n records of namespace "evil", each advertising the next. `smallFirst` names them so that the
 * smallest closures come first in name order, which lets the budget admit as many as it can.
 */
function chain(n: number, smallFirst = false, dialable = false): HopwayRecordInput[] {
  const name = (i: number) => (smallFirst ? `e-${String(n - 1 - i).padStart(6, "0")}` : `e-${i}`);
  return Array.from({ length: n }, (_, i) => ({
    name: name(i),
    metadata: { namespace_name: "evil" },
    ...(dialable ? { gateway: [{ priority: 1, address: `ipv4://127.7.${i >> 8}.${i & 255}:1` }] } : {}),
    ...(i + 1 < n ? { advertise_relay: { name: name(i + 1) } } : {}),
  }));
}

/** The review's F2: 7 relays of 16 addresses of 253 characters, chained, and n tiny targets behind them. */
function fat(n: number): HopwayRecordInput[] {
  const long = (i: number, j: number) =>
    `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.r${i}x${j}`.padEnd(253, "z").slice(0, 253);
  const out: HopwayRecordInput[] = [];
  for (let i = 1; i <= 7; i++) {
    out.push({
      name: `a${i}`,
      metadata: { namespace_name: "evil" },
      gateway: [
        {
          priority: 0,
          address: Array.from({ length: 16 }, (_, j) => `dns://${long(i, j)}:65535`),
          ...(i > 1 ? { match: { name: `a${i - 1}` } } : {}),
        },
      ],
      ...(i > 1 ? { advertise_relay: { name: `a${i - 1}` } } : {}),
    });
  }
  for (let t = 0; t < n; t++) {
    out.push({
      name: `t${t}`,
      metadata: { namespace_name: "evil" },
      gateway: [{ priority: 0, address: "dns://t.e:1", match: { name: "a7" } }],
      advertise_relay: { name: "a7" },
    });
  }
  return out;
}

const routesTo = (routes: Route[], prefix: string) => routes.filter((r) => r.to.startsWith(prefix));
const bytes = (routes: Route[]) => routes.reduce((n, r) => n + JSON.stringify(r).length, 0);

describe("relay work: one namespace's advertise_relay chain (docs/contract/routing.md §3.8)", () => {
  // The first closure in name order is the whole chain: at 3,000 records and more it alone costs
  // more than the bound, so the namespace is over from its first record on.
  it.each([3_000, 10_000])("a chain of %i records leaves the realm small and the victim's routes as they were", (n) => {
    const alone = routeTable(buildRealm(parse(victim())), "victim-relay");
    const realm = buildRealm(parse([...victim(), ...chain(n)]));
    const stats = closureStatsForTest(realm);
    expect(stats.members).toBeLessThan(10);
    expect(stats.limited).toBe(n - 1);
    const table = routeTable(realm, "victim-relay");
    expect(table.filter((r) => r.to.startsWith("victim-"))).toEqual(alone);
    const evil = routesTo(table, "e-");
    expect(evil.filter((r) => r.reason === "relay_limit")).toHaveLength(n - 1);
    // The last record advertises nothing: its route is computed as ever.
    expect(evil.find((r) => r.to === `e-${n - 1}`)?.reason).toBe("no_matching_gateway");
    expect(evil[0]!.detail).toContain("namespace 'evil' is past its relay work bound (4194304) at 'e-0'");
    // The routes from the victim's apps go on through the victim's relay.
    expect(resolveRoute(realm, "victim-app", "victim-app2").hops?.map((h) => h.node)).toEqual([
      "victim-relay",
      "victim-app2",
    ]);
  });

  it.each([
    { n: 500, relayWork: RELAY_WORK_PER_NAMESPACE },
    { n: 10_000, relayWork: RELAY_WORK_PER_NAMESPACE },
    { n: 300, relayWork: 20_000 },
  ])(
    "smallest closures first: the bound admits exactly what it pays for ($n records, $relayWork)",
    ({ n, relayWork }) => {
      const realm = buildRealm(parse([...victim(), ...chain(n, true)]), { relayWork });
      // Values first: each {name} examines one record; then closures of sizes 1, 2, 3, … cost k².
      let left = relayWork - (n - 1) - 2;
      let admitted = 0;
      while (admitted + 1 < n && (admitted + 1) ** 2 <= left) left -= (++admitted) ** 2;
      const stats = closureStatsForTest(realm);
      expect(stats.limited).toBe(n - 1 - admitted);
      expect(stats.members).toBe((admitted * (admitted + 1)) / 2 + 1);
      const table = routeTable(realm, "victim-relay");
      const limitedNames = table.filter((r) => r.reason === "relay_limit").map((r) => r.to);
      const admittedNames = routesTo(table, "e-")
        .filter((r) => r.reason !== "relay_limit")
        .map((r) => r.to);
      // Deterministic by name: every admitted record is named before every refused one.
      expect([...admittedNames].sort().at(-1)! < [...limitedNames].sort()[0]!).toBe(true);
    },
  );

  it("a chain whose records accept any dialer still gives direct routes, and no search per closure", () => {
    const realm = buildRealm(parse([...victim(), ...chain(3_000, false, true)]));
    const table = routeTable(realm, "victim-relay");
    expect(table.every((r) => r.hops !== null)).toBe(true);
    expect(routesTo(table, "e-").every((r) => r.hops!.length === 1)).toBe(true);
    // From inside the chain: direct dials still stand, anything needing a relay says why.
    const from = routeTable(realm, "e-5");
    expect(from.find((r) => r.to === "victim-relay")?.hops).toHaveLength(1);
    expect(from.find((r) => r.to === "victim-app")?.reason).toBe("relay_limit");
  });

  it("10,000 records advertising their whole namespace, each by a list of its own, cost one bounded namespace", () => {
    const evil: HopwayRecordInput[] = Array.from({ length: 10_000 }, (_, i) => ({
      name: `e-${i}`,
      metadata: { namespace_name: "evil" },
      gateway: [{ priority: 1, address: `ipv4://127.7.${i >> 8}.${i & 255}:1` }],
      advertise_relay: [{ metadata: { namespace_name: "evil" } }, { name: `e-${i}` }],
    }));
    const realm = buildRealm(parse([...victim(), ...evil]));
    // Each value examines 10,001 records: 419 fit in the bound, and one closure of 10,000 does not.
    expect(closureStatsForTest(realm).limited).toBe(10_000);
    const table = routeTable(realm, "victim-app");
    expect(table.filter((r) => r.to.startsWith("victim-")).every((r) => r.hops !== null)).toBe(true);
  });

  it("a legitimate realm: 10,000 apps and a relay service of 50 pods advertising itself stay unbounded", () => {
    const input: HopwayRecordInput[] = [];
    for (let p = 0; p < 50; p++) {
      input.push({
        name: `relay-${p}`,
        metadata: { namespace_name: "infra", kind: "relay" },
        gateway: [{ priority: 1, address: [`ipv4://127.1.0.${p + 1}:7001`, `ipv4://127.2.0.${p + 1}:7001`] }],
        advertise_relay: { metadata: { namespace_name: "infra", kind: "relay" } },
      });
    }
    for (let i = 0; i < 10_000; i++) {
      input.push({
        name: `app-${i}`,
        metadata: { namespace_name: `ns-${i % 20}`, kind: "app" },
        gateway: [
          { priority: 1, address: `ipv4://127.3.${i >> 8}.${i & 255}:8080`, match: { metadata: { kind: "relay" } } },
        ],
        advertise_relay: { metadata: { namespace_name: "infra", kind: "relay" } },
      });
    }
    const realm = buildRealm(parse(input));
    // The 50 pods share one closure with the apps: the service, each pod reaching itself again.
    expect(closureStatsForTest(realm)).toEqual({ closures: 1, members: 50, limited: 0 });
    for (const from of ["relay-0", "app-0"]) {
      const table = routeTable(realm, from);
      expect(table).toHaveLength(10_049);
      expect(table.every((r) => r.hops !== null)).toBe(true);
    }
  });
});

describe("relay work: single cases (docs/contract/routing.md §3.8)", () => {
  // Two relays that accept relays, and an app that only r1 may dial, reached through r1.
  const base: HopwayRecordInput[] = [
    ...["r1", "r2"].map((name, i) => ({
      name,
      metadata: { namespace_name: "x", kind: "relay" },
      gateway: [{ priority: 1, address: `ipv4://127.0.0.${i + 1}:1`, match: { metadata: { kind: "relay" } } }],
    })),
    {
      name: "app",
      metadata: { namespace_name: "x" },
      gateway: [{ priority: 1, address: "ipv4://127.0.0.3:1", match: { name: "r1" } }],
      advertise_relay: { name: "r1" },
    },
  ];
  it.each([
    {
      what: "below the bound nothing changes",
      records: base,
      relayWork: 2,
      from: "r2",
      to: "app",
      hops: ["r1", "app"],
    },
    {
      what: "a route that needs the relays of a record over the bound",
      records: base,
      relayWork: 0,
      from: "r2",
      to: "app",
      reason: "relay_limit",
      detail: "namespace 'x' is past its relay work bound (0) at 'app'",
    },
    {
      what: "a direct dial needs no relays: it stands",
      records: base,
      relayWork: 0,
      from: "r1",
      to: "app",
      hops: ["app"],
    },
    {
      what: "a client over the bound says relay_limit, not client_not_attached",
      records: [
        ...base,
        { name: "c", type: "client" as const, metadata: { namespace_name: "y" }, advertise_relay: { name: "r1" } },
      ],
      relayWork: 0,
      from: "c",
      to: "r1",
      reason: "relay_limit",
      detail: "namespace 'y' is past its relay work bound (0) at 'c'",
    },
    {
      what: "a closure that leads through a record whose advertise_relay was not followed",
      records: [
        ...base,
        // "x" pays 1 for app's value, then cannot pay 2 for r3's; "z" pays 1 for z1's.
        { name: "r3", metadata: { namespace_name: "x" }, advertise_relay: { metadata: { kind: "relay" } } },
        { name: "z1", metadata: { namespace_name: "z" }, advertise_relay: { name: "r3" } },
      ],
      relayWork: 2,
      from: "r1",
      to: "z1",
      reason: "relay_limit",
      detail: "the relays 'z1' advertises lead through 'r3', whose advertise_relay is not followed",
    },
  ])("$what", ({ records, relayWork, from, to, reason, detail, hops }) => {
    const realm = buildRealm(parse(records), { relayWork });
    const route = resolveRoute(realm, from, to);
    expect(route.reason).toBe(reason ?? undefined);
    if (detail !== undefined) expect(route.detail).toContain(detail);
    if (hops !== undefined) expect(route.hops?.map((h) => h.node)).toEqual(hops);
    // The table gives the same answer as the single look-up.
    expect(routeTable(realm, from).find((r) => r.to === to)).toEqual(route);
  });

  it("a relay service of 200 pods that advertises itself costs one closure, not 200", () => {
    const pods: HopwayRecordInput[] = Array.from({ length: 200 }, (_, p) => ({
      name: `relay-${p}`,
      metadata: { namespace_name: "infra", kind: "relay" },
      gateway: [{ priority: 1, address: `ipv4://127.1.0.${p}:1`, match: { metadata: { kind: "relay" } } }],
      advertise_relay: { metadata: { kind: "relay" } },
    }));
    // The 200 pods' value examines 200 records, their shared closure costs 200².
    const realm = buildRealm(parse(pods), { relayWork: 200 + 200 * 200 });
    expect(closureStatsForTest(realm)).toEqual({ closures: 1, members: 200, limited: 0 });
  });
});

describe("relay work under shared namespaces (docs/contract/records.md §2.3)", () => {
  // The victim's apps choose relays by kind alone, as the reference topologies do; another
  // tenant registers many nodes of that kind. Outside the victim's reach they are not its relays,
  // so they must not count against its bound either, whichever index prices the selector.
  const victimNs = (selector: Record<string, unknown>): HopwayRecordInput[] => [
    {
      name: "v-relay",
      metadata: { namespace_name: "victim", kind: "relay", labels: { tier: "edge" } },
      gateway: [{ priority: 1, address: "ipv4://127.0.9.1:1", match: { metadata: { namespace_name: "victim" } } }],
    },
    // More apps than the bound below: a price by the victim's whole namespace would not fit.
    ...Array.from({ length: 60 }, (_, i) => ({
      name: `v-app${i}`,
      metadata: { namespace_name: "victim" },
      gateway: [{ priority: 1, address: `ipv4://127.0.10.${i}:1`, match: { metadata: { kind: "relay" } } }],
      advertise_relay: selector,
    })),
  ];
  const decoys = (n: number): HopwayRecordInput[] =>
    Array.from({ length: n }, (_, i) => ({
      name: `d-${i}`,
      metadata: { namespace_name: "evil", kind: "relay", labels: { tier: "edge" } },
      gateway: [{ priority: 0, address: `ipv4://127.8.${i >> 8}.${i & 255}:1` }],
    }));

  it.each([
    { by: "kind", selector: { metadata: { kind: "relay" } } },
    { by: "label", selector: { metadata: { labels: { tier: "edge" } } } },
    { by: "kind, with a field no index holds", selector: { metadata: { kind: "relay", group: "g" } } },
  ])("another tenant's nodes that match the victim's selector ($by) cost it nothing", ({ selector }) => {
    const shared = new Set<string>();
    const bounds = { relayWork: 50 };
    const alone = buildRealm(parse(victimNs(selector)), bounds, shared);
    expect(closureStatsForTest(alone).limited).toBe(0);
    const realm = buildRealm(parse([...victimNs(selector), ...decoys(200)]), bounds, shared);
    expect(closureStatsForTest(realm).limited).toBe(0);
    expect(routeTable(realm, "v-app1").filter((r) => r.to.startsWith("v-"))).toEqual(routeTable(alone, "v-app1"));
    // Without the setting the decoys are in reach (they would be its relays), and they are paid for.
    const open = buildRealm(parse([...victimNs(selector), ...decoys(200)]), bounds);
    expect(closureStatsForTest(open).limited).toBeGreaterThan(0);
  });

  it("at the default bound: 10,000 decoys (a namespace's default record limit) limit none of a 10,000-record namespace", () => {
    // 420 teams, each app choosing its team's relay by kind and a field no index holds, so the
    // kind index prices every value: 420 values of 420 relays fit the bound, of 10,420 would not.
    const teams = 420;
    const victim: HopwayRecordInput[] = [];
    for (let t = 0; t < teams; t++) {
      victim.push({
        name: `v-relay-${t}`,
        metadata: { namespace_name: "victim", kind: "relay", group: `team-${t}` },
        gateway: [{ priority: 1, address: `ipv4://127.1.${t >> 8}.${t & 255}:1` }],
      });
    }
    for (let i = 0; i < 10_000 - teams; i++) {
      victim.push({
        name: `v-app-${i}`,
        metadata: { namespace_name: "victim" },
        gateway: [{ priority: 1, address: `ipv4://127.2.${i >> 8}.${i & 255}:1` }],
        advertise_relay: { metadata: { kind: "relay", group: `team-${i % teams}` } },
      });
    }
    const shared = new Set<string>();
    expect(closureStatsForTest(buildRealm(parse(victim), {}, shared)).limited).toBe(0);
    expect(closureStatsForTest(buildRealm(parse([...victim, ...decoys(10_000)]), {}, shared)).limited).toBe(0);
  });
});

describe("table bytes: fat relays in front of tiny targets (docs/contract/routing.md §3.8)", () => {
  it("at 10,000 records the namespace's routes in a table stay within the bound, the victim's untouched", () => {
    const n = 9_993;
    const realm = buildRealm(parse([...victim(), ...fat(n)]));
    const table = routeTable(realm, "victim-relay");
    const evil = table.filter((r) => !r.to.startsWith("victim-"));
    const kept = evil.filter((r) => r.hops !== null);
    expect(bytes(kept)).toBeLessThanOrEqual(TABLE_BYTES_PER_NAMESPACE);
    // A route of 8 hops is ~30 KB: only some hundreds fit.
    expect(kept.length).toBeGreaterThan(400);
    expect(kept.length).toBeLessThan(700);
    expect(evil.filter((r) => r.reason === "table_limit")).toHaveLength(n + 7 - kept.length);
    expect(evil.find((r) => r.reason === "table_limit")?.detail).toContain(
      `routes to namespace 'evil' take more than ${TABLE_BYTES_PER_NAMESPACE} bytes of this table`,
    );
    // What fits is the first by name; the table keeps record order.
    const keptNames = kept.map((r) => r.to).sort();
    const cut = evil
      .filter((r) => r.reason === "table_limit")
      .map((r) => r.to)
      .sort();
    expect(keptNames.at(-1)! < cut[0]!).toBe(true);
    expect(table.map((r) => r.to)).toEqual(realm.records.map((r) => r.name).filter((x) => x !== "victim-relay"));
    expect(table.filter((r) => r.to.startsWith("victim-")).every((r) => r.hops !== null)).toBe(true);
    expect(bytes(table)).toBeLessThan(TABLE_BYTES_PER_NAMESPACE + 2 * 1024 * 1024);
  });
});

// ---- properties: a bound only ever takes routes away, and never depends on record order ----------

const NS = ["a", "b", "c"];
const topologyArb = fc.integer({ min: 2, max: 12 }).chain((n) => {
  const names = Array.from({ length: n }, (_, i) => `n${i}`);
  const selector = fc.oneof(
    fc.constantFrom(...names).map((name) => ({ name })),
    fc.constantFrom(...NS).map((ns) => ({ metadata: { namespace_name: ns } })),
    fc.constant({ metadata: { kind: "relay" } }),
  );
  const record = (name: string, i: number) =>
    fc
      .record({
        client: fc.boolean(),
        ns: fc.constantFrom(...NS),
        kind: fc.constantFrom("app", "relay"),
        match: fc.option(selector),
        addresses: fc.integer({ min: 1, max: 3 }),
        adv: fc.array(selector, { maxLength: 2 }),
      })
      .map(
        (s): HopwayRecordInput => ({
          name,
          type: s.client && i > 0 ? "client" : "node",
          metadata: { namespace_name: s.ns, kind: s.kind },
          gateway: [
            {
              priority: i % 3,
              address: Array.from({ length: s.addresses }, (_, k) => `ipv4://127.0.${i}.${k + 1}:1`),
              ...(s.match !== null ? { match: s.match } : {}),
            },
          ],
          ...(s.adv.length > 0 ? { advertise_relay: s.adv } : {}),
        }),
      );
  return fc.tuple(...names.map(record));
});

describe("bounds: properties", () => {
  it("every route is the unbounded one or a bound's reason; order does not matter; bytes hold", () => {
    fc.assert(
      fc.property(
        topologyArb,
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 0, max: 1_500 }),
        fc.infiniteStream(fc.double({ min: 0, max: 1, noNaN: true })),
        (input, relayWork, tableBytes, noise) => {
          const records = parse(input);
          const shuffled = [...records].sort(() => noise.next().value - 0.5);
          const free = buildRealm(records);
          const bounded = buildRealm(records, { relayWork, tableBytes });
          const reordered = buildRealm(shuffled, { relayWork, tableBytes });
          for (const s of records) {
            const ref = routeTable(free, s.name);
            const got = routeTable(bounded, s.name);
            expect(got.map((r) => r.to)).toEqual(ref.map((r) => r.to));
            for (let k = 0; k < got.length; k++) {
              const r = got[k]!;
              if (r.reason === "relay_limit" || r.reason === "table_limit") continue;
              expect(r).toEqual(ref[k]);
              // Outside the table bound, the single look-up agrees with the table.
              expect(resolveRoute(bounded, s.name, r.to)).toEqual(r);
            }
            const byTo = new Map(routeTable(reordered, s.name).map((r) => [r.to, r]));
            for (const r of got) expect(byTo.get(r.to)).toEqual(r);
            for (const ns of NS) {
              const kept = got.filter(
                (r) => r.hops !== null && records.find((x) => x.name === r.to)?.metadata?.namespace_name === ns,
              );
              expect(bytes(kept)).toBeLessThanOrEqual(tableBytes);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
