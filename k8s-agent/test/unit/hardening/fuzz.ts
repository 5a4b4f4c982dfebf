// A seeded fuzzer for the relay's CONNECT handshake, shared by the CI slice
// (fuzz.test.ts) and the full run (`npm run soak`). Each case is a byte string
// cut at random chunk boundaries, sent over its own real loopback connection;
// the runner checks what came back and how fast the relay let go of it.
import { createServer, type Socket } from "node:net";
import { FAILURE_REASONS, type FailureReason } from "../../../src/relay/protocol.ts";
import type { RelayObserver } from "../../../src/relay/relay.ts";
import { hop, route } from "../relay/helpers.ts";
import {
  type CountingRelay,
  countingRelay,
  dial,
  gc,
  listenOn,
  pool,
  prng,
  SOURCES,
  statusOf,
  waitFor,
} from "./support.ts";

/** Statuses the relay may ever answer a handshake with. */
const ANY = [200, 400, 403, 404, 405, 407, 408, 431, 502, 503, 504, 508];

export interface FuzzCase {
  kind: string;
  chunks: Buffer[];
  /** The client half-closes after its last chunk (an abandoned head the relay must drop at once). */
  end: boolean;
  /** Destroy right after writing (a peer that resets mid-head). */
  reset: boolean;
  /** Acceptable answers; 0 = closed without an answer. */
  allowed: number[];
  /** A tunnel that must carry this payload back (echo) before the client ends it. */
  payload?: Buffer;
}

function chunked(r: () => number, data: Buffer): Buffer[] {
  const n = 1 + Math.floor(r() * Math.min(8, data.length));
  const cuts = new Set<number>();
  while (cuts.size < n - 1) cuts.add(1 + Math.floor(r() * (data.length - 1)));
  const at = [0, ...[...cuts].sort((a, b) => a - b), data.length];
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < at.length; i++) out.push(data.subarray(at[i], at[i + 1]));
  return out;
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T;
}

function randomBytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) {
    const v = Math.floor(r() * 4294967296);
    for (let k = 0; k < 4 && i + k < n; k++) b[i + k] = (v >>> (8 * k)) & 0xff;
  }
  return b;
}

const METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE", "PROPFIND", "BREW"];
const NOISE = ["\r", "\n", "\0", " ", ":", "\t", "\x7f", "\xff", "%", "@", "/", "[", "]"];

/** Builds case `i` of the run with `seed`: the same (seed, i) always gives the same bytes (signed hops differ in nonce and time only). */
export function fuzzCase(seed: number, i: number, appPort: number): FuzzCase {
  const r = prng(seed ^ Math.imul(i + 1, 0x9e3779b1));
  const valid = `CONNECT app1:${appPort} HTTP/1.1\r\nHost: app1:${appPort}\r\n\r\n`;
  const incomplete = (kind: string, text: Buffer | string): FuzzCase => {
    const end = r() < 0.7;
    const data = typeof text === "string" ? Buffer.from(text, "latin1") : text;
    // Never finished: the relay drops it when the client gives up, or answers 408 at the header timeout.
    return { kind, chunks: chunked(r, data), end, reset: false, allowed: end ? [0] : [408] };
  };
  const complete = (kind: string, text: string | Buffer, allowed: number[]): FuzzCase => {
    const data = typeof text === "string" ? Buffer.from(text, "latin1") : text;
    return { kind, chunks: chunked(r, data), end: false, reset: false, allowed };
  };
  const x = r();
  if (x < 0.03) {
    const payload = randomBytes(r, 1 + Math.floor(r() * 4096));
    const head = Buffer.from(valid, "latin1");
    // Half the tunnels pipeline their first bytes right behind the head.
    return { ...complete("tunnel", head, [200]), payload };
  }
  if (x < 0.04) {
    // What a relay hop looked like before links: refused on plain CONNECT.
    const authority = `app1:${appPort}`;
    const auth = `Hopway-HMAC relay=peer-x, ts=${1_700_000_000 + i}, nonce=${"0a".repeat(16)}, sig=${"0".repeat(64)}`;
    const head = `CONNECT ${authority} HTTP/1.1\r\nHopway-Hops: peer-x\r\nProxy-Authorization: ${auth}\r\n\r\n`;
    return complete("relay-claim", head, [407]);
  }
  if (x < 0.14) {
    const g = randomBytes(r, 1 + Math.floor(r() * 600));
    // A first byte 0x16 is a TLS record: the link handshake takes it and answers no HTTP.
    if (g[0] === 0x16) g[0] = 0x17;
    return complete("garbage", Buffer.concat([g, Buffer.from("\r\n\r\n")]), [400, 405]);
  }
  if (x < 0.19) {
    // One header line past the limit, never finished: 431 once 16 KiB are in, whatever comes after.
    const line = `CONNECT app1 HTTP/1.1\r\nX: ${"a".repeat(16_384 + Math.floor(r() * 20_000))}`;
    return { ...complete("huge-line", line, [431]), end: r() < 0.5 };
  }
  if (x < 0.21) {
    // Over the limit without a blank line: 431 as soon as 16 KiB are in, not at the end.
    const big = Buffer.alloc(16_385 + Math.floor(r() * 30_000), 0x61);
    return complete("huge-no-crlf", big, [431]);
  }
  if (x < 0.26) {
    const lines = Array.from({ length: 500 + Math.floor(r() * 800) }, (_, k) => `X-H${k}: ${"v".repeat(30)}`);
    return complete("many-headers", `CONNECT app1 HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`, [431]);
  }
  if (x < 0.31) {
    const where = pick(r, [
      `CONNECT app1\0:${appPort} HTTP/1.1\r\n\r\n`,
      `CONNECT app1:${appPort} HTTP/1.1\r\nX-A: a\0b\r\n\r\n`,
      `CONNECT app1:${appPort} HTTP/1.1\r\nX\0A: a\r\n\r\n`,
      `\0CONNECT app1:${appPort} HTTP/1.1\r\n\r\n`,
      `CONNECT app1:${appPort} HTTP/1.1\0\r\n\r\n`,
    ]);
    return complete("nul", where, [400]);
  }
  if (x < 0.35) return incomplete("bare-lf", `CONNECT app1:${appPort} HTTP/1.1\nHost: app1\n\n`);
  if (x < 0.39) return incomplete("missing-crlf", `CONNECT app1:${appPort} HTTP/1.1\r\nHost: app1\r\n`);
  if (x < 0.47) {
    const dup = pick(r, [
      ["Host: a\r\nHost: b", 200],
      ["Proxy-Authorization: Bearer a\r\nProxy-Authorization: Bearer b", 200],
      ["Content-Length: 5\r\nTransfer-Encoding: chunked", 200],
      ["Hopway-Hops: x\r\nHopway-Hops: y", 407],
      ["Proxy-Authorization: Hopway-HMAC relay=x, ts=1, nonce=00, sig=00", 407],
      ["Proxy-Authorization: Hopway-HMAC garbage", 407],
      ["X: 1\r\n: no-name", 400],
      ["X : space-before-colon", 400],
      ["X: a\r\n folded-continuation", 400],
    ] as const);
    return { ...complete("dup-headers", `CONNECT app1:${appPort} HTTP/1.1\r\n${dup[0]}\r\n\r\n`, [dup[1]]) };
  }
  if (x < 0.55) {
    const m = pick(r, METHODS);
    const line = pick(r, [
      [`${m} http://127.0.0.1:${appPort}/ HTTP/1.1`, 405],
      [`${m} / HTTP/1.1`, 405],
      [`${m.toLowerCase()} app1:${appPort} HTTP/1.1`, 400],
      [`connect app1:${appPort} HTTP/1.1`, 400],
      ["PRI * HTTP/2.0", 400],
      [`CONNECT app1:${appPort} HTTP/1.2`, 400],
      [`CONNECT app1:${appPort} HTTP/2`, 400],
      [`CONNECT app1:${appPort}  HTTP/1.1`, 400],
      [`CONNECT app1:${appPort}`, 400],
      ["CONNECT", 400],
      ["", 400],
    ] as const);
    return complete("method", `${line[0]}\r\nHost: x\r\n\r\n`, [line[1]]);
  }
  if (x < 0.6) {
    const target = pick(r, ["nobody:80", "10.0.0.1:22", "169.254.169.254:80", "fz:1", "app1:1"]);
    return complete("disallowed", `CONNECT ${target} HTTP/1.1\r\n\r\n`, [403, 404]);
  }
  if (x < 0.65) {
    // A TLS ClientHello or other binary protocol spoken at the relay.
    const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), randomBytes(r, 200)]);
    // A first byte 0x16 is a relay link's TLS handshake: it fails and closes without an HTTP answer
    // (at the latest at the header timeout), whatever follows.
    return { kind: "binary", chunks: chunked(r, hello), end: r() < 0.7, reset: false, allowed: [0] };
  }
  if (x < 0.67) return { kind: "empty", chunks: [], end: true, reset: false, allowed: [0] };
  if (x < 0.7) {
    return {
      kind: "reset",
      chunks: chunked(r, Buffer.from(valid.slice(0, 5 + Math.floor(r() * 20)))),
      end: false,
      reset: true,
      allowed: [],
    };
  }
  // Mutations of a good head: flips, insertions, deletions of structural characters.
  const bytes = [...Buffer.from(valid, "latin1")];
  const edits = 1 + Math.floor(r() * 4);
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(r() * bytes.length);
    const op = r();
    if (op < 0.4) bytes[at] = pick(r, NOISE).charCodeAt(0);
    else if (op < 0.7) bytes.splice(at, 0, pick(r, NOISE).charCodeAt(0));
    else bytes.splice(at, 1);
  }
  const data = Buffer.from(bytes);
  if (!data.includes("\r\n\r\n")) return incomplete("mutation", data);
  return complete("mutation", data, ANY);
}

export interface FuzzResult {
  cases: number;
  ms: number;
  violations: string[];
  byKind: Map<string, number>;
  byStatus: Map<number, number>;
  tunnels: number;
  echoAccepted: number;
  peakRssMiB: number;
  heapGrowthMiB: number;
  /** Sockets the relay accepted and still holds. */
  handlesAfter: number;
  openAfter: number;
  tunnelsAfter: number;
  failures: Partial<Record<FailureReason, number>>;
  /** Last byte sent to connection closed, for heads the relay could decide on. */
  closeP50Ms: number;
  closeP99Ms: number;
  closeMaxMs: number;
}

export interface FuzzRunOptions {
  seed: number;
  cases: number;
  parallel?: number;
  headerTimeoutMs?: number;
  /** Grace after the last byte before a complete or abandoned head must be closed. */
  closeWithinMs?: number;
}

/** Starts an echo target and a relay on loopback, runs the cases, tears everything down. */
export async function runFuzz(o: FuzzRunOptions): Promise<FuzzResult> {
  const headerTimeoutMs = o.headerTimeoutMs ?? 500;
  const closeWithin = o.closeWithinMs ?? 1000;
  let echoAccepted = 0;
  const echo = createServer((s) => {
    echoAccepted++;
    s.on("error", () => {});
    s.pipe(s);
  });
  const echoPort = await listenOn(echo, "127.0.0.1");
  const failures: Partial<Record<FailureReason, number>> = {};
  const observer: RelayObserver = {
    tunnelOpened() {},
    tunnelClosed() {},
    tunnelFailed(reason) {
      failures[reason] = (failures[reason] ?? 0) + 1;
    },
  };
  const relay: CountingRelay = await countingRelay({
    name: "fz",
    routes: [route("fz", "app1", [hop("app1", `ipv4://127.0.0.1:${echoPort}`)])],
    limits: { headerTimeoutMs, idleTimeoutMs: 10_000, maxConnections: 20_000 },
    observer,
  });
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 250);
  const violations: string[] = [];
  const byKind = new Map<string, number>();
  const byStatus = new Map<number, number>();
  let tunnels = 0;
  const closeMs: number[] = [];
  const t0 = performance.now();

  // Warm up (JIT, first connections from each source address) before the full width.
  const warm = Math.min(256, o.cases);
  const runCase = async (i: number) => {
    // Signed hops carry the current time: a long run outlives the relay's clock-skew window.
    const c = fuzzCase(o.seed, i, echoPort);
    byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
    const started = performance.now();
    const s: Socket = dial(relay.host, relay.port, SOURCES[i % SOURCES.length]);
    s.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    let echoed = 0;
    let status: number | undefined;
    let headLen = 0;
    const closed = new Promise<void>((res) => s.once("close", () => res()));
    const gotStatus = new Promise<void>((res) => {
      s.on("data", (d: Buffer) => {
        buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
        if (status === undefined) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          status = statusOf(buf);
          headLen = end + 4;
          res();
        }
        if (status === 200) echoed = buf.length - headLen;
      });
    });
    await new Promise<void>((res) => {
      s.once("connect", res);
      s.once("close", res);
    });
    for (const chunk of c.chunks) {
      if (s.destroyed) break;
      s.write(chunk);
      // Separate writes on a no-delay socket reach the relay as separate reads.
      await new Promise<void>((res) => setImmediate(res));
    }
    if (c.reset) {
      s.destroy();
      return;
    }
    const lastByte = performance.now();
    if (c.end) s.end();
    const budget = c.end || !c.allowed.includes(408) ? closeWithin : headerTimeoutMs + closeWithin;
    let deadline = (c.allowed.includes(408) ? started : lastByte) + budget;
    const until = () =>
      new Promise<boolean>((res) => setTimeout(() => res(false), Math.max(0, deadline - performance.now())));
    await Promise.race([gotStatus, closed, until()]);
    if (status === 200) {
      // Whatever opened a tunnel must carry bytes both ways and close when the client ends.
      tunnels++;
      const payload = c.payload ?? Buffer.from(`tunnel ${i}`);
      if (!s.destroyed) s.write(payload);
      // Bytes the client sent behind its head were pipelined: they come back first.
      const sent = Buffer.concat(c.chunks);
      const want = Buffer.concat([sent.subarray(sent.indexOf("\r\n\r\n") + 4), payload]);
      await waitFor(() => echoed >= want.length || s.destroyed, 2000, 5);
      if (!buf.subarray(headLen).equals(want)) violations.push(`#${i} ${c.kind}: echo mismatch`);
      s.end();
      deadline = performance.now() + closeWithin;
    }
    const inTime = await Promise.race([closed.then(() => true), until()]);
    if (inTime && !c.allowed.includes(408) && status !== 200) closeMs.push(performance.now() - lastByte);
    const got = status ?? 0;
    byStatus.set(got, (byStatus.get(got) ?? 0) + 1);
    if (!inTime) violations.push(`#${i} ${c.kind}: not closed within ${budget} ms (status ${got})`);
    if (!c.allowed.includes(got)) violations.push(`#${i} ${c.kind}: status ${got}, allowed ${c.allowed.join("/")}`);
    s.destroy();
  };
  await pool(warm, 8, runCase);
  await pool(o.cases - warm, o.parallel ?? 64, (i) => runCase(i + warm));

  const ms = performance.now() - t0;
  await waitFor(() => relay.relay.openConnections === 0 && relay.relay.activeTunnels === 0, 3000);
  clearInterval(sampler);
  const openAfter = relay.relay.openConnections;
  const tunnelsAfter = relay.relay.activeTunnels;
  gc();
  const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
  const handlesAfter = relay.sockets.size;
  await relay.close();
  echo.close();
  return {
    cases: o.cases,
    ms,
    violations,
    byKind,
    byStatus,
    tunnels,
    echoAccepted,
    peakRssMiB: peakRss / (1024 * 1024),
    heapGrowthMiB: heapGrowth / (1024 * 1024),
    handlesAfter,
    openAfter,
    tunnelsAfter,
    failures,
    closeP50Ms: quantile(closeMs, 0.5),
    closeP99Ms: quantile(closeMs, 0.99),
    closeMaxMs: quantile(closeMs, 1),
  };
}

export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

export function summarize(r: FuzzResult, seed: number): string {
  const kinds = [...r.byKind].map(([k, v]) => `${k}=${v}`).join(" ");
  const statuses = [...r.byStatus].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k || "closed"}×${v}`);
  return `relay fuzz seed=${seed}: ${r.cases} cases in ${(r.ms / 1000).toFixed(1)} s (${Math.round(r.cases / (r.ms / 1000))}/s), ${r.tunnels} tunnels, statuses ${statuses.join(" ")}, answer-to-close p50/p99/max ${r.closeP50Ms.toFixed(0)}/${r.closeP99Ms.toFixed(0)}/${r.closeMaxMs.toFixed(0)} ms, peak RSS ${r.peakRssMiB.toFixed(0)} MiB, heap growth ${r.heapGrowthMiB.toFixed(1)} MiB, open after ${r.openAfter}, violations ${r.violations.length} [${kinds}]`;
}

export { FAILURE_REASONS };
