// The relay's Prometheus metrics, on a Registry the caller owns (the admin
// server serves it next to the scaling metrics). Label values come only from
// closed sets declared here: never node names or addresses, so a realm's size
// cannot blow up the series count.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { ListenerObserver, ListenerResult } from "./listeners/manager.ts";
import { LINK_FAILURES, type LinkFailure, type LinkObserver, type LinkSide } from "./relay/links/options.ts";
import { FAILURE_REASONS, type FailureReason } from "./relay/protocol.ts";
import type { NextRole, PeerRole, RelayCounters, RelayObserver } from "./relay/relay.ts";

/** docs/contract/autoscaling.md §2.3: 15 … 2000 ms, in seconds (the Prometheus base unit). */
export const LATENCY_BUCKETS_SECONDS = [
  0.015, 0.03, 0.045, 0.06, 0.09, 0.12, 0.15, 0.18, 0.24, 0.3, 0.32, 0.44, 0.56, 0.68, 0.8, 1.1, 1.4, 1.7, 2,
] as const;

export const PEER_ROLES: readonly PeerRole[] = ["client", "relay"];
export const NEXT_ROLES: readonly NextRole[] = ["relay", "target"];
export const DIRECTIONS = ["up", "down"] as const;

export interface RelayMetricSources {
  counters: () => RelayCounters;
  activeTunnels: () => number;
  openConnections: () => number;
  /** Unauthenticated handshakes held (relay/admission.ts: the handshake pool). */
  pendingHandshakes?: () => number;
  /** Version of the route table in use, undefined before the first one. */
  routeTableVersion: () => number | undefined;
  /** When the table in use was last confirmed by the edge (or loaded from disk), ms since epoch. */
  routeTableFetchedAt: () => number | undefined;
  edgeReachable: () => boolean;
  /** True while the edge refuses the agent's token. */
  edgeAuthFailed?: () => boolean;
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
  const opened = new Counter({
    name: "hopway_relay_tunnels_opened_total",
    help: "Tunnels established, by who connected (peer) and what the next hop is (next).",
    labelNames: ["peer", "next"] as const,
    registers: [registry],
  });
  const failed = new Counter({
    name: "hopway_relay_tunnels_failed_total",
    help: "Tunnel requests refused or failed, by reason.",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "hopway_relay_tunnels_active",
    help: "Tunnels open now.",
    registers: [registry],
    collect() {
      this.set(src.activeTunnels());
    },
  });
  new Gauge({
    name: "hopway_relay_connections_open",
    help: "Accepted connections open now (handshaking or tunnelled).",
    registers: [registry],
    collect() {
      this.set(src.openConnections());
    },
  });
  new Gauge({
    name: "hopway_relay_handshakes_pending",
    help: "Handshakes from sources outside client_cidrs not yet authenticated; capped by limits.max_handshakes.",
    registers: [registry],
    collect() {
      this.set(src.pendingHandshakes?.() ?? 0);
    },
  });
  const connectLatency = new Histogram({
    name: "hopway_relay_connect_duration_seconds",
    help: "Time from a valid CONNECT to the whole path being up.",
    labelNames: ["next"] as const,
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "hopway_relay_tunnel_duration_seconds",
    help: "Lifetime of closed tunnels.",
    labelNames: ["peer", "next"] as const,
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers: [registry],
  });
  new Gauge({
    name: "hopway_route_table_version",
    help: "Version of the route table in use (0 = none yet).",
    registers: [registry],
    collect() {
      this.set(src.routeTableVersion() ?? 0);
    },
  });
  new Gauge({
    name: "hopway_route_table_age_seconds",
    help: "Seconds since the route table in use was last confirmed current by the edge (-1 = none).",
    registers: [registry],
    collect() {
      const at = src.routeTableFetchedAt();
      this.set(at === undefined ? -1 : Math.max(0, (now() - at) / 1000));
    },
  });
  new Gauge({
    name: "hopway_edge_reachable",
    help: "1 when the last request to the edge succeeded.",
    registers: [registry],
    collect() {
      this.set(src.edgeReachable() ? 1 : 0);
    },
  });
  new Gauge({
    name: "hopway_edge_auth_failed",
    help: "1 while the edge refuses this agent's token (401/403): a configuration error, not an outage.",
    registers: [registry],
    collect() {
      this.set(src.edgeAuthFailed?.() === true ? 1 : 0);
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
  // Predeclare every series so rates exist (as 0) before the first event.
  for (const reason of FAILURE_REASONS) failed.inc({ reason }, 0);
  for (const peer of PEER_ROLES) for (const next of NEXT_ROLES) opened.inc({ peer, next }, 0);
  void bytes;
  return {
    registry,
    tunnelOpened(peer, next, connectSeconds) {
      opened.inc({ peer, next });
      connectLatency.observe({ next }, connectSeconds);
    },
    tunnelClosed(peer, next, seconds) {
      duration.observe({ peer, next }, seconds);
    },
    tunnelFailed(reason: FailureReason) {
      failed.inc({ reason });
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
  const connections = new Counter({
    name: "hopway_listener_connections_total",
    help: "Connections accepted by listeners, by outcome: carried, or the reason they were refused and closed.",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  new Gauge({
    name: "hopway_listeners_open",
    help: "Listeners accepting connections now.",
    registers: [registry],
    collect() {
      this.set(open());
    },
  });
  for (const result of LISTENER_RESULTS) connections.inc({ result }, 0);
  return {
    connection(result) {
      connections.inc({ result });
    },
  };
}
