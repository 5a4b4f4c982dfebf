import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createRelayMetrics, LATENCY_BUCKETS_SECONDS } from "../../src/metrics.ts";
import { LINK_FAILURES } from "../../src/relay/links/options.ts";
import { FAILURE_REASONS } from "../../src/relay/protocol.ts";

describe("relay metrics", () => {
  const registry = new Registry();
  const counters = { up: { client: 10, relay: 20 }, down: { client: 30, relay: 40 } };
  const m = createRelayMetrics(registry, {
    counters: () => counters,
    activeTunnels: () => 3,
    nativeSplicedTunnels: () => 2,
    openConnections: () => 4,
    pendingHandshakes: () => 7,
    routeTableVersion: () => 9,
    routeTableFetchedAt: () => 1_000,
    edgeReachable: () => true,
    linksByPeer: () => new Map([["relay-b", 2]]),
    linkStreamsByPeer: () => new Map([["relay-b", 7]]),
    bufferedBytes: () => 5_000_000,
    bufferedLimit: 64 * 1024 * 1024,
    now: () => 6_000,
  });
  m.bufferShed("tunnel", "tenant");
  m.linkOpened("dial", 0.004);
  m.linkFailed("accept", "expired");
  m.tunnelOpened("client", "relay", 0.02);
  m.tunnelClosed("client", "relay", 1.5);
  m.tunnelFailed("loop");

  it("uses exactly the latency buckets of docs/contract/autoscaling.md §2.3, in seconds", async () => {
    expect([...LATENCY_BUCKETS_SECONDS].map((s) => Math.round(s * 1000))).toEqual([
      15, 30, 45, 60, 90, 120, 150, 180, 240, 300, 320, 440, 560, 680, 800, 1100, 1400, 1700, 2000,
    ]);
    const text = await registry.metrics();
    const les = [
      ...text.matchAll(/hopway_relay_tunnel_duration_seconds_bucket\{le="([^"]+)",peer="client",next="relay"\}/g),
    ].map((x) => x[1]);
    expect(les).toEqual([...LATENCY_BUCKETS_SECONDS.map(String), "+Inf"]);
  });

  it("exports the relay's state with closed label sets only", async () => {
    const text = await registry.metrics();
    expect(text).toContain('hopway_relay_bytes_total{direction="up",peer="relay"} 20');
    expect(text).toContain('hopway_relay_bytes_total{direction="down",peer="client"} 30');
    expect(text).toContain("hopway_relay_tunnels_active 3");
    expect(text).toContain("hopway_relay_tunnels_native 2");
    expect(text).toContain("hopway_relay_handshakes_pending 7");
    expect(text).toContain("hopway_route_table_version 9");
    expect(text).toContain("hopway_route_table_age_seconds 5");
    expect(text).toContain("hopway_edge_reachable 1");
    expect(text).toContain('hopway_relay_tunnels_failed_total{reason="loop"} 1');
    // Every failure reason exists from the start (rate() works before the first failure).
    for (const r of FAILURE_REASONS) expect(text).toContain(`hopway_relay_tunnels_failed_total{reason="${r}"}`);
    // Links: per peer relay (names from the route table), and closed sets of sides and reasons.
    expect(text).toContain('hopway_relay_links{peer="relay-b"} 2');
    expect(text).toContain('hopway_relay_link_streams{peer="relay-b"} 7');
    expect(text).toContain("hopway_relay_link_streams_open 7");
    expect(text).toContain('hopway_relay_link_handshakes_total{side="dial"} 1');
    expect(text).toContain('hopway_relay_link_failures_total{side="accept",reason="expired"} 1');
    expect(text).toContain('hopway_relay_link_failures_total{side="dial",reason="peer_identity"} 0');
    expect(text).toContain('hopway_relay_link_handshake_duration_seconds_bucket{le="0.005",side="dial"} 1');
    // What tunnels and links hold, its bound, and the resets past it, by closed sets of kinds and holders.
    expect(text).toContain("hopway_relay_buffered_bytes 5000000");
    expect(text).toContain("hopway_relay_buffered_limit_bytes 67108864");
    expect(text).toContain('hopway_relay_buffer_resets_total{kind="tunnel",holder="tenant"} 1');
    expect(text).toContain('hopway_relay_buffer_resets_total{kind="link",holder="other"} 0');
    const allowed: Record<string, Set<string>> = {
      direction: new Set(["up", "down"]),
      peer: new Set(["client", "relay", "relay-b"]),
      next: new Set(["relay", "target"]),
      reason: new Set([...FAILURE_REASONS, ...LINK_FAILURES]),
      side: new Set(["dial", "accept"]),
      kind: new Set(["tunnel", "link"]),
      holder: new Set(["tenant", "other"]),
    };
    for (const [, key, value] of text.matchAll(/([a-z_]+)="([^"]*)"/g)) {
      if (key === "le") continue;
      expect(allowed[key as string]?.has(value as string), `${key}=${value}`).toBe(true);
    }
  });
});

describe("relay metrics: per-connection series", () => {
  it("export exactly what prom-client's Histogram and Counter export for the same events", async () => {
    const ours = new Registry();
    const m = createRelayMetrics(ours, {
      counters: () => ({ up: { client: 0, relay: 0 }, down: { client: 0, relay: 0 } }),
      activeTunnels: () => 0,
      openConnections: () => 0,
      routeTableVersion: () => 1,
      routeTableFetchedAt: () => 0,
      edgeReachable: () => true,
    });
    const reference = new Registry();
    const connect = new Histogram({
      name: "hopway_relay_connect_duration_seconds",
      help: "Time from a valid CONNECT to the whole path being up.",
      labelNames: ["next"],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers: [reference],
    });
    const duration = new Histogram({
      name: "hopway_relay_tunnel_duration_seconds",
      help: "Lifetime of closed tunnels.",
      labelNames: ["peer", "next"],
      buckets: [...LATENCY_BUCKETS_SECONDS],
      registers: [reference],
    });
    // Values on bucket bounds, between them, below the first and above the last.
    const samples = [0.001, 0.015, 0.0151, 0.3, 0.32, 2, 2.5, 30];
    for (const [i, v] of samples.entries()) {
      const next = i % 2 === 0 ? "target" : "relay";
      m.tunnelOpened("client", next, v);
      connect.observe({ next }, v);
      m.tunnelClosed(i % 3 === 0 ? "relay" : "client", next, v * 2);
      duration.observe({ peer: i % 3 === 0 ? "relay" : "client", next }, v * 2);
    }
    // The same lines; series may come in another order (Prometheus reads them by name and labels).
    const lines = async (r: Registry, name: string) => (await r.getSingleMetricAsString(name)).split("\n").sort();
    for (const name of ["hopway_relay_connect_duration_seconds", "hopway_relay_tunnel_duration_seconds"]) {
      expect(await lines(ours, name)).toEqual(await lines(reference, name));
    }
    const opened = await ours.getSingleMetricAsString("hopway_relay_tunnels_opened_total");
    expect(opened).toContain('hopway_relay_tunnels_opened_total{peer="client",next="target"} 4');
    expect(opened).toContain('hopway_relay_tunnels_opened_total{peer="client",next="relay"} 4');
    expect(opened).toContain('hopway_relay_tunnels_opened_total{peer="relay",next="target"} 0');
    m.tunnelFailed("forbidden");
    m.tunnelFailed("forbidden");
    expect(await ours.getSingleMetricAsString("hopway_relay_tunnels_failed_total")).toContain(
      'hopway_relay_tunnels_failed_total{reason="forbidden"} 2',
    );
    // A reset (registry.resetMetrics) starts every series from zero.
    ours.resetMetrics();
    reference.resetMetrics();
    m.tunnelOpened("relay", "relay", 0.05);
    connect.observe({ next: "relay" }, 0.05);
    expect(await lines(ours, "hopway_relay_connect_duration_seconds")).toEqual(
      await lines(reference, "hopway_relay_connect_duration_seconds"),
    );
  });
});
