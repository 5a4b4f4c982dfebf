import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  allowedIn,
  DEFAULT_BYTES_PER_NAMESPACE,
  DEFAULT_RECORDS_PER_NAMESPACE,
  DEFAULT_RECORDS_PER_REALM,
  limitRefusal,
  type RealmLimits,
  RealmLimitsSchema,
  type RecordPlacement,
} from "../../src/core/limits.ts";

/** Usage by record count only (every record 0 bytes), or with `bytes` per scope. */
const counts =
  (realm: number, perNs: Record<string, number>, bytes: Record<string, number> = {}) =>
  (ns: string | null) => ({
    records: ns === null ? realm : Object.hasOwn(perNs, ns) ? (perNs[ns] as number) : 0,
    bytes: bytes[ns ?? ""] ?? 0,
  });
const add = (to: string | null, at = "", bytes = 0): RecordPlacement => ({
  to,
  from: undefined,
  at,
  bytes,
  fromBytes: 0,
});
const move = (from: string | null, to: string | null, at = "", bytes = 0, fromBytes = 0): RecordPlacement => ({
  to,
  from,
  at,
  bytes,
  fromBytes,
});

describe("limitRefusal", () => {
  const cases: Array<{
    name: string;
    limits: RealmLimits;
    placements: RecordPlacement[];
    realm: number;
    perNs: Record<string, number>;
    refused: null | {
      namespace: string | null;
      what: "records" | "bytes";
      at: string;
      holds: number;
      adds: number;
      limit: number;
    };
  }> = [
    {
      name: "a new record in a namespace below its limit",
      limits: { records_per_namespace: 2 },
      placements: [add("a")],
      realm: 1,
      perNs: { a: 1 },
      refused: null,
    },
    {
      name: "a new record in a full namespace",
      limits: { records_per_namespace: 2 },
      placements: [add("a")],
      realm: 2,
      perNs: { a: 2 },
      refused: { namespace: "a", what: "records", at: "", holds: 2, adds: 1, limit: 2 },
    },
    {
      name: "an override replaces the default for its namespace only",
      limits: { records_per_namespace: 2, namespaces: { a: { records: 5 } } },
      placements: [add("a", "[0]."), add("b", "[1].")],
      realm: 4,
      perNs: { a: 2, b: 2 },
      refused: { namespace: "b", what: "records", at: "[1].", holds: 2, adds: 1, limit: 2 },
    },
    {
      name: "a replacement in place adds nothing, even over a lowered limit",
      limits: { records_per_namespace: 0, records_per_realm: 0 },
      placements: [move("a", "a")],
      realm: 9,
      perNs: { a: 9 },
      refused: null,
    },
    {
      name: "a move out of a full namespace and one into it in the same write",
      limits: { records_per_namespace: 2 },
      placements: [move("a", "b", "[0]."), move("b", "a", "[1]."), add("a", "[2].")],
      realm: 4,
      perNs: { a: 2, b: 2 },
      refused: { namespace: "a", what: "records", at: "[1].", holds: 2, adds: 1, limit: 2 },
    },
    {
      name: "records without a namespace count in the realm only",
      limits: { records_per_realm: 3, records_per_namespace: 0 },
      placements: [add(null, "[0]."), add(null, "[1].")],
      realm: 2,
      perNs: {},
      refused: { namespace: null, what: "records", at: "[0].", holds: 2, adds: 2, limit: 3 },
    },
    {
      name: "a move from no namespace into one counts in that namespace, not in the realm",
      limits: { records_per_realm: 1, records_per_namespace: 1 },
      placements: [move(null, "a")],
      realm: 1,
      perNs: {},
      refused: null,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = limitRefusal(c.limits, c.placements, counts(c.realm, c.perNs));
      expect(r).toEqual(c.refused);
    });
  }

  it("bytes: a record that grows past its namespace's bytes is refused; one that shrinks passes, even over a lowered limit", () => {
    const limits = { bytes_per_namespace: 1000, bytes_per_realm: 5000 };
    const held = counts(3, { a: 2 }, { a: 900, "": 2000 });
    expect(limitRefusal(limits, [move("a", "a", "", 200, 100)], held)).toBeNull();
    expect(limitRefusal(limits, [move("a", "a", "", 250, 100)], held)).toEqual({
      namespace: "a",
      what: "bytes",
      limit: 1000,
      holds: 900,
      adds: 150,
      at: "",
    });
    expect(limitRefusal(limits, [move("a", "a", "", 100, 200)], counts(3, { a: 2 }, { a: 5000, "": 9000 }))).toBeNull();
    // A new record counts its bytes in its namespace and in the realm.
    expect(limitRefusal(limits, [add("b", "[0].", 3100)], held)).toMatchObject({ namespace: "b", what: "bytes" });
    expect(limitRefusal({ bytes_per_realm: 5000 }, [add("b", "[0].", 3100)], held)).toMatchObject({
      namespace: null,
      what: "bytes",
      holds: 2000,
      adds: 3100,
    });
    // A per-namespace override replaces the default bytes, not its records.
    expect(allowedIn({ bytes_per_namespace: 10, namespaces: { a: { records: 3 } } }, "a")).toEqual({
      records: 3,
      bytes: 10,
    });
  });

  it("a namespace named after an Object member has the default limit, and `__proto__` is no key of the setting", () => {
    for (const ns of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      expect(allowedIn({ namespaces: {} }, ns), ns).toEqual({
        records: DEFAULT_RECORDS_PER_NAMESPACE,
        bytes: DEFAULT_BYTES_PER_NAMESPACE,
      });
      expect(
        limitRefusal({ records_per_namespace: 1, namespaces: {} }, [add(ns)], counts(1, { [ns]: 1 }))?.namespace,
      ).toBe(ns);
    }
    const parsed = RealmLimitsSchema.safeParse(JSON.parse('{"namespaces": {"__proto__": {"records": 5}}}'));
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(["namespaces", "__proto__"]);
  });

  it("defaults apply to what the admin left out", () => {
    expect(allowedIn({}, "a").records).toBe(DEFAULT_RECORDS_PER_NAMESPACE);
    expect(limitRefusal({}, [add("a")], counts(DEFAULT_RECORDS_PER_REALM, {}))?.namespace).toBeNull();
    expect(RealmLimitsSchema.safeParse({ records_per_namespace: 100_001 }).success).toBe(false);
  });

  it("refuses exactly the writes after which some count grows past its limit", () => {
    const ns = fc.constantFrom<string | null>("a", "b", "c", null);
    fc.assert(
      fc.property(
        fc.record({
          realmLimit: fc.integer({ min: 0, max: 12 }),
          nsLimit: fc.integer({ min: 0, max: 6 }),
          stored: fc.array(ns, { maxLength: 10 }),
          writes: fc.array(fc.record({ to: ns, existing: fc.boolean(), from: ns }), { maxLength: 8 }),
        }),
        ({ realmLimit, nsLimit, stored, writes }) => {
          const limits = { records_per_realm: realmLimit, records_per_namespace: nsLimit };
          const before = new Map<string | null, number>();
          for (const s of stored) before.set(s, (before.get(s) ?? 0) + 1);
          const count = (n: string | null) => ({
            records: n === null ? stored.length : (before.get(n) ?? 0),
            bytes: 0,
          });
          const placements = writes.map((w, i) => ({
            to: w.to,
            from: w.existing ? w.from : undefined,
            at: `[${i}].`,
            bytes: 0,
            fromBytes: 0,
          }));
          // The counts after the write, by brute force.
          const after = new Map(before);
          let realmAfter = stored.length;
          for (const p of placements) {
            if (p.from === undefined) realmAfter++;
            else after.set(p.from, (after.get(p.from) ?? 0) - 1);
            after.set(p.to, (after.get(p.to) ?? 0) + 1);
          }
          const grewPast = (n: string, limit: number) =>
            (after.get(n) ?? 0) > (before.get(n) ?? 0) && (after.get(n) ?? 0) > limit;
          const expectRefused =
            (realmAfter > stored.length && realmAfter > realmLimit) ||
            ["a", "b", "c"].some((n) => grewPast(n, nsLimit));
          expect(limitRefusal(limits, placements, count) !== null).toBe(expectRefused);
        },
      ),
    );
  });
});
