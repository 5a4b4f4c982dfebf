// Shared plumbing for the hardening tests: a seeded PRNG (every fuzz run is
// reproducible from its seed), canary listeners that count every connection
// they receive, a relay behind a real loopback listener that counts what it
// accepted, and a bounded-concurrency runner for many real sockets.
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Route } from "@hopway/core/schema";
import type { RouteTable } from "@hopway/core/wire";
import { relayIdentityForTest } from "../../../../test/support/identity.ts";
import { Relay, type RelayOptions } from "../../../src/relay/relay.ts";
import { RoutingTable } from "../../../src/relay/table.ts";
import { TEST_REALM } from "../relay/helpers.ts";

/**
 * A table that also lists `peers()` as nodes (without a route), as the edge's tables list every
 * relay of the realm: the relay accepts links from them whatever routes a test wires.
 */
class PeeredTable extends RoutingTable {
  constructor(
    private readonly name: string,
    private readonly peers: () => readonly string[],
  ) {
    super(name);
  }
  override set(table: RouteTable): void {
    const extra = this.peers()
      .filter((p) => p !== this.name && !table.routes.some((r) => r.to === p))
      .map((p) => ({ from: this.name, to: p, hops: null }));
    super.set({ ...table, routes: [...table.routes, ...extra] });
  }
  // Asked at link time, so a relay started before its peer still knows it.
  override has(name: string): boolean {
    return super.has(name) || (name !== this.name && this.peers().includes(name));
  }
}

/** Relay names the counting relays of this process know as peers. */
export const knownRelays: string[] = [];

// One seeded generator for the project (the realm generator's): the seed a fuzz
// run prints reproduces it.
export { prng } from "@hopway/core/testing/generate";

export async function listenOn(server: Server, host: string, port = 0): Promise<number> {
  server.listen(port, host);
  await once(server, "listening");
  const a = server.address();
  if (a === null || typeof a === "string") throw new Error("no port");
  return a.port;
}

export interface Canary {
  host: string;
  port: number;
  /** Connections this listener has ever accepted. */
  hits: number;
  server: Server;
}

/** A listener that must never be reached: it counts and drops every connection. */
export async function canary(host: string, port = 0): Promise<Canary> {
  const c: Canary = { host, port: 0, hits: 0, server: createServer() };
  c.server.on("connection", (s: Socket) => {
    c.hits++;
    s.destroy();
  });
  c.port = await listenOn(c.server, host, port);
  return c;
}

export interface CountingRelay {
  relay: Relay;
  /** The relay's table, so tests can wire relays that point at each other after they listen. */
  table: RoutingTable;
  host: string;
  port: number;
  /** Connections the listener accepted and handed to the relay. */
  accepted: number;
  /** The relay's own sockets on the client side, for buffer accounting. */
  sockets: Set<Socket>;
  close(): Promise<void>;
}

/** A relay with a link identity from the test CA (unless `identity` is given) that knows every `knownRelays` peer. */
export async function countingRelay(
  opts: Omit<RelayOptions, "table"> & { routes: Route[] },
  host = "127.0.0.1",
): Promise<CountingRelay> {
  knownRelays.push(opts.name);
  const table = new PeeredTable(opts.name, () => knownRelays);
  table.set({ node: opts.name, version: 1, routes: opts.routes });
  const identity = "identity" in opts ? opts.identity : relayIdentityForTest(TEST_REALM, opts.name);
  const relay = new Relay({ realm: TEST_REALM, ...opts, identity, table });
  const hwm = opts.limits?.bufferBytes;
  const sockets = new Set<Socket>();
  const out: CountingRelay = {
    relay,
    table,
    host,
    port: 0,
    accepted: 0,
    sockets,
    async close() {
      relay.destroyAll();
      relay.close();
      server.close();
    },
  };
  const server = createServer(
    { allowHalfOpen: true, ...(hwm ? { highWaterMark: hwm } : {}) } as Parameters<typeof createServer>[0],
    (s) => {
      out.accepted++;
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      relay.handle(s);
    },
  );
  // A burst of thousands of connects must not overflow the accept queue.
  server.listen({ port: 0, host, backlog: 4096 });
  await once(server, "listening");
  const a = server.address();
  if (a === null || typeof a === "string") throw new Error("no port");
  out.port = a.port;
  return out;
}

/** Runs `n` tasks with at most `parallel` in flight. */
export async function pool(n: number, parallel: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
}

/** Source addresses to spread thousands of short connections over (TIME_WAIT, ephemeral ports). */
export const SOURCES = Array.from({ length: 32 }, (_, i) => `127.0.${100 + (i >> 4)}.${(i % 16) + 1}`);

/** A client socket; without half-open it answers the relay's FIN with its own, so `close` marks the relay's close. */
export function dial(host: string, port: number, localAddress?: string): Socket {
  const s = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
  s.on("error", () => {});
  return s;
}

/** Status code of the first status line in `buf`, or undefined while incomplete. */
export function statusOf(buf: Buffer): number | undefined {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(buf.subarray(0, 16).toString("latin1"));
  return m ? Number(m[1]) : undefined;
}

let gcFn: (() => void) | undefined;
/** A full GC, so heap figures compare like with like (vitest does not pass --expose-gc). */
export function gc(): void {
  if (!gcFn) {
    setFlagsFromString("--expose-gc");
    gcFn = runInNewContext("gc") as () => void;
  }
  gcFn();
}

export const mib = (n: number) => (n / (1024 * 1024)).toFixed(1);

/** Open TCP handles of this process (sockets and servers). */
export function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap" || r === "TCPServerWrap").length;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(pred: () => boolean, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pred()) return true;
    await sleep(stepMs);
  }
  return pred();
}
