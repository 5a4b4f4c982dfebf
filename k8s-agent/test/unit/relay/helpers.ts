// Loopback plumbing for the relay tests: real listeners, real sockets.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdirSync } from "node:fs";
import { type ClientHttp2Session, connect as h2connect } from "node:http2";
import { connect, createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { TlsMaterial } from "@hopway/core/identity";
import type { TenantPeers } from "@hopway/core/relays";
import type { Hop, Route } from "@hopway/core/schema";
import { relayIdentityForTest } from "../../../../test/support/identity.ts";
import type { LinkProtocol } from "../../../src/relay/links/index.ts";
import { nativeSplicer, nativeSpliceStatus } from "../../../src/relay/native-splice.ts";
import { HANDOVER_READS } from "../../../src/relay/pump.ts";
import { DEFAULT_LIMITS, Relay, type RelayOptions } from "../../../src/relay/relay.ts";
import { RoutingTable } from "../../../src/relay/table.ts";

/** The realm of the relay tests' certificates. */
export const TEST_REALM = "test-realm";
/** The link framings: tests of the link layer run once for each. */
export const LINK_PROTOCOLS: LinkProtocol[] = ["mux", "h2"];

export interface Running {
  relay: Relay;
  table: RoutingTable;
  port: number;
  server: Server;
  close(): Promise<void>;
}

export async function listen(server: Server, host = "127.0.0.1", port = 0): Promise<number> {
  server.listen(port, host);
  await once(server, "listening");
  const a = server.address();
  if (a === null || typeof a === "string") throw new Error("no port");
  return a.port;
}

/**
 * A neighbour relay `name` on loopback: a TLS 1.3 server with its test certificate of TEST_REALM,
 * asking for the dialler's, offering `alpn`, so that a link dial to it completes. `onSocket` gets
 * each connection it accepts (their errors are swallowed). `close` stops it and its connections.
 */
export async function tlsNeighbourForTest(
  name: string,
  alpn: string,
  onSocket: (socket: TLSSocket) => void,
): Promise<{ port: number; close: () => void }> {
  const m = relayIdentityForTest(TEST_REALM, name).material();
  if (!m) throw new Error("no test identity");
  const sockets: TLSSocket[] = [];
  const server = createTlsServer(
    {
      key: m.key,
      cert: m.certChain,
      ca: m.trustBundle,
      requestCert: true,
      minVersion: "TLSv1.3",
      ALPNProtocols: [alpn],
    },
    (socket) => {
      socket.on("error", () => {});
      sockets.push(socket);
      onSocket(socket);
    },
  );
  const port = await listen(server as unknown as Server);
  return {
    port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/**
 * A relay behind a real loopback listener that hands every accepted socket to relay.handle.
 * It has a link identity from the test CA of TEST_REALM unless `identity` is given (undefined:
 * none); `peers` are relays its table knows (so it accepts their links) without a route, and
 * `tenants` what its table says of their namespaces (`peers.tenants`).
 */
export async function startRelay(
  opts: Omit<RelayOptions, "table"> & {
    routes: Route[];
    peers?: string[];
    tenants?: TenantPeers[];
    host?: string;
    port?: number;
  },
): Promise<Running> {
  const table = new RoutingTable(opts.name);
  const routes = [...opts.routes, ...(opts.peers ?? []).map((p) => route(opts.name, p, null))];
  table.set({
    node: opts.name,
    version: 1,
    routes,
    ...(opts.tenants === undefined ? {} : { peers: { any: true, nodes: [], tenants: opts.tenants } }),
  });
  const identity = "identity" in opts ? opts.identity : relayIdentityForTest(TEST_REALM, opts.name);
  const relay = new Relay({ realm: TEST_REALM, ...opts, identity, table });
  // Like the agent's listeners: accepted sockets buffer as much as dialed ones (so the relay
  // adopts them in place, as in production).
  const hwm = opts.limits?.bufferBytes ?? DEFAULT_LIMITS.bufferBytes;
  const server = createServer({ allowHalfOpen: true, highWaterMark: hwm } as Parameters<typeof createServer>[0], (s) =>
    relay.handle(s),
  );
  const port = await listen(server, opts.host, opts.port);
  return {
    relay,
    table,
    port,
    server,
    async close() {
      relay.destroyAll();
      relay.close();
      server.close();
    },
  };
}

export function hop(node: string, address: string | null, alternatives: string[] = [], priority = 1): Hop {
  return { node, address, priority, alternatives };
}

export function route(from: string, to: string, hops: Hop[] | null): Route {
  return { from, to, hops };
}

/** An echo server; `hold` keeps accepted sockets paused (a reader that never reads). */
export async function startEcho(
  opts: { halfClose?: boolean } = {},
): Promise<{ port: number; server: Server; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer({ allowHalfOpen: opts.halfClose ?? false }, (s) => {
    sockets.push(s);
    s.on("error", () => {});
    s.pipe(s);
  });
  const port = await listen(server);
  return { port, server, sockets };
}

/** A target that answers only after the client's FIN, with how many bytes it got, then closes its side. */
export async function startByteCounter(): Promise<{ port: number; server: Server }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("end", () => s.end(`got ${Buffer.concat(chunks).length} bytes`));
  });
  return { port: await listen(server), server };
}

/** A target that accepts and reads nothing until the test resumes the accepted socket. */
export async function startStalledTarget(): Promise<{
  port: number;
  server: Server;
  accepted: () => Socket | undefined;
}> {
  let held: Socket | undefined;
  const server = createServer((s) => {
    held = s;
    s.pause();
  });
  const port = await listen(server);
  return { port, server, accepted: () => held };
}

/**
 * A port that neither accepts nor refuses: a listener whose process is stopped, its backlog full,
 * so the kernel drops new SYNs and a dial to it neither connects nor fails until the dialler's own
 * timeout. `cleanups` gets what ends it.
 */
export async function blackholePort(cleanups: Array<() => unknown>): Promise<number> {
  const child = spawn(
    process.execPath,
    [
      "-e",
      "require('net').createServer().listen({ host: '127.0.0.1', port: 0, backlog: 1 }, function () { console.log(this.address().port) })",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  cleanups.push(() => child.kill("SIGKILL"));
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
  const port = Number(String(line).trim());
  child.kill("SIGSTOP");
  const fillers: Socket[] = [];
  cleanups.push(() => {
    for (const f of fillers) f.destroy();
  });
  for (let i = 0; i < 4; i++) {
    const f = connect({ host: "127.0.0.1", port });
    f.on("error", () => {});
    fillers.push(f);
  }
  await sleep(100);
  return port;
}

export interface Answer {
  status: number;
  headers: Map<string, string>;
  body: string;
  rest: Buffer;
  socket: Socket;
}

/** Sends a raw request head and reads the answer's head (and, for errors, the body until close). */
export async function request(port: number, head: string, host = "127.0.0.1"): Promise<Answer> {
  const socket = connect({ port, host, allowHalfOpen: true });
  socket.on("error", () => {});
  await once(socket, "connect");
  socket.write(head);
  return readAnswer(socket);
}

export function readAnswer(socket: Socket): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.pause();
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number((lines[0] ?? "").split(" ")[1]);
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
      }
      const rest = buf.subarray(end + 4);
      const len = Number(headers.get("content-length") ?? "0");
      resolve({ status, headers, body: rest.subarray(0, len).toString(), rest, socket });
    };
    const onClose = () =>
      reject(new Error(`closed before an answer (${buf.length} bytes: ${buf.toString().slice(0, 80)})`));
    socket.on("data", onData);
    socket.once("close", onClose);
  });
}

/** Collects everything until the peer ends. */
export async function readAll(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  socket.resume();
  await once(socket, "end");
  return Buffer.concat(chunks);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `ok` every 5 ms until it holds; after `ms` it throws, naming `what` it waited for. */
export async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Descriptors this process holds now: tests check that the relay gave back every one it took. */
export const openFds = () => readdirSync("/proc/self/fd").length;

/**
 * Talks on a fresh tunnel until `relay` hands it to the native splice's thread: HANDOVER_READS
 * exchanges, each its own read. With an echo behind the tunnel it waits for each answer; else it
 * paces the writes. Returns the bytes it sent (and, with an echo, got back).
 */
export async function warm(
  relay: { readonly nativeSplicedTunnels: number },
  s: Socket,
  echo: boolean,
  /** Exactly this many exchanges, without watching the relay's count (tunnels warmed side by side). */
  exchanges?: number,
): Promise<number> {
  const before = relay.nativeSplicedTunnels;
  let got = 0;
  const onData = (c: Buffer) => {
    got += c.length;
  };
  if (echo) {
    s.on("data", onData);
    s.resume();
  }
  let sent = 0;
  // Unbatched, so each write is a read at the relay; past HANDOVER_READS it takes the tunnel.
  s.setNoDelay(true);
  const more = (i: number) =>
    exchanges === undefined ? i < 20 * HANDOVER_READS && relay.nativeSplicedTunnels === before : i < exchanges;
  for (let i = 0; more(i); i++) {
    s.write("0123456789abcdef");
    sent += 16;
    if (echo) await until("the echo", () => got === sent);
    else await sleep(2);
  }
  s.off("data", onData);
  if (exchanges === undefined)
    await until("the handover to the thread", () => relay.nativeSplicedTunnels === before + 1);
  return sent;
}

/**
 * Resolves once a tunnel's application socket was cut (reset: an error and a close, no end of
 * data); rejects if it ended cleanly, which would pass a truncated stream off as complete.
 */
export function cutOff(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    let ended = false;
    socket.on("error", () => {});
    socket.once("end", () => {
      ended = true;
    });
    socket.once("close", () => (ended ? reject(new Error("tunnel ended cleanly (FIN), not cut")) : resolve()));
  });
}

/**
 * Relays chained by links: `names[0]` takes the application's CONNECT for `target` and each
 * relay's route goes through the rest in order, the last one dialling the target itself.
 */
export async function startChain(
  names: string[],
  targetAddr: string,
  extra: Partial<Parameters<typeof startRelay>[0]> = {},
): Promise<Running[]> {
  const out: Running[] = [];
  const addrs = new Map<string, string>();
  // From the last relay back, so each one's next hop already has a port.
  for (let i = names.length - 1; i >= 0; i--) {
    const name = names[i] as string;
    const rest = names.slice(i + 1);
    const hops = [...rest.map((n) => hop(n, addrs.get(n) as string)), hop("app1", targetAddr)];
    const r = await startRelay({
      name,
      routes: [route(name, "app1", hops)],
      peers: names.filter((n) => n !== name),
      ...extra,
    });
    addrs.set(name, `ipv4://127.0.0.1:${r.port}`);
    out.unshift(r);
  }
  return out;
}

/** Opens a tunnel to app1 through the relay on `port`; resolves with the answer. */
export async function tunnel(port: number, authority = "app1"): Promise<Answer> {
  return request(port, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
}

export interface LinkAnswer {
  headers: Record<string, string | string[] | number | undefined>;
  stream: import("node:http2").ClientHttp2Stream;
  close(): void;
}

/**
 * An HTTP/2 link to the relay on `port` with `m` as the client certificate (the relay's name is not
 * checked: the tests dial relays by port). Errors are ignored; the caller destroys it.
 */
export function h2Link(port: number, m: TlsMaterial, host = "127.0.0.1"): ClientHttp2Session {
  const session = h2connect(`https://${host}:${port}`, {
    key: m.key,
    cert: m.certChain,
    ca: m.trustBundle,
    checkServerIdentity: () => undefined,
  });
  session.on("error", () => {});
  return session;
}

/**
 * Opens a link to the relay on `port` as relay `asRelay` (a certificate from the test CA) and
 * sends one CONNECT stream: what another relay of the realm would send.
 */
export async function linkRequest(
  port: number,
  asRelay: string,
  authority: string,
  hops: string,
  host = "127.0.0.1",
): Promise<LinkAnswer> {
  const m = relayIdentityForTest(TEST_REALM, asRelay).material();
  if (!m) throw new Error("no test identity");
  const session = h2Link(port, m, host);
  const stream = session.request({ ":method": "CONNECT", ":authority": authority, "hopway-hops": hops });
  stream.on("error", () => {});
  const headers = await new Promise<LinkAnswer["headers"]>((resolve, reject) => {
    stream.once("response", resolve);
    stream.once("close", () => reject(new Error(`stream closed before an answer (code ${stream.rstCode})`)));
  });
  return { headers, stream, close: () => session.destroy() };
}

/** Writes `total` bytes of random data in 1 MiB chunks with backpressure; resolves with their sha256. */
export async function sendRandom(socket: Socket, total: number): Promise<string> {
  const hash = createHash("sha256");
  let sent = 0;
  while (sent < total) {
    const chunk = randomBytes(Math.min(1024 * 1024, total - sent));
    hash.update(chunk);
    sent += chunk.length;
    if (!socket.write(chunk)) await once(socket, "drain");
  }
  socket.end();
  return hash.digest("hex");
}

/** Reads until the peer's FIN (after `rest`, bytes that came with the answer); resolves with the byte count and sha256. */
export function receiveHash(socket: Socket, rest: Buffer = Buffer.alloc(0)): Promise<{ bytes: number; sha: string }> {
  const hash = createHash("sha256").update(rest);
  let bytes = rest.length;
  socket.on("data", (c: Buffer) => {
    hash.update(c);
    bytes += c.length;
  });
  socket.resume();
  return once(socket, "end").then(() => ({ bytes, sha: hash.digest("hex") }));
}

/** The process's native listeners (listen.c); throws where the addon is not built. */
export function nativeHub(): ReturnType<NonNullable<ReturnType<typeof nativeSplicer>>["listeners"]> {
  const s = nativeSplicer();
  if (s === undefined) throw new Error(nativeSpliceStatus());
  return s.listeners();
}
