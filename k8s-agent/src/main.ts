// hopway-agent: wires the configuration, the edge client, the relay listeners,
// the metrics registry and the admin server, and owns the process lifecycle
// (SIGTERM: stop accepting, not ready, deregister, drain, exit 0).
import { createServer, type Server } from "node:net";
import { Registry } from "prom-client";
import type { IdentitySource } from "../../src/core/identity.ts";
import { WorkloadScalingSchema } from "../../src/core/scaling.ts";
import { type AdminServer, startAdminServer } from "./admin/server.ts";
import type { AgentConfig } from "./config.ts";
import { EdgeClient } from "./edge/client.ts";
import { createLogger, type Logger } from "./log.ts";
import { createRelayMetrics } from "./metrics.ts";
import { keyTargetResolver, localOwners, MembershipFollower } from "./ownership/index.ts";
import { readIdentityFiles } from "./relay/links/static-files.ts";
import { Relay } from "./relay/relay.ts";
import { RoutingTable } from "./relay/table.ts";
import { ScalingSignals } from "./scaling/signals.ts";

export interface RunningAgent {
  config: AgentConfig;
  relay: Relay;
  edge: EdgeClient;
  registry: Registry;
  /** Actual relay listen addresses (ports resolved). */
  relayAddresses: string[];
  admin: AdminServer | undefined;
  /** The graceful shutdown of spec autoscaling.md §4; resolves when done. */
  shutdown(reason?: string): Promise<void>;
}

function listenTarget(addr: string): { path: string } | { host: string; port: number } {
  if (addr.startsWith("unix:")) return { path: addr.slice(5) };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr);
  if (!m) throw new Error(`bad listen address ${addr}`);
  return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
}

export interface AgentOptions {
  /** This relay's link identity; default: from `relay.tls` (none when unset). */
  identity?: IdentitySource;
}

export async function startAgent(
  config: AgentConfig,
  log: Logger = createLogger(config.log_level, { node: config.node }),
  opts: AgentOptions = {},
): Promise<RunningAgent> {
  const registry = new Registry();
  const identity = opts.identity ?? (config.relay.tls ? readIdentityFiles(config.relay.tls.dir) : undefined);
  const linkSettings = config.relay.links;
  const table = new RoutingTable(config.node);
  const limits = config.relay.limits;
  let ready = false;
  let edge: EdgeClient | undefined;

  // The metric sources are read at scrape time, after everything below exists.
  const metrics = createRelayMetrics(registry, {
    counters: () => relay.counters,
    activeTunnels: () => relay.activeTunnels,
    openConnections: () => relay.openConnections,
    routeTableVersion: () => table.version,
    routeTableFetchedAt: () => edge?.tableConfirmedAt,
    edgeReachable: () => edge?.reachable ?? false,
    linksByPeer: () => relay.linksByPeer(),
    linkStreamsByPeer: () => relay.linkStreamsByPeer(),
  });
  // Key ownership (issue 8): group memberships followed for the relay's key-affine CONNECT and /v1/local/owners.
  const ownership = new MembershipFollower({
    url: config.edge.url,
    realm: config.edge.realm,
    token: config.edgeToken,
    dataDir: config.data_dir,
    log,
  });
  const relay = new Relay({
    name: config.node,
    table,
    realm: config.edge.realm,
    identity,
    links: {
      connectionWindowBytes: linkSettings.connection_window_bytes,
      streamWindowBytes: linkSettings.stream_window_bytes,
      maxConcurrentStreams: linkSettings.max_concurrent_streams,
      maxSessionMemoryMb: linkSettings.max_session_memory_mb,
      pingIntervalMs: linkSettings.ping_interval_ms,
      pingTimeoutMs: linkSettings.ping_timeout_ms,
      idleTimeoutMs: linkSettings.idle_timeout_ms,
      handshakeTimeoutMs: linkSettings.handshake_timeout_ms,
      redialInitialMs: linkSettings.redial_initial_ms,
      redialMaxMs: linkSettings.redial_max_ms,
    },
    linkObserver: metrics,
    clientCidrs: config.relay.client_cidrs,
    clientTokens: config.relay.client_tokens,
    limits: {
      maxConnections: limits.max_connections,
      maxConnectionsPerSource: limits.max_connections_per_source,
      connectTimeoutMs: limits.connect_timeout_ms,
      pathTimeoutMs: limits.path_timeout_ms,
      headerTimeoutMs: limits.header_timeout_ms,
      idleTimeoutMs: limits.idle_timeout_ms,
      bufferBytes: limits.buffer_bytes,
    },
    observer: metrics,
    log: (level, msg, fields) => log.log(level, msg, fields),
    resolveTarget: keyTargetResolver(ownership),
  });
  if (!identity) log.warn("no relay.tls identity: this relay neither accepts nor makes relay-to-relay hops");

  const scaling = new ScalingSignals({ config: config.scaling, podName: config.pod.name ?? config.node, registry });

  edge = new EdgeClient({
    url: config.edge.url,
    realm: config.edge.realm,
    token: config.edgeToken,
    node: config.node,
    records: config.records,
    leaseSeconds: config.edge.lease_seconds,
    waitSeconds: config.edge.wait_seconds,
    sync: config.edge.sync,
    dataDir: config.data_dir,
    onTable: (t) => table.set(t),
    report: () => scaling.heartbeatReport(),
    onScaling: (s) => {
      const parsed = WorkloadScalingSchema.safeParse(s);
      if (parsed.success) scaling.applyEdgeScaling(parsed.data);
      else log.warn("ignoring malformed scaling answer from the edge");
    },
    log,
  });
  await edge.start();
  await ownership.start();

  const servers: Server[] = [];
  const relayAddresses: string[] = [];
  for (const addr of config.relay.listen) {
    const target = listenTarget(addr);
    const local = "path" in target;
    const server = createServer(
      { allowHalfOpen: true, noDelay: true, highWaterMark: limits.buffer_bytes } as Parameters<typeof createServer>[0],
      (socket) => relay.handle(socket, { local }),
    );
    server.maxConnections = limits.max_connections + 1024; // the relay answers 503 itself below this hard stop
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(target, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => log.error("relay listener error", { error: String(err) }));
    const a = server.address();
    relayAddresses.push(
      typeof a === "string"
        ? `unix:${a}`
        : a
          ? `${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`
          : addr,
    );
    servers.push(server);
  }
  log.info("relay listening", { listen: relayAddresses, table_version: table.version ?? null });

  // ---- admin server (metrics, probes, local API, pre-delete hook): owned by the autoscaling work ----
  // The deletion-cost patcher's timers are unref'd: it never holds the process open at exit.
  // Loaded only when enabled: the Kubernetes client is ~25 MB of the agent's resident memory
  // (module code and its object graph), which would otherwise sit idle in every relay pod.
  if (config.scaling.deletion_cost.enabled) {
    const { startDeletionCost } = await import("./scaling/index.ts");
    await startDeletionCost({
      signals: scaling,
      config: config.scaling,
      podName: config.pod.name ?? config.node,
      podNamespace: config.pod.namespace,
      registry,
      log,
    });
  }
  const admin = await startAdminServer({
    listen: config.admin.listen,
    registry,
    scaling,
    tunnels: () => relay.activeTunnels,
    ready: () => ready,
    localApiFrom: config.scaling.local_api_from,
    ownership: (query, body) => localOwners(ownership, query, body),
  });
  log.info("admin listening", { url: admin.url });
  // ---- end admin server ----

  ready = true;
  let shuttingDown: Promise<void> | undefined;
  const shutdown = (reason = "shutdown") => {
    shuttingDown ??= (async () => {
      log.info("shutting down", { reason, tunnels: relay.activeTunnels, drain_seconds: config.shutdown.drain_seconds });
      ready = false;
      relay.startDrain();
      for (const s of servers) s.close();
      await edge.stop(true);
      await ownership.stop();
      const idle = await relay.waitIdle(config.shutdown.drain_seconds * 1000);
      if (!idle) log.warn("drain deadline reached; closing remaining tunnels", { tunnels: relay.activeTunnels });
      relay.destroyAll();
      await admin.close();
      log.info("stopped");
    })();
    return shuttingDown;
  };
  return { config, relay, edge, registry, relayAddresses, admin, shutdown };
}
