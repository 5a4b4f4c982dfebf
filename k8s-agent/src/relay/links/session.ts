// What pool.ts, server.ts and the relay use of a link session and its streams:
// the subset of node:http2 that hopway-mux/1 (mux/session.ts) also provides, so
// either framing is chosen per link by ALPN and everything above is the same.
import type { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";

export type LinkHeaders = { readonly [name: string]: string | string[] | number | undefined };
export type LinkOutgoingHeaders = Record<string, string | number>;

export interface LinkStream extends Duplex {
  /** Set once the stream closed: 0 when both sides finished, otherwise the reset code (HTTP/2's numbers). */
  readonly rstCode: number | undefined;
}

export interface LinkServerStream extends LinkStream {
  readonly headersSent: boolean;
  respond(headers: LinkOutgoingHeaders, options?: { endStream?: boolean }): void;
}

export interface LinkSession extends EventEmitter {
  readonly destroyed: boolean;
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
