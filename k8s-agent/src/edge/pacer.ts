// One agent's requests to the edge, paced by the edge's own answer. Past a
// token's write or change budget the edge answers 429 with Retry-After
// (docs/contract/edge-api.md §14.1). The budget is the token's, shared by every
// loop of the agent (leases, route tables, listeners, group memberships,
// certificates) and by every agent holding the same token, so each loop backing
// off on its own would keep the others spending it: after a 429, every request
// through the pacer waits until the time the edge gave.
//
// Time is injected, so tests drive it without waiting.

/**
 * The longest a Retry-After is taken at its word. The edge's are 1 s at its default budgets (any
 * budget of at least one write a second), longer for a fractional one, and 10 s past the Worker's
 * flood bound. A pause stays inside the agent's shortest request timeout (3 s, a key look-up's
 * first fetch of a group), so a paced request is not cut off as if the edge were unreachable; a
 * longer Retry-After is met again, 429 after 429, every MAX_PAUSE_MS.
 */
export const MAX_PAUSE_MS = 2_000;

export interface PacerClock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

const realClock: PacerClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const done = () => {
        signal?.removeEventListener("abort", abort);
        resolve();
      };
      const timer = setTimeout(done, ms);
      const abort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", abort, { once: true });
    }),
};

/**
 * Milliseconds a `Retry-After` value asks for: delta-seconds or an HTTP date (RFC 9110's Retry-After).
 * undefined when absent or unreadable; never negative.
 */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // IMF-fixdate only, the form senders must use: Date.parse alone takes "-1" or "1.5" for dates.
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(v)) return undefined;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export class EdgePacer {
  private pausedUntil = 0;
  private throttledCount = 0;

  constructor(
    private readonly inner: typeof fetch = fetch,
    private readonly clock: PacerClock = realClock,
  ) {}

  /** 429 answers the edge gave this agent. */
  get throttled(): number {
    return this.throttledCount;
  }

  /** Milliseconds until requests go out again (0: now). */
  get pausedForMs(): number {
    return Math.max(0, this.pausedUntil - this.clock.now());
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const wait = this.pausedUntil - this.clock.now();
    if (wait > 0) await this.clock.sleep(wait, init?.signal ?? undefined);
    const res = await this.inner(input, init);
    if (res.status === 429) {
      this.throttledCount++;
      const now = this.clock.now();
      // No readable Retry-After: a second, so that a 429 always slows every loop down a little.
      const ms = Math.min(MAX_PAUSE_MS, retryAfterMs(res.headers.get("retry-after"), now) ?? 1000);
      this.pausedUntil = Math.max(this.pausedUntil, now + ms);
    }
    return res;
  };
}
