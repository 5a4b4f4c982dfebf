// Opens a CONNECT tunnel through a Hopway relay, the way any application would.
import { connect, type Socket } from "node:net";

export interface Tunnel {
  status: number;
  headers: Map<string, string>;
  /** Bytes received after the answer's head (the start of the tunnel, or an error body). */
  rest: Buffer;
  socket: Socket;
}

export function openTunnel(
  relay: { host: string; port: number },
  authority: string,
  opts: { headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Tunnel> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: relay.host, port: relay.port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from relay for CONNECT ${authority}`));
    }, opts.timeoutMs ?? 15_000);
    let buf: Buffer = Buffer.alloc(0);
    const fail = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once("error", fail);
    socket.once("connect", () => {
      let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`;
      for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
      socket.write(`${head}\r\n`);
    });
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", fail);
      socket.pause();
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number((lines[0] ?? "").split(" ")[1]);
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        if (i > 0) headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
      }
      resolve({ status, headers, rest: buf.subarray(end + 4), socket });
    };
    socket.on("data", onData);
    socket.once("end", () => fail(new Error(`relay closed without an answer (${buf.length} bytes)`)));
  });
}
