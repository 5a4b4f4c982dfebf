// The relay core. It takes sockets that something else accepted (the agent's
// listeners in production, a test's loopback pair in tests), reads one CONNECT
// head, decides from its own route table whether and where to go, opens the
// next hop (trying the hop's alternatives), and only then answers 200 and
// splices the two sockets with bounded buffers.
//
// Routing is hop-by-hop: each relay consults ITS OWN route table for the next
// hop instead of trusting a path chosen upstream. Every relay must check its
// table anyway (never an open proxy), a relay's table is the freshest view of
// its neighbours, and no upstream (stale or hostile) can steer traffic through
// nodes this relay would not pick. The resolver's shortest paths through
// egress(S) ∪ ingress(T) make a relay's own route the suffix of the source's
// route in the reference topologies; `Hopway-Hops` (signed) records the relays
// visited so a disagreement between tables can never loop, and `Hopway-Path`
// in the 200 answer reports the path actually taken.
import { connect, type NetConnectOpts, type Socket } from "node:net";
import { MAX_HOPS } from "../../../src/core/schema.ts";
import type { CarryOutcome, CarryTarget } from "../listeners/manager.ts";
import { Admission } from "./admission.ts";
import { CidrList, clientToken, ReplayCache, signHop, tokenMatches, verifyHop } from "./auth.ts";
import {
  type ConnectRequest,
  errorResponse,
  establishedResponse,
  type FailureReason,
  findHeadEnd,
  MAX_HEAD_BYTES,
  parseConnectHead,
  parseResponseHead,
  reasonForStatus,
  STATUS_FOR,
} from "./protocol.ts";
import { adopt, connectReading, pump, readThroughNode, setSink } from "./pump.ts";
import { SelfAddresses } from "./self-addresses.ts";
import type { Dialable, RoutingTable } from "./table.ts";

export type PeerRole = "client" | "relay";
export type NextRole = "relay" | "target";

export interface RelayLimits {
  /** Authenticated connections (relay/admission.ts: the tunnel pool). */
  maxConnections: number;
  /**
   * Connections one client address may hold, handshakes included; 0 = no per-source cap.
   * Authenticated relays are exempt once their hop is verified: every tunnel a neighbour
   * relay carries comes from its one address.
   */
  maxConnectionsPerSource: number;
  /** Unauthenticated handshakes in flight (sources outside client_cidrs); the oldest goes when full. */
  maxHandshakes: number;
  /** Unauthenticated handshakes one source address may hold; 0 = no cap. */
  maxHandshakesPerSource: number;
  /** Time an unauthenticated peer gets to send its head (at most headerTimeoutMs). */
  handshakeTimeoutMs: number;
  connectTimeoutMs: number;
  /** Time for the whole downstream path to answer (each relay below has its own connect timeout). */
  pathTimeoutMs: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /** Per direction: a tunnel stops reading once this much waits to be written (socket highWaterMark). */
  bufferBytes: number;
}

export const DEFAULT_LIMITS: RelayLimits = {
  maxConnections: 10_000,
  maxConnectionsPerSource: 1_024,
  maxHandshakes: 256,
  maxHandshakesPerSource: 64,
  handshakeTimeoutMs: 3_000,
  connectTimeoutMs: 5_000,
  pathTimeoutMs: 15_000,
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 15 * 60_000,
  bufferBytes: 256 * 1024,
};

/** What the relay tells its metrics; every label value is from a closed set. */
export interface RelayObserver {
  tunnelOpened(peer: PeerRole, next: NextRole, connectSeconds: number): void;
  tunnelClosed(peer: PeerRole, next: NextRole, seconds: number): void;
  tunnelFailed(reason: FailureReason): void;
}

export interface RelayOptions {
  /** This relay's record name. */
  name: string;
  table: RoutingTable;
  /** Realm-wide hop key; without one this relay neither accepts nor signs relay hops. */
  hopKey?: Buffer | undefined;
  clientCidrs?: readonly string[];
  clientTokens?: readonly string[];
  limits?: Partial<RelayLimits>;
  maxClockSkewSeconds?: number;
  replayCacheSize?: number;
  observer?: RelayObserver;
  /** Seconds since the epoch; injectable for the skew-window tests. */
  now?: () => number;
  log?: (level: "info" | "warn" | "debug", msg: string, fields: Record<string, unknown>) => void;
  /**
   * Read through the relay's reused buffers (pump.ts); default true. False reads through
   * Node's default path, one fresh buffer per read: the benchmark's reference for what they save.
   */
  reuseReadBuffers?: boolean;
  /**
   * Rewrites a CONNECT target before the table is consulted (key-affine
   * targets, k8s-agent/src/ownership): undefined = unchanged. The new target
   * still has to pass the route table, so this never widens what is reachable.
   */
  resolveTarget?: (
    req: ConnectRequest,
  ) => Promise<undefined | { node: string; authority: string } | { reason: FailureReason; detail: string }>;
  /** This process's own listeners, never dialed (relay/self-addresses.ts); the agent fills it as it listens. */
  selfAddresses?: SelfAddresses;
}

export interface Tunnel {
  client: Socket;
  upstream: Socket;
  peer: PeerRole;
  next: NextRole;
  openedAt: number;
  /** Set by every chunk either way; the idle sweep clears it and counts the sweeps it stays clear. */
  moved: boolean;
  quietSweeps: number;
}

export interface RelayCounters {
  /** Bytes from the connecting peer towards the target, by who connected. */
  up: Record<PeerRole, number>;
  /** Bytes from the target back towards the connecting peer. */
  down: Record<PeerRole, number>;
}

type DialResult =
  | { ok: true; socket: Socket; rest: Buffer; path: string }
  | { ok: false; refusal: Refusal; final: boolean };

/**
 * How the peer learns the outcome: an HTTP answer on the socket (CONNECT), or, for a
 * listener's connection, which has no HTTP to speak, a callback (and a close on refusal).
 */
type Reply = { kind: "http" } | { kind: "listener"; settled: (outcome: CarryOutcome) => void };
const HTTP: Reply = { kind: "http" };

class Refusal {
  constructor(
    readonly reason: FailureReason,
    readonly detail: string,
    readonly status: number = STATUS_FOR[reason],
    readonly extra: Record<string, string> = {},
  ) {}
}

export class Relay {
  readonly name: string;
  readonly limits: RelayLimits;
  readonly counters: RelayCounters = { up: { client: 0, relay: 0 }, down: { client: 0, relay: 0 } };
  private readonly table: RoutingTable;
  private readonly hopKey: Buffer | undefined;
  private readonly cidrs;
  private readonly tokens: Buffer[];
  private readonly skew: number;
  private readonly replay: ReplayCache;
  private readonly observer: RelayObserver | undefined;
  private readonly now: () => number;
  private readonly log: NonNullable<RelayOptions["log"]>;
  private readonly resolveTarget: RelayOptions["resolveTarget"];
  private readonly reuseReadBuffers: boolean;
  readonly selfAddresses: SelfAddresses;
  private readonly tunnels = new Set<Tunnel>();
  private readonly sockets = new Set<Socket>();
  private readonly admission: Admission;
  // Coarse shared timers instead of a setTimeout per socket per phase: each holds callbacks in
  // expiry order and one unref'd interval sweeps it (late by at most 1/8 of the duration).
  private readonly headerDeadlines: Deadlines;
  private readonly handshakeDeadlines: Deadlines;
  private readonly connectDeadlines: Deadlines;
  private readonly pathDeadlines: Deadlines;
  private idleSweep: NodeJS.Timeout | undefined;
  private connections = 0;
  private draining = false;
  private idleWaiters: Array<() => void> = [];

  constructor(opts: RelayOptions) {
    this.name = opts.name;
    this.table = opts.table;
    this.hopKey = opts.hopKey;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.cidrs = new CidrList(opts.clientCidrs ?? ["127.0.0.0/8", "::1/128"]);
    this.tokens = (opts.clientTokens ?? []).map((t) => Buffer.from(t));
    this.skew = opts.maxClockSkewSeconds ?? 60;
    this.replay = new ReplayCache(2 * this.skew + 1, opts.replayCacheSize ?? 200_000);
    this.observer = opts.observer;
    this.now = opts.now ?? (() => Date.now() / 1000);
    this.log = opts.log ?? (() => {});
    this.resolveTarget = opts.resolveTarget;
    this.reuseReadBuffers = opts.reuseReadBuffers ?? true;
    this.selfAddresses = opts.selfAddresses ?? new SelfAddresses();
    this.headerDeadlines = new Deadlines(this.limits.headerTimeoutMs);
    this.handshakeDeadlines = new Deadlines(Math.min(this.limits.headerTimeoutMs, this.limits.handshakeTimeoutMs));
    this.admission = new Admission(this.limits);
    this.connectDeadlines = new Deadlines(this.limits.connectTimeoutMs);
    this.pathDeadlines = new Deadlines(this.limits.pathTimeoutMs);
  }

  /** Open tunnels (both sides spliced). */
  get activeTunnels(): number {
    return this.tunnels.size;
  }
  /** Accepted connections still open, in handshake or tunnelled. */
  get openConnections(): number {
    return this.connections;
  }
  /** Handshakes from sources not yet authenticated (the handshake pool). */
  get pendingHandshakes(): number {
    return this.admission.pendingHandshakes;
  }

  /** Takes ownership of an accepted socket. Never throws; a bad peer only loses its own connection. */
  handle(accepted: Socket, opts: { local?: boolean } = {}): void {
    const local = opts.local === true;
    // Authenticated by address at accept: a unix-socket peer or a client_cidrs source.
    const trusted = local || this.cidrs.allows(accepted.remoteAddress);
    const socket = this.admit(accepted, local, trusted, HTTP);
    if (socket !== undefined) {
      this.readHead(socket, local, trusted ? this.headerDeadlines : this.handshakeDeadlines);
    }
  }

  /**
   * Takes a listener's accepted socket (k8s-agent/src/listeners) and carries it to `target`
   * exactly as `CONNECT target` from a local client would go: same table, limits and metrics.
   * The listener has already admitted the source by client_cidrs, so it is authenticated by
   * address like such a client; `settled` learns the outcome once.
   */
  carry(accepted: Socket, target: CarryTarget, settled: (outcome: CarryOutcome) => void): void {
    const reply: Reply = { kind: "listener", settled };
    const socket = this.admit(accepted, false, true, reply);
    if (socket === undefined) return;
    // The client may speak first (a Redis command): hold its bytes in the kernel until the
    // path is up and the tunnel pumps them; a socket with no sink would discard them.
    socket.pause();
    const headers = new Map<string, string>();
    if (target.key !== undefined) headers.set("hopway-key", encodeURIComponent(target.key));
    const req: ConnectRequest = { authority: target.authority, node: target.node, port: target.port, headers };
    this.forward(socket, req, EMPTY, "client", [], reply).catch((err: unknown) => {
      this.log("warn", "listener connection failed", { error: String(err) });
      socket.destroy();
    });
  }

  /** Admission (docs/security/relay.md) and socket set-up shared by every way in; undefined when refused. */
  private admit(accepted: Socket, local: boolean, trusted: boolean, reply: Reply): Socket | undefined {
    if (this.draining) {
      this.refuseAtAccept(accepted, "relay is draining", reply);
      return undefined;
    }
    const source = local ? undefined : (accepted.remoteAddress ?? "unknown");
    const refusal = this.admission.refusal(source, trusted);
    if (refusal !== undefined) {
      this.refuseAtAccept(accepted, refusal, reply);
      return undefined;
    }
    // Adopted only now: a refusal above never reads, so it needs no reader.
    const socket = this.reuseReadBuffers ? adopt(accepted, this.limits.bufferBytes) : readThroughNode(accepted);
    const evicted = this.admission.enter(socket, source, trusted);
    if (evicted !== undefined) {
      this.observer?.tunnelFailed("over_capacity");
      evicted.destroy();
    }
    this.connections++;
    this.sockets.add(socket);
    // `close` fires once: plain `on` listeners skip the wrapper objects `once` allocates per socket.
    socket.on("close", () => {
      this.connections--;
      this.sockets.delete(socket);
      this.admission.release(socket);
      this.maybeIdle();
    });
    // A tunnel forwards each direction's end separately (half-close).
    socket.allowHalfOpen = true;
    socket.setNoDelay(true);
    socket.on("error", destroySelf);
    return socket;
  }

  /** Refuses at once without reading: established tunnels are untouched. */
  private refuseAtAccept(socket: Socket, detail: string, reply: Reply): void {
    this.observer?.tunnelFailed("over_capacity");
    if (reply.kind === "listener") {
      socket.destroy();
      reply.settled({ ok: false, reason: "over_capacity", status: 503, detail, failedAt: this.name });
      return;
    }
    socket.on("error", () => {});
    socket.end(errorResponse(503, "over_capacity", detail));
    socket.setTimeout(1000, () => socket.destroy());
  }

  private readHead(socket: Socket, local: boolean, deadlines: Deadlines): void {
    let buffered: Buffer = EMPTY;
    const onTimeout = () => {
      cleanup();
      // Evicted from the handshake pool meanwhile: already closed and counted.
      if (socket.destroyed) return;
      this.refuse(socket, new Refusal("header_timeout", "request head not received in time"));
    };
    deadlines.add(onTimeout);
    const onData = (chunk: Buffer): boolean => {
      // The chunk may sit in a read buffer that is reused: concat keeps the head as a copy.
      buffered = Buffer.concat([buffered, chunk]);
      const end = findHeadEnd(buffered);
      if (end < 0) {
        if (buffered.length > MAX_HEAD_BYTES) {
          cleanup();
          this.refuse(socket, new Refusal("headers_too_large", `request head over ${MAX_HEAD_BYTES} bytes`));
        }
        return true;
      }
      cleanup();
      if (end > MAX_HEAD_BYTES) {
        this.refuse(socket, new Refusal("headers_too_large", `request head over ${MAX_HEAD_BYTES} bytes`));
        return true;
      }
      const head = buffered.subarray(0, end - 4);
      const rest = buffered.subarray(end);
      this.route(socket, head, rest, local).catch((err: unknown) => {
        this.log("warn", "relay handshake failed", { error: String(err) });
        socket.destroy();
      });
      return false;
    };
    const onEnd = () => {
      cleanup();
      socket.destroy();
    };
    const cleanup = () => {
      deadlines.delete(onTimeout);
      socket.pause();
      setSink(socket, undefined);
      socket.off("end", onEnd);
    };
    setSink(socket, onData);
    socket.on("end", onEnd);
  }

  private refuse(socket: Socket, r: Refusal, reply: Reply = HTTP): void {
    this.observer?.tunnelFailed(r.reason);
    const extra: Record<string, string> = { "Hopway-Reason": r.detail, "Hopway-Failed-At": this.name, ...r.extra };
    if (reply.kind === "listener") {
      // No HTTP to answer in: close at once, and let the listener log and count why.
      socket.destroy();
      reply.settled({
        ok: false,
        reason: r.reason,
        status: r.status,
        detail: extra["Hopway-Reason"] ?? r.detail,
        failedAt: extra["Hopway-Failed-At"] ?? this.name,
      });
      return;
    }
    if (r.status === 407) extra["Proxy-Authenticate"] = 'Basic realm="hopway"';
    if (!socket.destroyed) {
      socket.end(errorResponse(r.status, r.reason, r.detail, extra));
      // Discard whatever else the peer sends so its FIN is seen and the socket closes as soon
      // as the answer is flushed; a peer that never reads its answer must not hold the slot.
      socket.resume();
      socket.setTimeout(2000, () => socket.destroy());
    }
  }

  private authenticate(
    socket: Socket,
    req: ConnectRequest,
    hops: string | undefined,
    local: boolean,
  ): PeerRole | Refusal {
    if (this.selfAddresses.isOwnConnection(socket.remoteAddress, socket.remotePort)) {
      return new Refusal("forbidden", "connection opened by this relay itself; a relay never tunnels to itself");
    }
    const auth = req.headers.get("proxy-authorization");
    if (auth && /^Hopway-HMAC\s/i.test(auth)) {
      if (!this.hopKey) return new Refusal("auth", "this relay has no hop key; relay hops are disabled");
      const r = verifyHop(this.hopKey, auth, req.authority, hops ?? "", this.now(), this.skew, this.replay);
      if (!r.ok) return new Refusal(r.status === 503 ? "over_capacity" : "auth", r.detail, r.status);
      return "relay";
    }
    // Hop bookkeeping is only believed from an authenticated relay.
    if (hops !== undefined) return new Refusal("auth", "Hopway-Hops requires relay credentials");
    // A unix-socket listener (`local`) only admits peers on this host: the same trust as loopback.
    if (local || this.cidrs.allows(socket.remoteAddress)) return "client";
    const token = clientToken(auth);
    if (token !== undefined && tokenMatches(this.tokens, token)) return "client";
    return new Refusal("auth", auth ? "credentials not accepted" : "proxy authentication required");
  }

  private async route(socket: Socket, head: Buffer, rest: Buffer, local: boolean): Promise<void> {
    const parsed = parseConnectHead(head);
    if ("reason" in parsed) return this.refuse(socket, new Refusal(parsed.reason, parsed.detail));
    const req = parsed;
    const hopsHeader = req.headers.get("hopway-hops");
    const role = this.authenticate(socket, req, hopsHeader, local);
    if (role instanceof Refusal) return this.refuse(socket, role);
    // Authenticated: out of the handshake pool into the tunnel pool, if it has room.
    if (!this.admission.promote(socket)) {
      return this.refuse(socket, new Refusal("over_capacity", "relay at connection limit"));
    }
    if (role === "relay") this.admission.exempt(socket);
    const visited = hopsHeader ? hopsHeader.split(",").map((s) => s.trim()) : [];
    return this.forward(socket, req, rest, role, visited, HTTP);
  }

  /** From an admitted request to a spliced tunnel or a refusal: the table decides. */
  private async forward(
    socket: Socket,
    req: ConnectRequest,
    rest: Buffer,
    role: PeerRole,
    visited: string[],
    reply: Reply,
  ): Promise<void> {
    const refuse = (r: Refusal) => this.refuse(socket, r, reply);
    if (visited.includes(this.name)) {
      return refuse(new Refusal("loop", `loop: already visited ${this.name} (${visited.join(" > ")})`));
    }
    if (visited.length + 1 >= MAX_HOPS) {
      return refuse(new Refusal("loop", `hop limit ${MAX_HOPS} reached`));
    }
    if (this.table.version === undefined) {
      return refuse(new Refusal("no_route_table", "relay has no route table yet"));
    }
    if (this.resolveTarget) {
      const target = await this.resolveTarget(req);
      if (target !== undefined && "reason" in target) {
        return refuse(new Refusal(target.reason, target.detail));
      }
      if (target !== undefined) {
        req.node = target.node;
        req.authority = target.authority;
      }
    }
    const found = this.table.lookup(req.node, req.port);
    if (!found.ok) return refuse(new Refusal(found.reason, found.detail));
    if (!found.direct && !this.hopKey) {
      return refuse(new Refusal("next_hop_failed", "next hop is a relay but this relay has no hop key"));
    }
    if (found.direct && found.hops.length + visited.length + 1 > MAX_HOPS) {
      return refuse(new Refusal("loop", `hop limit ${MAX_HOPS} reached`));
    }

    const started = performance.now();
    let clientGone = false;
    const onClientClose = () => {
      clientGone = true;
    };
    socket.once("close", onClientClose);
    const nextRole: NextRole = found.direct ? "target" : "relay";
    const hops = [...visited, this.name].join(", ");
    let lastFailure: Refusal = new Refusal("next_hop_failed", `no usable address for '${found.next.node}'`);

    for (const listed of found.nextAddresses) {
      if (clientGone) return;
      const checked = await this.selfAddresses.check(listed);
      if (!checked.ok) {
        // Never dial our own listeners, whatever the table says: refuse the request outright.
        lastFailure = new Refusal(checked.self ? "forbidden" : "next_hop_failed", checked.detail);
        if (checked.self) break;
        continue;
      }
      const addr = checked.dial;
      if (clientGone) return;
      // Every address a relay dials is visible at debug level: where a tunnel really went.
      this.log("debug", "dialing", { next: found.next.node, address: addr.address });
      const attempt = await this.dial(addr, found.next.node, found.direct ? undefined : req.authority, hops);
      if (clientGone) {
        if (attempt.ok) attempt.socket.destroy();
        return;
      }
      if (!attempt.ok) {
        lastFailure = attempt.refusal;
        // Only a failure to reach the hop moves on to its alternatives; an answer from it is final.
        if (attempt.final) break;
        this.log("info", "next hop address failed", {
          next: found.next.node,
          address: addr.address,
          why: attempt.refusal.detail,
        });
        continue;
      }
      socket.off("close", onClientClose);
      // Before any client byte flows: should this lead back here, the head is read after this.
      this.selfAddresses.trackOutbound(attempt.socket);
      const path = found.direct ? this.name : `${this.name}, ${attempt.path}`;
      this.splice(
        socket,
        attempt.socket,
        role,
        nextRole,
        rest,
        attempt.rest,
        path,
        (performance.now() - started) / 1000,
        reply,
      );
      return;
    }
    socket.off("close", onClientClose);
    refuse(lastFailure);
  }

  private dial(addr: Dialable, nextNode: string, authority: string | undefined, hops: string): Promise<DialResult> {
    return new Promise((resolve) => {
      const hwm = this.limits.bufferBytes;
      // net.Socket passes highWaterMark on to its Duplex; @types/node does not declare it.
      const extra = { allowHalfOpen: true, highWaterMark: hwm };
      const opts: NetConnectOpts = addr.path
        ? { path: addr.path, ...extra }
        : { host: addr.host, port: addr.port, noDelay: true, ...extra };
      const up = this.reuseReadBuffers ? connectReading(opts) : readThroughNode(connect(opts));
      let settled = false;
      let buffered: Buffer = EMPTY;
      const finish = (r: DialResult) => {
        if (settled) return;
        settled = true;
        this.connectDeadlines.delete(onConnectTimeout);
        this.pathDeadlines.delete(onPathTimeout);
        up.off("error", onError);
        setSink(up, undefined);
        up.off("end", onEnd);
        up.off("connect", onConnect);
        if (!r.ok) up.destroy();
        else up.on("error", destroySelf);
        resolve(r);
      };
      const onConnectTimeout = () =>
        finish({
          ok: false,
          final: false,
          refusal: new Refusal("connect_timeout", `connect to ${addr.address} timed out`),
        });
      const onPathTimeout = () =>
        finish({
          ok: false,
          final: true,
          refusal: new Refusal("connect_timeout", "path beyond the next relay did not come up in time"),
        });
      this.connectDeadlines.add(onConnectTimeout);
      const onError = (err: NodeJS.ErrnoException) =>
        finish({
          ok: false,
          final: false,
          refusal: new Refusal("next_hop_failed", `${addr.address}: ${err.code ?? err.message}`),
        });
      // Whatever listens at the address may not be a Hopway relay at all (a route table built from
      // addresses that are not this network's): say so, and blame this hop, not the named relay.
      const notARelay = (what: string): DialResult => ({
        ok: false,
        final: true,
        refusal: new Refusal(
          "next_hop_failed",
          `next hop ${addr.address} did not answer as a Hopway relay (${what}); expected relay ${nextNode}`,
        ),
      });
      const onData = (chunk: Buffer): boolean => {
        buffered = Buffer.concat([buffered, chunk]);
        const end = findHeadEnd(buffered);
        if (end < 0) {
          if (buffered.length > MAX_HEAD_BYTES) finish(notARelay("an answer head over 16 KiB"));
          else if (!startsLikeHttp(buffered)) finish(notARelay("not an HTTP answer"));
          return true;
        }
        up.pause();
        const res = parseResponseHead(buffered.subarray(0, end - 4));
        if (typeof res === "string") {
          finish(notARelay(res));
          return false;
        }
        // Every answer of a Hopway relay names itself: a refusal by Hopway-Error, a tunnel by Hopway-Path.
        if (!res.headers.has(res.status === 200 ? "hopway-path" : "hopway-error")) {
          finish(notARelay(`HTTP ${res.status} without ${res.status === 200 ? "Hopway-Path" : "Hopway-Error"}`));
          return false;
        }
        if (res.status !== 200) {
          // Pass the downstream verdict through so the client learns the real reason and where it arose.
          const why = res.headers.get("hopway-reason") ?? res.headers.get("hopway-error") ?? "refused by next relay";
          const failedAt = res.headers.get("hopway-failed-at") ?? nextNode;
          finish({
            ok: false,
            final: true,
            refusal: new Refusal(reasonForStatus(res.status), why, res.status, {
              "Hopway-Reason": why,
              "Hopway-Failed-At": failedAt,
            }),
          });
          return false;
        }
        finish({ ok: true, socket: up, rest: buffered.subarray(end), path: res.headers.get("hopway-path") ?? "?" });
        return false;
      };
      const onEnd = () => finish(notARelay("it closed the connection without an answer"));
      const onConnect = () => {
        if (authority === undefined) return finish({ ok: true, socket: up, rest: EMPTY, path: "" });
        // Connected: the rest of the path gets its own, longer budget (each relay below
        // enforces its own connect timeout and answers 504 itself when it runs out).
        this.connectDeadlines.delete(onConnectTimeout);
        this.pathDeadlines.add(onPathTimeout);
        const auth = signHop(this.hopKey as Buffer, this.name, authority, hops, this.now());
        setSink(up, onData);
        up.once("end", onEnd);
        up.write(
          `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nHopway-Hops: ${hops}\r\nProxy-Authorization: ${auth}\r\n\r\n`,
        );
      };
      up.once("error", onError);
      up.once("connect", onConnect);
    });
  }

  private splice(
    client: Socket,
    upstream: Socket,
    peer: PeerRole,
    next: NextRole,
    clientRest: Buffer,
    upstreamRest: Buffer,
    path: string,
    connectSeconds: number,
    reply: Reply,
  ): void {
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    const tunnel: Tunnel = {
      client,
      upstream,
      peer,
      next,
      openedAt: performance.now(),
      moved: false,
      quietSweeps: 0,
    };
    this.tunnels.add(tunnel);
    this.observer?.tunnelOpened(peer, next, connectSeconds);
    const counters = this.counters;
    // The answer and any bytes the next hop already sent leave in one write.
    client.cork();
    if (reply.kind === "http") client.write(establishedResponse(path));
    else reply.settled({ ok: true, path });
    if (upstreamRest.length > 0) {
      counters.down[peer] += upstreamRest.length;
      client.write(upstreamRest);
    }
    client.uncork();
    if (clientRest.length > 0) {
      counters.up[peer] += clientRest.length;
      upstream.write(clientRest);
    }
    let closed = 0;
    const onClose = (hadError: boolean) => {
      // A clean close of one side means its peer already sent FIN and it flushed everything;
      // the other socket still flushes what it holds and closes by itself. Destroying it here
      // would drop that tail, so only an error tears the whole tunnel down at once.
      if (hadError) {
        client.destroy();
        upstream.destroy();
      }
      if (++closed === 2) {
        this.tunnels.delete(tunnel);
        this.observer?.tunnelClosed(peer, next, (performance.now() - tunnel.openedAt) / 1000);
        this.maybeIdle();
      }
    };
    client.on("close", onClose);
    upstream.on("close", onClose);
    if (this.limits.idleTimeoutMs > 0 && this.idleSweep === undefined) this.startIdleSweep();
    pump(client, upstream, tunnel, true, counters);
    pump(upstream, client, tunnel, false, counters);
  }

  /**
   * One interval for every tunnel instead of a timer per socket refreshed on every read and
   * write: a tunnel whose `moved` flag stayed clear for `idle` worth of sweeps is closed.
   * It closes between `idle` and `idle` + one sweep period (1/4 of it) after the last byte.
   */
  private startIdleSweep(): void {
    const idle = this.limits.idleTimeoutMs;
    const period = Math.max(10, Math.ceil(idle / 4));
    const sweeps = Math.ceil(idle / period);
    this.idleSweep = setInterval(() => {
      for (const t of this.tunnels) {
        if (t.moved) {
          t.moved = false;
          t.quietSweeps = 0;
        } else if (++t.quietSweeps > sweeps) {
          t.client.destroy();
          t.upstream.destroy();
        }
      }
      if (this.tunnels.size === 0) {
        clearInterval(this.idleSweep);
        this.idleSweep = undefined;
      }
    }, period);
    this.idleSweep.unref();
  }

  /** Stops taking new connections (they get 503) so a shutdown can drain. */
  startDrain(): void {
    this.draining = true;
  }

  /** Resolves when no tunnel and no handshake is open, or at the deadline; true when idle. */
  waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.connections === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.connections === 0), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Closes every remaining connection (after the drain deadline). */
  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
    for (const t of this.tunnels) t.upstream.destroy();
  }

  private maybeIdle(): void {
    if (this.connections !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

const EMPTY = Buffer.alloc(0);

function destroySelf(this: Socket): void {
  this.destroy();
}

/**
 * Timers of one fixed duration, coarse: callbacks are kept in insertion order,
 * which is expiry order, and one unref'd interval (1/8 of the duration, at most
 * 1 s) runs the expired ones from the front. Adding and removing is a Map
 * insert/delete, with no timer object per connection and phase.
 */
class Deadlines {
  private readonly due = new Map<() => void, number>();
  private readonly tick: number;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly ms: number) {
    this.tick = Math.max(5, Math.min(1000, Math.ceil(ms / 8)));
  }
  add(fn: () => void): void {
    this.due.set(fn, performance.now() + this.ms);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), this.tick);
      this.timer.unref();
    }
  }
  delete(fn: () => void): void {
    this.due.delete(fn);
  }
  private sweep(): void {
    const now = performance.now();
    for (const [fn, at] of this.due) {
      if (at > now) break;
      this.due.delete(fn);
      fn();
    }
    if (this.due.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

/** Whether the first bytes could still begin an HTTP/1.x status line, so garbage is refused without waiting. */
function startsLikeHttp(buf: Buffer): boolean {
  const seen = buf.subarray(0, 5).toString("latin1");
  return "HTTP/".startsWith(seen);
}
