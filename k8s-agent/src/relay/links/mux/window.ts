// Receive-window tuning for hopway-mux/1 streams (docs/links.md, "Flow control and memory").
//
// A stream starts with the announced stream window. One window per round trip is all a
// tunnel can carry, so a long path needs a large window, while every window granted is memory
// the receiver may have to hold when a reader stops. A stream's window therefore grows only
// while its reader takes the bytes as fast as the window lets them come (the window, not the
// reader, limits it), and only from a budget shared by every link of the relay, so the worst case
// a relay holds is each stream's starting window plus that budget. The rule is the one QUIC
// implementations use for their flow-control windows (quic-go's auto-tuning): when the reader
// consumed more than half the window in less than about two round trips, double it.

/**
 * The part of the budget the links of one tenant (the relays of one unshared namespace, as the
 * route table says) may hold together: as many links as it likes, it never leaves others none.
 */
export const TENANT_BUDGET_SHARE = 1 / 4;

/** Bytes every link of a relay may add to its streams' receive windows, together. */
export class WindowBudget {
  private left: number;
  /** What each tenant's links hold now; tenants holding nothing are left out. */
  private readonly byTenant = new Map<string, number>();

  constructor(readonly bytes: number) {
    this.left = bytes;
  }

  /**
   * Takes up to `want` bytes for a link of `tenant` (undefined: a link of no tenant's relay);
   * returns how many it got (0 when the budget, or the tenant's share of it, is spent).
   */
  take(want: number, tenant?: string): number {
    let got = Math.max(0, Math.min(want, this.left));
    if (tenant !== undefined && got > 0) {
      const held = this.byTenant.get(tenant) ?? 0;
      got = Math.max(0, Math.min(got, Math.floor(this.bytes * TENANT_BUDGET_SHARE) - held));
      if (got > 0) this.byTenant.set(tenant, held + got);
    }
    this.left -= got;
    return got;
  }

  /** Gives back `bytes` taken for `tenant` (as it was when they were taken). */
  give(bytes: number, tenant?: string): void {
    this.left = Math.min(this.bytes, this.left + bytes);
    if (tenant === undefined) return;
    const held = (this.byTenant.get(tenant) ?? 0) - bytes;
    if (held > 0) this.byTenant.set(tenant, held);
    else this.byTenant.delete(tenant);
  }

  /** What the links of `tenant` hold now. */
  heldBy(tenant: string): number {
    return this.byTenant.get(tenant) ?? 0;
  }

  /** Bytes not lent to any stream now. */
  get available(): number {
    return this.left;
  }
}

/** Where a stream's current tuning epoch started: the time and the bytes its reader had consumed then. */
export interface WindowEpoch {
  at: number;
  consumed: number;
}

/**
 * By how much to grow a window of `window` bytes (up to `max`) now that its reader has consumed
 * `consumed` bytes in all; `epoch` is moved on when an epoch ends. 0 while less than half a
 * window was consumed in this epoch, when the round trip is not known yet, or when the reader
 * took longer than the window allows (the reader is the limit: a larger window would only hold
 * more of its bytes). The caller takes the growth from the WindowBudget.
 */
export function windowGrowth(
  window: number,
  max: number,
  consumed: number,
  epoch: WindowEpoch,
  now: number,
  rttMs: number,
): number {
  const inEpoch = consumed - epoch.consumed;
  if (inEpoch <= window / 2) return 0;
  const fast = rttMs > 0 && now - epoch.at < 4 * (inEpoch / window) * rttMs;
  epoch.at = now;
  epoch.consumed = consumed;
  return fast ? Math.max(0, Math.min(window, max - window)) : 0;
}
