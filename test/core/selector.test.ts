import { describe, expect, it } from "vitest";
import {
  buildRealm,
  canDial,
  chooseGateway,
  type HopwayRecord,
  matchesSelector,
  rendezvousWeight,
  type Selector,
  sameHost,
} from "../../src/core/index.ts";
import { node, records } from "./conformance.ts";

const peer = records([
  {
    name: "peer",
    host: { hostname: "h1", pid: 7 },
    metadata: {
      namespace_name: "ns1",
      api_version: "v1",
      kind: "relay",
      group: "g",
      labels: { "area.region": "CN", tier: "edge", "example.com/role": "any" },
    },
  },
])[0]!;

describe("matchesSelector", () => {
  const cases: Array<[string, Selector | undefined, boolean]> = [
    ["omitted selector", undefined, true],
    ["empty selector", {}, true],
    ["empty metadata and labels", { metadata: { labels: {} } }, true],
    ["name", { name: "peer" }, true],
    ["other name", { name: "other" }, false],
    ["hostname", { host: { hostname: "h1" } }, true],
    ["hostname and pid", { host: { hostname: "h1", pid: 7 } }, true],
    ["wrong pid", { host: { pid: 8 } }, false],
    ["namespace", { metadata: { namespace_name: "ns1" } }, true],
    ["other namespace", { metadata: { namespace_name: "ns2" } }, false],
    ["api_version, kind and group", { metadata: { api_version: "v1", kind: "relay", group: "g" } }, true],
    ["wrong group", { metadata: { group: "h" } }, false],
    ["labels subset", { metadata: { labels: { "area.region": "CN" } } }, true],
    ["all labels", { metadata: { labels: { "area.region": "CN", tier: "edge", "example.com/role": "any" } } }, true],
    ["label value differs", { metadata: { labels: { "area.region": "US" } } }, false],
    ['"any" is literal: does not match CN', { metadata: { labels: { "area.region": "any" } } }, false],
    ['"any" is literal: matches the value any', { metadata: { labels: { "example.com/role": "any" } } }, true],
    ["label missing in peer", { metadata: { labels: { zone: "a" } } }, false],
    ["label key on Object.prototype", { metadata: { labels: { constructor: "x" } } }, false],
    ["every field must hold", { name: "peer", metadata: { kind: "app" } }, false],
  ];
  for (const [title, selector, want] of cases) {
    it(`${title} → ${want}`, () => expect(matchesSelector(selector, peer)).toBe(want));
  }
  it("a peer without metadata matches only selectors that ask for none", () => {
    const bare = records([{ name: "bare" }])[0]!;
    expect(matchesSelector({}, bare)).toBe(true);
    expect(matchesSelector({ metadata: { kind: "relay" } }, bare)).toBe(false);
    expect(matchesSelector({ host: { hostname: "h1" } }, bare)).toBe(false);
  });
});

describe("dial rules", () => {
  const [t, same, otherNs, client, group] = records([
    node("t", {
      ns: "a",
      hostname: "h",
      gw: [
        [0, "unix:///s"],
        [1, "ipv4://10.0.0.1:1", { metadata: { kind: "app" } }],
      ],
    }),
    node("same", { ns: "a", hostname: "h", kind: "app" }),
    node("other", { ns: "b", hostname: "h", kind: "app" }),
    node("c", { type: "client", ns: "a", kind: "app" }),
    { name: "grp", type: "group", node_list: [{ node_name: "t" }] },
  ]) as [HopwayRecord, HopwayRecord, HopwayRecord, HopwayRecord, HopwayRecord];
  it("same host needs the namespace and the hostname", () => {
    expect(sameHost(t, same)).toBe(true);
    expect(sameHost(t, otherNs)).toBe(false);
    expect(sameHost(t, client)).toBe(false);
  });
  it("unix from the same host, TCP otherwise; clients, groups and oneself never", () => {
    expect(chooseGateway(same, t)?.address).toBe("unix:///s");
    expect(chooseGateway(otherNs, t)?.address).toBe("ipv4://10.0.0.1:1");
    expect(chooseGateway(client, t)).toBeNull();
    expect(chooseGateway(t, client)).toBeNull();
    expect(chooseGateway(group, t)).toBeNull();
    expect(chooseGateway(t, t)).toBeNull();
    const realm = buildRealm([t, same, otherNs, client, group]);
    expect(canDial(realm, "same", "t")).toBe(true);
    expect(canDial(realm, "other", "t")).toBe(true);
    expect(canDial(realm, "c", "t")).toBe(false);
    expect(canDial(realm, "t", "c")).toBe(false);
    expect(canDial(realm, "t", "t")).toBe(false);
  });
});

describe("rendezvousWeight", () => {
  it("is deterministic, 53-bit, and order-sensitive", () => {
    const w = rendezvousWeight("app-1", "relay-0");
    expect(w).toBe(rendezvousWeight("app-1", "relay-0"));
    expect(Number.isSafeInteger(w) && w >= 0).toBe(true);
    expect(w).not.toBe(rendezvousWeight("relay-0", "app-1"));
  });
  it("pins known values, so workerd, Node and any port agree bit for bit", () => {
    // Changing these moves routes in every running realm: only ever on purpose.
    expect([rendezvousWeight("a", "b"), rendezvousWeight("app2", "relaysvr3"), rendezvousWeight("", "")]).toEqual(
      PINNED,
    );
  });
  it("spreads sources evenly over the pods of a service", () => {
    const pods = ["relay-0", "relay-1", "relay-2", "relay-3", "relay-4"];
    const counts = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const src = `ns-${i % 37}-app-${i}`;
      let best = pods[0]!;
      for (const p of pods) if (rendezvousWeight(src, p) > rendezvousWeight(src, best)) best = p;
      counts.set(best, (counts.get(best) ?? 0) + 1);
    }
    // Expected 1000 each; binomial σ ≈ 28, so ±150 is over 5σ.
    for (const p of pods) expect(Math.abs((counts.get(p) ?? 0) - 1000)).toBeLessThan(150);
  });
});

const PINNED = [5364932591900565, 7846332812643186, 7364981690386926];
