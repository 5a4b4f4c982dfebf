// A relay core in its own process, for the benchmark: the same Relay class,
// listener settings, default limits (header, connect and idle timeouts) and
// Prometheus observer as hopway-agent, with a fixed route table instead of the
// edge (so the edge's own load does not enter the figures).
// Usage (forked with an IPC channel): relay-worker.ts NAME TLS_DIR ROUTES_JSON [PEERS] [LISTEN]
// TLS_DIR holds tls.crt, tls.key, ca.crt for relay links (realm "bench"); PEERS, comma-separated,
// are the relays whose links it accepts. LISTEN is a comma-separated list of loopback host:port
// (default 127.0.0.1:0); once all listen it sends {port, ports}, `port` being the first's.
// HOPWAY_BENCH_LISTENERS (JSON list of targets) adds a listener per target, reported as `listeners`.
// HOPWAY_LINK_PROTOCOL (mux | h2, as for the agent) is the framing it dials links with.
// HOPWAY_LINK_WINDOW_GROWTH_BYTES sets links.windowGrowthBudgetBytes (0: stream windows stay fixed).
// HOPWAY_MAX_BUFFERED_BYTES sets limits.maxBufferedBytes; HOPWAY_BENCH_TENANTS (JSON) the table's peers.tenants.
// HOPWAY_NAMESPACE_STREAMS_PER_SECOND and HOPWAY_LINK_HANDSHAKES_PER_SOURCE_PER_SECOND set the limits of those names.
// Messages in: {cmd: "rss"} → {rss} after a full GC; {cmd: "metrics"} → {text}.
import { createServer } from "node:net";
import { Registry } from "prom-client";
import { ListenerManager } from "../../k8s-agent/src/listeners/manager.ts";
import { createRelayMetrics } from "../../k8s-agent/src/metrics.ts";
import { Relay } from "../../k8s-agent/src/relay/relay.ts";
import { RoutingTable } from "../../k8s-agent/src/relay/table.ts";
import type { Route } from "../../src/core/schema.ts";
import { identityFromFiles } from "./identity.ts";

const [name = "relay", tlsDir = "", routesJson = "[]", peers = "", listenList = "127.0.0.1:0"] = process.argv.slice(2);
const routes = JSON.parse(routesJson) as Route[];
for (const p of peers.split(",")) if (p !== "" && p !== name) routes.push({ from: name, to: p, hops: null });
const table = new RoutingTable(name);
// HOPWAY_BENCH_TENANTS (JSON, the route table's peers.tenants): which peers are tenants' relays.
const tenants = process.env.HOPWAY_BENCH_TENANTS;
table.set({
  node: name,
  version: 1,
  routes,
  ...(tenants === undefined ? {} : { peers: { any: true, nodes: [], tenants: JSON.parse(tenants) } }),
});
const bufferBytes = 256 * 1024;
const registry = new Registry();
const metrics = createRelayMetrics(registry, {
  counters: () => relay.counters,
  activeTunnels: () => relay.activeTunnels,
  nativeSplicedTunnels: () => relay.nativeSplicedTunnels,
  openConnections: () => relay.openConnections,
  routeTableVersion: () => table.version,
  routeTableFetchedAt: () => Date.now(),
  edgeReachable: () => true,
  linksByPeer: () => relay.linksByPeer(),
  linkStreamsByPeer: () => relay.linkStreamsByPeer(),
});
const relay: Relay = new Relay({
  name,
  table,
  realm: "bench",
  identity: tlsDir ? identityFromFiles(tlsDir) : undefined,
  linkObserver: metrics,
  links: {
    ...(process.env.HOPWAY_LINK_PROTOCOL === "h2" || process.env.HOPWAY_LINK_PROTOCOL === "mux"
      ? { protocol: process.env.HOPWAY_LINK_PROTOCOL }
      : {}),
    ...(process.env.HOPWAY_LINK_WINDOW_GROWTH_BYTES !== undefined
      ? { windowGrowthBudgetBytes: Number(process.env.HOPWAY_LINK_WINDOW_GROWTH_BYTES) }
      : {}),
  },
  // The agent's defaults except the connection caps: one client process holds the whole idle-tunnel
  // run from one address, so the total is raised and the per-source cap is off.
  limits: {
    maxConnections: 20_000,
    maxConnectionsPerSource: 0,
    bufferBytes,
    ...(process.env.HOPWAY_MAX_BUFFERED_BYTES !== undefined
      ? { maxBufferedBytes: Number(process.env.HOPWAY_MAX_BUFFERED_BYTES) }
      : {}),
    ...(process.env.HOPWAY_NAMESPACE_STREAMS_PER_SECOND !== undefined
      ? { namespaceStreamsPerSecond: Number(process.env.HOPWAY_NAMESPACE_STREAMS_PER_SECOND) }
      : {}),
    ...(process.env.HOPWAY_LINK_HANDSHAKES_PER_SOURCE_PER_SECOND !== undefined
      ? { linkHandshakesPerSourcePerSecond: Number(process.env.HOPWAY_LINK_HANDSHAKES_PER_SOURCE_PER_SECOND) }
      : {}),
  },
  observer: metrics,
  // The bench's reference lane: Node's default read path, a fresh buffer per read.
  reuseReadBuffers: process.env.HOPWAY_BENCH_NODE_READS !== "1",
  nativeSplice: process.env.HOPWAY_NATIVE_SPLICE !== "0",
});
const listening = listenList.split(",").map((hp) => {
  const i = hp.lastIndexOf(":");
  const server = createServer(
    { allowHalfOpen: true, noDelay: true, highWaterMark: bufferBytes } as Parameters<typeof createServer>[0],
    (s) => relay.handle(s),
  );
  return new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(hp.slice(i + 1)), hp.slice(0, i), () => {
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : 0);
    });
  });
});
// Listeners (docs/listeners.md) for the bench's listener lanes: HOPWAY_BENCH_LISTENERS is a JSON
// list of targets; each gets a listener on 127.0.0.1 (any port), reported as `listeners`.
const listenerTargets = JSON.parse(process.env.HOPWAY_BENCH_LISTENERS ?? "[]") as string[];
const listenerManager = new ListenerManager({
  carrier: relay,
  clientCidrs: ["127.0.0.0/8"],
  bufferBytes,
  log: (level, msg, fields) => {
    if (level !== "info") process.stderr.write(`relay-worker ${name}: ${msg} ${JSON.stringify(fields)}\n`);
  },
});
const listenerPorts = listenerManager
  .apply(listenerTargets.map((target, i) => ({ name: `bench-${i}`, listen: "127.0.0.1:0", target })))
  .then((problems) => {
    if (problems.length > 0) throw new Error(JSON.stringify(problems));
    return listenerManager.list().map((l) => Number(l.address.slice(l.address.lastIndexOf(":") + 1)));
  });
Promise.all([Promise.all(listening), listenerPorts]).then(
  ([ports, listeners]) => process.send?.({ port: ports[0], ports, listeners }),
  (err: unknown) => {
    // The parent waits for the ports: fail loudly instead of leaving it waiting.
    process.stderr.write(`relay-worker ${name}: cannot listen on ${listenList}: ${String(err)}\n`);
    process.exit(1);
  },
);
process.on("message", (m: { cmd?: string }) => {
  if (m.cmd === "rss") {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const m = process.memoryUsage();
    process.send?.({ rss: m.rss, heap: m.heapUsed, tunnels: relay.activeTunnels, buffered: relay.bufferedBytes });
  } else if (m.cmd === "metrics") {
    void registry.metrics().then((text) => process.send?.({ text }));
  }
});
process.on("disconnect", () => process.exit(0));
