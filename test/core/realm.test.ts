// What the realm's indexes cost, as opposed to what they answer (resolver.test.ts and the property
// tests check the answers). A tenant controls its records' gateway `match` selectors; each name a
// selector matches makes its node a dialer class of its own, so the memo of "which gateway does
// this dialer use for that target" must not grow as targets × dialer classes.
import { describe, expect, it } from "vitest";
import { buildRealm, type HopwayRecord, referenceResolver, routeTable } from "../../src/core/index.ts";
import { dialMemoEntriesForTest } from "../../src/core/realm.ts";

/** Loopback addresses only: route computation, nothing dials them. */
function realmWithNamedMatches(victims: number, attackers: number): HopwayRecord[] {
  const records: HopwayRecord[] = [
    {
      type: "node",
      name: "relay-v",
      metadata: { namespace_name: "v", kind: "relay" },
      gateway: [{ priority: 1, address: "ipv4://127.0.0.1:1234" }],
    },
  ];
  for (let i = 0; i < victims; i++) {
    records.push({
      type: "node",
      name: `v-${i}`,
      metadata: { namespace_name: "v" },
      gateway: [{ priority: 1, address: `ipv4://127.0.1.${i % 250}:80`, match: { metadata: { namespace_name: "v" } } }],
      advertise_relay: { name: "relay-v" },
    });
  }
  // Each attacker record's four gateways name four records, so every named record is a dialer
  // class of its own, and every attacker record a target class.
  for (let i = 0; i < attackers; i++) {
    records.push({
      type: "node",
      name: `b-${i}`,
      metadata: { namespace_name: "b" },
      gateway: [0, 1, 2, 3].map((k) => ({
        priority: k + 1,
        address: `ipv4://127.0.2.${k}:80`,
        match: { name: k % 2 === 0 ? `v-${(i * 4 + k) % victims}` : `b-${(i * 4 + k) % attackers}` },
      })),
    });
  }
  return records;
}

describe("the dialer-by-target memo", () => {
  it("holds what route tables ask for, not every target class times every dialer class", () => {
    const records = realmWithNamedMatches(300, 2_000);
    const realm = buildRealm(records);
    const reference = referenceResolver(records);
    for (const from of ["v-0", "relay-v", "b-0", "v-7"]) {
      // The same table as the reference resolver's (which has no memo): the sparse path is right.
      expect(routeTable(realm, from), from).toEqual(reference.routeTable(from));
    }
    // 2,301 target classes × over 2,000 dialer classes would be about 5 million entries dense.
    const { dense, sparse } = dialMemoEntriesForTest(realm);
    expect(dense).toBe(0);
    expect(sparse).toBeGreaterThan(0);
    expect(sparse).toBeLessThan(100_000);
  });

  it("stays dense where dialer classes are few, with the same answers", () => {
    const records = realmWithNamedMatches(50, 0);
    const realm = buildRealm(records);
    expect(routeTable(realm, "v-0")).toEqual(referenceResolver(records).routeTable("v-0"));
    // Few dialer classes: one byte per class for each target class asked about, no map.
    const { dense, sparse } = dialMemoEntriesForTest(realm);
    expect(sparse).toBe(0);
    expect(dense).toBeGreaterThan(0);
    expect(dense).toBeLessThanOrEqual(51 * 64);
  });
});
