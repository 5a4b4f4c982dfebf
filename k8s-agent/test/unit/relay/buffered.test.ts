// Which tunnels and links the relay resets when together they hold more than
// limits.max_buffered_bytes: the largest holder first, a tenant counted as one holder.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { chooseShed, type Holding, MAX_SHED_PER_CHECK } from "../../../src/relay/buffered.ts";

type H = Holding & { id: string };
const h = (id: string, tenant: string | undefined, bytes: number): H => ({ id, tenant, bytes });

describe("chooseShed", () => {
  const cases: Array<{ name: string; holdings: H[]; limit: number; target: number; shed: string[] }> = [
    {
      name: "at or under the limit: nothing",
      holdings: [h("a", "t1", 50), h("b", undefined, 50)],
      limit: 100,
      target: 75,
      shed: [],
    },
    {
      name: "over it: the largest holding of no tenant first, down to the target",
      holdings: [h("a", undefined, 10), h("b", undefined, 60), h("c", undefined, 40)],
      limit: 100,
      target: 75,
      shed: ["b"],
    },
    {
      name: "a tenant's many small tunnels are one holder: it goes before a larger single tunnel",
      holdings: [h("big", undefined, 50), h("t1", "tenant-a", 20), h("t2", "tenant-a", 20), h("t3", "tenant-a", 20)],
      limit: 100,
      target: 75,
      // The tenant holds 60 against 50: one of its tunnels goes; then the single tunnel is the largest holder.
      shed: ["t1", "big"],
    },
    {
      name: "a tenant's largest holding first",
      holdings: [h("s", "tenant-a", 10), h("l", "tenant-a", 70), h("m", "tenant-a", 30)],
      limit: 100,
      target: 75,
      shed: ["l"],
    },
    {
      name: "once a holder shrank below another, the other goes next",
      holdings: [h("a1", "tenant-a", 40), h("a2", "tenant-a", 30), h("b1", "tenant-b", 35), h("b2", "tenant-b", 5)],
      limit: 100,
      target: 40,
      // a holds 70, b 40; a's 40 goes (a: 30), then b (40) is larger: its 35; total 35 ≤ 40.
      shed: ["a1", "b1"],
    },
    {
      name: "holdings of nothing are never shed",
      holdings: [h("z", undefined, 0), h("a", undefined, 120)],
      limit: 100,
      target: 0,
      shed: ["a"],
    },
    {
      name: "links and tunnels of one tenant together",
      holdings: [h("link", "tenant-a", 40), h("tun", "tenant-a", 30), h("other", "tenant-b", 50)],
      limit: 100,
      target: 80,
      shed: ["link"],
    },
  ];
  it.each(cases)("$name", ({ holdings, limit, target, shed }) => {
    expect(chooseShed(holdings, limit, target).map((x) => x.id)).toEqual(shed);
  });

  const holdingArb = fc.record({
    id: fc.string(),
    tenant: fc.option(fc.constantFrom("tenant-a", "tenant-b", "tenant-c"), { nil: undefined }),
    bytes: fc.nat({ max: 1_000_000 }),
  });

  it("what is left is at most the target, or nothing is left to shed; nothing is shed twice", () => {
    fc.assert(
      fc.property(fc.array(holdingArb, { maxLength: 200 }), fc.nat({ max: 20_000_000 }), (holdings, limit) => {
        const target = Math.floor(limit * 0.75);
        const shed = chooseShed(holdings, limit, target);
        const total = holdings.reduce((n, x) => n + x.bytes, 0);
        if (total <= limit) return shed.length === 0;
        const left = total - shed.reduce((n, x) => n + x.bytes, 0);
        const unshedNonEmpty = holdings.filter((x) => x.bytes > 0 && !shed.includes(x)).length;
        return (
          new Set(shed).size === shed.length &&
          shed.every((x) => x.bytes > 0) &&
          (left <= target || unshedNonEmpty === 0 || shed.length === MAX_SHED_PER_CHECK)
        );
      }),
    );
  });

  it("each shed comes from the holder that held the most at that moment", () => {
    fc.assert(
      fc.property(fc.array(holdingArb, { maxLength: 100 }), (holdings) => {
        const shed = chooseShed(holdings, 0, 0);
        const held = new Map<unknown, number>();
        const keyOf = (x: (typeof holdings)[number]) => x.tenant ?? x;
        for (const x of holdings) held.set(keyOf(x), (held.get(keyOf(x)) ?? 0) + x.bytes);
        for (const x of shed) {
          const most = Math.max(...held.values());
          if (held.get(keyOf(x)) !== most) return false;
          held.set(keyOf(x), (held.get(keyOf(x)) ?? 0) - x.bytes);
        }
        return true;
      }),
    );
  });
});
