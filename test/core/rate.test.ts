import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Bucket, isFull, type Rate, refilled, TokenBuckets, take } from "../../src/core/rate.ts";

const RATE: Rate = { perSecond: 10, burst: 5 };

describe("take", () => {
  const cases: Array<{
    name: string;
    bucket: Bucket | undefined;
    now: number;
    rate?: Rate;
    cost?: number;
    ok: boolean;
    left?: number;
    retry?: number;
  }> = [
    { name: "a new caller starts with the burst", bucket: undefined, now: 0, ok: true, left: 4 },
    { name: "an empty bucket refuses", bucket: { tokens: 0, at: 0 }, now: 0, ok: false, retry: 100 },
    { name: "time refills at the rate", bucket: { tokens: 0, at: 0 }, now: 100, ok: true, left: 0 },
    { name: "half a request refills in half the time", bucket: { tokens: 0.5, at: 0 }, now: 0, ok: false, retry: 50 },
    { name: "refill stops at the burst", bucket: { tokens: 0, at: 0 }, now: 60_000, ok: true, left: 4 },
    { name: "a clock that went back refills nothing", bucket: { tokens: 0, at: 1_000 }, now: 0, ok: false, retry: 100 },
    {
      name: "a cost above the burst waits for a full bucket",
      bucket: { tokens: 5, at: 0 },
      now: 0,
      cost: 9,
      ok: false,
      retry: 1,
    },
    { name: "rate 0 is no limit", bucket: { tokens: 0, at: 0 }, now: 0, rate: { perSecond: 0, burst: 1 }, ok: true },
    { name: "cost 0 always passes", bucket: { tokens: 0, at: 0 }, now: 0, cost: 0, ok: true, left: 0 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = take(c.bucket, c.now, c.rate ?? RATE, c.cost);
      expect(r.ok).toBe(c.ok);
      if (c.left !== undefined) expect(r.bucket.tokens).toBeCloseTo(c.left, 9);
      if (!r.ok) expect(r.retryAfterMs).toBe(c.retry);
    });
  }

  it("a refusal takes nothing", () => {
    const r = take({ tokens: 0.25, at: 0 }, 0, RATE);
    expect(r.bucket.tokens).toBe(0.25);
  });
});

describe("isFull", () => {
  it("says when forgetting a bucket changes nothing", () => {
    expect(isFull({ tokens: 0, at: 0 }, 499, RATE)).toBe(false);
    expect(isFull({ tokens: 0, at: 0 }, 500, RATE)).toBe(true);
    expect(refilled({ tokens: 0, at: 0 }, 500, RATE).tokens).toBe(5);
  });
});

const rateArb = fc.record({ perSecond: fc.integer({ min: 1, max: 1_000 }), burst: fc.integer({ min: 1, max: 1_000 }) });
const stepsArb = fc.array(fc.integer({ min: 0, max: 2_000 }), { minLength: 1, maxLength: 300 });

describe("properties", () => {
  it("over any stretch, passes at most the burst plus the rate times its length", () => {
    fc.assert(
      fc.property(rateArb, stepsArb, (rate, gaps) => {
        let bucket: Bucket | undefined;
        let now = 0;
        let passed = 0;
        for (const gap of gaps) {
          now += gap;
          const r = take(bucket, now, rate);
          bucket = r.bucket;
          if (r.ok) passed++;
        }
        return passed <= rate.burst + (now * rate.perSecond) / 1000 + 1e-9;
      }),
    );
  });

  it("a caller that waits the answered time is let through", () => {
    fc.assert(
      fc.property(rateArb, stepsArb, (rate, gaps) => {
        let bucket: Bucket | undefined;
        let now = 0;
        for (const gap of gaps) {
          now += gap;
          const r = take(bucket, now, rate);
          bucket = r.bucket;
          if (!r.ok) {
            const again = take(bucket, now + r.retryAfterMs, rate);
            if (!again.ok) return false;
          }
        }
        return true;
      }),
    );
  });

  it("a caller that keeps to the rate is never refused", () => {
    fc.assert(
      fc.property(rateArb, fc.integer({ min: 1, max: 500 }), (rate, n) => {
        let bucket: Bucket | undefined;
        const every = Math.ceil(1000 / rate.perSecond);
        for (let i = 0; i < n; i++) {
          const r = take(bucket, i * every, rate);
          if (!r.ok) return false;
          bucket = r.bucket;
        }
        return true;
      }),
    );
  });
});

describe("TokenBuckets", () => {
  const slow: Rate = { perSecond: 1, burst: 2 };

  it("charges each key its own bucket, and keeps none at a rate of 0", () => {
    const b = new TokenBuckets(10);
    expect([b.charge("a", 0, slow), b.charge("a", 0, slow), b.charge("a", 0, slow)]).toEqual([
      { ok: true },
      { ok: true },
      { ok: false, retryAfterMs: 1_000 },
    ]);
    expect(b.charge("b", 0, slow)).toEqual({ ok: true });
    expect(b.charge("a", 0, { perSecond: 0, burst: 1 })).toEqual({ ok: true });
    expect(b.size).toBe(1);
  });

  it("past forgetFullPast, a new key forgets the full buckets and nothing else", () => {
    const b = new TokenBuckets(3);
    b.charge("old", 0, slow);
    b.charge("busy", 0, slow);
    b.charge("busy", 0, slow);
    b.charge("x", 500, slow);
    // "old" is full again by 1,000 ms, "busy" and "x" are not.
    b.charge("y", 1_000, slow);
    expect(b.size).toBe(3);
    expect(b.charge("busy", 1_000, slow)).toEqual({ ok: true });
    expect(b.charge("busy", 1_000, slow)).toEqual({ ok: false, retryAfterMs: 1_000 });
    // Without keepAtMost, buckets short of full all stay.
    for (let i = 0; i < 20; i++) b.charge(`k${i}`, 1_000, slow);
    expect(b.size).toBe(23);
  });

  it("past keepAtMost, the least recently charged go, so a key that keeps charging keeps its bucket", () => {
    const b = new TokenBuckets(3, 3);
    for (const k of ["a", "b", "c"]) b.charge(k, 0, slow);
    b.charge("a", 0, slow);
    b.charge("a", 0, slow);
    b.charge("d", 0, slow);
    expect(b.size).toBe(3);
    // "b" was the least recent and went; "a" was charged last of the three and is still empty.
    expect(b.charge("a", 0, slow)).toEqual({ ok: false, retryAfterMs: 1_000 });
  });
});
