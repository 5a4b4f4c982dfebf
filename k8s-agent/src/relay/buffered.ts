// The relay-wide bound on bytes its tunnels and links hold in memory (limits.max_buffered_bytes;
// docs/security/relay.md, "What tunnels hold together is bounded"). Windows and leg buffers bound
// what each tunnel holds; nothing bounded their sum, so a tenant at its share of the tunnel pool
// that stalls every tunnel to its own application could make a shared relay hold more than its
// pod's memory. The relay measures what is held every BUFFER_CHECK_MS and, above the limit, resets
// the largest holders first, as Envoy's overload manager resets the streams with the most
// buffered: by holder, a tenant's tunnels and links together (however many it spreads its bytes
// over), any other tunnel or link on its own. This module is the choice; relay.ts measures and
// resets.

/** How often the relay measures what its tunnels and links hold (while it has tunnels). */
export const BUFFER_CHECK_MS = 100;
/**
 * A tunnel that starts holding bytes (one of its legs stops reading because the other side is
 * slow) brings the next check forward, to at most this long after the last: bytes can arrive at
 * a GB/s on a fast network, so a flood of stalled tunnels is caught within milliseconds, not
 * within the period.
 */
export const HELD_CHECK_MS = 10;
/** Past the limit, the relay sheds down to this part of it, so one check does not follow another at once. */
export const SHED_TO = 3 / 4;
/** Holdings shed in one check at most: the rest wait for the next one. */
export const MAX_SHED_PER_CHECK = 10_000;

/** Something that holds bytes: a tunnel or a link; `tenant` undefined when it is no tenant's. */
export interface Holding {
  tenant: string | undefined;
  bytes: number;
}

/** A link with bytes queued to send, and the session to close when it is shed. */
export interface LinkHolding extends Holding {
  session: { destroy(): void };
}

/**
 * What to shed so that `total` (the sum of every holding's bytes) comes down to at most `target`,
 * given `total` is above the limit; nothing when it is not. The holder that holds the most goes
 * first: a tenant counts as one holder for all its holdings, anything of no tenant on its own. From
 * a tenant, its largest holding first. Holdings of 0 bytes are never shed.
 */
export function chooseShed<H extends Holding>(holdings: readonly H[], limit: number, target: number): H[] {
  let total = 0;
  for (const h of holdings) total += h.bytes;
  if (total <= limit) return [];
  // A holder: its holdings, largest first, and what it still holds.
  type Holder = { items: H[]; next: number; bytes: number };
  const byTenant = new Map<string, Holder>();
  const holders: Holder[] = [];
  for (const h of holdings) {
    if (h.bytes <= 0) continue;
    if (h.tenant === undefined) {
      holders.push({ items: [h], next: 0, bytes: h.bytes });
      continue;
    }
    let t = byTenant.get(h.tenant);
    if (t === undefined) {
      t = { items: [], next: 0, bytes: 0 };
      byTenant.set(h.tenant, t);
      holders.push(t);
    }
    t.items.push(h);
    t.bytes += h.bytes;
  }
  for (const t of byTenant.values()) t.items.sort((a, b) => b.bytes - a.bytes);
  // Largest holder first; a holder that still holds the most after a shed stays at the front.
  holders.sort((a, b) => b.bytes - a.bytes);
  const shed: H[] = [];
  while (total > target && shed.length < MAX_SHED_PER_CHECK && holders.length > 0) {
    const top = holders[0] as Holder;
    const h = top.items[top.next++] as H;
    shed.push(h);
    total -= h.bytes;
    top.bytes -= h.bytes;
    // Put the holder back in order (it only shrank), or drop it once it holds nothing.
    if (top.next === top.items.length) holders.shift();
    else {
      let i = 0;
      while (i + 1 < holders.length && (holders[i + 1] as Holder).bytes > top.bytes) {
        holders[i] = holders[i + 1] as Holder;
        i++;
      }
      holders[i] = top;
    }
  }
  return shed;
}
