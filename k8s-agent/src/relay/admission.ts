// Which accepted connections the relay takes, in two pools, so that peers who
// have not authenticated can never take the capacity of those who have.
//
//   - the handshake pool: connections from sources outside `client_cidrs`
//     while their CONNECT head (relay HMAC or client token) has not been
//     checked yet. Small, with a short deadline from accept (the relay's), a cap
//     per source address, and when full the OLDEST handshake is dropped to
//     make room: a flood of idle sockets then only churns its own slots, and a
//     peer that sends its head at once (every real relay and client does)
//     gets through.
//   - the tunnel pool (`maxConnections`): authenticated connections. A
//     connection from a `client_cidrs` source (or a unix socket) is
//     authenticated by its address and enters it at accept; any other moves
//     here from the handshake pool once its credentials passed (`promote`).
//
// Per source address, `maxConnectionsPerSource` bounds handshakes and client
// tunnels together; a verified relay hop stops counting (`exempt`), because
// every tunnel a neighbour relay carries arrives from its one address. The
// relay passes each address in one form (normalizeIp: `::ffff:a.b.c.d` is
// `a.b.c.d`), so a client counts once whichever listener took it.
//
// Per tenant, `maxConnectionsPerNamespace` bounds what the relays of one
// unshared namespace hold of the tunnel pool: their links and the streams on
// them. Which peer belongs to which tenant is the route table's to say
// (`peers.tenants`); a tenant with a token for its own namespace can register
// and certify as many relays as its record limit allows, each with its own
// links, so neither the per-peer link cap nor the per-source cap stops it.
// A link costs the relay far more memory than a stream on it (its TLS session and
// buffers: about 100 KB against a few), so `maxLinksPerNamespace` also bounds the
// links alone.
//
// Per tenant too, `namespaceStreamsPerSecond` bounds how fast the relays of one
// unshared namespace open streams here (a token bucket, `namespaceStreamBurst`
// deep): within its share of places a tenant could otherwise churn tunnels as
// fast as the relay sets them up, each a route look-up, a dial and a close, and
// take most of the relay's one thread from every other namespace.
//
// Per source address, `linkHandshakesPerSourcePerSecond` bounds how fast TLS
// handshakes (relay links) start: the handshake pool bounds how many are in
// flight, and a handshake is the most an unauthenticated peer can make the relay
// spend, so one address could otherwise keep its thread busy with them alone.
import type { Socket } from "node:net";
import { TokenBuckets } from "@hopway/core/rate";

export interface AdmissionLimits {
  /** Authenticated connections (the tunnel pool). */
  maxConnections: number;
  /** Unauthenticated handshakes in flight (the handshake pool). */
  maxHandshakes: number;
  /** Unauthenticated handshakes one source address may hold; 0 = no cap. */
  maxHandshakesPerSource: number;
  /** Connections one source address may hold, handshakes included (verified relays exempt); 0 = no cap. */
  maxConnectionsPerSource: number;
  /** Links and link streams the relays of one tenant may hold together; 0 = no cap. */
  maxConnectionsPerNamespace: number;
  /** Of those, the links alone; 0 = no cap. */
  maxLinksPerNamespace: number;
  /** Link streams the relays of one tenant may open per second, refilled steadily; 0 = no limit. */
  namespaceStreamsPerSecond: number;
  /** How many of them they may open at once after a quiet spell. */
  namespaceStreamBurst: number;
  /** TLS handshakes (link attempts) one source address may start per second, refilled steadily; 0 = no limit. */
  linkHandshakesPerSourcePerSecond: number;
  /** How many of them at once after a quiet spell. */
  linkHandshakeBurstPerSource: number;
}

/**
 * Past this many source addresses' handshake buckets, full ones are forgotten, then the least
 * recently used: addresses are an open set (an IPv6 peer may have a whole prefix), so the map must
 * not grow with them.
 */
const MAX_SOURCE_BUCKETS = 10_000;

/**
 * Past this many tenants' buckets, full ones are forgotten (a full bucket is what a new one starts
 * as). Tenants come from the route table's `peers.tenants`, so the map is bounded by that list.
 */
const MAX_RATE_BUCKETS = 1_024;

// What admission knows of a connection lives on its socket, under symbols of this module:
// fields read and written on every connection, rather than entries in weak collections.
/** The source address it counts against (only while per-source caps are on and it counts). */
const SOURCE = Symbol("hopway.admission.source");
/** IN_TUNNEL_POOL and SPOKEN bits. */
const STATE = Symbol("hopway.admission.state");
/** The tenant a link counts against while in the tunnel pool. */
const TENANT = Symbol("hopway.admission.tenant");
const IN_TUNNEL_POOL = 1;
/** A handshake whose peer has sent its first bytes (a CONNECT head, a TLS ClientHello). */
const SPOKEN = 2;
type Admitted = object & { [SOURCE]?: string | undefined; [STATE]?: number; [TENANT]?: string | undefined };

/**
 * A connection as admission counts it: a socket, or a native listener's connection
 * (native-splice.ts), which never enters the handshake pool (a listener's sources are trusted).
 */
export class Admission<K extends object = Socket> {
  /** Unauthenticated handshakes, oldest first (Map keeps insertion order). */
  private readonly handshakes = new Map<K, string>();
  private readonly handshakesBySource = new Map<string, number>();
  private readonly perSource = new Map<string, number>();
  private readonly perTenant = new Map<string, number>();
  private readonly linksPerTenant = new Map<string, number>();
  private readonly streamBuckets = new TokenBuckets(MAX_RATE_BUCKETS);
  private readonly handshakeBuckets = new TokenBuckets(MAX_SOURCE_BUCKETS, MAX_SOURCE_BUCKETS);
  private tunnelPool = 0;

  constructor(private readonly limits: AdmissionLimits) {}

  /** Authenticated connections open (handshaking clients from `client_cidrs` included). */
  get authenticated(): number {
    return this.tunnelPool;
  }
  /** Unauthenticated handshakes open. */
  get pendingHandshakes(): number {
    return this.handshakes.size;
  }

  /**
   * Why a new connection from `source` is refused at accept, or undefined to take it.
   * `source` undefined (a unix-socket peer) is not counted per source: every local peer shares it.
   */
  refusal(source: string | undefined, trusted: boolean): string | undefined {
    const perSource = this.limits.maxConnectionsPerSource;
    if (source !== undefined && perSource > 0 && (this.perSource.get(source) ?? 0) >= perSource) {
      return `source ${source} at its limit of ${perSource} connections`;
    }
    if (trusted) {
      if (this.tunnelPool >= this.limits.maxConnections) return "relay at connection limit";
      return undefined;
    }
    const perSourceHs = this.limits.maxHandshakesPerSource;
    if (source !== undefined && perSourceHs > 0 && (this.handshakesBySource.get(source) ?? 0) >= perSourceHs) {
      return `source ${source} at its limit of ${perSourceHs} unauthenticated handshakes`;
    }
    return undefined;
  }

  /**
   * Takes a connection `refusal` allowed. Returns the oldest unauthenticated handshake when
   * the handshake pool was full: the caller closes it.
   */
  enter(socket: K, source: string | undefined, trusted: boolean): K | undefined {
    const s = socket as Admitted;
    if (source !== undefined && this.limits.maxConnectionsPerSource > 0) {
      s[SOURCE] = source;
      increment(this.perSource, source);
    }
    if (trusted || source === undefined) {
      s[STATE] = IN_TUNNEL_POOL;
      this.tunnelPool++;
      return undefined;
    }
    s[STATE] = 0;
    let evicted: K | undefined;
    if (this.handshakes.size >= this.limits.maxHandshakes) {
      // The oldest peer that has said nothing yet goes first: an idle flood then churns its own
      // slots and never pushes out a relay in the middle of its TLS handshake, or a client whose
      // head is on its way. Only when every handshake has spoken does the oldest one go.
      for (const h of this.handshakes.keys()) {
        if (((h as Admitted)[STATE] ?? 0) & SPOKEN) continue;
        evicted = h;
        break;
      }
      evicted ??= this.handshakes.keys().next().value;
      if (evicted !== undefined) this.leaveHandshakes(evicted);
    }
    this.handshakes.set(socket, source);
    increment(this.handshakesBySource, source);
    return evicted;
  }

  /** Held in the tunnel pool by the relays of `tenant`. */
  heldBy(tenant: string): number {
    return this.perTenant.get(tenant) ?? 0;
  }

  /** The most any one tenant holds now (0 with none): read at a scrape, one pass over the tenants present. */
  get largestTenantShare(): number {
    let most = 0;
    for (const n of this.perTenant.values()) if (n > most) most = n;
    return most;
  }

  /** Why one more link or link stream of `tenant` (undefined: no tenant's) may not enter the tunnel pool. */
  tenantRefusal(tenant: string | undefined): string | undefined {
    const cap = this.limits.maxConnectionsPerNamespace;
    if (tenant === undefined || cap <= 0 || (this.perTenant.get(tenant) ?? 0) < cap) return undefined;
    return `namespace '${tenant}' holds its limit of ${cap} connections (max_connections_per_namespace)`;
  }

  /** Why one more link of `tenant`'s relays may not be taken: its share of the pool, or of links, is full. */
  tenantLinkRefusal(tenant: string | undefined): string | undefined {
    const share = this.tenantRefusal(tenant);
    const cap = this.limits.maxLinksPerNamespace;
    if (share !== undefined || tenant === undefined || cap <= 0) return share;
    if ((this.linksPerTenant.get(tenant) ?? 0) < cap) return undefined;
    return `namespace '${tenant}' holds its limit of ${cap} links (max_links_per_namespace)`;
  }

  /**
   * Takes one stream opening from `tenant`'s bucket at `now` (ms, any monotonic clock). Returns
   * undefined when it may open, or the milliseconds until it could. No tenant, or a rate of 0,
   * is never limited.
   */
  streamRateRefusal(tenant: string | undefined, now: number): number | undefined {
    const { namespaceStreamsPerSecond: perSecond, namespaceStreamBurst: burst } = this.limits;
    return waitFor(this.streamBuckets, tenant, now, perSecond, burst);
  }

  /**
   * Takes one TLS handshake from `source`'s bucket at `now` (ms). Returns undefined when it may
   * start, or the milliseconds until one could. A unix-socket peer (undefined) is never limited.
   */
  handshakeRateRefusal(source: string | undefined, now: number): number | undefined {
    const { linkHandshakesPerSourcePerSecond: perSecond, linkHandshakeBurstPerSource: burst } = this.limits;
    return waitFor(this.handshakeBuckets, source, now, perSecond, burst);
  }

  /** How many source addresses' handshake buckets are kept. */
  handshakeBucketsForTest(): number {
    return this.handshakeBuckets.size;
  }

  /** How many tenants' stream buckets are kept. */
  streamRateBucketsForTest(): number {
    return this.streamBuckets.size;
  }

  /** Links the relays of `tenant` hold. */
  linksHeldBy(tenant: string): number {
    return this.linksPerTenant.get(tenant) ?? 0;
  }

  /**
   * The connection authenticated: it moves to the tunnel pool, counted against `tenant` when it
   * is a link from a tenant's relay (the caller checked `tenantLinkRefusal` first). False when that
   * pool is full.
   */
  promote(socket: K, tenant?: string): boolean {
    const s = socket as Admitted;
    // A link from a client_cidrs source entered the tunnel pool at accept; it still counts
    // against its tenant from now on (a tenant's relay pod may sit inside those ranges).
    if (!((s[STATE] ?? 0) & IN_TUNNEL_POOL)) {
      if (!this.handshakes.has(socket)) return false; // already closed or evicted
      if (this.tunnelPool >= this.limits.maxConnections) return false;
      this.leaveHandshakes(socket);
      s[STATE] = (s[STATE] ?? 0) | IN_TUNNEL_POOL;
      this.tunnelPool++;
    }
    if (tenant !== undefined && s[TENANT] === undefined) {
      s[TENANT] = tenant;
      increment(this.perTenant, tenant);
      increment(this.linksPerTenant, tenant);
    }
    return true;
  }

  /** The peer sent its first bytes: it is handshaking, not idling. */
  spoke(socket: K): void {
    const s = socket as Admitted;
    s[STATE] = (s[STATE] ?? 0) | SPOKEN;
  }

  /**
   * The same connection under a new socket object (pump.ts adopt() moves the handle into one).
   * A handshake re-enters the pool as its youngest member: adoption follows the first byte at once.
   */
  rekey(from: K, to: K): void {
    if (from === to) return;
    const f = from as Admitted;
    const t = to as Admitted;
    if (f[SOURCE] !== undefined) {
      t[SOURCE] = f[SOURCE];
      f[SOURCE] = undefined;
    }
    const hs = this.handshakes.get(from);
    if (hs !== undefined) {
      this.handshakes.delete(from);
      this.handshakes.set(to, hs);
    }
    if (f[STATE] !== undefined) {
      t[STATE] = f[STATE];
      f[STATE] = 0;
    }
    if (f[TENANT] !== undefined) {
      t[TENANT] = f[TENANT];
      f[TENANT] = undefined;
    }
  }

  /**
   * A tunnel on an accepted link: it takes a place in the tunnel pool, as the connection it
   * replaces did, counted against the tenant of the relay that opened it. Returns why not: the
   * tenant's share, or the pool, is full.
   */
  takeStream(tenant?: string): "tenant" | "full" | undefined {
    if (this.tenantRefusal(tenant) !== undefined) return "tenant";
    if (this.tunnelPool >= this.limits.maxConnections) return "full";
    this.tunnelPool++;
    if (tenant !== undefined) increment(this.perTenant, tenant);
    return undefined;
  }

  /** A stream `takeStream` took is gone; `tenant` as it was taken. */
  releaseStream(tenant?: string): void {
    this.tunnelPool--;
    if (tenant !== undefined) decrement(this.perTenant, tenant);
  }

  /** A verified relay hop: it no longer counts against its source address. */
  exempt(socket: K): void {
    const s = socket as Admitted;
    const source = s[SOURCE];
    if (source === undefined) return;
    s[SOURCE] = undefined;
    decrement(this.perSource, source);
  }

  /**
   * The relay answered the handshake with a refusal (400, 407, 408, …): it leaves the handshake
   * pool now, not when its peer closes, so a peer that keeps its refused socket open (trickling
   * bytes, never reading) holds no handshake slot meanwhile. It still counts per source until it
   * closes, which the relay does at a fixed deadline. Closing later releases nothing twice: a
   * socket leaves the pool once.
   */
  refused(socket: K): void {
    this.leaveHandshakes(socket);
  }

  /** The connection closed (whichever pool it was in). */
  release(socket: K): void {
    this.exempt(socket);
    this.leaveHandshakes(socket);
    const s = socket as Admitted;
    const state = s[STATE] ?? 0;
    if (state & IN_TUNNEL_POOL) {
      s[STATE] = state & ~IN_TUNNEL_POOL;
      this.tunnelPool--;
      const tenant = s[TENANT];
      if (tenant !== undefined) {
        s[TENANT] = undefined;
        decrement(this.perTenant, tenant);
        decrement(this.linksPerTenant, tenant);
      }
    }
  }

  private leaveHandshakes(socket: K): void {
    const source = this.handshakes.get(socket);
    if (source === undefined) return;
    this.handshakes.delete(socket);
    decrement(this.handshakesBySource, source);
  }
}

function increment(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

function decrement(m: Map<string, number>, k: string): void {
  const n = (m.get(k) ?? 1) - 1;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

/** Charges `key` (undefined: never limited) one at `now`: undefined when it passes, else the ms until it would. */
function waitFor(
  buckets: TokenBuckets,
  key: string | undefined,
  now: number,
  perSecond: number,
  burst: number,
): number | undefined {
  if (key === undefined) return undefined;
  const c = buckets.charge(key, now, { perSecond: Math.max(0, perSecond), burst: Math.max(1, burst) });
  return c.ok ? undefined : c.retryAfterMs;
}
