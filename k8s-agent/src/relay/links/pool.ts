// The dialling side of relay links: one long-lived TLS 1.3 connection per
// neighbour relay (keyed by its node name and address), made on first need and
// shared by every tunnel to that neighbour, one CONNECT stream per tunnel (more
// links once its streams are full, up to `maxLinksPerPeer` per neighbour). The
// framing is hopway-mux/1 or HTTP/2, whichever the neighbour chose by ALPN from
// what `relay.links.protocol` offers (docs/links.md).
// The neighbour must prove it is the relay the route table names: its
// certificate chains to the trust bundle and its URI SAN is exactly
// spiffe://<realm>/relay/<that node>.
import { constants, connect as h2connect } from "node:http2";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import type { IdentitySource } from "@hopway/core/identity";
import type { LinkHolding } from "../buffered.ts";
import type { Dialable } from "../table.ts";
import { ALPN_MUX } from "./mux/frame.ts";
import { MuxSession } from "./mux/session.ts";
import { type LinkFailure, type LinkObserver, type LinkSettings, sessionOptions, withTenant } from "./options.ts";
import { LINK_ONREAD } from "./reads.ts";
import { type LinkClientSession, type LinkHeaders, type LinkStream, pingOrClose } from "./session.ts";
import { ALPN_H2, certifiedRelay, dialAlpn, failureOf, identityError, LINK_CIPHERS } from "./tls.ts";

/** Called once with what became of a request. */
export type LinkOpenDone = (r: LinkOpen) => void;
/**
 * Who waits for a request, besides its `done`: it gets the stream as soon as it is opened, before
 * its answer (and may cancel it, `destroy`), and says whether it still waits at all.
 */
export interface LinkRequester {
  requested(stream: LinkStream): void;
  wanted(): boolean;
}

const NOT_WANTED = "the request was given up before a link had room for it";

export type LinkOpen =
  | { ok: true; stream: LinkStream; headers: LinkHeaders }
  /** `final`: the neighbour answered (its verdict stands); otherwise the address did not work. */
  | { ok: false; final: boolean; status?: number; headers?: LinkHeaders; detail: string };

interface Link {
  session: LinkClientSession;
  peer: string;
  /** The tenant its settings were made for (withTenant), as the table said when it was dialled. */
  tenant: string | undefined;
  key: string;
  address: string;
  streams: number;
  /** performance.now() when the handshake completed. */
  since: number;
  /**
   * It stayed up for `redialMaxMs`: only then is its address's backoff cleared, and its end is no
   * failed dial (see `closedEarly`). Answering streams does not prove it: a neighbour could answer
   * one on each link and drop it, and cost this relay a handshake per tunnel all the same.
   */
  proven: boolean;
  /** This relay closed it (idle, table update, drain): its end says nothing about the peer. */
  closedHere: boolean;
  /** What the peer did before the link went, for the log. */
  cause: string | undefined;
  /** No new streams once the peer sent GOAWAY or the link is closing. */
  usable: boolean;
  idleTimer: NodeJS.Timeout | undefined;
  pingTimer: NodeJS.Timeout;
}

interface Backoff {
  failures: number;
  until: number;
  /** Why the last dial failed: the tunnels refused meanwhile say it. */
  why: string;
}

/** A peer at max_links_per_peer is warned about at most once per this many ms, with a count. */
const EXHAUSTED_LOG_MS = 10_000;

export interface LinkPoolOptions {
  name: string;
  realm: string;
  identity: IdentitySource;
  settings: LinkSettings;
  observer?: LinkObserver | undefined;
  log: (level: "info" | "warn" | "debug", msg: string, fields: Record<string, unknown>) => void;
  /** Random in [0, 1); injectable so backoff tests are exact. */
  random?: () => number;
  /** The tenant a neighbour belongs to (the route table's `peers.tenants`), for its share of the window budget. */
  tenantOf?: (peer: string) => string | undefined;
}

export class LinkPool {
  private readonly links = new Map<string, Link[]>();
  private readonly dialing = new Map<string, Promise<Link | { failure: LinkFailure; detail: string }>>();
  private readonly backoff = new Map<string, Backoff>();
  /**
   * Per peer, over all its addresses: links held (closing ones too, since they hold a socket until
   * their streams end) and dials in flight. What `maxLinksPerPeer` bounds.
   */
  private readonly held = new Map<string, number>();
  /** Per peer: tunnels refused as `peer_streams_exhausted` since the last warning, and when that was. */
  private readonly exhaustedWarned = new Map<string, { count: number; at: number }>();
  private readonly random: () => number;
  private closing = false;
  private completed = 0;

  constructor(private readonly opts: LinkPoolOptions) {
    this.random = opts.random ?? Math.random;
  }

  /** Links this pool has established since it started (each one a TLS handshake). */
  get handshakes(): number {
    return this.completed;
  }

  /** Peers whose last dial failed (backing off) and to which no link is open now. */
  failingPeers(): Set<string> {
    const out = new Set<string>();
    for (const [key, b] of this.backoff) {
      const peer = key.slice(0, key.indexOf("|"));
      if (b.failures > 0 && !(this.links.get(key)?.length ?? 0)) out.add(peer);
    }
    for (const [key, list] of this.links) if (list.length > 0) out.delete(key.slice(0, key.indexOf("|")));
    return out;
  }

  /** Open links per peer (for `hopway_relay_links`). */
  linksByPeer(): Map<string, number> {
    const out = new Map<string, number>();
    for (const list of this.links.values()) {
      for (const l of list) out.set(l.peer, (out.get(l.peer) ?? 0) + 1);
    }
    return out;
  }

  /** Open streams per peer. */
  streamsByPeer(): Map<string, number> {
    const out = new Map<string, number>();
    for (const list of this.links.values()) {
      for (const l of list) out.set(l.peer, (out.get(l.peer) ?? 0) + l.streams);
    }
    return out;
  }

  /**
   * Opens a CONNECT stream to `peer` at `addr`; `done` runs once, with its answer or why there is
   * none. A callback rather than a promise: this runs for every tunnel, and the relay already
   * waits on its own promise. `requester` gets the stream once it is opened, and says whether
   * anyone still waits: a request that waited for a link to come up opens no stream (and dials no
   * further link) once nobody does, so requests given up on cost the neighbour nothing.
   */
  open(
    peer: string,
    addr: Dialable,
    authority: string,
    hops: string,
    done: LinkOpenDone,
    requester?: LinkRequester,
  ): void {
    if (this.closing) {
      done({ ok: false, final: false, detail: "relay is draining" });
      return;
    }
    const key = `${peer}|${addr.address}`;
    // The common case, a link that is up and has room, takes no await on the way to the request.
    const free = this.freeLink(key);
    if (free !== undefined) this.request(free, authority, hops, done, requester);
    // A dial that throws (it should not) fails this request, never the process.
    else
      this.openOnNewLink(peer, addr, key, authority, hops, done, requester).catch((err: unknown) =>
        done({ ok: false, final: false, detail: `link to ${peer}: ${String(err)}` }),
      );
  }

  private async openOnNewLink(
    peer: string,
    addr: Dialable,
    key: string,
    authority: string,
    hops: string,
    done: LinkOpenDone,
    requester: LinkRequester | undefined,
  ): Promise<void> {
    const link = await this.linkFor(peer, addr, key, requester);
    if ("failure" in link) done({ ok: false, final: false, detail: link.detail });
    else if (requester?.wanted() === false) done({ ok: false, final: false, detail: NOT_WANTED });
    else this.request(link, authority, hops, done, requester);
  }

  private freeLink(key: string): Link | undefined {
    const list = this.links.get(key);
    if (list === undefined) return undefined;
    // A link closed a moment ago stays listed until its session's `close` event: not usable.
    for (const l of list) if (l.usable && !l.session.destroyed && l.streams < this.limitOf(l)) return l;
    return undefined;
  }

  private async linkFor(
    peer: string,
    addr: Dialable,
    key: string,
    requester?: LinkRequester,
  ): Promise<Link | { failure: LinkFailure; detail: string }> {
    for (;;) {
      const free = this.freeLink(key);
      if (free) return free;
      const pending = this.dialing.get(key);
      if (!pending) break;
      const r = await pending;
      if ("failure" in r) return r;
      // Another open may have filled it while this one waited: look again.
    }
    // Not counted as a failure: nobody asked for this link any more (it is not the peer's doing).
    if (requester?.wanted() === false) return { failure: "timeout", detail: NOT_WANTED };
    // A peer sets our stream limit per link (limitOf): were links unbounded, it would choose how many
    // sockets and handshakes this relay spends on it. Fail now rather than wait for room that a
    // peer holding its streams open may never make; the next address may have a link with room.
    if ((this.held.get(peer) ?? 0) >= this.opts.settings.maxLinksPerPeer) return this.exhausted(peer, addr);
    const b = this.backoff.get(key);
    if (b && b.until > performance.now()) {
      return {
        failure: "connect",
        detail: `link to ${peer} at ${addr.address} is backing off after a failed dial (${b.why})`,
      };
    }
    const p = this.dial(peer, addr, key);
    this.dialing.set(key, p);
    try {
      return await p;
    } finally {
      this.dialing.delete(key);
    }
  }

  private exhausted(peer: string, addr: Dialable): { failure: LinkFailure; detail: string } {
    const { settings, observer, log } = this.opts;
    observer?.linkFailed("dial", "peer_streams_exhausted");
    let announced: number | undefined;
    for (const list of this.links.values()) {
      for (const l of list) {
        const n = l.peer === peer ? l.session.remoteSettings.maxConcurrentStreams : undefined;
        if (n !== undefined && (announced === undefined || n < announced)) announced = n;
      }
    }
    const links = this.held.get(peer) ?? 0;
    // Every tunnel to the peer fails this way while it lasts: counted each time, warned once per interval.
    const now = performance.now();
    const w = this.exhaustedWarned.get(peer) ?? { count: 0, at: Number.NEGATIVE_INFINITY };
    w.count++;
    if (now - w.at >= EXHAUSTED_LOG_MS) {
      log("warn", "link limit reached; tunnel refused", {
        peer,
        address: addr.address,
        reason: "peer_streams_exhausted",
        links,
        max_links_per_peer: settings.maxLinksPerPeer,
        peer_max_concurrent_streams: announced,
        refused_since_last_log: w.count,
      });
      w.count = 0;
      w.at = now;
    }
    this.exhaustedWarned.set(peer, w);
    return {
      failure: "peer_streams_exhausted",
      detail:
        `link to ${peer}: peer_streams_exhausted: its ${links} links (links.max_links_per_peer) have no room for ` +
        `another stream (${peer} allows ${announced ?? "?"} per link)`,
    };
  }

  private hold(peer: string, n: 1 | -1): void {
    const v = (this.held.get(peer) ?? 0) + n;
    if (v > 0) this.held.set(peer, v);
    else this.held.delete(peer);
  }

  private limitOf(l: Link): number {
    const remote = l.session.remoteSettings.maxConcurrentStreams ?? this.opts.settings.maxConcurrentStreams;
    return Math.min(remote, this.opts.settings.maxConcurrentStreams);
  }

  private dial(peer: string, addr: Dialable, key: string): Promise<Link | { failure: LinkFailure; detail: string }> {
    const { settings, realm, log } = this.opts;
    const material = this.opts.identity.material();
    if (!material) {
      this.opts.observer?.linkFailed("dial", "no_identity");
      return Promise.resolve({ failure: "no_identity", detail: "this relay has no certificate yet" });
    }
    const started = performance.now();
    // Held from the dial on (`fail` or `forget` gives it back), so dials in flight count against the bound.
    this.hold(peer, 1);
    return new Promise((resolve) => {
      let settled = false;
      let tcpUp = false;
      let socket: TLSSocket | undefined;
      let timer: NodeJS.Timeout | undefined;
      const fail = (failure: LinkFailure, detail: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket?.destroy();
        this.hold(peer, -1);
        this.dialFailed(peer, addr.address, key, failure, detail);
        // Something listens there but does not speak TLS 1.3 + a link protocol back (a route table built
        // from addresses that are not this network's relays): say so, rather than blame the named relay.
        const speaksNoLink = tcpUp && (failure === "tls_handshake" || failure === "connect" || failure === "timeout");
        resolve({
          failure,
          detail: speaksNoLink
            ? `next hop ${addr.address} did not answer as a Hopway relay (${failure}: ${detail}); expected relay ${peer}`
            : `link to ${peer} at ${addr.address}: ${failure}: ${detail}`,
        });
      };
      try {
        socket = tlsConnect({
          ...(addr.path ? { path: addr.path } : { host: addr.host, port: addr.port }),
          key: material.key,
          cert: material.certChain,
          ca: material.trustBundle,
          minVersion: "TLSv1.3",
          ciphers: LINK_CIPHERS,
          ALPNProtocols: dialAlpn(settings.protocol),
          // hopway-mux/1 reads through the relay's buffer (reads.ts); for HTTP/2, node:http2 reads the socket itself.
          // tls.connect takes `onread` (Node's tls docs) though @types/node does not declare it.
          ...(settings.protocol === "mux" ? { onread: LINK_ONREAD } : {}),
          // No SNI: relays are named by their certificates' URI SANs, not by host names.
          servername: "",
          checkServerIdentity: (_host, cert) => {
            const named = certifiedRelay(realm, cert);
            if (named === peer) return undefined;
            return identityError(
              named === undefined
                ? `certificate names no relay of realm '${realm}'`
                : `certificate names relay '${named}', not '${peer}'`,
            );
          },
        });
      } catch (err) {
        // A dial that cannot even start (unusable key material) fails like any other dial.
        fail("tls_handshake", String(err));
        return;
      }
      const tlsSocket = socket;
      tlsSocket.setNoDelay(true);
      tlsSocket.once("connect", () => {
        tcpUp = true;
      });
      timer = setTimeout(() => fail("timeout", "handshake timed out"), settings.handshakeTimeoutMs);
      const onError = (err: NodeJS.ErrnoException) => fail(failureOf(err.code), err.message);
      const onClose = () => fail("connect", "closed during the handshake");
      tlsSocket.on("error", onError);
      tlsSocket.once("close", onClose);
      tlsSocket.once("secureConnect", () => {
        if (settled) return;
        const tenant = this.opts.tenantOf?.(peer);
        const session = this.sessionOn(tlsSocket, addr, tenant);
        if (session === undefined) return fail("tls_handshake", "peer selected no link protocol this relay offered");
        settled = true;
        clearTimeout(timer);
        tlsSocket.off("error", onError);
        tlsSocket.off("close", onClose);
        // The backoff stays until the link proves itself (`proven`): a neighbour that completes the
        // handshake and then drops the link (answering a stream first or not) would otherwise cost
        // this relay a handshake per tunnel.
        this.completed++;
        const link = this.adopt(session, peer, key, addr.address, tenant);
        this.opts.observer?.linkOpened("dial", (performance.now() - started) / 1000);
        log("debug", "link up", { peer, address: addr.address, protocol: tlsSocket.alpnProtocol });
        resolve(link);
      });
    });
  }

  /** The session for the framing the neighbour chose by ALPN; undefined when it chose none offered. */
  private sessionOn(tlsSocket: TLSSocket, addr: Dialable, tenant: string | undefined): LinkClientSession | undefined {
    const settings = withTenant(this.opts.settings, tenant);
    if (tlsSocket.alpnProtocol === ALPN_MUX && settings.protocol === "mux") {
      return new MuxSession(tlsSocket, "client", settings);
    }
    if (tlsSocket.alpnProtocol !== ALPN_H2) return undefined;
    // The URL only names the session's origin; the connection is the verified TLS socket.
    const origin = addr.path
      ? "https://localhost"
      : `https://${addr.host.includes(":") ? `[${addr.host}]` : addr.host}:${addr.port}`;
    const session = h2connect(origin, { ...sessionOptions(settings), createConnection: () => tlsSocket });
    session.once("connect", () => session.setLocalWindowSize(settings.connectionWindowBytes));
    return session;
  }

  /** Counts a failed dial: the metric, one warning, and the next backoff of `key` (full jitter). */
  private dialFailed(peer: string, address: string, key: string, failure: LinkFailure, detail: string): void {
    const { settings } = this.opts;
    this.opts.observer?.linkFailed("dial", failure);
    const prev = this.backoff.get(key)?.failures ?? 0;
    const bound = Math.min(settings.redialMaxMs, settings.redialInitialMs * 2 ** prev);
    const why = `${failure}: ${detail}`;
    this.backoff.set(key, { failures: prev + 1, until: performance.now() + this.random() * bound, why });
    this.opts.log("warn", "link dial failed", { peer, address, reason: failure, detail });
  }

  /** Whether `link` has proved itself: up for `redialMaxMs`, which makes its address good again. */
  private provenByAge(link: Link): boolean {
    if (!link.proven && performance.now() - link.since >= this.opts.settings.redialMaxMs) {
      link.proven = true;
      this.backoff.delete(link.key);
    }
    return link.proven;
  }

  /**
   * `link` went before it proved itself, and not by this relay's doing: a failed dial for the
   * backoff (docs/security/links.md, "A compromised relay"). Up for `redialMaxMs` counts as proven:
   * a peer that holds each link that long before dropping it gets no more handshakes out of this
   * relay than the longest backoff would allow it anyway.
   */
  private closedEarly(link: Link): void {
    if (link.closedHere || this.closing || this.provenByAge(link)) return;
    const up = performance.now() - link.since;
    const why = link.cause ?? "the peer closed it";
    this.dialFailed(
      link.peer,
      link.address,
      link.key,
      "closed_early",
      `link closed ${Math.round(up)} ms after its handshake (${why})`,
    );
  }

  private adopt(
    session: LinkClientSession,
    peer: string,
    key: string,
    address: string,
    tenant: string | undefined,
  ): Link {
    const { settings } = this.opts;
    const link: Link = {
      session,
      peer,
      tenant,
      key,
      address,
      streams: 0,
      since: performance.now(),
      proven: false,
      closedHere: false,
      cause: undefined,
      usable: true,
      idleTimer: undefined,
      pingTimer: setInterval(() => this.ping(link), settings.pingIntervalMs).unref(),
    };
    const list = this.links.get(key) ?? [];
    list.push(link);
    this.links.set(key, list);
    this.armIdle(link);
    session.on("error", (err) => {
      link.cause ??= String(err);
      this.opts.log("info", "link error", { peer, error: String(err) });
    });
    session.on("goaway", () => {
      link.usable = false;
      // The peer's GOAWAY answering this relay's own close (idle, drain) is no failure of the peer.
      if (link.closedHere) return;
      link.cause ??= "it sent GOAWAY";
      this.opts.observer?.linkFailed("dial", "goaway");
    });
    session.on("close", () => {
      this.forget(link);
      this.closedEarly(link);
    });
    return link;
  }

  private ping(link: Link): void {
    // The ping timer already runs per link: it proves a link that stayed up, without a timer of its own.
    this.provenByAge(link);
    pingOrClose(link.session, this.opts.settings.pingTimeoutMs, () => {
      link.cause ??= "its PING went unanswered";
      this.opts.observer?.linkFailed("dial", "ping_timeout");
      this.opts.log("warn", "link ping unanswered; closing it", { peer: link.peer });
    });
  }

  private armIdle(link: Link): void {
    if (link.streams > 0 || this.opts.settings.idleTimeoutMs <= 0) return;
    link.idleTimer = setTimeout(() => {
      link.usable = false;
      link.closedHere = true;
      link.session.close();
    }, this.opts.settings.idleTimeoutMs).unref();
  }

  private forget(link: Link): void {
    link.usable = false;
    clearInterval(link.pingTimer);
    clearTimeout(link.idleTimer);
    const list = this.links.get(link.key);
    if (!list) return;
    const i = list.indexOf(link);
    if (i < 0) return;
    list.splice(i, 1);
    this.hold(link.peer, -1);
    if (list.length === 0) this.links.delete(link.key);
  }

  private request(
    link: Link,
    authority: string,
    hops: string,
    done: LinkOpenDone,
    requester: LinkRequester | undefined,
  ): void {
    clearTimeout(link.idleTimer);
    link.idleTimer = undefined;
    link.streams++;
    let stream: LinkStream;
    try {
      // Literal keys (HTTP/2's `:method` and `:authority`) rather than computed ones: V8 then builds
      // the object from a template, and this runs for every tunnel.
      stream = link.session.request(
        { ":method": "CONNECT", ":authority": authority, "hopway-hops": hops },
        { endStream: false },
      );
    } catch (err) {
      this.streamDone(link);
      done({ ok: false, final: false, detail: `link to ${link.peer}: ${String(err)}` });
      return;
    }
    // What the stream's listeners need rides on the stream: the listeners are shared by every
    // stream of every link, with no closures per tunnel. `close` and `response` fire once, so
    // plain `on` listeners (no `once` wrappers) do; after the answer they return at once.
    (stream as RequestStream)[REQUEST] = { pool: this, link, done };
    stream.on("close", onRequestClose);
    stream.on("error", onRequestError);
    stream.on("response", onResponse);
    requester?.requested(stream);
  }

  /** A stream of `link` closed (the request listeners below call it). */
  streamDone(link: Link): void {
    link.streams--;
    if (link.streams === 0 && link.usable) this.armIdle(link);
  }

  /** Sends GOAWAY on every link: no new streams; open ones finish, then each link closes. */
  goaway(): void {
    this.closing = true;
    for (const list of this.links.values()) {
      for (const l of list) {
        l.usable = false;
        l.closedHere = true;
        l.session.close();
      }
    }
  }

  /** Closes every link now. */
  destroyAll(): void {
    this.closing = true;
    for (const list of [...this.links.values()]) {
      for (const l of [...list]) {
        l.closedHere = true;
        l.session.destroy();
      }
    }
  }

  /** Links holding bytes to send (hopway-mux/1), for the relay's bound on what it holds (buffered.ts). */
  queuedLinks(out: LinkHolding[]): void {
    for (const list of this.links.values()) {
      for (const l of list) {
        const bytes = l.session.queuedBytes ?? 0;
        if (bytes > 0) out.push({ tenant: l.tenant, bytes, session: l.session });
      }
    }
  }

  /**
   * GOAWAY on the links whose peer's tenant is no longer the one their settings were made for (the
   * realm's shared namespaces changed): open tunnels finish, new ones go on a link made for it.
   */
  retireRetenanted(): void {
    const tenantOf = this.opts.tenantOf;
    if (tenantOf === undefined) return;
    for (const list of this.links.values()) {
      for (const l of list) {
        if (!l.usable || tenantOf(l.peer) === l.tenant) continue;
        l.usable = false;
        l.closedHere = true;
        l.session.close();
      }
    }
  }

  /** Closes the links to peers `keep` rejects (a table update removed them). */
  closeWhere(drop: (peer: string) => boolean): void {
    for (const peer of [...this.exhaustedWarned.keys()]) if (drop(peer)) this.exhaustedWarned.delete(peer);
    for (const list of [...this.links.values()]) {
      for (const l of [...list]) {
        if (!drop(l.peer)) continue;
        l.closedHere = true;
        l.session.destroy();
      }
    }
  }
}

/** A request's stream until it closes: its link, and who waits for the answer (undefined once answered). */
interface Request {
  pool: LinkPool;
  link: Link;
  done: LinkOpenDone | undefined;
}
const REQUEST = Symbol("hopway.link.request");
type RequestStream = LinkStream & { [REQUEST]?: Request };

/** Takes the waiting callback off the request: the first outcome wins, later events find none. */
function answer(stream: RequestStream): { r: Request; done: LinkOpenDone } | undefined {
  const r = stream[REQUEST] as Request;
  const done = r.done;
  if (done === undefined) return undefined;
  r.done = undefined;
  return { r, done };
}

function onRequestError(this: RequestStream, err: Error): void {
  const a = answer(this);
  if (a === undefined) return;
  a.done({ ok: false, final: false, detail: `link to ${a.r.link.peer}: ${err.message}` });
}

function onRequestClose(this: RequestStream): void {
  const r = this[REQUEST] as Request;
  r.pool.streamDone(r.link);
  const a = answer(this);
  if (a === undefined) return;
  // REFUSED_STREAM (a GOAWAY raced this request) is safe to retry elsewhere, and so is a link that
  // went away before any answer (TLS 1.3: a neighbour that refuses this relay's certificate
  // closes the link after this side already sent its stream); any other reset is the peer's verdict.
  const refused = this.rstCode === constants.NGHTTP2_REFUSED_STREAM;
  const lost = r.link.session.destroyed;
  a.done({
    ok: false,
    final: !refused && !lost,
    detail: lost
      ? `link to ${r.link.peer} closed before it answered`
      : this.resetHere !== undefined
        ? `stream to ${r.link.peer} reset here: ${this.resetHere}`
        : `${r.link.peer} reset the stream (code ${this.rstCode})`,
  });
}

function onResponse(this: RequestStream, headers: LinkHeaders): void {
  const a = answer(this);
  if (a === undefined) return;
  const status = Number(headers[constants.HTTP2_HEADER_STATUS]);
  if (status === 200) {
    a.done({ ok: true, stream: this, headers });
    return;
  }
  this.destroy();
  a.done({ ok: false, final: true, status, headers, detail: `refused by ${a.r.link.peer}` });
}
