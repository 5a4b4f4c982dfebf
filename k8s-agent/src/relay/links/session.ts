// What pool.ts, server.ts and the relay use of a link session and its streams:
// the subset of node:http2 that hopway-mux/1 (mux/session.ts) also provides, so
// either framing is chosen per link by ALPN and everything above is the same.
// A node:http2 stream (a Duplex) has all of it; a mux stream has only this, so
// it needs none of a Duplex's machinery per tunnel.
import type { EventEmitter } from "node:events";

export type LinkHeaders = { readonly [name: string]: string | string[] | number | undefined };
export type LinkOutgoingHeaders = Record<string, string | number>;

/**
 * What the relay uses of either side of a tunnel: a relay socket (net.Socket has all of it) or
 * a link stream. Events: 'data' (Buffer) while flowing, 'end' (the peer's FIN, once everything
 * before it was read), 'drain', 'close' (once), 'error'.
 */
export interface TunnelEnd extends EventEmitter {
  /** Link streams: set once the stream closed, 0 when both sides finished, otherwise the reset code (HTTP/2's numbers). */
  readonly rstCode?: number | undefined;
  readonly destroyed: boolean;
  readonly errored: Error | null;
  /** 'end' was emitted: the peer's FIN and everything before it were read. */
  readonly readableEnded: boolean;
  /** This side's FIN left, after every write. */
  readonly writableFinished: boolean;
  /** Bytes written and not yet taken on (their callbacks not yet called). */
  readonly writableLength: number;
  /** Bytes received that its reader has not taken yet (a paused side holds them). */
  readonly readableLength?: number;
  write(chunk: Buffer, callback?: (err?: Error | null) => void): boolean;
  /** Half-close: FIN after what was written. */
  end(): this;
  pause(): this;
  resume(): this;
  /** A link stream is reset (CANCEL) unless both sides already finished. */
  destroy(): this;
}

/** One tunnel's stream on a link; on the dialling side it also emits 'response' (the answer's headers). */
export interface LinkStream extends TunnelEnd {
  readonly rstCode: number | undefined;
  /** Why this end reset the stream, when it did so for the peer's fault (its answer was malformed). */
  readonly resetHere?: string | undefined;
}

export interface LinkServerStream extends LinkStream {
  readonly headersSent: boolean;
  respond(headers: LinkOutgoingHeaders, options?: { endStream?: boolean }): void;
}

export interface LinkSession extends EventEmitter {
  readonly destroyed: boolean;
  /** hopway-mux/1: bytes the link holds to send (its queue and its socket's); node:http2 has no such count. */
  readonly queuedBytes?: number;
  readonly remoteSettings: { maxConcurrentStreams?: number | undefined };
  ping(callback: (err: Error | null, duration: number, payload: Buffer) => void): boolean;
  /** Graceful: GOAWAY, no new streams, closes once the open ones finished. */
  close(): void;
  destroy(): void;
}

export interface LinkClientSession extends LinkSession {
  request(headers: LinkOutgoingHeaders, options?: { endStream?: boolean }): LinkStream;
}

/**
 * Pings the link; when no answer comes within `timeoutMs`, `onTimeout` runs and the session is
 * destroyed (its tunnels end). Both ends of a link ping the same way.
 */
export function pingOrClose(session: LinkSession, timeoutMs: number, onTimeout: () => void): void {
  if (session.destroyed) return;
  const timer = setTimeout(() => {
    onTimeout();
    session.destroy();
  }, timeoutMs).unref();
  if (!session.ping(() => clearTimeout(timer))) clearTimeout(timer);
}

/** `relay.links.protocol`: the framing a dialling relay asks for. */
export type LinkProtocol = "mux" | "h2";
