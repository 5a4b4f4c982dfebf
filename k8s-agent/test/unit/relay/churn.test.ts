// The relay's per-connection collections behave as the Map and Set they replace (src/relay/churn.ts).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IndexedSet, KeyMap } from "../../../src/relay/churn.ts";

type Op = { kind: "set" | "delete"; key: number; value: number };
const ops = fc.array(
  fc.record({
    kind: fc.constantFrom<"set" | "delete">("set", "delete"),
    key: fc.integer({ min: 0, max: 40 }),
    value: fc.nat(),
  }),
  { maxLength: 300 },
);

describe("KeyMap", () => {
  it("agrees with a Map under any sequence of sets and deletes", () => {
    fc.assert(
      fc.property(ops, fc.constantFrom(1, 2, 65_536), (seq: Op[], stride) => {
        const m = new KeyMap<number, { v: number }>();
        const model = new Map<number, { v: number }>();
        for (const op of seq) {
          // Strides past the dense range put the keys in V8's dictionary elements, as stream ids do.
          const k = op.key * stride;
          if (op.kind === "set") {
            const v = { v: op.value };
            m.set(k, v);
            model.set(k, v);
          } else expect(m.delete(k)).toBe(model.delete(k));
          expect(m.size).toBe(model.size);
          expect(m.get(k)).toBe(model.get(k));
        }
        expect(new Set(m.values())).toEqual(new Set(model.values()));
      }),
    );
  });

  it("takes string keys, __proto__ included", () => {
    const m = new KeyMap<string, number>();
    m.set("__proto__", 1).set("10.0.0.1:80", 2);
    expect(m.get("__proto__")).toBe(1);
    expect(m.get("constructor")).toBeUndefined();
    expect(m.size).toBe(2);
    expect(m.delete("__proto__")).toBe(true);
    expect(m.delete("__proto__")).toBe(false);
    expect(m.values()).toEqual([2]);
  });

  it("values() is a copy: deleting while walking it visits every member once", () => {
    const m = new KeyMap<number, number>();
    for (let i = 0; i < 10; i++) m.set(i, i);
    const seen: number[] = [];
    for (const v of m.values()) {
      seen.push(v);
      m.delete(v);
    }
    expect(seen.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(m.size).toBe(0);
  });
});

describe("IndexedSet", () => {
  it("agrees with a Set under any sequence of adds and deletes", () => {
    fc.assert(
      fc.property(ops, (seq: Op[]) => {
        const objs = Array.from({ length: 41 }, (_, i) => ({ i }));
        const s = new IndexedSet<{ i: number }>();
        const model = new Set<{ i: number }>();
        for (const op of seq) {
          const o = objs[op.key] as { i: number };
          if (op.kind === "set") {
            s.add(o);
            model.add(o);
          } else expect(s.delete(o)).toBe(model.delete(o));
          expect(s.size).toBe(model.size);
          expect(s.has(o)).toBe(model.has(o));
        }
        expect(new Set(s)).toEqual(model);
      }),
    );
  });

  it("an object may be in two sets at once", () => {
    const a = new IndexedSet<object>();
    const b = new IndexedSet<object>();
    const x = {};
    const y = {};
    a.add(x).add(y);
    b.add(y).add(x);
    a.delete(x);
    expect([a.has(x), a.has(y), b.has(x), b.has(y)]).toEqual([false, true, true, true]);
    expect([...b]).toEqual([y, x]);
  });

  it("a loop may delete members it has not reached (skipped) and add new ones (not visited)", () => {
    const s = new IndexedSet<{ i: number }>();
    const objs = Array.from({ length: 6 }, (_, i) => ({ i }));
    for (const o of objs) s.add(o);
    const seen: number[] = [];
    for (const o of s) {
      seen.push(o.i);
      if (o.i === 0) {
        s.delete(objs[3] as { i: number });
        s.add({ i: 99 });
      }
    }
    expect(seen).not.toContain(3);
    expect(seen).not.toContain(99);
    expect(seen.sort()).toEqual([0, 1, 2, 4, 5]);
    expect(s.size).toBe(6);
  });

  it("clear() empties it, and a cleared member can be added again", () => {
    const s = new IndexedSet<object>();
    const x = {};
    s.add(x).add({});
    s.clear();
    expect(s.size).toBe(0);
    expect(s.has(x)).toBe(false);
    s.add(x);
    expect([...s]).toEqual([x]);
  });
});
