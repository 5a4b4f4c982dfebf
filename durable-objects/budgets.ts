// The buckets of one of each agent or reader token's two budgets, its writes or
// its changes (docs/contract/edge-api.md §14.1), charged before the realm's
// object does the work. Buckets are kept in memory only: an object that restarts
// starts every token full, which costs at most one burst per token, and a request
// never waits on a storage write to be counted. Only authenticated tokens get a
// bucket, so nothing is kept for a caller the realm does not know.
import { type Bucket, isFull, type Rate, take } from "../src/core/rate.ts";

/** Buckets held before full ones are forgotten: past it, memory stays bounded whatever the tokens do. */
const MAX_BUCKETS = 10_000;

export type Charge = { ok: true } | { ok: false; retryAfterMs: number; rate: Rate };

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  charge(tokenId: string, now: number, rate: Rate, cost: number): Charge {
    if (rate.perSecond === 0) {
      this.buckets.delete(tokenId);
      return { ok: true };
    }
    const r = take(this.buckets.get(tokenId), now, rate, cost);
    this.buckets.set(tokenId, r.bucket);
    if (this.buckets.size > MAX_BUCKETS) this.forgetFull(now, rate);
    return r.ok ? { ok: true } : { ok: false, retryAfterMs: r.retryAfterMs, rate };
  }

  /**
   * Drops the buckets that are full again (as if their tokens had never called); if none is, the
   * oldest, which gives that token a fresh burst. Measured against the rate of the caller that
   * overflowed the map: a token with a larger burst of its own may be forgotten a little early.
   */
  private forgetFull(now: number, rate: Rate): void {
    for (const [id, b] of this.buckets) if (isFull(b, now, rate)) this.buckets.delete(id);
    while (this.buckets.size > MAX_BUCKETS) {
      const oldest = this.buckets.keys().next();
      if (oldest.done === true) break;
      this.buckets.delete(oldest.value);
    }
  }

  /** Tokens with a bucket now (tests). */
  get sizeForTest(): number {
    return this.buckets.size;
  }
}
