// Bounds what key-affine CONNECTs for groups the agent does not hold cost the
// edge. Without it every `CONNECT g:8080` + `Hopway-Key` for an unknown group
// was one edge request: 1,000 concurrent tunnels slowed the edge's /healthz to
// 4.5 s. Three bounds, in the order a look-up meets them:
//   - a negative cache: a group the edge said does not exist (or failed on)
//     is answered from memory for a short TTL;
//   - singleflight: one request in flight per group (MembershipFollower.pending);
//   - a token bucket per agent for first fetches: past it the look-up fails
//     at once with over_capacity instead of queueing towards the edge.

export interface EdgeLimiterOptions {
  /** First fetches per second towards the edge (refill rate). */
  ratePerSecond: number;
  /** Bucket size: first fetches allowed in a burst. */
  burst: number;
  /** How long "no such group" (or "not a group") is remembered. */
  negativeTtlMs: number;
  /** How long an edge failure for a group is remembered (shorter: it may heal). */
  errorTtlMs: number;
  /** Groups remembered as missing at most (oldest forgotten first). */
  maxNegative?: number;
  /** Milliseconds, monotonic; injectable for tests. */
  now?: () => number;
}

export const DEFAULT_EDGE_LIMITS: EdgeLimiterOptions = {
  ratePerSecond: 10,
  burst: 20,
  negativeTtlMs: 10_000,
  errorTtlMs: 1_000,
};

export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.tokens = burst;
    this.last = now();
  }
  /** Takes one token if there is one. */
  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Answers remembered until they expire; insertion-ordered so the oldest goes first when full. */
export class ExpiringCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();
  constructor(
    private readonly max: number,
    private readonly now: () => number,
  ) {}
  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.until <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }
  set(key: string, value: V, ttlMs: number): void {
    if (ttlMs <= 0) return;
    this.entries.delete(key);
    if (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { value, until: this.now() + ttlMs });
  }
  delete(key: string): void {
    this.entries.delete(key);
  }
  get size(): number {
    return this.entries.size;
  }
}
