// hopway-agent: wires the configuration, the edge client, the relay listeners,
// the metrics registry and the admin server, and owns the process lifecycle
// (SIGTERM: stop accepting, not ready, deregister, drain, exit 0).
import { createServer, type Server } from "node:net";
import type { IdentitySource } from "@hopway/core/identity";
import { listenersFor, type NamedListenerDeclaration } from "@hopway/core/listener";
import { WorkloadScalingSchema } from "@hopway/core/wire";
import { Registry } from "prom-client";
import { type AdminServer, startAdminServer } from "./admin/server.ts";
import type { AgentConfig } from "./config.ts";
import { EdgeClient } from "./edge/client.ts";
import { agentInstance } from "./edge/instance.ts";
import { EdgePacer } from "./edge/pacer.ts";
import { createRelayIdentity, type RelayIdentity } from "./identity/index.ts";
import { ListenerFollower } from "./listeners/follower.ts";
import { ListenerManager } from "./listeners/manager.ts";
import { createLogger, type Logger } from "./log.ts";
import { createListenerMetrics, createRelayMetrics } from "./metrics.ts";
import { keyTargetResolver, localOwners, MembershipFollower } from "./ownership/index.ts";
import { nativeSpliceStatus } from "./relay/native-splice.ts";
import { Relay } from "./relay/relay.ts";
import { SelfAddresses } from "./relay/self-addresses.ts";
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
  /** The relay's link identity (docs/identity.md); the link layer reads it. */
  identity: RelayIdentity;
  /** Listeners (docs/listeners.md): from the config file now; `apply` changes them live. */
  listeners: ListenerManager;
  /** The graceful shutdown of docs/contract/autoscaling.md §5; resolves when done. */
  shutdown(reason?: string): Promise<void>;
}

function listenTarget(addr: string): { path: string } | { host: string; port: number } {
  if (addr.startsWith("unix:")) return { path: addr.slice(5) };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr);
  if (!m) throw new Error(`bad listen address ${addr}`);
  return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
}

export interface AgentOptions {
  /** The identity the relay presents on its links; default: the one `relay.tls` configures. */
  identity?: IdentitySource;
}

export async function startAgent(
  config: AgentConfig,
  log: Logger = createLogger(config.log_level, { node: config.node }),
  opts: AgentOptions = {},
): Promise<RunningAgent> {
  const registry = new Registry();
  // Edge-issued (default) or cert-manager files (docs/identity.md); tests may hand links another source.
  // Every request of this agent to the edge, paced together after a 429 (edge/pacer.ts).
  const pacer = new EdgePacer();
  const identity = createRelayIdentity(config, registry, log, pacer.fetch);
  const linkIdentity = opts.identity ?? identity;
  const linkSettings = config.relay.links;
  const table = new RoutingTable(config.node);
  const limits = config.relay.limits;
  let ready = false;
  let edge: EdgeClient | undefined;

  // The metric sources are read at scrape time, after everything below exists.
  const metrics = createRelayMetrics(registry, {
    counters: () => relay.counters,
    activeTunnels: () => relay.activeTunnels,
    nativeSplicedTunnels: () => relay.nativeSplicedTunnels,
    openConnections: () => relay.openConnections,
    pendingHandshakes: () => relay.pendingHandshakes,
    handshakesLimit: config.relay.limits.max_handshakes,
    namespaceShareMax: () => relay.largestNamespaceShare,
    // The relay's own limits, with the default it derives when the config leaves it out.
    namespaceShareLimit: () => relay.limits.maxConnectionsPerNamespace,
    bufferedBytes: () => relay.bufferedBytes,
    bufferedLimit: limits.max_buffered_bytes,
    routeTableVersion: () => table.version,
    routeTableFetchedAt: () => edge?.tableConfirmedAt,
    edgeReachable: () => edge?.reachable ?? false,
    edgeAuthFailed: () => edge?.authFailed ?? false,
    edgeThrottled: () => pacer.throttled,
    linksByPeer: () => relay.linksByPeer(),
    linkStreamsByPeer: () => relay.linkStreamsByPeer(),
  });
  // Key ownership (docs/stateful.md): group memberships followed for the relay's key-affine CONNECT and /v1/local/owners.
  const ownership = new MembershipFollower({
    url: config.edge.url,
    realm: config.edge.realm,
    token: config.edgeToken,
    dataDir: config.data_dir,
    fetch: pacer.fetch,
    edgeLimits: {
      ratePerSecond: config.ownership.edge_rate_per_second,
      burst: config.ownership.edge_burst,
      negativeTtlMs: config.ownership.negative_ttl_ms,
      errorTtlMs: config.ownership.error_ttl_ms,
    },
    log,
  });
  // Filled as each listener comes up: the relay never dials any of them.
  const selfAddresses = new SelfAddresses(undefined, config.relay.dial_names_to_loopback);
  const relay = new Relay({
    name: config.node,
    selfAddresses,
    table,
    realm: config.edge.realm,
    identity: linkIdentity,
    links: {
      protocol: linkSettings.protocol,
      connectionWindowBytes: linkSettings.connection_window_bytes,
      streamWindowBytes: linkSettings.stream_window_bytes,
      tenantStreamWindowBytes: linkSettings.tenant_stream_window_bytes,
      maxStreamWindowBytes: linkSettings.max_stream_window_bytes,
      windowGrowthBudgetBytes: linkSettings.window_growth_budget_bytes,
      maxConcurrentStreams: linkSettings.max_concurrent_streams,
      maxLinksPerPeer: linkSettings.max_links_per_peer,
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
      ...(limits.max_connections_per_namespace === undefined
        ? {}
        : { maxConnectionsPerNamespace: limits.max_connections_per_namespace }),
      maxLinksPerNamespace: limits.max_links_per_namespace,
      namespaceStreamsPerSecond: limits.namespace_streams_per_second,
      namespaceStreamBurst: limits.namespace_stream_burst,
      linkHandshakesPerSourcePerSecond: limits.link_handshakes_per_source_per_second,
      linkHandshakeBurstPerSource: limits.link_handshake_burst_per_source,
      maxHandshakes: limits.max_handshakes,
      maxHandshakesPerSource: limits.max_handshakes_per_source,
      handshakeTimeoutMs: limits.handshake_timeout_ms,
      connectTimeoutMs: limits.connect_timeout_ms,
      pathTimeoutMs: limits.path_timeout_ms,
      headerTimeoutMs: limits.header_timeout_ms,
      idleTimeoutMs: limits.idle_timeout_ms,
      bufferBytes: limits.buffer_bytes,
      maxBufferedBytes: limits.max_buffered_bytes,
    },
    observer: metrics,
    log: (level, msg, fields) => log.log(level, msg, fields),
    resolveTarget: keyTargetResolver(ownership),
    nativeSplice: config.relay.native_splice,
  });
  log.log("info", "native splice", {
    enabled: relay.nativeSpliceOn,
    detail: config.relay.native_splice ? nativeSpliceStatus() : "turned off (relay.native_splice: false)",
  });

  const scaling = new ScalingSignals({ config: config.scaling, podName: config.pod.name ?? config.node, registry });

  edge = new EdgeClient({
    url: config.edge.url,
    realm: config.edge.realm,
    token: config.edgeToken,
    node: config.node,
    instance: await agentInstance(config.pod.uid, config.data_dir, log),
    records: config.records,
    leaseSeconds: config.edge.lease_seconds,
    waitSeconds: config.edge.wait_seconds,
    sync: config.edge.sync,
    takeover: config.edge.takeover,
    dataDir: config.data_dir,
    fetch: pacer.fetch,
    onTable: (t) => table.set(t),
    onTrustBundle: (bundle) => identity.updateTrustBundle(bundle),
    report: () => scaling.heartbeatReport(),
    links: () => relay.linkReport(),
    onScaling: (s) => {
      const parsed = WorkloadScalingSchema.safeParse(s);
      if (parsed.success) scaling.applyEdgeScaling(parsed.data);
      else log.warn("ignoring malformed scaling answer from the edge");
    },
    log,
  });
  await edge.start();
  // After the edge client: its first lease write registers the node record the certificate is issued for.
  await identity.start();
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
    // The relay answers 503 itself below this hard stop (both pools, and refusals closing).
    server.maxConnections = limits.max_connections + limits.max_handshakes + 1024;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(target, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => log.error("relay listener error", { error: String(err) }));
    const a = server.address();
    selfAddresses.add(a);
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

  const listeners = new ListenerManager({
    carrier: relay,
    clientCidrs: config.relay.client_cidrs,
    bufferBytes: limits.buffer_bytes,
    log: (level, msg, fields) => log.log(level, msg, fields),
    observer: createListenerMetrics(registry, () => listeners.list().length),
    reserved: [...relayAddresses, config.admin.listen],
  });
  // The config file's listeners, then the realm's declarations for this relay's record; the
  // file wins a listen address both name.
  const ownRecord = config.records.find((r) => r.name === config.node);
  const applyListeners = async (declared: NamedListenerDeclaration[]) => {
    if (ownRecord === undefined && declared.length > 0) {
      log.warn("declared listeners ignored: this agent registers no record named after its node to match them", {
        node: config.node,
      });
    }
    const fromFile = new Set(config.listeners.map((l) => l.listen));
    const wanted = [...config.listeners, ...listenersFor(ownRecord, declared).filter((l) => !fromFile.has(l.listen))];
    for (const p of await listeners.apply(wanted)) {
      log.error("listener not started", { listen: p.listen, problem: p.message });
    }
  };
  await applyListeners([]);
  const listenerFollower = new ListenerFollower({
    url: config.edge.url,
    realm: config.edge.realm,
    token: config.edgeToken,
    dataDir: config.data_dir,
    waitSeconds: config.edge.wait_seconds,
    fetch: pacer.fetch,
    onChange: applyListeners,
    log,
  });
  await listenerFollower.start();

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
    notReadyReason: () => {
      const problem = edge.problem;
      if (problem !== undefined) return problem;
      // A relay without a valid table refuses every CONNECT with 503; a corrupt persisted table
      // and an unreachable edge leave it exactly there.
      if (table.version === undefined) {
        return {
          reason: "no_route_table",
          message: edge?.reachable
            ? "no valid route table yet"
            : "no valid route table (none usable on disk and the edge is unreachable)",
        };
      }
      if (servers.some((s) => !s.listening)) {
        return { reason: "listener_down", message: "a relay listener is not listening" };
      }
      // Without a valid certificate no link can be made or accepted: when the table routes through
      // other relays, those tunnels would all fail (a relay that only reaches its own targets is fine).
      if (table.needsLinks && linkIdentity.material() === undefined) {
        return {
          reason: "no_certificate",
          message: "no valid relay certificate yet (docs/identity.md); relay-to-relay links are refused",
        };
      }
      return undefined;
    },
    localApiFrom: config.scaling.local_api_from,
    localApiToken: config.localApiToken,
    isOwnConnection: (accepted) => selfAddresses.isOwnConnection(accepted),
    ownership: (query, body) => localOwners(ownership, query, body),
  });
  selfAddresses.add(admin.address);
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
      await listenerFollower.stop();
      await listeners.close();
      await edge.stop(true);
      await ownership.stop();
      const idle = await relay.waitIdle(config.shutdown.drain_seconds * 1000);
      if (!idle) log.warn("drain deadline reached; closing remaining tunnels", { tunnels: relay.activeTunnels });
      relay.destroyAll();
      identity.stop();
      await admin.close();
      log.info("stopped");
    })();
    return shuttingDown;
  };
  return { config, relay, edge, registry, relayAddresses, admin, identity, listeners, shutdown };
}
