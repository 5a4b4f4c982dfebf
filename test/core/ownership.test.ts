import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeKeyHeader,
  decodeKeyLabel,
  encodeKeyLabel,
  type GroupMember,
  keyHost,
  membershipEpoch,
  OwnershipIndex,
  ownerOf,
  parseKeyHost,
  rendezvousWeight,
} from "../../src/core/index.ts";

const SEED = 20261126;
const pod = (i: number, over: Partial<GroupMember> = {}): GroupMember => ({
  name: `kv-${i}`,
  draining: false,
  holds_state: true,
  ...over,
});
const pods = (n: number) => Array.from({ length: n }, (_, i) => pod(i));
const nameArb = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/);
const keyArb = fc.string({ minLength: 1, maxLength: 40, unit: "grapheme" });
const membersArb = fc
  .uniqueArray(nameArb, { minLength: 1, maxLength: 12 })
  .map((names) => names.map((name) => ({ name, draining: false, holds_state: true })));

describe("ownership: the rule", () => {
  it("owner is the active member with the highest rendezvous weight (the core's hash)", () => {
    fc.assert(
      fc.property(membersArb, keyArb, (members, key) => {
        const best = [...members].sort(
          (a, b) => rendezvousWeight(key, b.name) - rendezvousWeight(key, a.name) || (a.name < b.name ? -1 : 1),
        )[0];
        expect(ownerOf(members, key)).toEqual({ key, owner: best?.name, previous: null });
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("is deterministic and independent of member order and duplicates", () => {
    fc.assert(
      fc.property(membersArb, fc.array(keyArb, { minLength: 1, maxLength: 20 }), (members, keys) => {
        const a = new OwnershipIndex(members);
        const b = new OwnershipIndex([...members].reverse().concat(members.slice(0, 1)));
        expect(b.epoch).toBe(a.epoch);
        for (const k of keys) expect(b.lookup(k)).toEqual(a.lookup(k));
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("join: only keys moving TO the new member move, and they name the old owner as previous", () => {
    fc.assert(
      fc.property(membersArb, nameArb, fc.array(keyArb, { minLength: 50, maxLength: 200 }), (members, joiner, keys) => {
        fc.pre(!members.some((m) => m.name === joiner));
        const before = new OwnershipIndex(members);
        // The joiner has not pulled its keys yet: it reports holds_state=false.
        const during = new OwnershipIndex([...members, { name: joiner, draining: false, holds_state: false }]);
        const after = new OwnershipIndex([...members, { name: joiner, draining: false, holds_state: true }]);
        for (const k of keys) {
          const b = before.lookup(k);
          const d = during.lookup(k);
          const a = after.lookup(k);
          expect(a.owner).toBe(d.owner);
          if (d.owner !== b.owner) {
            expect(d.owner).toBe(joiner);
            expect(d.previous).toBe(b.owner);
          } else {
            expect(d.previous).toBeNull();
          }
          // Settled once the joiner reports that it holds its state.
          expect(a.previous).toBeNull();
        }
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("drain: only the drained member's keys move, previous names it until it reports no state", () => {
    fc.assert(
      fc.property(
        membersArb.filter((m) => m.length >= 2),
        fc.nat(),
        fc.array(keyArb, { minLength: 50, maxLength: 200 }),
        (members, pick, keys) => {
          const victim = members[pick % members.length]!.name;
          const before = new OwnershipIndex(members);
          const drain = (holds: boolean) =>
            new OwnershipIndex(
              members.map((m) => (m.name === victim ? { ...m, draining: true, holds_state: holds } : m)),
            );
          const during = drain(true);
          const done = drain(false);
          for (const k of keys) {
            const b = before.lookup(k);
            const d = during.lookup(k);
            if (b.owner === victim) {
              expect(d.owner).not.toBe(victim);
              expect(d.previous).toBe(victim);
            } else {
              expect(d.owner).toBe(b.owner);
              expect(d.previous).toBeNull();
            }
            expect(done.lookup(k)).toEqual({ key: k, owner: d.owner, previous: null });
          }
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("no active member: owner null; previous still names a holder so nothing is stranded", () => {
    const all = pods(3).map((m) => ({ ...m, draining: true }));
    const r = ownerOf(all, "k");
    expect(r.owner).toBeNull();
    expect(r.previous).toMatch(/^kv-[012]$/);
    expect(ownerOf([], "k")).toEqual({ key: "k", owner: null, previous: null });
  });

  it("no report yet (holds_state null) holds nothing: a new pod is never named as previous", () => {
    const members = [pod(0), pod(1), pod(2, { holds_state: null })];
    const idx = new OwnershipIndex(members);
    const before = new OwnershipIndex([pod(0), pod(1)]);
    let moved = 0;
    for (let i = 0; i < 3000; i++) {
      const r = idx.lookup(`k${i}`);
      expect(r.previous).not.toBe("kv-2");
      if (r.owner === "kv-2") {
        moved++;
        expect(r.previous).toBe(before.lookup(`k${i}`).owner);
      } else expect(r.previous).toBeNull();
    }
    expect(moved).toBeGreaterThan(900);
    // A group without any reports never names a previous owner.
    const plain = new OwnershipIndex([0, 1, 2].map((i) => pod(i, { holds_state: null })));
    for (let i = 0; i < 1000; i++) expect(plain.lookup(`k${i}`).previous).toBeNull();
  });

  it("the epoch changes with every input that changes an answer", () => {
    const base = membershipEpoch(pods(3));
    expect(membershipEpoch(pods(3))).toBe(base);
    expect(membershipEpoch(pods(4))).not.toBe(base);
    expect(membershipEpoch([pod(0), pod(1), pod(2, { draining: true })])).not.toBe(base);
    expect(membershipEpoch([pod(0), pod(1), pod(2, { holds_state: false })])).not.toBe(base);
    expect(membershipEpoch([pod(0), pod(1), pod(2, { holds_state: null })])).not.toBe(base);
  });
});

describe("ownership: distribution over 100,000 keys", () => {
  const KEYS = 100_000;
  // Realistic keys: what a session or user store uses.
  const keys = Array.from({ length: KEYS }, (_, i) =>
    i % 2 === 0 ? `user:${i}` : `session-${(i * 2654435761) >>> 0}`,
  );

  for (const n of [3, 5, 10]) {
    it(`each of ${n} members owns 1/${n} within ±5 % (relative)`, () => {
      const idx = new OwnershipIndex(pods(n));
      const counts = new Map<string, number>();
      for (const k of keys) {
        const o = idx.lookup(k).owner!;
        counts.set(o, (counts.get(o) ?? 0) + 1);
      }
      const ideal = KEYS / n;
      const worst = Math.max(...[...counts.values()].map((c) => Math.abs(c / ideal - 1)));
      console.log(`n=${n}: shares ${[...counts.values()].join(", ")}; worst deviation ${(worst * 100).toFixed(2)} %`);
      expect(counts.size).toBe(n);
      expect(worst).toBeLessThan(0.05);
    });
  }

  it("3 → 5 moves about 2/5 of the keys, all to the new members; draining them moves exactly those back", () => {
    const three = new OwnershipIndex(pods(3));
    const five = new OwnershipIndex(pods(5));
    const drained = new OwnershipIndex([...pods(3), pod(3, { draining: true }), pod(4, { draining: true })]);
    let moved = 0;
    const wrong: string[] = [];
    for (const k of keys) {
      const a = three.lookup(k).owner;
      const b = five.lookup(k).owner;
      if (a !== b) {
        moved++;
        if (b !== "kv-3" && b !== "kv-4") wrong.push(`${k} moved to ${b}`);
      }
      const c = drained.lookup(k);
      if (c.owner !== a || c.previous !== (a === b ? null : b)) wrong.push(`${k} drained: ${JSON.stringify(c)}`);
    }
    expect(wrong.slice(0, 5)).toEqual([]);
    console.log(`3 → 5: ${moved} of ${KEYS} keys moved (${((100 * moved) / KEYS).toFixed(2)} %, ideal 40 %)`);
    expect(Math.abs(moved / KEYS - 0.4)).toBeLessThan(0.02);
  });
});

describe("ownership: keys in a CONNECT authority", () => {
  it("plain labels stay readable; everything else round-trips through x--base32hex", () => {
    expect(encodeKeyLabel("user42")).toBe("user42");
    expect(keyHost("kv", "user42")).toBe("user42.key.kv");
    expect(encodeKeyLabel("a--b")).toMatch(/^x--[0-9a-v]+$/);
    // Python: base64.b32hexencode(b"User/42").lower().rstrip("=") == "alpmashf6gp0"
    expect(encodeKeyLabel("User/42")).toBe("x--alpmashf6gp0");
    expect(decodeKeyLabel("x--alpmashf6gp0")).toBe("User/42");
    expect(encodeKeyLabel("x".repeat(63))).toBe("x".repeat(63));
    expect(encodeKeyLabel("x".repeat(64))).toBeUndefined(); // 64 bytes: too long for a label either way
    expect(decodeKeyLabel(encodeKeyLabel("Z".repeat(37)) ?? "")).toBe("Z".repeat(37));
    expect(encodeKeyLabel("é".repeat(19))).toBeUndefined(); // 38 bytes: header form
    expect(parseKeyHost("user42.key.kv.stateful")).toEqual({ key: "user42", group: "kv.stateful" });
    expect(parseKeyHost("kv-0")).toBeUndefined();
    expect(parseKeyHost("a.b.c")).toBeUndefined();
    expect(parseKeyHost("x--zz.key.kv")).toHaveProperty("error");
    expect(parseKeyHost("a--b.key.kv")).toHaveProperty("error");
    expect(parseKeyHost("user42.key.")).toHaveProperty("error");
    expect(decodeKeyHeader("User%2F42%20%C3%A9")).toBe("User/42 é");
    expect(decodeKeyHeader("%E0%A4%A")).toBeUndefined();
  });

  it("every key that fits a label round-trips, with exactly one spelling", () => {
    fc.assert(
      fc.property(keyArb, (key) => {
        const label = encodeKeyLabel(key);
        if (label === undefined) {
          expect(new TextEncoder().encode(key).length).toBeGreaterThan(37);
          return;
        }
        expect(label).toMatch(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);
        expect(decodeKeyLabel(label)).toBe(key);
        expect(parseKeyHost(`${label}.key.grp`)).toEqual({ key, group: "grp" });
        expect(decodeKeyHeader(encodeURIComponent(key))).toBe(key);
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });
});
