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
// route in the reference topologies; `hopway-hops` records the relays visited
// so a disagreement between tables can never loop, and `Hopway-Path` in the 200
// answer reports the path actually taken.
//
// Relay-to-relay hops travel over links (links/, docs/links.md): mutually
// authenticated TLS 1.3 connections (hopway-mux/1 or HTTP/2 inside), one CONNECT stream per tunnel. The
// same listener takes both: a first byte 0x16 is a TLS record (a link), anything
// else is an application's plain CONNECT.
import type { ServerHttp2Stream } from "node:http2";
import { connect, type NetConnectOpts, Socket } from "node:net";
import type { IdentitySource } from "@hopway/core/identity";
import { MAX_HOPS } from "@hopway/core/schema";
import type { CarryOutcome, CarryTarget } from "../listeners/manager.ts";
import { LogLimit } from "../log.ts";
import { Admission } from "./admission.ts";
import { CidrList, clientToken, tokenMatches } from "./auth.ts";
import { BUFFER_CHECK_MS, chooseShed, HELD_CHECK_MS, type Holding, type LinkHolding, SHED_TO } from "./buffered.ts";
import { IndexedSet } from "./churn.ts";
import { Deadline, DeadlineCall, Deadlines } from "./deadlines.ts";
import {
  abortEnd,
  DEFAULT_LINK_SETTINGS,
  type LinkHeaders,
  type LinkObserver,
  type LinkOpen,
  type LinkOutgoingHeaders,
  LinkPool,
  type LinkRequester,
  LinkServer,
  type LinkServerStream,
  type LinkSettings,
  type LinkStream,
  pipeLeg,
  type TunnelEnd,
  WindowBudget,
} from "./links/index.ts";
import {
  type NativeConn,
  type NativeEnd,
  type NativeListeners,
  NativePipe,
  type NativeSplicer,
  nativeSplicer,
  type SpliceEnd,
} from "./native-splice.ts";
import {
  type ConnectRequest,
  errorResponse,
  establishedResponse,
  type FailureReason,
  findHeadEnd,
  isRefusalStatus,
  MAX_HEAD_BYTES,
  parseAuthority,
  parseConnectHead,
  reasonForStatus,
  STATUS_FOR,
  sanitize,
} from "./protocol.ts";
import { adopt, connectReading, type Handover, pump, readThroughNode, setSink, tryAdopt, unpump } from "./pump.ts";
import { normalizeIp, SelfAddresses } from "./self-addresses.ts";
import type { Dialable, Lookup, RoutingTable } from "./table.ts";

export type PeerRole = "client" | "relay";
export type NextRole = "relay" | "target";

export interface RelayLimits {
  /** Authenticated connections and link streams (relay/admission.ts: the tunnel pool). */
  maxConnections: number;
  /**
   * Connections one client address may hold, handshakes included; 0 = no per-source cap.
   * Relay links are exempt once verified: a neighbour carries all its tunnels on a few links.
   */
  maxConnectionsPerSource: number;
  /**
   * Of maxConnections, what the relays of one tenant (an unshared namespace the route table lists
   * under `peers.tenants`) may hold together: their links and the tunnels on them; 0 = no cap.
   * Left out of RelayOptions.limits: a quarter of maxConnections.
   */
  maxConnectionsPerNamespace: number;
  /**
   * Of those, how many links the relays of one tenant may hold (a link costs far more memory than
   * a stream on it); 0 = no cap.
   */
  maxLinksPerNamespace: number;
  /**
   * Link streams the relays of one tenant may open per second, with `namespaceStreamBurst` at
   * once after a quiet spell (docs/contract/relay-protocol.md §3.2); 0 = no limit.
   */
  namespaceStreamsPerSecond: number;
  namespaceStreamBurst: number;
  /**
   * TLS handshakes (relay links) one source address may start per second, with
   * `linkHandshakeBurstPerSource` at once; past it the connection is closed before any TLS work
   * (docs/contract/relay-protocol.md §3.2); 0 = no limit.
   */
  linkHandshakesPerSourcePerSecond: number;
  linkHandshakeBurstPerSource: number;
  /** Unauthenticated handshakes in flight (sources outside client_cidrs); the oldest goes when full. */
  maxHandshakes: number;
  /** Unauthenticated handshakes one source address may hold; 0 = no cap. */
  maxHandshakesPerSource: number;
  /** Time an unauthenticated peer gets to send its head or finish its TLS handshake (at most headerTimeoutMs). */
  handshakeTimeoutMs: number;
  connectTimeoutMs: number;
  /** Time for the whole downstream path to answer (each relay below has its own connect timeout). */
  pathTimeoutMs: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /** Per direction: a tunnel stops reading once this much waits to be written (socket highWaterMark). */
  bufferBytes: number;
  /**
   * What all tunnels and links may hold in the relay's memory together; above it the largest
   * holders are reset (buffered.ts; docs/security/relay.md, "What tunnels hold together is bounded"). 0 = no bound.
   */
  maxBufferedBytes: number;
}

export const DEFAULT_LIMITS: RelayLimits = {
  maxConnections: 10_000,
  maxConnectionsPerSource: 1_024,
  maxConnectionsPerNamespace: 2_500,
  maxLinksPerNamespace: 128,
  namespaceStreamsPerSecond: 1_000,
  namespaceStreamBurst: 2_000,
  linkHandshakesPerSourcePerSecond: 20,
  linkHandshakeBurstPerSource: 100,
  maxHandshakes: 256,
  maxHandshakesPerSource: 64,
  handshakeTimeoutMs: 3_000,
  connectTimeoutMs: 5_000,
  pathTimeoutMs: 15_000,
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 15 * 60_000,
  bufferBytes: 256 * 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
};

/** What the relay tells its metrics; every label value is from a closed set. */
export interface RelayObserver {
  tunnelOpened(peer: PeerRole, next: NextRole, connectSeconds: number): void;
  tunnelClosed(peer: PeerRole, next: NextRole, seconds: number): void;
  tunnelFailed(reason: FailureReason): void;
  /** A tunnel was reset, or a link closed, because the relay held more than limits.max_buffered_bytes. */
  bufferShed?(kind: "tunnel" | "link", holder: "tenant" | "other"): void;
}

export interface RelayOptions {
  /** This relay's record name. */
  name: string;
  table: RoutingTable;
  /**
   * The realm (the trust domain of relay certificates) and this relay's TLS identity.
   * Without an identity this relay neither accepts nor makes relay hops.
   */
  realm?: string;
  identity?: IdentitySource | undefined;
  links?: Partial<LinkSettings>;
  linkObserver?: LinkObserver;
  clientCidrs?: readonly string[];
  clientTokens?: readonly string[];
  limits?: Partial<RelayLimits>;
  observer?: RelayObserver;
  log?: (level: "info" | "warn" | "debug", msg: string, fields: Record<string, unknown>) => void;
  /**
   * Read through the relay's reused buffers (pump.ts); default true. False reads through
   * Node's default path, one fresh buffer per read: the benchmark's reference for what they save.
   */
  reuseReadBuffers?: boolean;
  /**
   * Moves the bytes of tunnels whose two sides are plain TCP sockets on the native splice's
   * thread (native-splice.ts, docs/relay.md "Native splice") where it was built; default true.
   * It also gives listeners their native connections and the ends of paths over links their
   * native pipes (docs/relay.md "Native listeners"). False keeps every tunnel on the JavaScript
   * path (pump.ts) and every connection a net.Socket.
   */
  nativeSplice?: boolean;
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
  /** A socket, or a CONNECT stream of a relay link. */
  client: TunnelEnd;
  upstream: TunnelEnd;
  peer: PeerRole;
  next: NextRole;
  openedAt: number;
  /** Set by every chunk either way; the idle sweep clears it and counts the sweeps it stays clear. */
  moved: boolean;
  /** While the native splice's thread moves this tunnel's bytes: its id there, and the relay to give it back to. */
  native: { id: number; relay: Relay } | null;
  quietSweeps: number;
  /** Sides closed so far (0, 1, 2). */
  closed: number;
  /** The tenant whose relay opened it or is its next hop (the route table's `peers.tenants`): who its bytes are charged to. */
  tenant: string | undefined;
}

/** Each side of a tunnel knows its tunnel, so one shared close listener serves every tunnel. */
const TUNNEL = Symbol("hopway.tunnel");
type TunnelSide = TunnelEnd & { [TUNNEL]?: Tunnel };

export interface RelayCounters {
  /** Bytes from the connecting peer towards the target, by who connected. */
  up: Record<PeerRole, number>;
  /** Bytes from the target back towards the connecting peer. */
  down: Record<PeerRole, number>;
}

/** Bytes by direction and peer, as read: `counters` sums them from several places, so adding to it changes nothing. */
export interface ByteCounts {
  readonly up: Readonly<Record<PeerRole, number>>;
  readonly down: Readonly<Record<PeerRole, number>>;
}

/** A next hop the table allows. */
type Route = Extract<Lookup, { ok: true }>;

/** A hop that did not come up; `final` when it answered (its alternatives are not tried). */
type DialFailure = { ok: false; refusal: Refusal; final: boolean };
type DialResult = { ok: true; socket: TunnelEnd; rest: Buffer; path: string } | DialFailure;

/** The next hop is up: what `splice` needs. */
interface PathUp {
  upstream: TunnelEnd;
  rest: Buffer;
  path: string;
  next: NextRole;
  seconds: number;
  /** The next hop's tenant, when the next hop is a tenant's relay. */
  tenant: string | undefined;
}

/**
 * How the peer learns the outcome: an HTTP answer on the socket (CONNECT), or, for a
 * listener's connection, which has no HTTP to speak, a callback (and a close on refusal).
 */
type Reply = { kind: "http" } | ListenerReply;
/** `first`: what the client sent while its path came up (bounded by HOLD_BYTES), forwarded ahead of the tunnel. */
type ListenerReply = { kind: "listener"; settled: (outcome: CarryOutcome) => void; first: Buffer };
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
  /** Bytes moved in JavaScript, and by natively spliced tunnels that ended (`counters` adds the live ones). */
  private readonly bytes: RelayCounters = { up: { client: 0, relay: 0 }, down: { client: 0, relay: 0 } };
  private readonly table: RoutingTable;
  /** Relay links, both ways; undefined without an identity. */
  readonly linkPool: LinkPool | undefined;
  readonly linkServer: LinkServer | undefined;
  private readonly cidrs;
  private readonly tokens: Buffer[];
  private readonly observer: RelayObserver | undefined;
  private readonly log: NonNullable<RelayOptions["log"]>;
  private readonly resolveTarget: RelayOptions["resolveTarget"];
  private readonly reuseReadBuffers: boolean;
  private readonly splicer: NativeSplicer | undefined;
  private nativeTunnels = 0;
  readonly selfAddresses: SelfAddresses;
  private readonly tunnels = new IndexedSet<Tunnel>();
  private readonly sockets = new IndexedSet<Socket>();
  /** Native listeners' connections this relay holds (listen.c): waiting for their path, or carried. */
  private readonly nativeConns = new IndexedSet<NativeConn>();
  /** Of nativeConns, those carried (their target connected). */
  private nativeCarried = 0;
  private readonly admission: Admission<Socket | NativeConn>;
  // Coarse shared timers instead of a setTimeout per socket per phase: each holds callbacks in
  // expiry order and one unref'd interval sweeps it (late by at most 1/8 of the duration).
  // A connection's opening (first byte, then head or TLS handshake) has one deadline from accept:
  // headerTimeoutMs for a trusted source, the shorter handshake timeout for any other.
  private readonly headerDeadlines: Deadlines;
  private readonly handshakeDeadlines: Deadlines;
  // The link handshake timeout caps a TLS opening, from accept too, where it is the shorter.
  private readonly linkCapDeadlines: Deadlines | undefined;
  private readonly linkHandshakeCapDeadlines: Deadlines | undefined;
  // How long a refused peer has to read its answer before its socket is destroyed.
  private readonly acceptRefusalLinger = new Deadlines(ACCEPT_REFUSAL_LINGER_MS);
  private readonly refusalLinger = new Deadlines(REFUSAL_LINGER_MS);
  private readonly connectDeadlines: Deadlines;
  private readonly pathDeadlines: Deadlines;
  private idleSweep: NodeJS.Timeout | undefined;
  private bufferCheck: NodeJS.Timeout | undefined;
  /** A check brought forward (onHeld), pending. */
  private bufferCheckSoon: NodeJS.Immediate | NodeJS.Timeout | undefined;
  private lastBufferCheck = Number.NEGATIVE_INFINITY;
  /** What tunnels and links held at the last check (checkBuffered). */
  private buffered = 0;
  private readonly bufferWarnings = new LogLimit(1, TENANT_WARN_MS);
  private connections = 0;
  private draining = false;
  private readonly tenantWarnings = new LogLimit(1, TENANT_WARN_MS);
  private readonly tenantRateWarnings = new LogLimit(1, TENANT_WARN_MS);
  private readonly handshakeRateWarnings = new LogLimit(1, TENANT_WARN_MS);
  private readonly linkObserver: LinkObserver | undefined;
  private idleWaiters: Array<() => void> = [];
  // Listeners shared by every connection (`this` is the socket or stream), not closures per connection.
  private readonly onOwnedClose: (this: Socket) => void;
  private readonly onTunnelSideClose: (this: TunnelEnd, hadError?: boolean) => void;
  private readonly onLinkStreamClose: (this: PathStream) => void;

  constructor(opts: RelayOptions) {
    const relay = this;
    this.onOwnedClose = function (this: Socket) {
      relay.connections--;
      relay.sockets.delete(this);
      relay.admission.release(this);
      relay.maybeIdle();
    };
    this.onLinkStreamClose = function (this: PathStream) {
      const opening = this[OPENING];
      // Reset while its path is being opened: the dial (or the onward stream) goes now, and the
      // stream's place in the tunnel pool once the attempt has settled (`handleLinkStream`), so a
      // peer that resets what it opens cannot make this relay hold more than max_connections.
      if (opening?.active === true) {
        opening.closed = true;
        opening.dial?.abort();
        return;
      }
      relay.linkStreamGone(this);
    };
    this.onTunnelSideClose = function (this: TunnelEnd, hadError?: boolean) {
      const tunnel = (this as TunnelSide)[TUNNEL] as Tunnel;
      // A clean close of one side means its peer already sent FIN and it flushed everything;
      // the other side still flushes what it holds and closes by itself. Destroying it here
      // would drop that tail, so only an error (or a reset stream) tears the whole tunnel down.
      if (hadError === true || this.errored || wasReset(this)) {
        abortEnd(tunnel.client);
        abortEnd(tunnel.upstream);
      }
      if (++tunnel.closed === 2) {
        relay.tunnels.delete(tunnel);
        relay.observer?.tunnelClosed(tunnel.peer, tunnel.next, (performance.now() - tunnel.openedAt) / 1000);
        relay.maybeIdle();
      }
    };
    this.name = opts.name;
    this.table = opts.table;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    if (opts.limits?.maxConnectionsPerNamespace === undefined) {
      this.limits.maxConnectionsPerNamespace = defaultPerNamespace(this.limits.maxConnections);
    }
    this.cidrs = new CidrList(opts.clientCidrs ?? ["127.0.0.0/8", "::1/128"]);
    this.tokens = (opts.clientTokens ?? []).map((t) => Buffer.from(t));
    this.observer = opts.observer;
    this.linkObserver = opts.linkObserver;
    this.log = opts.log ?? (() => {});
    if (opts.identity) {
      if (opts.realm === undefined) throw new Error("a relay with an identity needs its realm");
      const base = { ...DEFAULT_LINK_SETTINGS, ...opts.links };
      // One budget for every link of this relay, so all the growth of its streams' windows is bounded together.
      const settings = { ...base, windowBudget: new WindowBudget(base.windowGrowthBudgetBytes) };
      const common = {
        realm: opts.realm,
        identity: opts.identity,
        settings,
        observer: opts.linkObserver,
        log: this.log,
      };
      // A tenant's links, however many, grow their windows from at most its share of the budget.
      const tenantOf = (peer: string) => this.table.tenant(peer);
      this.linkPool = new LinkPool({ ...common, name: this.name, tenantOf });
      this.linkServer = new LinkServer({
        ...common,
        acceptTimeoutMs: Math.min(settings.handshakeTimeoutMs, this.limits.headerTimeoutMs),
        knows: (peer) => this.table.mayLink(peer),
        tenantOf,
        onStream: (stream, headers, peer) =>
          // As for a client's CONNECT (`route`): whatever throws ends this stream, never the process.
          this.handleLinkStream(stream, headers, peer).catch((err: unknown) => {
            this.log("warn", "link stream failed", { peer, error: String(err) });
            stream.destroy();
          }),
      });
      // A relay whose record left the table loses its links with that same update.
      this.table.onChange(() => {
        this.linkServer?.dropUnknown();
        this.linkPool?.closeWhere((peer) => !this.table.has(peer));
        // Links made before the peer's tenant changed carry the wrong windows and an uncounted place.
        this.linkServer?.retireRetenanted();
        this.linkPool?.retireRetenanted();
      });
    }
    this.resolveTarget = opts.resolveTarget;
    this.reuseReadBuffers = opts.reuseReadBuffers ?? true;
    this.splicer = opts.nativeSplice === false ? undefined : nativeSplicer();
    this.selfAddresses = opts.selfAddresses ?? new SelfAddresses();
    this.admission = new Admission(this.limits);
    this.headerDeadlines = new Deadlines(this.limits.headerTimeoutMs);
    this.handshakeDeadlines = new Deadlines(Math.min(this.limits.headerTimeoutMs, this.limits.handshakeTimeoutMs));
    const linkHandshakeMs = opts.links?.handshakeTimeoutMs ?? DEFAULT_LINK_SETTINGS.handshakeTimeoutMs;
    const linkCap = (opening: number) =>
      this.linkServer !== undefined && linkHandshakeMs < opening ? new Deadlines(linkHandshakeMs) : undefined;
    this.linkCapDeadlines = linkCap(this.limits.headerTimeoutMs);
    this.linkHandshakeCapDeadlines = linkCap(Math.min(this.limits.headerTimeoutMs, this.limits.handshakeTimeoutMs));
    this.connectDeadlines = new Deadlines(this.limits.connectTimeoutMs);
    this.pathDeadlines = new Deadlines(this.limits.pathTimeoutMs);
  }

  /** Socket buffer per direction (limits.bufferBytes); listeners accept with it (k8s-agent/src/listeners). */
  get bufferBytes(): number {
    return this.limits.bufferBytes;
  }
  /**
   * Bytes both ways by who connected, up to now: what JavaScript moved, plus what the native
   * splice's thread moved for this relay's tunnels (ended and live). Read at scrape time.
   */
  get counters(): ByteCounts {
    if ((this.nativeTunnels === 0 && this.nativeCarried === 0) || this.splicer === undefined) return this.bytes;
    const up = { ...this.bytes.up };
    const down = { ...this.bytes.down };
    for (const c of this.nativeConns) {
      if (!c.carried) continue;
      const [u, d] = c.counts();
      up.client += u;
      down.client += d;
    }
    for (const t of this.tunnels) {
      const b = t.native === null ? undefined : this.splicer.bytes(t.native.id);
      if (b === undefined) continue;
      up[t.peer] += b[0];
      down[t.peer] += b[1];
    }
    return { up, down };
  }
  /** Whether this relay hands socket-to-socket tunnels to the native splice (built, loaded and not turned off). */
  get nativeSpliceOn(): boolean {
    return this.splicer !== undefined;
  }
  /** Tunnels whose bytes the native splice's thread moves now (of `activeTunnels`), native listeners' included. */
  get nativeSplicedTunnels(): number {
    let n = this.nativeTunnels;
    if (this.nativeCarried > 0) for (const c of this.nativeConns) if (c.carried) n += c.counts()[2];
    return n;
  }
  /** Open tunnels (both sides spliced), native listeners' carried connections included. */
  get activeTunnels(): number {
    return this.tunnels.size + this.nativeCarried;
  }
  /**
   * Where a listener may accept natively (listen.c, docs/relay.md "Native listeners"): the
   * process's native listeners while this relay uses the native splice; undefined otherwise.
   */
  get nativeListeners(): NativeListeners | undefined {
    return this.splicer?.listeners();
  }
  /** Open relay links per peer, both directions. */
  linksByPeer(): Map<string, number> {
    return mergeCounts(this.linkPool?.linksByPeer(), this.linkServer?.linksByPeer());
  }
  /**
   * This relay's links as it reports them with its heartbeat (the topology page): every peer
   * with an open link (up), and every peer whose last dial failed and that has none (down).
   * Peers it has no reason to link to right now (idle links close) are not listed.
   */
  linkReport(): Array<{ peer: string; up: boolean; streams: number }> {
    const links = this.linksByPeer();
    const streams = this.linkStreamsByPeer();
    const out = [...links]
      .filter(([, n]) => n > 0)
      .map(([peer]) => ({ peer, up: true, streams: streams.get(peer) ?? 0 }));
    for (const peer of this.linkPool?.failingPeers() ?? []) {
      if (!links.get(peer)) out.push({ peer, up: false, streams: 0 });
    }
    return out.sort((a, b) => a.peer.localeCompare(b.peer)).slice(0, 256);
  }
  /** Open streams on relay links per peer, both directions. */
  linkStreamsByPeer(): Map<string, number> {
    return mergeCounts(this.linkPool?.streamsByPeer(), this.linkServer?.streamsByPeer());
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
    // Authenticated by address at accept: a unix-socket peer or a client_cidrs source. Anyone else
    // waits in the small handshake pool until its credentials (token or link certificate) pass.
    const trusted = local || this.cidrs.allows(accepted.remoteAddress);
    const source = local ? undefined : normalizeIp(accepted.remoteAddress ?? "unknown");
    if (!this.take(accepted, source, trusted, HTTP)) return;
    // One deadline from accept for the first byte and the head (or the TLS handshake) together.
    const deadline = new OpeningDeadline(
      trusted ? this.headerDeadlines : this.handshakeDeadlines,
      trusted ? this.linkCapDeadlines : this.linkHandshakeCapDeadlines,
    );
    if (this.linkServer === undefined) {
      this.admitPlain(accepted, local, EMPTY, deadline);
      return;
    }
    // Links and plain CONNECT share the listener: wait for the first byte, without losing any.
    const adopted = this.reuseReadBuffers ? tryAdopt(accepted, this.limits.bufferBytes) : undefined;
    if (adopted !== undefined) {
      this.admission.rekey(accepted, adopted);
      // Already reading through the relay's buffers: nothing is allocated per read on the way.
      this.holdUntilFirstBytes(adopted, deadline, (spoke) => {
        setSink(adopted, (chunk) => {
          spoke();
          if (chunk[0] === 0x16) {
            // The chunk is in a buffer the next read reuses: the TLS server gets a copy, and the
            // socket after Node has finished this read (the link's TLS layer takes over its reads).
            const hello = Buffer.from(chunk);
            process.nextTick(() => {
              adopted.unshift(hello);
              this.acceptLink(adopted, deadline, source);
            });
            return false;
          }
          this.readHead(this.keep(adopted), local, chunk, deadline);
          return true;
        });
        return () => setSink(adopted, undefined);
      });
      return;
    }
    // Read through Node's own path until the first byte (the bench's reference lane, or a socket
    // that cannot be adopted).
    this.holdUntilFirstBytes(accepted, deadline, (spoke) => {
      const onReadable = () => {
        const first = accepted.read() as Buffer | null;
        if (first === null) return;
        spoke();
        if (first[0] === 0x16) {
          accepted.unshift(first);
          this.acceptLink(accepted, deadline, source);
        } else {
          this.admitPlain(accepted, local, first, deadline);
        }
      };
      accepted.on("readable", onReadable);
      return () => accepted.off("readable", onReadable);
    });
  }

  /**
   * Holds an accepted socket until its first bytes: a link's TLS record goes to the link server,
   * anything else is read as a CONNECT head. `watch` starts watching for those bytes (calling
   * `spoke` before it hands them on) and returns how to stop. A socket that ends, fails or is
   * evicted from the handshake pool first is released; one silent past its deadline gets the 408
   * a head that never ends gets. Its first bytes do not stop `deadline`: the head or the TLS
   * handshake gets what is left of it.
   */
  private holdUntilFirstBytes(
    socket: Socket,
    deadline: OpeningDeadline,
    watch: (spoke: () => void) => () => void,
  ): void {
    this.sockets.add(socket);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.sockets.delete(socket);
      this.connections--;
      this.admission.release(socket);
      this.maybeIdle();
    };
    let unwatch = ignore;
    const cleanup = () => {
      deadline.onExpire(ignore);
      unwatch();
      socket.off("end", gone);
      socket.off("error", gone);
      socket.off("close", gone);
    };
    const gone = () => {
      cleanup();
      deadline.clear();
      socket.destroy();
      release();
    };
    const onTimeout = () => {
      cleanup();
      // Evicted from the handshake pool meanwhile: already closed and counted.
      if (socket.destroyed) return release();
      // Silent since it connected: the same answer as a head that never ends.
      this.observer?.tunnelFailed("header_timeout");
      // Answered: its handshake slot is free for the next peer, whatever this one does now.
      this.admission.refused(socket);
      socket.once("close", release);
      this.answerAndClose(
        socket,
        errorResponse(408, "header_timeout", "request head not received in time", { "Hopway-Failed-At": this.name }),
        this.refusalLinger,
      );
    };
    unwatch = watch(() => {
      cleanup();
      this.sockets.delete(socket);
      this.admission.spoke(socket);
    });
    deadline.onExpire(onTimeout);
    socket.once("end", gone);
    socket.once("error", gone);
    // Evicted from the handshake pool before its first byte.
    socket.once("close", gone);
  }

  /** A socket whose first byte is a TLS record: the link server's, until `deadline` if not verified by then. */
  private acceptLink(socket: Socket, deadline: OpeningDeadline, source: string | undefined): void {
    // A handshake costs the relay's one thread far more than an accept (key exchange, a signature,
    // the peer's chain): past its source's rate the connection is closed before any of it. Whoever
    // reaches the port could otherwise keep the relay busy with handshakes alone.
    if (this.admission.handshakeRateRefusal(source, performance.now()) !== undefined) {
      deadline.clear();
      this.connections--;
      this.admission.release(socket);
      this.linkObserver?.linkFailed("accept", "handshake_rate");
      this.warnHandshakeRate(source);
      socket.destroy();
      this.maybeIdle();
      return;
    }
    const server = this.linkServer as LinkServer;
    this.sockets.add(socket);
    server.accept(
      socket,
      () => {
        deadline.clear();
        this.sockets.delete(socket);
        this.connections--;
        this.admission.release(socket);
        this.maybeIdle();
      },
      (peer) => {
        deadline.clear();
        // Verified: a relay of the realm. Out of the handshake pool, and not counted per source,
        // but against its tenant's share when the table says it has one.
        const tenant = this.table.tenant(peer);
        const refusal = this.admission.tenantLinkRefusal(tenant);
        if (refusal !== undefined) return { reason: "namespace_limit", detail: refusal };
        if (!this.admission.promote(socket, tenant)) {
          return { reason: "over_capacity", detail: "relay at connection limit" };
        }
        this.admission.exempt(socket);
        return undefined;
      },
    );
    // The TLS server's own handshake timeout starts only now, at the first byte, whatever the
    // source; the opening's deadline counts from accept and is the shorter handshake_timeout_ms for
    // a source outside client_cidrs. The error's code is the one the link server counts and logs as
    // a handshake timeout.
    deadline.onExpire(() => {
      if (!socket.destroyed) socket.destroy(linkHandshakeTimeout());
    });
    deadline.isLink();
  }

  /** A plain CONNECT connection (already counted); `first` holds bytes already read from it. */
  private admitPlain(accepted: Socket, local: boolean, first: Buffer, deadline: OpeningDeadline): void {
    const socket = this.own(accepted);
    this.readHead(socket, local, first, deadline);
  }

  /**
   * Takes an admitted, counted socket over: reads through the relay's buffers from now on
   * (adopted only now: a refusal before this never reads, so it needs no reader).
   */
  private own(accepted: Socket): Socket {
    const socket = this.reuseReadBuffers ? adopt(accepted, this.limits.bufferBytes) : readThroughNode(accepted);
    this.admission.rekey(accepted, socket);
    return this.keep(socket);
  }

  /** An admitted socket that reads as the relay's from now on: counted until it closes. */
  private keep(socket: Socket): Socket {
    this.sockets.add(socket);
    // `close` fires once: plain `on` listeners skip the wrapper objects `once` allocates per socket.
    socket.on("close", this.onOwnedClose);
    // A tunnel forwards each direction's end separately (half-close).
    socket.allowHalfOpen = true;
    socket.setNoDelay(true);
    socket.on("error", destroySelf);
    return socket;
  }

  /**
   * Takes a listener's accepted socket (k8s-agent/src/listeners) and carries it to `target`
   * exactly as `CONNECT target` from a local client would go: same table, limits and metrics.
   * The listener has already admitted the source by client_cidrs, so it is authenticated by
   * address like such a client; `settled` learns the outcome once.
   */
  carry(accepted: Socket, target: CarryTarget, settled: (outcome: CarryOutcome) => void): void {
    const reply: ListenerReply = { kind: "listener", settled, first: EMPTY };
    if (!this.take(accepted, accepted.remoteAddress ?? "unknown", true, reply)) return;
    const socket = this.own(accepted);
    this.holdFirst(socket, reply);
    const headers = target.key === undefined ? NO_HEADERS : new Map([["hopway-key", encodeURIComponent(target.key)]]);
    const req: ConnectRequest = { authority: target.authority, node: target.node, port: target.port, headers };
    this.connectClient(socket, req, EMPTY, "client", reply).catch((err: unknown) => {
      this.log("warn", "listener connection failed", { error: String(err) });
      socket.destroy();
    });
  }

  /**
   * The client may speak first (a Redis command). The socket keeps reading while the path
   * comes up and what it reads is held, to leave with the tunnel's first write: the tunnel
   * then needs no further turn of the event loop to pick it up, and a client that sent little
   * costs no read stop and restart, as with a forwarder that never stopped reading. Past
   * HOLD_BYTES reading stops and the rest waits in the kernel, so a connection whose path is
   * still coming up holds at most that plus one read (about what a CONNECT head and its
   * trailing bytes may hold).
   */
  private holdFirst(socket: Socket, reply: ListenerReply): void {
    setSink(socket, (chunk) => {
      reply.first = reply.first.length === 0 ? Buffer.from(chunk) : Buffer.concat([reply.first, chunk]);
      return reply.first.length < HOLD_BYTES;
    });
  }

  /**
   * `carry` for a connection a native listener accepted (listen.c): the same admission, route
   * table, limits, metrics and refusals. When the next hop is the target, the target is dialled
   * and the connection carried natively, with no net.Socket on either side; when it is a relay
   * (a link stream), the connection becomes a net.Socket and goes exactly as `carry` would.
   */
  carryNative(conn: NativeConn, target: CarryTarget, settled: (outcome: CarryOutcome) => void): void {
    const reply: ListenerReply = { kind: "listener", settled, first: EMPTY };
    conn.onEnded = (end) => this.nativeConnEnded(conn, end);
    if (!this.take(conn, conn.remoteAddress, true, reply)) return;
    this.nativeConns.add(conn);
    const headers = target.key === undefined ? NO_HEADERS : new Map([["hopway-key", encodeURIComponent(target.key)]]);
    const req: ConnectRequest = { authority: target.authority, node: target.node, port: target.port, headers };
    this.carryNativePath(conn, req, reply).catch((err: unknown) => {
      this.log("warn", "listener connection failed", { error: String(err) });
      conn.destroy(true);
    });
  }

  private async carryNativePath(conn: NativeConn, req: ConnectRequest, reply: ListenerReply): Promise<void> {
    const found = await this.routeOf(req, []);
    if (conn.destroyed) return;
    if (found instanceof Refusal) return this.refuseNative(conn, found, reply);
    if (!found.direct) {
      // A link stream on the other side: the connection's bytes go between its descriptor and the
      // stream with no net.Socket (NativePipe).
      this.pipePathUp(conn, await this.dialPath(found, req, [], conn), reply);
      return;
    }
    if (found.nextAddresses.some((a) => a.path !== "")) {
      // A unix socket on the other side: the relay's socket path carries it.
      const socket = this.socketOf(conn, reply);
      if (socket === undefined) return;
      this.clientPathUp(socket, await this.dialPath(found, req, [], socket), EMPTY, "client", reply);
      return;
    }
    const started = performance.now();
    const r = await this.tryAddresses(
      found,
      conn,
      (addr) => this.dialNative(conn, addr),
      () => {},
    );
    if (r === undefined) return;
    if (r instanceof Refusal) return this.refuseNative(conn, r, reply);
    this.selfAddresses.trackNative(conn, r.addr);
    conn.carried = true;
    conn.openedAt = performance.now();
    this.nativeCarried++;
    if (this.limits.idleTimeoutMs > 0 && this.idleSweep === undefined) this.startIdleSweep();
    reply.settled({ ok: true, path: this.name });
    this.observer?.tunnelOpened("client", "target", (conn.openedAt - started) / 1000);
  }

  /**
   * `clientPathUp` for a native connection whose path goes on over a link: it becomes a tunnel
   * end of its own (NativePipe) and reads from here on. What its client sent while the path came
   * up waited in the kernel; it is read now.
   */
  private pipePathUp(conn: NativeConn, up: PathUp | Refusal | undefined, reply: ListenerReply): void {
    if (up === undefined) return;
    if (up instanceof Refusal) {
      this.refuseNative(conn, up, reply);
      return;
    }
    const pipe = conn.pipe();
    if (pipe === undefined) {
      up.upstream.destroy();
      return;
    }
    reply.settled({ ok: true, path: up.path });
    if (up.rest.length > 0) {
      this.bytes.down.client += up.rest.length;
      pipe.write(up.rest);
    }
    this.splice(pipe, up.upstream, "client", up.next, up.seconds, up.tenant);
  }

  /**
   * The native connection's target side: connected, or why not (never final: the next address is
   * tried). The conn closing meanwhile ends the dial with it (NativeListeners: ECANCELED).
   */
  private dialNative(conn: NativeConn, addr: Dialable): Promise<{ ok: true } | DialFailure> {
    return new Promise((resolve) => {
      const fail = (refusal: Refusal) => resolve({ ok: false, refusal, final: false });
      const expiring = new DeadlineCall(() => conn.abortDial());
      conn.onDial = (error) => {
        conn.onDial = undefined;
        this.connectDeadlines.delete(expiring);
        if (error === undefined) resolve({ ok: true });
        else fail(nativeDialRefusal(addr, error));
      };
      if (!conn.dial(addr.host, addr.port)) {
        conn.onDial = undefined;
        fail(new Refusal("next_hop_failed", `${addr.address}: connection closed`));
        return;
      }
      this.connectDeadlines.add(expiring);
    });
  }

  /**
   * A held native connection as a net.Socket the relay owns, counted as the same connection;
   * undefined when it is gone.
   */
  private socketOf(conn: NativeConn, reply: ListenerReply): Socket | undefined {
    const fd = conn.release();
    this.nativeConns.delete(conn);
    if (fd === undefined) {
      this.connections--;
      this.admission.release(conn);
      this.maybeIdle();
      return undefined;
    }
    // With the relay's buffer size, so that `own` adopts it in place (no second Socket).
    const opts = { fd, readable: true, writable: true, allowHalfOpen: true, highWaterMark: this.limits.bufferBytes };
    const accepted = new Socket(opts as ConstructorParameters<typeof Socket>[0]);
    this.admission.rekey(conn, accepted);
    // From here it is a listener's socket like any other: read, held and counted as in `carry`.
    const socket = this.own(accepted);
    this.holdFirst(socket, reply);
    return socket;
  }

  private refuseNative(conn: NativeConn, r: Refusal, reply: ListenerReply): void {
    this.observer?.tunnelFailed(r.reason);
    conn.destroy();
    reply.settled(this.refusedOutcome(r));
  }

  /** A refusal as a listener logs and counts it: where it arose, the reason a relay further on gave. */
  private refusedOutcome(r: Refusal): CarryOutcome {
    return {
      ok: false,
      reason: r.reason,
      status: r.status,
      detail: r.extra["Hopway-Reason"] ?? r.detail,
      failedAt: r.extra["Hopway-Failed-At"] ?? this.name,
    };
  }

  /** Both sides of a native connection closed: counted as a socket's close is. */
  private nativeConnEnded(conn: NativeConn, end: NativeEnd): void {
    if (!this.nativeConns.delete(conn)) return;
    this.connections--;
    this.admission.release(conn);
    this.selfAddresses.untrackNative(conn);
    if (conn.carried) {
      this.nativeCarried--;
      this.bytes.up.client += end.up;
      this.bytes.down.client += end.down;
      this.observer?.tunnelClosed("client", "target", (performance.now() - conn.openedAt) / 1000);
    }
    this.maybeIdle();
  }

  /**
   * Admission at accept, for every way in (docs/security/relay.md): refused while draining or
   * past the pools' limits; otherwise counted, in the tunnel pool when `trusted`, else in the
   * handshake pool (whose oldest silent member may make room). False when refused.
   */
  private take(accepted: Socket | NativeConn, address: string | undefined, trusted: boolean, reply: Reply): boolean {
    // One client is one source however the listener spells its address: a dual-stack listener
    // reports an IPv4 peer as ::ffff:a.b.c.d, a 0.0.0.0 listener as a.b.c.d.
    const source = address === undefined ? undefined : normalizeIp(address);
    const refusal = this.draining ? "relay is draining" : this.admission.refusal(source, trusted);
    if (refusal !== undefined) {
      this.refuseAtAccept(accepted, refusal, reply);
      return false;
    }
    const evicted = this.admission.enter(accepted, source, trusted);
    if (evicted !== undefined) {
      this.observer?.tunnelFailed("over_capacity");
      evicted.destroy();
    }
    this.connections++;
    return true;
  }

  /**
   * Refuses at once, counted in no pool: established tunnels are untouched. Such a socket still
   * counts against the listener's hard stop (server.maxConnections) until it is destroyed, at a
   * fixed deadline whatever the peer sends.
   */
  private refuseAtAccept(socket: Socket | NativeConn, detail: string, reply: Reply): void {
    this.observer?.tunnelFailed("over_capacity");
    if (reply.kind === "listener" || !(socket instanceof Socket)) {
      socket.destroy();
      if (reply.kind === "listener") {
        reply.settled({ ok: false, reason: "over_capacity", status: 503, detail, failedAt: this.name });
      }
      return;
    }
    this.answerAndClose(socket, errorResponse(503, "over_capacity", detail), this.acceptRefusalLinger);
  }

  /**
   * Ends `socket` with `answer` and destroys it once `linger` has passed, counted from now: the
   * peer has that long to read the answer. What it sends meanwhile is read and dropped, never
   * buffered, so its FIN is seen (the socket then closes as soon as the answer is flushed) and
   * the close is a FIN rather than a reset that could discard the answer. Sending more does not
   * delay the destroy, unlike socket.setTimeout, which every incoming byte restarts.
   */
  private answerAndClose(socket: Socket, answer: Buffer, linger: Deadlines): void {
    socket.on("error", ignore);
    socket.end(answer);
    socket.resume();
    const destroy = new DeadlineCall(() => socket.destroy());
    linger.add(destroy);
    // Gone before the deadline: the sweep need not keep the socket alive until then.
    socket.once("close", () => linger.delete(destroy));
  }

  /** Reads a CONNECT head until `deadline`, armed at accept: the head gets what the first byte left of it. */
  private readHead(socket: Socket, local: boolean, first: Buffer, deadline: OpeningDeadline): void {
    let buffered: Buffer = EMPTY;
    const onTimeout = () => {
      cleanup();
      // Evicted from the handshake pool meanwhile: already closed and counted.
      if (socket.destroyed) return;
      this.refuse(socket, new Refusal("header_timeout", "request head not received in time"));
    };
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
    let finished = false;
    const cleanup = () => {
      finished = true;
      deadline.clear();
      socket.pause();
      setSink(socket, undefined);
      socket.off("end", onEnd);
    };
    // A CONNECT, not a link: the shorter cap of a link's TLS handshake does not apply to it.
    deadline.notLink();
    // Runs at once when the deadline already passed (in the turn between the first byte and here).
    deadline.onExpire(onTimeout);
    if (finished) return;
    if (first.length > 0) onData(first);
    if (finished) return;
    setSink(socket, onData);
    socket.on("end", onEnd);
  }

  private refuse(socket: Socket, r: Refusal, reply: Reply = HTTP): void {
    this.observer?.tunnelFailed(r.reason);
    if (reply.kind === "listener") {
      // No HTTP to answer in: close at once, and let the listener log and count why.
      socket.destroy();
      reply.settled(this.refusedOutcome(r));
      return;
    }
    const extra: Record<string, string> = { "Hopway-Reason": r.detail, "Hopway-Failed-At": this.name, ...r.extra };
    if (r.status === 407) extra["Proxy-Authenticate"] = 'Basic realm="hopway"';
    // Answered: whatever the peer does now, its handshake slot is free for the next peer.
    this.admission.refused(socket);
    if (!socket.destroyed) {
      this.answerAndClose(socket, errorResponse(r.status, r.reason, r.detail, extra), this.refusalLinger);
    }
  }

  private authenticate(socket: Socket, req: ConnectRequest, local: boolean): PeerRole | Refusal {
    // A connection this relay opened itself and that came back here (a route through a NAT
    // hairpin, a gateway aliasing a listener): never a client, whatever its source address.
    if (this.selfAddresses.isOwnConnection(socket)) {
      return new Refusal("forbidden", "connection opened by this relay itself; a relay never tunnels to itself");
    }
    const auth = req.headers.get("proxy-authorization");
    // Relays reach each other over links only; a plain CONNECT claiming to be a relay hop is refused.
    if (req.headers.has("hopway-hops") || (auth !== undefined && /^Hopway-HMAC(\s|$)/i.test(auth))) {
      return new Refusal("auth", "relay hops travel over mTLS links; plain CONNECT cannot carry Hopway-Hops");
    }
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
    const role = this.authenticate(socket, req, local);
    if (role instanceof Refusal) return this.refuse(socket, role);
    // Authenticated: out of the handshake pool into the tunnel pool, if it has room.
    if (!this.admission.promote(socket)) {
      return this.refuse(socket, new Refusal("over_capacity", "relay at connection limit"));
    }
    return this.connectClient(socket, req, rest, role, HTTP);
  }

  /** Opens the path for an admitted client connection, then answers (or settles) and splices. */
  private async connectClient(
    socket: Socket,
    req: ConnectRequest,
    rest: Buffer,
    role: PeerRole,
    reply: Reply,
  ): Promise<void> {
    this.clientPathUp(socket, await this.openPath(req, [], socket), rest, role, reply);
  }

  /** A client's path came up (or was refused, or the client went away meanwhile: undefined): answer and splice. */
  private clientPathUp(
    socket: Socket,
    up: PathUp | Refusal | undefined,
    rest: Buffer,
    role: PeerRole,
    reply: Reply,
  ): void {
    if (up === undefined) return;
    if (up instanceof Refusal) {
      this.refuse(socket, up, reply);
      return;
    }
    if (socket.destroyed) {
      up.upstream.destroy();
      return;
    }
    if (up.rest.length === 0) {
      if (reply.kind === "http") socket.write(establishedResponse(up.path));
      else reply.settled({ ok: true, path: up.path });
    } else {
      // The answer and the bytes the next hop already sent leave in one write.
      socket.cork();
      if (reply.kind === "http") socket.write(establishedResponse(up.path));
      else reply.settled({ ok: true, path: up.path });
      this.bytes.down[role] += up.rest.length;
      socket.write(up.rest);
      socket.uncork();
    }
    const ahead = reply.kind === "listener" ? reply.first : rest;
    if (ahead.length > 0) {
      this.bytes.up[role] += ahead.length;
      up.upstream.write(ahead);
    }
    // A client that half-closed before the path was up: its end was read and emitted already,
    // so the tunnel, which forwards the next `end`, is told here.
    const endedEarly = socket.readableEnded;
    this.splice(socket, up.upstream, role, up.next, up.seconds, up.tenant);
    if (endedEarly) up.upstream.end();
  }

  /** A CONNECT stream on a link accepted from relay `peer` (its certified name). */
  private async handleLinkStream(stream: LinkServerStream, headers: LinkHeaders, peer: string): Promise<void> {
    // Listeners shared by every stream (no closures per stream): errors end the stream by themselves.
    stream.on("error", ignore);
    if (this.draining) return this.refuseLinkStream(stream, new Refusal("over_capacity", "relay is draining"));
    // A stream takes a place in the tunnel pool, as the per-tunnel connection it replaces did, and
    // one in the share of the tenant whose relay opened it.
    const tenant = this.table.tenant(peer);
    // Before anything else is spent on it: a tenant over its rate costs the relay a parse and this answer.
    const wait = this.admission.streamRateRefusal(tenant, performance.now());
    if (wait !== undefined && tenant !== undefined) {
      this.warnTenantRate(tenant, peer);
      return this.refuseLinkStream(
        stream,
        new Refusal(
          "namespace_rate",
          `namespace '${tenant}' opens streams faster than ${this.limits.namespaceStreamsPerSecond}/s ` +
            `(namespace_streams_per_second); retry in ${Math.ceil(wait)} ms`,
        ),
      );
    }
    const full = this.admission.takeStream(tenant);
    if (full === "tenant" && tenant !== undefined) {
      this.warnTenantFull(tenant, peer);
      // Its own reason, not over_capacity: a tenant at its share is no sign of a relay at capacity.
      return this.refuseLinkStream(
        stream,
        new Refusal("namespace_limit", this.admission.tenantRefusal(tenant) ?? "namespace at its share"),
      );
    }
    if (full === "full") {
      return this.refuseLinkStream(stream, new Refusal("over_capacity", "relay at connection limit"));
    }
    (stream as PathStream)[TENANT] = tenant;
    this.connections++;
    // `close` fires once: a plain `on` skips the wrapper `once` allocates.
    stream.on("close", this.onLinkStreamClose);
    const target = parseAuthority(String(headers[":authority"] ?? ""));
    if ("reason" in target) return this.refuseLinkStream(stream, new Refusal(target.reason, target.detail));
    const hopsHeader = headers["hopway-hops"];
    const visited =
      typeof hopsHeader === "string" && hopsHeader !== "" ? hopsHeader.split(",").map((h) => h.trim()) : [];
    // The last relay named is the one that opened this stream: its certificate says who that is.
    if (visited[visited.length - 1] !== peer) {
      return this.refuseLinkStream(
        stream,
        new Refusal("auth", `hopway-hops must end with the dialling relay '${peer}'`),
      );
    }
    // No request headers beyond the two above reach the relay's logic from a link stream, as before: one shared empty map.
    const req: ConnectRequest = { ...target, headers: NO_HEADERS };
    const opening = new PathOpening();
    (stream as PathStream)[OPENING] = opening;
    let up: PathUp | Refusal | undefined;
    try {
      up = await this.openPath(req, visited, stream, opening);
    } finally {
      opening.active = false;
      opening.dial = undefined;
      // The stream closed meanwhile (`onLinkStreamClose`): its place was kept until now.
      if (opening.closed) this.linkStreamGone(stream);
    }
    if (up === undefined) return;
    if (up instanceof Refusal) return this.refuseLinkStream(stream, up);
    if (stream.destroyed) {
      up.upstream.destroy();
      return;
    }
    stream.respond({ ":status": 200, "hopway-path": sanitize(up.path) });
    if (up.rest.length > 0) {
      this.bytes.down.relay += up.rest.length;
      stream.write(up.rest);
    }
    this.splice(stream, up.upstream, "relay", up.next, up.seconds, (stream as PathStream)[TENANT] ?? up.tenant);
  }

  /** The most places of the tunnel pool one tenant's relays hold now (links and link streams). */
  get largestNamespaceShare(): number {
    return this.admission.largestTenantShare;
  }

  /** What the relays of `tenant` hold of the tunnel pool now (links and link streams). */
  tenantHeldForTest(tenant: string): number {
    return this.admission.heldBy(tenant);
  }

  /** A link stream that held a place in the tunnel pool is gone. */
  private linkStreamGone(stream: PathStream): void {
    this.connections--;
    this.admission.releaseStream(stream[TENANT]);
    this.maybeIdle();
  }

  /**
   * Logs that a tenant's relays hold their share of the tunnel pool: at most once per
   * TENANT_WARN_MS for the whole relay, with how many streams were refused since, so a tenant
   * at its share cannot flood the log either.
   */
  private warnTenantFull(tenant: string, peer: string): void {
    const left = this.tenantWarnings.take();
    if (left === undefined) return;
    this.log("warn", "tunnel refused: namespace at its share of the tunnel pool", {
      namespace: tenant,
      peer,
      max_connections_per_namespace: this.limits.maxConnectionsPerNamespace,
      refused_since_last: left + 1,
    });
  }

  private warnHandshakeRate(source: string | undefined): void {
    const left = this.handshakeRateWarnings.take();
    if (left === undefined) return;
    this.log("warn", "relay link refused: source over its handshake rate", {
      source,
      link_handshakes_per_source_per_second: this.limits.linkHandshakesPerSourcePerSecond,
      link_handshake_burst_per_source: this.limits.linkHandshakeBurstPerSource,
      refused_since_last: left + 1,
    });
  }

  private warnTenantRate(tenant: string, peer: string): void {
    const left = this.tenantRateWarnings.take();
    if (left === undefined) return;
    this.log("warn", "tunnel refused: namespace over its stream rate", {
      namespace: tenant,
      peer,
      namespace_streams_per_second: this.limits.namespaceStreamsPerSecond,
      namespace_stream_burst: this.limits.namespaceStreamBurst,
      refused_since_last: left + 1,
    });
  }

  /** Answers a link stream with a refusal: status, `hopway-error`, `hopway-reason`, `hopway-failed-at`. */
  private refuseLinkStream(stream: LinkServerStream, r: Refusal): void {
    this.observer?.tunnelFailed(r.reason);
    if (stream.destroyed || stream.headersSent) return;
    const h: LinkOutgoingHeaders = {
      ":status": r.status,
      "hopway-error": r.reason,
      "hopway-reason": sanitize(r.extra["Hopway-Reason"] ?? r.detail),
      "hopway-failed-at": sanitize(r.extra["Hopway-Failed-At"] ?? this.name),
    };
    stream.respond(h, { endStream: true });
    // Reset behind the answer: the requester may have sent data after its request, and a stream
    // left open would keep its window of it and its place in the tunnel pool until the peer reset it.
    stream.destroy();
  }

  /**
   * Routes a CONNECT from this relay's own table and brings up the next hop (a target
   * connection or a stream on a link), trying its alternatives. Undefined when the
   * requester went away meanwhile.
   */
  private async openPath(
    req: ConnectRequest,
    visited: string[],
    requester: { readonly destroyed: boolean },
    opening?: PathOpening,
  ): Promise<PathUp | Refusal | undefined> {
    const found = await this.routeOf(req, visited);
    if (found instanceof Refusal) return found;
    return this.dialPath(found, req, visited, requester, opening);
  }

  /** What this relay's own table says of a request: its next hop, or why there is none. */
  private async routeOf(req: ConnectRequest, visited: string[]): Promise<Route | Refusal> {
    if (visited.includes(this.name)) {
      return new Refusal("loop", `loop: already visited ${this.name} (${visited.join(" > ")})`);
    }
    if (visited.length + 1 >= MAX_HOPS) return new Refusal("loop", `hop limit ${MAX_HOPS} reached`);
    if (this.table.version === undefined) return new Refusal("no_route_table", "relay has no route table yet");
    if (this.resolveTarget) {
      const target = await this.resolveTarget(req);
      if (target !== undefined && "reason" in target) return new Refusal(target.reason, target.detail);
      if (target !== undefined) {
        req.node = target.node;
        req.authority = target.authority;
      }
    }
    const found = this.table.lookup(req.node, req.port);
    if (!found.ok) return new Refusal(found.reason, found.detail);
    if (!found.direct && !this.linkPool) {
      return new Refusal("next_hop_failed", "next hop is a relay but this relay has no TLS identity");
    }
    if (found.direct && found.hops.length + visited.length + 1 > MAX_HOPS) {
      return new Refusal("loop", `hop limit ${MAX_HOPS} reached`);
    }
    return found;
  }

  /** Brings up the route's next hop, trying its alternatives; undefined when the requester went away. */
  private async dialPath(
    found: Route,
    req: ConnectRequest,
    visited: string[],
    requester: { readonly destroyed: boolean },
    opening?: PathOpening,
  ): Promise<PathUp | Refusal | undefined> {
    const started = performance.now();
    const hops = visited.length === 0 ? this.name : `${visited.join(", ")}, ${this.name}`;
    const r = await this.tryAddresses(
      found,
      requester,
      (addr) => {
        if (!found.direct) return this.dialLink(addr, found.next.node, req.authority, hops, opening);
        // A link stream's target over TCP: a native connection carries it (NativePipe), as the
        // listener's end of a path over links does.
        const hub = opening !== undefined && addr.path === "" ? this.splicer?.listeners() : undefined;
        return hub === undefined || opening === undefined
          ? this.dial(addr, opening)
          : this.dialPiped(hub, addr, opening);
      },
      (up) => up.socket.destroy(),
    );
    if (r === undefined || r instanceof Refusal) return r;
    const { addr, up } = r;
    // Before any client byte flows: should this lead back here, the head is read after this.
    if (up.socket instanceof Socket) this.selfAddresses.trackOutbound(up.socket, found.direct ? addr : undefined);
    else if (up.socket instanceof NativePipe) this.selfAddresses.trackNative(up.socket.conn, addr);
    return {
      upstream: up.socket,
      rest: up.rest,
      path: found.direct ? this.name : `${this.name}, ${up.path}`,
      next: found.direct ? "target" : "relay",
      seconds: (performance.now() - started) / 1000,
      tenant: found.direct ? undefined : this.table.tenant(found.next.node),
    };
  }

  /**
   * Tries the route's next addresses in order with `attempt` until one is up; the refusal of the
   * last one tried when none is, or undefined (after `lost` on a hop that came up) when the
   * requester went away meanwhile.
   */
  private async tryAddresses<T extends { ok: true }>(
    found: Route,
    requester: { readonly destroyed: boolean },
    attempt: (addr: Dialable) => Promise<T | DialFailure>,
    lost: (up: T) => void,
  ): Promise<{ addr: Dialable; up: T } | Refusal | undefined> {
    let lastFailure: Refusal | undefined;
    for (const listed of found.nextAddresses) {
      if (requester.destroyed) return undefined;
      // An IP or a unix path is checked at once; only a name waits for DNS.
      const checked = this.selfAddresses.checkNow(listed) ?? (await this.selfAddresses.check(listed));
      if (!checked.ok) {
        // Never dial our own listeners, whatever the table says: refuse the request outright. A
        // name that resolves to a refused class of address is forbidden too; its alternatives may not be.
        lastFailure = new Refusal(
          checked.self || checked.forbidden === true ? "forbidden" : "next_hop_failed",
          checked.detail,
        );
        if (checked.self) break;
        continue;
      }
      // The address checked is the address dialled: a DNS answer cannot change in between.
      const addr = checked.dial;
      if (requester.destroyed) return undefined;
      // Every address a relay dials is visible at debug level: where a tunnel really went.
      this.log("debug", "dialing", { next: found.next.node, address: addr.address });
      const r = await attempt(addr);
      if (requester.destroyed) {
        if (r.ok) lost(r);
        return undefined;
      }
      if (r.ok) return { addr, up: r };
      lastFailure = r.refusal;
      // Only a failure to reach the hop moves on to its alternatives; an answer from it is final.
      if (r.final) break;
      this.log("info", "next hop address failed", {
        next: found.next.node,
        address: addr.address,
        why: r.refusal.detail,
      });
    }
    return lastFailure ?? new Refusal("next_hop_failed", `no usable address for '${found.next.node}'`);
  }

  /** A CONNECT stream to the next relay on the link to it; the answer arrives once its whole path is up. */
  private dialLink(
    addr: Dialable,
    nextNode: string,
    authority: string,
    hops: string,
    opening?: PathOpening,
  ): Promise<DialResult> {
    return new Promise((resolve) => {
      const d = new LinkDial(this.linkPool as LinkPool, this.pathDeadlines, nextNode, resolve);
      if (opening !== undefined) opening.dial = d;
      d.open(addr, authority, hops);
    });
  }

  /** `dial` as a native connection (listen.c) whose bytes the tunnel reads and writes through a NativePipe. */
  private dialPiped(hub: NativeListeners, addr: Dialable, opening: PathOpening): Promise<DialResult> {
    return new Promise((resolve) => {
      let conn: NativeConn;
      try {
        conn = hub.dialPiped(addr.host, addr.port);
      } catch (err) {
        const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        resolve({ ok: false, final: false, refusal: new Refusal("next_hop_failed", `${addr.address}: ${why}`) });
        return;
      }
      conn.onEnded = () => this.selfAddresses.untrackNative(conn);
      const d = new PipedDial(conn, addr, this.connectDeadlines, resolve);
      opening.dial = d;
      this.connectDeadlines.add(d);
    });
  }

  /** A TCP (or unix) connection to the target itself; `opening`: a link stream's attempt, which may abort it. */
  private dial(addr: Dialable, opening?: PathOpening): Promise<DialResult> {
    return new Promise((resolve) => {
      const hwm = this.limits.bufferBytes;
      // net.Socket passes highWaterMark on to its Duplex; @types/node does not declare it.
      const extra = { allowHalfOpen: true, highWaterMark: hwm };
      const opts: NetConnectOpts = addr.path
        ? { path: addr.path, ...extra }
        : { host: addr.host, port: addr.port, noDelay: true, ...extra };
      const up = (this.reuseReadBuffers ? connectReading(opts) : readThroughNode(connect(opts))) as DialSocket;
      const d = new TargetDial(up, addr, this.connectDeadlines, resolve);
      if (opening !== undefined) opening.dial = d;
      up[DIALING] = d;
      this.connectDeadlines.add(d);
      // `connect` fires once and a socket's error at most once: plain `on` listeners, shared by every
      // dial, stay on for the socket's life (after the dial, an error destroys it, as before).
      up.on("error", onDialError);
      up.on("connect", onDialConnect);
    });
  }

  private splice(
    client: TunnelEnd,
    upstream: TunnelEnd,
    peer: PeerRole,
    next: NextRole,
    connectSeconds: number,
    tenant: string | undefined,
  ): void {
    const tunnel: Tunnel = {
      client,
      upstream,
      peer,
      next,
      openedAt: performance.now(),
      moved: false,
      native: null,
      quietSweeps: 0,
      closed: 0,
      tenant,
    };
    this.tunnels.add(tunnel);
    this.observer?.tunnelOpened(peer, next, connectSeconds);
    const counters = this.bytes;
    (client as TunnelSide)[TUNNEL] = tunnel;
    (upstream as TunnelSide)[TUNNEL] = tunnel;
    client.on("close", this.onTunnelSideClose);
    upstream.on("close", this.onTunnelSideClose);
    if (this.limits.idleTimeoutMs > 0 && this.idleSweep === undefined) this.startIdleSweep();
    if (this.bufferCheck === undefined) this.startBufferCheck();
    if (client instanceof Socket && upstream instanceof Socket) {
      // Every tunnel starts here; one that keeps carrying is offered to the native splice (HANDOVER_READS).
      pump(client, upstream, tunnel, true, counters, this.offerNative);
      pump(upstream, client, tunnel, false, counters, this.offerNative);
      return;
    }
    // Every side already has its error listener from where it came from: `keep` (a client socket),
    // `handleLinkStream` (an accepted link stream), the dial (a target socket) and the link pool
    // (a requested link stream). An error destroys the side, and its `close` ends the tunnel.
    pipeLeg(client, upstream, tunnel, true, counters, this.limits.bufferBytes, this.onHeld);
    pipeLeg(upstream, client, tunnel, false, counters, this.limits.bufferBytes, this.onHeld);
  }

  /**
   * pump.ts offers a socket-to-socket tunnel that keeps carrying, between reads, with nothing
   * waiting to be written either way. Not now (false) while it does not qualify; a side that
   * ended stays on the JavaScript path, which forwards that end itself.
   */
  private readonly offerNative: Handover | null = (tunnel) => {
    const splicer = this.splicer;
    const { client, upstream } = tunnel;
    if (splicer === undefined || !(client instanceof Socket) || !(upstream instanceof Socket)) return true;
    if (client.readableEnded || upstream.readableEnded || client.writableEnded || upstream.writableEnded) return false;
    if (!splicer.canAttach(client, upstream)) return false;
    unpump(client);
    unpump(upstream);
    if (this.spliceNative(splicer, tunnel, client, upstream)) return true;
    // The thread could not take it after all (out of memory): the JavaScript path carries it on.
    pump(client, upstream, tunnel, true, this.bytes);
    pump(upstream, client, tunnel, false, this.bytes);
    return true;
  };

  /**
   * Hands a socket-to-socket tunnel to the native splice's thread; false (nothing changed) when
   * the thread cannot take it. Until the thread reports, the sockets are shells: neither reads
   * nor writes, and destroying one first takes the tunnel back from the thread (destroyNative),
   * so no descriptor is closed while the thread may still use it.
   */
  private spliceNative(splicer: NativeSplicer, tunnel: Tunnel, client: Socket, upstream: Socket): boolean {
    const id = splicer.attach(client, upstream, tunnel.peer === "client" ? 0 : 1, (end) =>
      this.nativeEnded(tunnel, end),
    );
    if (id === undefined) return false;
    tunnel.native = { id, relay: this };
    this.nativeTunnels++;
    client.destroy = destroyNative;
    upstream.destroy = destroyNative;
    return true;
  }

  /** Takes a natively spliced tunnel back from the thread (a socket of it is being destroyed). */
  takeBack(tunnel: Tunnel): void {
    if (tunnel.native === null) return;
    const b = this.splicer?.cancel(tunnel.native.id);
    // Undefined: the thread ended it already, and nativeEnded will run with its bytes.
    if (b === undefined) return;
    this.nativeEnded(tunnel, { up: b[0], down: b[1], error: undefined }, false);
  }

  /** The thread let go of the tunnel: count its bytes, then close (or, after an error, reset) both sockets. */
  private nativeEnded(tunnel: Tunnel, end: SpliceEnd, close = true): void {
    if (tunnel.native === null) return;
    tunnel.native = null;
    this.nativeTunnels--;
    this.bytes.up[tunnel.peer] += end.up;
    this.bytes.down[tunnel.peer] += end.down;
    if (end.up + end.down > 0) tunnel.moved = true;
    if (!close) return;
    const { client, upstream } = tunnel;
    if (end.error !== undefined) {
      abortEnd(client);
      abortEnd(upstream);
    } else {
      client.destroy();
      upstream.destroy();
    }
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
        // The thread's flag is read (and cleared) every sweep, as `moved` is.
        const movedNatively = t.native !== null && this.splicer?.moved(t.native.id) === true;
        if (t.moved || movedNatively) {
          t.moved = false;
          t.quietSweeps = 0;
        } else if (++t.quietSweeps > sweeps) {
          t.client.destroy();
          t.upstream.destroy();
        }
      }
      for (const c of this.nativeConns) {
        if (!c.carried) continue;
        if (c.movedSince()) c.quietSweeps = 0;
        else if (++c.quietSweeps > sweeps) c.destroy();
      }
      if (this.tunnels.size === 0 && this.nativeCarried === 0) {
        clearInterval(this.idleSweep);
        this.idleSweep = undefined;
      }
    }, period);
    this.idleSweep.unref();
  }

  /**
   * A leg stopped reading because its destination is slow: its tunnel holds bytes from now on. The
   * next check comes at most HELD_CHECK_MS after the last one, rather than at the period's end.
   */
  private readonly onHeld = (): void => {
    if (this.bufferCheckSoon !== undefined || this.limits.maxBufferedBytes === 0) return;
    const wait = this.lastBufferCheck + HELD_CHECK_MS - performance.now();
    this.bufferCheckSoon = wait <= 0 ? setImmediate(this.checkSoon) : setTimeout(this.checkSoon, wait);
    this.bufferCheckSoon.unref();
  };

  private readonly checkSoon = (): void => {
    this.bufferCheckSoon = undefined;
    this.checkBuffered();
  };

  /**
   * One interval, while the relay has tunnels, that measures what they and its links hold (the
   * gauge) and keeps it within limits.maxBufferedBytes.
   */
  private startBufferCheck(): void {
    this.bufferCheck = setInterval(() => {
      this.checkBuffered();
      if (this.tunnels.size === 0) {
        clearInterval(this.bufferCheck);
        this.bufferCheck = undefined;
      }
    }, BUFFER_CHECK_MS);
    this.bufferCheck.unref();
  }

  /**
   * Measures what every tunnel (both sides: received and not yet read, written and not yet sent)
   * and every hopway-mux/1 link (its send queue) holds; above limits.maxBufferedBytes, resets the
   * largest holders (chooseShed) down to SHED_TO of it. Natively spliced tunnels hold their bytes in
   * the kernel's pipes, bounded per tunnel, and are not counted.
   */
  private checkBuffered(): void {
    this.lastBufferCheck = performance.now();
    const holdings: Array<(Holding & { tunnel: Tunnel }) | LinkHolding> = [];
    let total = 0;
    for (const t of this.tunnels) {
      if (t.native !== null) continue;
      const bytes = heldBy(t.client) + heldBy(t.upstream);
      if (bytes === 0) continue;
      total += bytes;
      holdings.push({ tenant: t.tenant, bytes, tunnel: t });
    }
    const links: LinkHolding[] = [];
    this.linkServer?.queuedLinks(links);
    this.linkPool?.queuedLinks(links);
    for (const l of links) {
      total += l.bytes;
      holdings.push(l);
    }
    this.buffered = total;
    const max = this.limits.maxBufferedBytes;
    if (max === 0 || total <= max) return;
    const target = Math.floor(max * SHED_TO);
    const shed = chooseShed(holdings, max, target);
    const byTenant = new Map<string | null, { tunnels: number; links: number; bytes: number }>();
    // What is gone: what was reset, and the tunnels a closed link took with it. A link closes its
    // tunnels at once, so once one is shed the rest of the list may no longer be needed.
    const gone = new Set<Holding>();
    let left = total;
    for (const h of shed) {
      if (left <= target) break;
      if (gone.has(h)) continue;
      gone.add(h);
      left -= h.bytes;
      const holder = h.tenant === undefined ? "other" : "tenant";
      const key = h.tenant ?? null;
      const sum = byTenant.get(key) ?? { tunnels: 0, links: 0, bytes: 0 };
      byTenant.set(key, sum);
      sum.bytes += h.bytes;
      if ("tunnel" in h) {
        sum.tunnels++;
        abortEnd(h.tunnel.client);
        abortEnd(h.tunnel.upstream);
        this.observer?.bufferShed?.("tunnel", holder);
        continue;
      }
      sum.links++;
      h.session.destroy();
      this.observer?.bufferShed?.("link", holder);
      for (const t of holdings) {
        if (!("tunnel" in t) || gone.has(t) || !(t.tunnel.client.destroyed || t.tunnel.upstream.destroyed)) continue;
        gone.add(t);
        left -= t.bytes;
        sum.bytes += t.bytes;
      }
    }
    this.buffered = left;
    const skipped = this.bufferWarnings.take();
    if (skipped === undefined) return;
    this.log("warn", "tunnels reset: the relay held more than max_buffered_bytes", {
      buffered_bytes: total,
      max_buffered_bytes: max,
      // The holders reset, largest first: a tenant's namespace, or null for tunnels of no tenant.
      reset: [...byTenant].map(([namespace, s]) => ({ namespace, ...s })),
      checks_left_out: skipped,
    });
  }

  /** What tunnels and links held at the last check, less what it reset (limits.maxBufferedBytes). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Runs the check at once (tests; the relay runs it every BUFFER_CHECK_MS while it has tunnels). */
  checkBufferedForTest(): number {
    this.checkBuffered();
    return this.buffered;
  }

  /** Stops taking new connections (they get 503) and sends GOAWAY on every link so a shutdown can drain. */
  startDrain(): void {
    this.draining = true;
    this.linkServer?.goaway();
    this.linkPool?.goaway();
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
    for (const c of this.nativeConns) c.destroy();
    for (const t of this.tunnels) {
      t.client.destroy();
      t.upstream.destroy();
    }
    this.linkServer?.destroyAll();
    this.linkPool?.destroyAll();
  }

  /** Stops following the identity (tests and shutdown). */
  close(): void {
    this.linkServer?.close();
  }

  private maybeIdle(): void {
    if (this.connections !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/** Bytes one side of a tunnel holds: received and not read yet, written and not sent yet. */
function heldBy(side: TunnelEnd): number {
  return side.writableLength + (side.readableLength ?? 0);
}

const EMPTY = Buffer.alloc(0);
/** What a listener's connection may hold from its client while its path comes up, before it stops reading. */
const HOLD_BYTES = 16 * 1024;
/** A peer refused at accept (503) has this long to read the answer; nothing it sends extends it. */
const ACCEPT_REFUSAL_LINGER_MS = 1_000;
/** A peer refused after its head, or silent past its deadline (4xx, 5xx), has this long; nothing it sends extends it. */
const REFUSAL_LINGER_MS = 2_000;
/** A listener's request carries no headers unless its target is keyed, nor a link stream's; nothing writes to this map. */
const NO_HEADERS: ReadonlyMap<string, string> = new Map();

function ignore(): void {}

/**
 * `destroy` of a natively spliced tunnel's sockets, whoever calls it (the idle sweep, the drain
 * deadline, `resetAndDestroy`): takes the tunnel back from the thread before the descriptor
 * closes, so the thread never reads or writes a number that may already name another socket.
 */
function destroyNative(this: Socket, err?: Error): Socket {
  const tunnel = (this as TunnelSide)[TUNNEL];
  tunnel?.native?.relay.takeBack(tunnel);
  return Socket.prototype.destroy.call(this, err);
}

function destroySelf(this: TunnelEnd): void {
  this.destroy();
}

function mergeCounts(...maps: Array<Map<string, number> | undefined>): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of maps) if (m) for (const [k, v] of m) out.set(k, (out.get(k) ?? 0) + v);
  return out;
}

/**
 * A link stream that closed without both ends finished: reset by the peer, or cut when
 * its link died. The tunnel is torn down, as an error on a socket leg would.
 */
function wasReset(d: TunnelEnd): boolean {
  const code = (d as Partial<Pick<ServerHttp2Stream, "rstCode">>).rstCode;
  if (code === undefined) return false;
  return code !== 0 || !d.readableEnded || !d.writableFinished;
}

/**
 * One CONNECT stream being opened on a link, until its answer or the path timeout, whichever
 * comes first. An object with methods rather than closures: this runs for every tunnel.
 */
class LinkDial extends Deadline implements Abortable, LinkRequester {
  private settled = false;
  /** The onward stream, once requested: cancelled should this dial end before its answer. */
  private stream: LinkStream | undefined = undefined;
  constructor(
    private readonly pool: LinkPool,
    private readonly deadlines: Deadlines,
    private readonly nextNode: string,
    private readonly resolve: (r: DialResult) => void,
  ) {
    super();
  }

  open(addr: Dialable, authority: string, hops: string): void {
    this.deadlines.add(this);
    this.pool.open(this.nextNode, addr, authority, hops, (r) => this.answered(r), this);
  }

  /** Whether the dial still waits for its answer (LinkPool asks before it opens the stream). */
  wanted(): boolean {
    return !this.settled;
  }

  requested(s: LinkStream): void {
    // Requested after the dial ended (a new link came up late): nobody waits for its answer.
    if (this.settled) s.destroy();
    else this.stream = s;
  }

  /** The stream that asked for this one was reset: the onward stream is reset too, so the path behind it goes. */
  abort(): void {
    this.fail(new Refusal("next_hop_failed", "the stream that asked for this path was reset"));
  }

  expire(): void {
    this.fail(new Refusal("connect_timeout", "path beyond the next relay did not come up in time"));
  }

  /** Ends the dial before its answer: nothing waits for it, so the onward stream (and the path behind it) goes now. */
  private fail(refusal: Refusal): void {
    if (this.settled) return;
    this.settled = true;
    this.deadlines.delete(this);
    this.stream?.destroy();
    this.stream = undefined;
    this.resolve({ ok: false, final: true, refusal });
  }

  private answered(r: LinkOpen): void {
    if (this.settled) {
      if (r.ok) r.stream.destroy();
      return;
    }
    this.settled = true;
    this.deadlines.delete(this);
    this.stream = undefined;
    if (r.ok) {
      const path = r.headers["hopway-path"];
      this.resolve({ ok: true, socket: r.stream, rest: EMPTY, path: typeof path === "string" ? path : "?" });
      return;
    }
    if (r.status === undefined) {
      this.resolve({ ok: false, final: r.final, refusal: new Refusal("next_hop_failed", r.detail) });
      return;
    }
    if (!isRefusalStatus(r.status)) {
      // Passed on, any other status would reach the application as itself (a 2xx reads as "tunnel
      // up") or make the answer upstream invalid: the next relay failed.
      const why = `next relay '${this.nextNode}' answered with status ${r.status}`;
      this.resolve({ ok: false, final: true, refusal: new Refusal("next_hop_failed", why) });
      return;
    }
    // Pass the downstream verdict through so the client learns the real reason and where it arose.
    const h = r.headers ?? {};
    const why = String(h["hopway-reason"] ?? h["hopway-error"] ?? "refused by next relay");
    const failedAt = String(h["hopway-failed-at"] ?? this.nextNode);
    this.resolve({
      ok: false,
      final: true,
      refusal: new Refusal(reasonForStatus(r.status), why, r.status, {
        "Hopway-Reason": why,
        "Hopway-Failed-At": failedAt,
      }),
    });
  }
}

/**
 * A target connection being made, until it connects, fails, times out or is given up; the
 * subclass says what the connection is and what goes with a failed one.
 */
abstract class Dial extends Deadline implements Abortable {
  protected settled = false;
  constructor(
    readonly addr: Dialable,
    private readonly deadlines: Deadlines,
    private readonly resolve: (r: DialResult) => void,
  ) {
    super();
  }

  /** The stream that asked for this connection was reset: the connection goes now, not at connect_timeout. */
  abort(): void {
    this.finish({
      ok: false,
      final: true,
      refusal: new Refusal("next_hop_failed", "the stream that asked for this connection was reset"),
    });
  }

  finish(r: DialResult): void {
    if (this.settled) return;
    this.settled = true;
    this.deadlines.delete(this);
    this.settle(r.ok);
    this.resolve(r);
  }

  /** Lets go of the connection's dial; a failed one (`ok` false) is closed. */
  protected abstract settle(ok: boolean): void;
}

/** A target socket (net.connect). */
class TargetDial extends Dial {
  constructor(
    private readonly socket: DialSocket,
    addr: Dialable,
    deadlines: Deadlines,
    resolve: (r: DialResult) => void,
  ) {
    super(addr, deadlines, resolve);
  }

  expire(): void {
    this.finish({
      ok: false,
      final: false,
      refusal: connectTimeout(this.addr),
    });
  }

  protected settle(ok: boolean): void {
    // The socket outlives its dial (an idle tunnel): it keeps no reference to it.
    this.socket[DIALING] = null;
    if (!ok) this.socket.destroy();
  }
}

/** A native connection whose tunnel end is a NativePipe (Relay.dialPiped). */
class PipedDial extends Dial {
  constructor(
    private readonly conn: NativeConn,
    addr: Dialable,
    deadlines: Deadlines,
    resolve: (r: DialResult) => void,
  ) {
    super(addr, deadlines, resolve);
    conn.onDial = (error) => this.dialled(error);
  }

  private dialled(error: string | undefined): void {
    this.conn.onDial = undefined;
    if (error === undefined) {
      const pipe = this.conn.pipe();
      if (pipe !== undefined) {
        this.finish({ ok: true, socket: pipe, rest: EMPTY, path: "" });
        return;
      }
      error = "ECANCELED";
    }
    this.finish({ ok: false, final: false, refusal: nativeDialRefusal(this.addr, error) });
  }

  expire(): void {
    // Reported as a failed dial (ETIMEDOUT) once its handle has closed.
    if (!this.settled) this.conn.abortDial();
  }

  protected settle(ok: boolean): void {
    this.conn.onDial = undefined;
    if (!ok) this.conn.destroy();
  }
}

function connectTimeout(addr: Dialable): Refusal {
  return new Refusal("connect_timeout", `connect to ${addr.address} timed out`);
}

/** Why a native connection's dial (listen.c) failed, from the libuv error name it reported. */
function nativeDialRefusal(addr: Dialable, error: string): Refusal {
  return error === "ETIMEDOUT" ? connectTimeout(addr) : new Refusal("next_hop_failed", `${addr.address}: ${error}`);
}

const DIALING = Symbol("hopway.dialing");
type DialSocket = Socket & { [DIALING]?: TargetDial | null };

function onDialConnect(this: DialSocket): void {
  this[DIALING]?.finish({ ok: true, socket: this, rest: EMPTY, path: "" });
}

function onDialError(this: DialSocket, err: NodeJS.ErrnoException): void {
  const d = this[DIALING];
  // Once dialled, an error ends the socket, whoever has it by now.
  if (d == null) {
    this.destroy();
    return;
  }
  d.finish({
    ok: false,
    final: false,
    refusal: new Refusal("next_hop_failed", `${d.addr.address}: ${err.code ?? err.message}`),
  });
}

/** A target dial or an onward link request that a link stream's reset ends at once. */
interface Abortable {
  abort(): void;
}

/**
 * A link stream's path being opened (`handleLinkStream`): the dial in flight, and whether the
 * stream closed meanwhile. Its place in the tunnel pool is given back only once the attempt has
 * settled, and a reset aborts the dial, so what a peer makes this relay hold by resetting streams
 * it opened stays within max_connections.
 */
class PathOpening {
  active = true;
  closed = false;
  dial: Abortable | undefined = undefined;
}
const OPENING = Symbol("hopway.link.opening");
/** The tenant a link stream counts against (Admission.takeStream). */
const TENANT = Symbol("hopway.link.tenant");
type PathStream = LinkServerStream & { [OPENING]?: PathOpening; [TENANT]?: string | undefined };

/** A tenant's streams refused for its share are logged at most this often (with a count). */
const TENANT_WARN_MS = 10_000;

/**
 * What the relays of one tenant may hold of the tunnel pool unless configured: a quarter, so one
 * tenant never holds more than a quarter and three at their share still leave room for the rest;
 * at least a link and a tunnel on it.
 */
export function defaultPerNamespace(maxConnections: number): number {
  return Math.max(2, Math.floor(maxConnections / 4));
}

/** The error a link's TLS handshake ends with past its deadline; the link server counts its code as a timeout. */
function linkHandshakeTimeout(): Error {
  return Object.assign(new Error("TLS handshake timeout"), { code: "ERR_TLS_HANDSHAKE_TIMEOUT" });
}

/**
 * The one deadline of a connection's opening, armed at accept: the wait for the first byte, then
 * the CONNECT head or a link's TLS handshake. Each phase says what expiry means to it
 * (`onExpire`) and none arms a deadline of its own, so together they get the time once, not each
 * in full. `link`, when set, is the shorter cap of a TLS handshake, counted from accept too.
 */
class OpeningDeadline extends Deadline {
  private action: () => void = ignore;
  private expired = false;
  /** The link handshake cap passed; it ends the opening only if the first byte is a TLS record. */
  private capPassed = false;
  private tls = false;
  private readonly cap: DeadlineCall | undefined;
  constructor(
    private readonly opening: Deadlines,
    private link: Deadlines | undefined,
  ) {
    super();
    opening.add(this);
    if (link !== undefined) {
      this.cap = new DeadlineCall(() => {
        this.capPassed = true;
        if (this.tls) this.expire();
      });
      link.add(this.cap);
    }
  }
  expire(): void {
    if (this.expired) return;
    this.expired = true;
    const action = this.action;
    this.clear();
    action();
  }
  /** What expiry means from now on; runs `action` at once when the deadline has already passed. */
  onExpire(action: () => void): void {
    if (this.expired) action();
    else this.action = action;
  }
  /**
   * The first byte is a TLS record: the link handshake cap applies too, at once if it passed
   * already. Before that byte it must not end the opening: a plain CONNECT from a trusted source
   * has its whole header_timeout_ms to send its first byte.
   */
  isLink(): void {
    this.tls = true;
    if (this.capPassed) this.expire();
  }
  /** The connection is not a link: only the opening's deadline applies. */
  notLink(): void {
    if (this.cap !== undefined) this.link?.delete(this.cap);
    this.link = undefined;
  }
  /** The opening is over (the peer is known, answered or gone): nothing expires any more. */
  clear(): void {
    this.opening.delete(this);
    if (this.cap !== undefined) this.link?.delete(this.cap);
    this.action = ignore;
  }
}
