// The relay's Prometheus metrics, on a Registry the caller owns (the admin
// server serves it next to the scaling metrics). Label values come only from
// closed sets declared here: never node names or addresses, so a realm's size
// cannot blow up the series count.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { ListenerObserver, ListenerResult } from "./listeners/manager.ts";
import { LINK_FAILURES, type LinkFailure, type LinkObserver, type LinkSide } from "./relay/links/options.ts";
import { FAILURE_REASONS, type FailureReason } from "./relay/protocol.ts";
import type { ByteCounts, NextRole, PeerRole, RelayObserver } from "./relay/relay.ts";

/** docs/contract/autoscaling.md §2.3: 15 … 2000 ms, in seconds (the Prometheus base unit). */
export const LATENCY_BUCKETS_SECONDS = [
  0.015, 0.03, 0.045, 0.06, 0.09, 0.12, 0.15, 0.18, 0.24, 0.3, 0.32, 0.44, 0.56, 0.68, 0.8, 1.1, 1.4, 1.7, 2,
] as const;

export const PEER_ROLES: readonly PeerRole[] = ["client", "relay"];
export const NEXT_ROLES: readonly NextRole[] = ["relay", "target"];
export const DIRECTIONS = ["up", "down"] as const;
export const BUFFER_SHED_KINDS = ["tunnel", "link"] as const;
export const BUFFER_HOLDERS = ["tenant", "other"] as const;

export interface RelayMetricSources {
  counters: () => ByteCounts;
  activeTunnels: () => number;
  /** Of those, the tunnels whose bytes the native splice's thread moves (relay/native-splice.ts). */
  nativeSplicedTunnels?: () => number;
  openConnections: () => number;
  /** Unauthenticated handshakes held (relay/admission.ts: the handshake pool). */
  pendingHandshakes?: () => number;
  /** limits.max_handshakes: exported so an alert can tell a full handshake pool (a flood) from a busy one. */
  handshakesLimit?: number;
  /** The most one tenant's relays hold of the tunnel pool (relay/admission.ts), and its limit (0: off). */
  namespaceShareMax?: () => number;
  namespaceShareLimit?: () => number;
  /** What tunnels and links held in memory at the relay's last check, and limits.max_buffered_bytes (0: off). */
  bufferedBytes?: () => number;
  bufferedLimit?: number;
  /** Version of the route table in use, undefined before the first one. */
  routeTableVersion: () => number | undefined;
  /** When the table in use was last confirmed by the edge (or loaded from disk), ms since epoch. */
  routeTableFetchedAt: () => number | undefined;
  edgeReachable: () => boolean;
  /** True while the edge refuses the agent's token. */
  edgeAuthFailed?: () => boolean;
  /** 429 answers from the edge: this agent's token was past its write or change budget. */
  edgeThrottled?: () => number;
  /** Open relay links per peer relay (names from the route table: a bounded set). */
  linksByPeer?: () => Map<string, number>;
  linkStreamsByPeer?: () => Map<string, number>;
  now?: () => number;
}

export const LINK_SIDES: readonly LinkSide[] = ["dial", "accept"];
/** TLS 1.3 + HTTP/2 handshakes: loopback is ~5 ms, a 100 ms path ~2 round trips. */
export const HANDSHAKE_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2] as const;

export interface RelayMetrics extends RelayObserver, LinkObserver {
  registry: Registry;
  bufferShed(kind: (typeof BUFFER_SHED_KINDS)[number], holder: (typeof BUFFER_HOLDERS)[number]): void;
}

/** A gauge without labels, read at scrape time. */
function scraped(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** A gauge without labels that says a setting. */
function fixed(registry: Registry, name: string, help: string, value: number): void {
  new Gauge({ name, help, registers: [registry] }).set(value);
}

export function createRelayMetrics(registry: Registry, src: RelayMetricSources): RelayMetrics {
  const now = src.now ?? Date.now;
  const bytes = new Counter({
    name: "hopway_relay_bytes_total",
    help: "Bytes carried by tunnels; direction up = from the connecting peer towards the target.",
    labelNames: ["direction", "peer"] as const,
    registers: [registry],
    collect() {
      // The hot path only adds to plain numbers; the counter is read from them at scrape time.
      const c = src.counters();
      this.reset();
      for (const peer of PEER_ROLES) {
        this.inc({ direction: "up", peer }, c.up[peer]);
        this.inc({ direction: "down", peer }, c.down[peer]);
      }
    },
  });
  // Every connection counts here: the hot path adds to plain numbers (no label hashing per
  // connection), and the counters are read from them at scrape time, as the bytes are.
  const openedCounts: Record<PeerRole, Record<NextRole, number>> = {
    client: { relay: 0, target: 0 },
    relay: { relay: 0, target: 0 },
  };
  const failedCounts = Object.fromEntries(FAILURE_REASONS.map((r) => [r, 0])) as Record<FailureReason, number>;
  new Counter({
    name: "hopway_relay_tunnels_opened_total",
    help: "Tunnels established, by who connected (peer) and what the next hop is (next).",
    labelNames: ["peer", "next"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const peer of PEER_ROLES) for (const next of NEXT_ROLES) this.inc({ peer, next }, openedCounts[peer][next]);
    },
  });
  new Counter({
    name: "hopway_relay_tunnels_failed_total",
    help: "Tunnel requests refused or failed, by reason.",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      this.reset();
      // Every reason, zeros included, so rates exist before the first failure.
      for (const reason of FAILURE_REASONS) this.inc({ reason }, failedCounts[reason]);
    },
  });
  scraped(registry, "hopway_relay_tunnels_active", "Tunnels open now.", () => src.activeTunnels());
  scraped(
    registry,
    "hopway_relay_tunnels_native",
    "Tunnels open now whose bytes the native splice's thread moves (part of hopway_relay_tunnels_active).",
    () => src.nativeSplicedTunnels?.() ?? 0,
  );
  scraped(registry, "hopway_relay_connections_open", "Accepted connections open now (handshaking or tunnelled).", () =>
    src.openConnections(),
  );
  scraped(
    registry,
    "hopway_relay_handshakes_pending",
    "Handshakes from sources outside client_cidrs not yet authenticated; capped by limits.max_handshakes.",
    () => src.pendingHandshakes?.() ?? 0,
  );
  if (src.handshakesLimit !== undefined) {
    fixed(
      registry,
      "hopway_relay_handshakes_limit",
      "limits.max_handshakes: the handshake pool's size; pending at it means a flood of unauthenticated connections.",
      src.handshakesLimit,
    );
  }
  // No label per tenant: namespaces are an open set. The largest share says whether any tenant is at
  // its limit; which one is in the log (relay.ts, warnTenantFull).
  if (src.namespaceShareMax !== undefined) {
    scraped(
      registry,
      "hopway_relay_namespace_share_max",
      "The most places of the tunnel pool (links and their tunnels) that the relays of one unshared namespace hold now.",
      src.namespaceShareMax,
    );
  }
  if (src.namespaceShareLimit !== undefined) {
    scraped(
      registry,
      "hopway_relay_namespace_share_limit",
      "limits.max_connections_per_namespace in force (0: off): a namespace at it has its links and tunnels refused.",
      src.namespaceShareLimit,
    );
  }
  if (src.bufferedBytes !== undefined) {
    scraped(
      registry,
      "hopway_relay_buffered_bytes",
      "Bytes the relay's tunnels and links held in memory at its last check (at least every 100 ms); bounded by limits.max_buffered_bytes.",
      src.bufferedBytes,
    );
  }
  if (src.bufferedLimit !== undefined) {
    fixed(
      registry,
      "hopway_relay_buffered_limit_bytes",
      "limits.max_buffered_bytes (0: off): above it the largest holders are reset.",
      src.bufferedLimit,
    );
  }
  const bufferResets = new Counter({
    name: "hopway_relay_buffer_resets_total",
    help: "Tunnels reset and links closed because the relay held more than limits.max_buffered_bytes; holder tenant = a tenant's (peers.tenants).",
    labelNames: ["kind", "holder"] as const,
    registers: [registry],
  });
  for (const kind of BUFFER_SHED_KINDS) for (const holder of BUFFER_HOLDERS) bufferResets.inc({ kind, holder }, 0);
  const connectLatency = new SeriesHistogram(
    "hopway_relay_connect_duration_seconds",
    "Time from a valid CONNECT to the whole path being up.",
    LATENCY_BUCKETS_SECONDS,
    registry,
  );
  const connectBy = Object.fromEntries(NEXT_ROLES.map((next) => [next, connectLatency.series({ next })])) as Record<
    NextRole,
    Series
  >;
  const duration = new SeriesHistogram(
    "hopway_relay_tunnel_duration_seconds",
    "Lifetime of closed tunnels.",
    LATENCY_BUCKETS_SECONDS,
    registry,
  );
  const durationBy = Object.fromEntries(
    PEER_ROLES.map((peer) => [
      peer,
      Object.fromEntries(NEXT_ROLES.map((next) => [next, duration.series({ peer, next })])),
    ]),
  ) as Record<PeerRole, Record<NextRole, Series>>;
  scraped(
    registry,
    "hopway_route_table_version",
    "Version of the route table in use (0 = none yet).",
    () => src.routeTableVersion() ?? 0,
  );
  new Gauge({
    name: "hopway_route_table_age_seconds",
    help: "Seconds since the route table in use was last confirmed current by the edge (-1 = none).",
    registers: [registry],
    collect() {
      const at = src.routeTableFetchedAt();
      this.set(at === undefined ? -1 : Math.max(0, (now() - at) / 1000));
    },
  });
  scraped(registry, "hopway_edge_reachable", "1 when the last request to the edge succeeded.", () =>
    src.edgeReachable() ? 1 : 0,
  );
  scraped(
    registry,
    "hopway_edge_auth_failed",
    "1 while the edge refuses this agent's token (401/403): a configuration error, not an outage.",
    () => (src.edgeAuthFailed?.() === true ? 1 : 0),
  );
  new Counter({
    name: "hopway_edge_throttled_total",
    help: "Requests the edge refused with 429: the agent token was past its write or change budget, and the agent's requests waited the Retry-After.",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(src.edgeThrottled?.() ?? 0);
    },
  });
  new Gauge({
    name: "hopway_relay_links",
    help: "Relay links open now, by peer relay (both directions; peers are nodes of the route table).",
    labelNames: ["peer"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [peer, n] of src.linksByPeer?.() ?? []) this.set({ peer }, n);
    },
  });
  new Gauge({
    name: "hopway_relay_link_streams",
    help: "Tunnel streams open now on relay links, by peer relay.",
    labelNames: ["peer"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [peer, n] of src.linkStreamsByPeer?.() ?? []) this.set({ peer }, n);
    },
  });
  new Gauge({
    name: "hopway_relay_link_streams_open",
    help: "Tunnel streams open now on all relay links.",
    registers: [registry],
    collect() {
      let total = 0;
      for (const n of src.linkStreamsByPeer?.().values() ?? []) total += n;
      this.set(total);
    },
  });
  const linkDials = new Counter({
    name: "hopway_relay_link_handshakes_total",
    help: "Relay links established, by side (dial = this relay connected, accept = a peer connected).",
    labelNames: ["side"] as const,
    registers: [registry],
  });
  const linkFailures = new Counter({
    name: "hopway_relay_link_failures_total",
    help: "Relay links refused, failed or closed abnormally, by side and reason.",
    labelNames: ["side", "reason"] as const,
    registers: [registry],
  });
  const handshake = new Histogram({
    name: "hopway_relay_link_handshake_duration_seconds",
    help: "Time to establish a relay link (TCP connect, TLS 1.3 and HTTP/2 preface).",
    labelNames: ["side"] as const,
    buckets: [...HANDSHAKE_BUCKETS_SECONDS],
    registers: [registry],
  });
  for (const side of LINK_SIDES) {
    linkDials.inc({ side }, 0);
    for (const reason of LINK_FAILURES) linkFailures.inc({ side, reason }, 0);
  }
  void bytes;
  return {
    registry,
    tunnelOpened(peer, next, connectSeconds) {
      openedCounts[peer][next]++;
      connectBy[next].observe(connectSeconds);
    },
    tunnelClosed(peer, next, seconds) {
      durationBy[peer][next].observe(seconds);
    },
    bufferShed(kind: (typeof BUFFER_SHED_KINDS)[number], holder: (typeof BUFFER_HOLDERS)[number]) {
      bufferResets.inc({ kind, holder });
    },
    tunnelFailed(reason: FailureReason) {
      failedCounts[reason]++;
    },
    linkOpened(side: LinkSide, seconds: number) {
      linkDials.inc({ side });
      handshake.observe({ side }, seconds);
    },
    linkFailed(side: LinkSide, reason: LinkFailure) {
      linkFailures.inc({ side, reason });
    },
  };
}

export const LISTENER_RESULTS: readonly ListenerResult[] = ["carried", ...FAILURE_REASONS];

/** Listener metrics: connections by outcome (a closed set), and how many listeners accept now. */
export function createListenerMetrics(registry: Registry, open: () => number): ListenerObserver {
  // Counted in plain numbers per connection and read at scrape time, like the relay's tunnels.
  const counts = Object.fromEntries(LISTENER_RESULTS.map((r) => [r, 0])) as Record<ListenerResult, number>;
  new Counter({
    name: "hopway_listener_connections_total",
    help: "Connections accepted by listeners, by outcome: carried, or the reason they were refused and closed.",
    labelNames: ["result"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const result of LISTENER_RESULTS) this.inc({ result }, counts[result]);
    },
  });
  scraped(registry, "hopway_listeners_open", "Listeners accepting connections now.", () => open());
  return {
    connection(result) {
      counts[result]++;
    },
  };
}

/** One label set's series of a SeriesHistogram: cumulative counts are made at scrape time. */
export interface Series {
  observe(value: number): void;
}

interface SeriesState extends Series {
  labels: Record<string, string>;
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram whose series are made once per label set and kept by the caller, for the
 * relay's per-connection path: prom-client's Histogram hashes and validates the labels on
 * every observation. It registers and exports as prom-client's does (buckets with `le`
 * first, `+Inf`, `_sum`, `_count`; a series appears once it has an observation).
 */
class SeriesHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly all: SeriesState[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly upper: readonly number[],
    registry: Registry,
  ) {
    // The registry only calls name, help, type, aggregator, get() and reset(), all present here.
    registry.registerMetric(this as unknown as Histogram);
  }

  series(labels: Record<string, string>): Series {
    const upper = this.upper;
    const s: SeriesState = {
      labels,
      buckets: new Float64Array(upper.length + 1),
      sum: 0,
      count: 0,
      observe(value: number) {
        // A bucket counts the values at or below its bound.
        let i = 0;
        while (i < upper.length && value > (upper[i] as number)) i++;
        s.buckets[i] = (s.buckets[i] as number) + 1;
        s.sum += value;
        s.count++;
      },
    };
    this.all.push(s);
    return s;
  }

  get(): {
    name: string;
    help: string;
    type: "histogram";
    aggregator: "sum";
    values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }>;
  } {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.all) {
      if (s.count === 0) continue;
      let acc = 0;
      for (let i = 0; i < this.upper.length; i++) {
        acc += s.buckets[i] as number;
        values.push({ labels: { le: this.upper[i] as number, ...s.labels }, value: acc, metricName: bucket });
      }
      values.push({ labels: { le: "+Inf", ...s.labels }, value: s.count, metricName: bucket });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.all) {
      s.buckets.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
