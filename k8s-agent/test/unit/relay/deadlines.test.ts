// Coarse per-connection deadlines (src/relay/deadlines.ts): expiry order, deletes, re-adds.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Deadline, DeadlineCall, Deadlines } from "../../../src/relay/deadlines.ts";

class Named extends Deadline {
  constructor(
    readonly name: string,
    private readonly log: string[],
  ) {
    super();
  }
  expire(): void {
    this.log.push(this.name);
  }
}

describe("Deadlines", () => {
  let now = 0;
  beforeEach(() => {
    now = 0;
    vi.useFakeTimers();
  });
  afterEach(() => vi.useRealTimers());
  const advance = (ms: number) => {
    now += ms;
    vi.advanceTimersByTime(ms);
  };

  it("expires entries in the order they were added, once their time has passed, and stops its timer when empty", () => {
    const log: string[] = [];
    const d = new Deadlines(100, () => now);
    d.add(new Named("a", log));
    advance(30);
    d.add(new Named("b", log));
    advance(60);
    expect(log).toEqual([]);
    advance(20); // a is due at 100, swept by the 13 ms tick at or after it
    expect(log).toEqual(["a"]);
    advance(40);
    expect(log).toEqual(["a", "b"]);
    expect(d.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a deleted entry never expires, and its neighbours still do", () => {
    const log: string[] = [];
    const d = new Deadlines(50, () => now);
    const [a, b, c] = ["a", "b", "c"].map((n) => new Named(n, log)) as [Named, Named, Named];
    d.add(a);
    d.add(b);
    d.add(c);
    d.delete(b);
    d.delete(b); // twice: nothing
    expect(d.size).toBe(2);
    expect([b.prevDue, b.nextDue, b.listedIn]).toEqual([undefined, undefined, undefined]);
    advance(60);
    expect(log).toEqual(["a", "c"]);
  });

  it("deleting from another list does nothing; adding again moves the entry to the end with a new time", () => {
    const log: string[] = [];
    const d = new Deadlines(50, () => now);
    const other = new Deadlines(50, () => now);
    const a = new Named("a", log);
    const b = new Named("b", log);
    d.add(a);
    d.add(b);
    other.delete(a);
    expect(d.size).toBe(2);
    advance(40);
    d.add(a);
    advance(20);
    expect(log).toEqual(["b"]);
    advance(40);
    expect(log).toEqual(["b", "a"]);
    other.add(a);
    d.add(b);
    other.add(b); // moves from d to other
    expect([d.size, other.size]).toEqual([0, 2]);
  });

  it("an expiring entry may delete the next one, which then does not expire", () => {
    const log: string[] = [];
    const d = new Deadlines(10, () => now);
    const second = new Named("second", log);
    d.add(
      new DeadlineCall(() => {
        log.push("first");
        d.delete(second);
      }),
    );
    d.add(second);
    d.add(new Named("third", log));
    advance(20);
    expect(log).toEqual(["first", "third"]);
  });
});
