// The accepting side of relay links. The relay listener hands over sockets whose
// first byte is a TLS handshake record; here they get a TLS 1.3 handshake that
// requires a client certificate chaining to the trust bundle, whose URI SAN names
// a relay present in this relay's route table, then a session (hopway-mux/1 or
// HTTP/2, as ALPN chose) whose CONNECT streams the relay routes like any tunnel
// (docs/contract/relay-protocol.md §3, §4).
import { performServerHandshake } from "node:http2";
import type { Socket } from "node:net";
import { type TLSSocket, Server as TlsServer } from "node:tls";
import type { IdentitySource } from "@hopway/core/identity";
import { LogLimit } from "../../log.ts";
import type { LinkHolding } from "../buffered.ts";
import { ALPN_MUX } from "./mux/frame.ts";
import { MuxSession } from "./mux/session.ts";
import { type LinkFailure, type LinkObserver, type LinkSettings, sessionOptions, withTenant } from "./options.ts";
import { type LinkHeaders, type LinkServerStream, type LinkSession, pingOrClose } from "./session.ts";
import { ACCEPT_ALPN, ALPN_H2, certifiedRelay, failureOf, LINK_CIPHERS } from "./tls.ts";

/**
 * What the relay does once a link's peer is verified, before its session starts: takes it into
 * the tunnel pool, or says why there is no room (the link is then refused with that reason).
 */
export type VerifiedHook = (peer: string) => { reason: LinkFailure; detail: string } | undefined;

/** At most this many `relay link refused` lines per REFUSAL_LOG_MS; the rest are counted in the next line. */
const REFUSAL_LOG_LINES = 20;
const REFUSAL_LOG_MS = 10_000;

export interface LinkServerOptions {
  realm: string;
  identity: IdentitySource;
  settings: LinkSettings;
  /**
   * Budget for an accepted handshake (the relay passes the smaller of the link handshake
   * timeout and its header timeout: a connection must identify itself as fast either way).
   */
  acceptTimeoutMs: number;
  /** Whether `peer` is a node of this relay's route table. */
  knows: (peer: string) => boolean;
  /** The tenant `peer` belongs to (the route table's `peers.tenants`), for its share of the window budget. */
  tenantOf?: (peer: string) => string | undefined;
  /** A CONNECT stream from `peer` (its certified name). */
  onStream: (stream: LinkServerStream, headers: LinkHeaders, peer: string) => void;
  observer?: LinkObserver | undefined;
  log: (level: "info" | "warn" | "debug", msg: string, fields: Record<string, unknown>) => void;
}

interface Accepted {
  session: LinkSession;
  peer: string;
  /** The tenant its settings and its place were counted for, as the table said when it was accepted. */
  tenant: string | undefined;
  /** Sent GOAWAY because its peer's tenant changed (retireRetenanted): once is enough. */
  retired: boolean;
  streams: number;
  pingTimer: NodeJS.Timeout;
}

export class LinkServer {
  private readonly sessions = new Set<Accepted>();
  /** Accepted links per peer: what `maxLinksPerPeer` bounds on this side. */
  private readonly perPeer = new Map<string, number>();
  private readonly unsubscribe: () => void;
  private draining = false;
  /**
   * Never listens: the relay listener hands sockets over with `emit("connection")`. Client
   * certificates are verified by the handshake and checked in `verify` before any link
   * byte is read (`rejectUnauthorized: false` only so the refusal can say why: missing,
   * expired or from another CA).
   */
  private tlsServer: TlsServer | undefined;
  /** Accept times by remote address and port, for the handshake duration. */
  private readonly started = new Map<string, number>();
  private readonly refusalLog = new LogLimit(REFUSAL_LOG_LINES, REFUSAL_LOG_MS);
  /** Per accepted socket, what the relay does once its peer is verified (admission: why there is no room, if not). */
  private readonly verifiedHooks = new Map<string, VerifiedHook>();

  constructor(private readonly opts: LinkServerOptions) {
    this.reloadContext();
    // New handshakes use the new material; links already up keep the one they were made with.
    this.unsubscribe = opts.identity.onChange(() => this.reloadContext());
  }

  private reloadContext(): void {
    const m = this.opts.identity.material();
    if (!m) return;
    const context = {
      key: m.key,
      cert: m.certChain,
      ca: m.trustBundle,
      minVersion: "TLSv1.3" as const,
      ciphers: LINK_CIPHERS,
      // The accepting side picks by its own order, so a dialling relay of an earlier release gets AES-128-GCM too.
      honorCipherOrder: true,
    };
    try {
      if (this.tlsServer) {
        this.tlsServer.setSecureContext(context);
        return;
      }
      const server = new TlsServer({
        ...context,
        requestCert: true,
        rejectUnauthorized: false,
        ALPNProtocols: ACCEPT_ALPN,
        handshakeTimeout: this.opts.acceptTimeoutMs,
      });
      server.on("secureConnection", (tls: TLSSocket) => this.secured(tls));
      server.on("tlsClientError", (err: NodeJS.ErrnoException, tls: TLSSocket) => {
        const reason: LinkFailure = err.code === "ERR_TLS_HANDSHAKE_TIMEOUT" ? "timeout" : "tls_handshake";
        this.refused(reason, err.message, tls);
      });
      this.tlsServer = server;
    } catch (err) {
      this.opts.log("warn", "relay TLS material unusable; keeping the previous one", { error: String(err) });
    }
  }

  /** Open accepted links per peer. */
  linksByPeer(): Map<string, number> {
    const out = new Map<string, number>();
    for (const a of this.sessions) out.set(a.peer, (out.get(a.peer) ?? 0) + 1);
    return out;
  }

  /** Accepted links holding bytes to send (hopway-mux/1), for the relay's bound on what it holds (buffered.ts). */
  queuedLinks(out: LinkHolding[]): void {
    for (const a of this.sessions) {
      const bytes = a.session.queuedBytes ?? 0;
      if (bytes > 0) out.push({ tenant: a.tenant, bytes, session: a.session });
    }
  }

  /** Open streams on accepted links per peer. */
  streamsByPeer(): Map<string, number> {
    const out = new Map<string, number>();
    for (const a of this.sessions) out.set(a.peer, (out.get(a.peer) ?? 0) + a.streams);
    return out;
  }

  private refused(reason: LinkFailure, detail: string, tls: TLSSocket | undefined, peer?: string): void {
    this.opts.observer?.linkFailed("accept", reason);
    // Every refusal counts in the metric; the log takes a bounded number of them, saying how many
    // it left out: a peer that retries refused links at its handshake rate (a tenant at its share,
    // a certificate of another realm) cannot flood it.
    const left = this.refusalLog.take();
    if (left !== undefined) {
      this.opts.log("warn", "relay link refused", {
        reason,
        detail,
        remote: tls?.remoteAddress,
        ...(peer === undefined ? {} : { peer }),
        ...(left > 0 ? { refusals_not_logged: left } : {}),
      });
    }
    tls?.destroy();
  }

  /**
   * Takes a socket whose unread bytes start with a TLS record. `onDone` runs once when the
   * socket has closed, whatever happened.
   */
  accept(socket: Socket, onDone: () => void, onVerified: VerifiedHook = () => undefined): void {
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.once("close", () => {
      this.started.delete(key);
      this.verifiedHooks.delete(key);
      onDone();
    });
    this.verifiedHooks.set(key, onVerified);
    if (this.tlsServer === undefined || this.draining) {
      if (this.tlsServer === undefined) this.refused("no_identity", "this relay has no certificate yet", undefined);
      socket.destroy();
      return;
    }
    this.started.set(key, performance.now());
    // tls.Server reads what the socket already buffered (the sniffed first bytes) into the handshake.
    this.tlsServer.emit("connection", socket);
  }

  private secured(tls: TLSSocket): void {
    const peer = this.verify(tls);
    if (typeof peer !== "string") {
      this.refused(peer.reason, peer.detail, tls);
      return;
    }
    // An honest peer dials at most maxLinksPerPeer links to us (pool.ts); past it, links would only
    // make this relay hold sockets and sessions for one peer. Refused before admission, so a refused
    // link never takes a place in the tunnel pool; the peer's other links are left alone.
    const held = this.perPeer.get(peer) ?? 0;
    if (held >= this.opts.settings.maxLinksPerPeer) {
      this.refused(
        "peer_link_limit",
        `relay '${peer}' already holds ${held} links (links.max_links_per_peer ${this.opts.settings.maxLinksPerPeer})`,
        tls,
      );
      return;
    }
    // Authenticated now: the relay moves it from its handshake pool to its tunnel pool, if there is
    // room for it there and in its tenant's share.
    const full = this.verifiedHooks.get(`${tls.remoteAddress}:${tls.remotePort}`)?.(peer);
    if (full !== undefined) {
      this.refused(full.reason, full.detail, tls, peer);
      return;
    }
    this.startSession(tls, peer, this.started.get(`${tls.remoteAddress}:${tls.remotePort}`) ?? performance.now());
  }

  private verify(tls: TLSSocket): string | { reason: LinkFailure; detail: string } {
    if (tls.getProtocol() !== "TLSv1.3") return { reason: "tls_handshake", detail: "not TLS 1.3" };
    if (tls.alpnProtocol !== ALPN_MUX && tls.alpnProtocol !== ALPN_H2) {
      return { reason: "tls_handshake", detail: "ALPN: neither hopway-mux/1 nor h2 negotiated" };
    }
    const cert = tls.getPeerCertificate();
    if (!cert || Object.keys(cert).length === 0) return { reason: "no_certificate", detail: "no client certificate" };
    if (!tls.authorized) {
      const code = String(tls.authorizationError ?? "");
      return { reason: failureOf(code), detail: `client certificate rejected: ${code}` };
    }
    const peer = certifiedRelay(this.opts.realm, cert);
    if (peer === undefined) {
      return { reason: "peer_identity", detail: `certificate names no relay of realm '${this.opts.realm}'` };
    }
    if (!this.opts.knows(peer)) {
      return { reason: "unknown_peer", detail: `relay '${peer}' is not in this relay's route table` };
    }
    return peer;
  }

  private startSession(tls: TLSSocket, peer: string, started: number): void {
    const tenant = this.opts.tenantOf?.(peer);
    const settings = withTenant(this.opts.settings, tenant);
    let session: LinkSession;
    if (tls.alpnProtocol === ALPN_MUX) session = new MuxSession(tls, "server", settings);
    else {
      const h2 = performServerHandshake(tls, sessionOptions(settings));
      h2.setLocalWindowSize(settings.connectionWindowBytes);
      session = h2;
    }
    const accepted: Accepted = {
      session,
      peer,
      tenant,
      retired: false,
      streams: 0,
      pingTimer: setInterval(() => this.ping(accepted), settings.pingIntervalMs).unref(),
    };
    this.sessions.add(accepted);
    this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) + 1);
    this.opts.observer?.linkOpened("accept", (performance.now() - started) / 1000);
    this.opts.log("debug", "relay link accepted", { peer });
    session.on("error", (err) => this.opts.log("info", "link error", { peer, error: String(err) }));
    session.on("close", () => {
      clearInterval(accepted.pingTimer);
      this.forget(accepted);
    });
    session.on("stream", (stream: LinkServerStream, headers: LinkHeaders) => {
      accepted.streams++;
      // One listener for every stream (its link rides on it), not a closure and a `once` wrapper each.
      (stream as AcceptedStream)[ACCEPTED] = accepted;
      stream.on("close", onAcceptedStreamClose);
      if (headers[":method"] !== "CONNECT") {
        stream.respond({ ":status": 405, "hopway-error": "method_not_allowed" }, { endStream: true });
        // Reset behind the answer, so that what the peer sends after its request is not kept.
        stream.destroy();
        return;
      }
      this.opts.onStream(stream, headers, peer);
    });
    if (this.draining) session.close();
  }

  private forget(a: Accepted): void {
    if (!this.sessions.delete(a)) return;
    const n = (this.perPeer.get(a.peer) ?? 1) - 1;
    if (n > 0) this.perPeer.set(a.peer, n);
    else this.perPeer.delete(a.peer);
  }

  private ping(a: Accepted): void {
    pingOrClose(a.session, this.opts.settings.pingTimeoutMs, () => {
      this.opts.observer?.linkFailed("accept", "ping_timeout");
      this.opts.log("warn", "link ping unanswered; closing it", { peer: a.peer });
    });
  }

  /** Closes at once the links of peers no longer in the route table. */
  dropUnknown(): void {
    for (const a of [...this.sessions]) {
      if (this.opts.knows(a.peer)) continue;
      this.opts.observer?.linkFailed("accept", "unknown_peer");
      this.opts.log("warn", "closing link: relay left the route table", { peer: a.peer });
      this.forget(a);
      a.session.destroy();
    }
  }

  /**
   * GOAWAY on the accepted links whose peer's tenant is no longer the one they were counted and
   * made for (the realm's shared namespaces changed): the peer opens its next tunnels on a new link,
   * which counts against its tenant's share with its tenant's windows; open tunnels finish.
   */
  retireRetenanted(): void {
    const tenantOf = this.opts.tenantOf;
    if (tenantOf === undefined) return;
    for (const a of this.sessions) {
      const now = tenantOf(a.peer);
      if (a.retired || now === a.tenant) continue;
      this.opts.log("info", "link made for another tenant; asking the peer to open a new one", {
        peer: a.peer,
        was: a.tenant ?? null,
        now: now ?? null,
      });
      a.retired = true;
      a.session.close();
    }
  }

  /** GOAWAY on every accepted link: no new streams, open ones finish. */
  goaway(): void {
    this.draining = true;
    for (const a of this.sessions) a.session.close();
  }

  destroyAll(): void {
    this.draining = true;
    for (const a of [...this.sessions]) a.session.destroy();
  }

  close(): void {
    this.unsubscribe();
  }
}

const ACCEPTED = Symbol("hopway.link.accepted");
type AcceptedStream = LinkServerStream & { [ACCEPTED]?: Accepted };

/** `close` fires once per stream. */
function onAcceptedStreamClose(this: AcceptedStream): void {
  (this[ACCEPTED] as Accepted).streams--;
}
