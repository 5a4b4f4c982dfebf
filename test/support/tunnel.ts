// Opens a CONNECT tunnel through a Hopway relay, the way any application would.
import { connect, type Socket } from "node:net";

export interface Tunnel {
  status: number;
  headers: Map<string, string>;
  /** Bytes received after the answer's head (the start of the tunnel, or an error body). */
  rest: Buffer;
  socket: Socket;
}

export interface TunnelOptions {
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** Source address to connect from (another 127.0.0.x, to act as another client). */
  localAddress?: string;
}

/** A tunnel attempt that always settles: status 0 (and `error`) when no answer arrived. */
export interface TunnelAttempt extends Tunnel {
  /** Time from connect() to the answer's head (or the failure). */
  ms: number;
  error?: Error;
}

export async function openTunnel(
  relay: { host: string; port: number },
  authority: string,
  opts: TunnelOptions = {},
): Promise<Tunnel> {
  const t = await tryTunnel(relay, authority, opts);
  if (t.error) throw t.error;
  return t;
}

export function tryTunnel(
  relay: { host: string; port: number },
  authority: string,
  opts: TunnelOptions = {},
): Promise<TunnelAttempt> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const socket = connect({
      host: relay.host,
      port: relay.port,
      allowHalfOpen: true,
      noDelay: true,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    const timer = setTimeout(
      () => fail(new Error(`no answer from relay for CONNECT ${authority}`)),
      opts.timeoutMs ?? 15_000,
    );
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const settle = (t: Omit<TunnelAttempt, "ms" | "socket">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", onError);
      resolve({ ...t, socket, ms: performance.now() - t0 });
    };
    const fail = (error: Error) => {
      if (settled) return;
      // A failed attempt's socket is of no use to anyone: close it, and keep its late errors quiet.
      socket.on("error", () => {});
      socket.destroy();
      settle({ status: 0, headers: new Map(), rest: buf, error });
    };
    // Before the answer an error ends the attempt; after it, errors belong to whoever uses the socket.
    const onError = (err: Error) => fail(err);
    socket.on("error", onError);
    socket.once("connect", () => {
      let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
      for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
      socket.write(`${head}\r\n`);
    });
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.pause();
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number((lines[0] ?? "").split(" ")[1]);
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        if (i > 0) headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
      }
      settle({ status, headers, rest: buf.subarray(end + 4) });
    };
    socket.on("data", onData);
    socket.once("end", () => fail(new Error(`relay closed without an answer (${buf.length} bytes)`)));
  });
}
