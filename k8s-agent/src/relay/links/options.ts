// Tuning of relay links (docs/links.md, "Flow control and memory").
//
// Sized for a 100 ms × 1 Gbit/s path, whose bandwidth-delay product is about 12.5 MB:
// - the connection window (16 MiB) lets one link keep such a path full across its streams;
// - the per-stream window (2 MiB) is what one tunnel may have in flight, and so what a
//   tunnel whose reader stopped can hold buffered at the receiving relay. It is a fraction
//   of the connection window, so a stalled tunnel never takes the link from the others
//   (Node returns connection-level window at once and stream-level window only as a
//   stream's data is consumed). One tunnel alone gets 2 MiB per round trip: ~170 Mbit/s
//   at 100 ms, line rate below ~15 ms.
// Worst case at a receiving relay per link: maxConcurrentStreams × streamWindowBytes,
// reached only if every tunnel's reader stalls with a full window; per neighbour, that times
// maxLinksPerPeer.

import type { WindowBudget } from "./mux/window.ts";
import type { LinkProtocol } from "./session.ts";

export interface LinkSettings {
  /**
   * The framing a dialling relay asks for by ALPN: "mux" (hopway-mux/1, falling back to h2 with a
   * relay that does not offer it) or "h2" only. Accepting relays take both.
   */
  protocol: LinkProtocol;
  /** HTTP/2 connection-level receive window (h2 links; mux has per-stream windows only). */
  connectionWindowBytes: number;
  /** Each stream's receive window (HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE; the mux SETTINGS stream window). */
  streamWindowBytes: number;
  /**
   * The same, on links with a tenant's relay (withTenant): what one of its tunnels whose reader
   * stops may make this relay hold, besides the growth it took from its tenant's share.
   */
  tenantStreamWindowBytes: number;
  /**
   * hopway-mux/1: a stream's receive window grows, while its reader keeps up with what the window
   * lets through the link's round trip, up to this (mux/window.ts)...
   */
  maxStreamWindowBytes: number;
  /** ...taking the growth from this many bytes shared by every link of the relay (0: no growth). */
  windowGrowthBudgetBytes: number;
  /** The budget itself: one per relay, made by the Relay from windowGrowthBudgetBytes. */
  windowBudget?: WindowBudget;
  /** Streams one link accepts at once; the dialling side opens another link past it. */
  maxConcurrentStreams: number;
  /**
   * Links held with one neighbour, each way: the dialling side opens no more (a tunnel that finds
   * them all at their stream limit fails), the accepting side closes a peer's extra ones. The
   * stream limit is the smaller of ours and the peer's, so without this bound a peer announcing
   * one stream per link would have this relay dial a link per tunnel.
   */
  maxLinksPerPeer: number;
  /** Node's per-session cap on nghttp2's own buffers, in MB. */
  maxSessionMemoryMb: number;
  /** A PING is sent this often on every link. */
  pingIntervalMs: number;
  /** A link whose PING is not answered within this time is closed. */
  pingTimeoutMs: number;
  /** A dialled link with no streams for this long is closed. */
  idleTimeoutMs: number;
  /** TCP connect plus TLS handshake budget for one link dial. */
  handshakeTimeoutMs: number;
  /** First re-dial delay bound after a failed dial (full jitter: a random delay up to it). */
  redialInitialMs: number;
  /** Cap of the exponential re-dial delay bound. */
  redialMaxMs: number;
}

export const DEFAULT_LINK_SETTINGS: LinkSettings = {
  protocol: "mux",
  connectionWindowBytes: 16 * 1024 * 1024,
  streamWindowBytes: 2 * 1024 * 1024,
  tenantStreamWindowBytes: 256 * 1024,
  maxStreamWindowBytes: 16 * 1024 * 1024,
  windowGrowthBudgetBytes: 256 * 1024 * 1024,
  maxConcurrentStreams: 1000,
  maxLinksPerPeer: 16,
  maxSessionMemoryMb: 64,
  pingIntervalMs: 15_000,
  pingTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
  handshakeTimeoutMs: 5_000,
  redialInitialMs: 200,
  redialMaxMs: 15_000,
};

/**
 * What both ends of a link say in their HTTP/2 SETTINGS and session options. Frames of up to
 * 1 MiB let a bulk stream cross in fewer DATA frames than the 16 KiB default.
 */
export function sessionOptions(settings: LinkSettings) {
  return {
    settings: {
      initialWindowSize: settings.streamWindowBytes,
      maxFrameSize: 1 << 20,
      maxConcurrentStreams: settings.maxConcurrentStreams,
      enablePush: false,
    },
    maxSessionMemory: settings.maxSessionMemoryMb,
  };
}

export const LINK_FAILURES = [
  /** The TLS handshake failed (protocol, no common ALPN framing, not TLS 1.3). */
  "tls_handshake",
  /** The peer presented no certificate. */
  "no_certificate",
  /** The certificate does not name the relay that was dialled (or names no relay of this realm). */
  "peer_identity",
  /** The certificate does not chain to the trust bundle. */
  "untrusted",
  /** The certificate is expired or not yet valid. */
  "expired",
  /** The certified relay is not in this relay's route table (deleted, or never a member). */
  "unknown_peer",
  /** TCP connect failed (refused, unreachable, reset). */
  "connect",
  /** Connect or handshake did not finish in time. */
  "timeout",
  /** The peer sent GOAWAY (it is draining). */
  "goaway",
  /** A PING was not answered in time. */
  "ping_timeout",
  /**
   * Dialling: the link closed, not by this relay, before it had been up for redial_max_ms; it
   * counts as a failed dial (backoff). Counted besides goaway when that came first.
   */
  "closed_early",
  /** This relay has no certificate yet. */
  "no_identity",
  /** Verified, but the relay had no room for another authenticated connection (max_connections). */
  "over_capacity",
  /**
   * Dialling: every link to the peer is at its stream limit and max_links_per_peer are held; the
   * tunnel fails rather than dial another.
   */
  "peer_streams_exhausted",
  /** Accepting: the verified peer already holds max_links_per_peer links to this relay. */
  "peer_link_limit",
  /**
   * Accepting: the verified peer is a relay of an unshared namespace whose relays together hold
   * limits.max_connections_per_namespace of this relay's tunnel pool.
   */
  "namespace_limit",
  /**
   * Accepting: the source address started more TLS handshakes than
   * limits.link_handshakes_per_source_per_second allows; closed before the handshake.
   */
  "handshake_rate",
] as const;
export type LinkFailure = (typeof LINK_FAILURES)[number];
export type LinkSide = "dial" | "accept";

/** What the link layer tells the metrics. Peer names come from the route table (a bounded set). */
export interface LinkObserver {
  linkOpened(side: LinkSide, handshakeSeconds: number): void;
  linkFailed(side: LinkSide, reason: LinkFailure): void;
}

/**
 * The settings of a link with `tenant`'s relay (undefined: no tenant's): its streams start at the
 * tenant stream window, and grow (hopway-mux/1) from the tenant's share of the window budget.
 * A tenant's relays hold a quarter of the tunnel pool at most; at 2 MiB a place, stalled
 * tunnels alone could still make that gigabytes.
 */
export function withTenant(
  settings: LinkSettings,
  tenant: string | undefined,
): LinkSettings & { budgetTenant?: string } {
  if (tenant === undefined) return settings;
  const streamWindowBytes = Math.min(settings.streamWindowBytes, settings.tenantStreamWindowBytes);
  return { ...settings, streamWindowBytes, budgetTenant: tenant };
}
