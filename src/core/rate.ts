// Token buckets: the edge's write budgets per caller (docs/contract/edge-api.md §14.1), and a
// relay's stream rate per tenant (docs/contract/relay-protocol.md §3.2).
//
// The realm's Durable Object is one thread for every namespace of the realm, and
// a write that changes records wakes every agent following the realm, so one
// tenant's token writing as fast as it can would cost every other tenant. Each
// non-admin token gets a steady rate and a burst; past them its writes are
// refused with the time until one would pass.
//
// Part of the pure core: no `cloudflare:*`, `hono` or `node:*`; time is a parameter.

/** A caller's bucket: the requests it may still make at once, as of `at` (ms on the caller's clock). */
export interface Bucket {
  tokens: number;
  at: number;
}

export interface Rate {
  /** Requests per second refilled; 0 means no limit. */
  perSecond: number;
  /** The most a caller may make at once after being quiet. */
  burst: number;
}

export type Take = { ok: true; bucket: Bucket } | { ok: false; bucket: Bucket; retryAfterMs: number };

/** The bucket as of `now`: refilled for the time since `at`, never above the burst. A clock that went back refills nothing. */
export function refilled(bucket: Bucket | undefined, now: number, rate: Rate): Bucket {
  if (bucket === undefined) return { tokens: rate.burst, at: now };
  const elapsed = Math.max(0, now - bucket.at);
  return {
    tokens: Math.min(rate.burst, bucket.tokens + (elapsed * rate.perSecond) / 1000),
    at: Math.max(now, bucket.at),
  };
}

/**
 * Takes `cost` requests from the caller's bucket at `now`. A refusal takes nothing and says how
 * long until the same request would pass, so a client that waits that long is not refused again
 * for it (unless it sent others meanwhile).
 */
export function take(bucket: Bucket | undefined, now: number, rate: Rate, cost = 1): Take {
  if (rate.perSecond === 0) return { ok: true, bucket: { tokens: rate.burst, at: now } };
  const b = refilled(bucket, now, rate);
  if (b.tokens >= cost) return { ok: true, bucket: { tokens: b.tokens - cost, at: b.at } };
  // A cost above the burst could never pass: answer the time to a full bucket, and the next
  // attempt is refused again with the same answer rather than waiting forever.
  const short = Math.min(cost, rate.burst) - b.tokens;
  return { ok: false, bucket: b, retryAfterMs: Math.max(1, Math.ceil((short * 1000) / rate.perSecond)) };
}

/** Whether a bucket left alone is full by `now`, so forgetting it changes nothing. */
export function isFull(bucket: Bucket, now: number, rate: Rate): boolean {
  return rate.perSecond === 0 || refilled(bucket, now, rate).tokens >= rate.burst;
}

/**
 * Buckets by key (a token, a tenant namespace, a source address), in memory and bounded: when a
 * new key takes the map past `forgetFullPast`, the buckets that are full again are forgotten (a
 * full bucket is what a new one starts as, so that gives nothing away); past `keepAtMost`, the
 * least recently charged go too, which gives their keys a fresh burst. Fullness is measured
 * against the rate of the charge that overflowed the map: a key with a larger burst of its own
 * may be forgotten a little early.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly forgetFullPast: number,
    private readonly keepAtMost = Number.POSITIVE_INFINITY,
  ) {}

  /** Takes `cost` from `key`'s bucket at `now`; a refusal says how long until it would pass. A rate of 0 keeps no bucket. */
  charge(key: string, now: number, rate: Rate, cost = 1): { ok: true } | { ok: false; retryAfterMs: number } {
    if (rate.perSecond === 0) {
      this.buckets.delete(key);
      return { ok: true };
    }
    const fresh = !this.buckets.has(key);
    const r = take(this.buckets.get(key), now, rate, cost);
    // Re-inserted, so that the map's order is by last charge and the first key the least recent.
    this.buckets.delete(key);
    this.buckets.set(key, r.bucket);
    if (fresh && this.buckets.size > this.forgetFullPast) this.forget(now, rate);
    return r.ok ? { ok: true } : { ok: false, retryAfterMs: r.retryAfterMs };
  }

  private forget(now: number, rate: Rate): void {
    for (const [key, b] of this.buckets) if (isFull(b, now, rate)) this.buckets.delete(key);
    while (this.buckets.size > this.keepAtMost) {
      const oldest = this.buckets.keys().next();
      if (oldest.done === true) break;
      this.buckets.delete(oldest.value);
    }
  }

  /** Keys with a bucket now. */
  get size(): number {
    return this.buckets.size;
  }
}
