// Micro-measurement: the CPU one Node TLS 1.3 leg costs per MiB on loopback, for the ways a
// relay may read and write its link sockets (docs/benchmarks/links.md, "Where the bulk CPU
// goes"). Both ends run in this process, so a figure is sender + receiver together. Not part
// of `npm run bench` (no .bench.ts suffix): run it with
//   node --import tsx --expose-gc bench/tls-leg.ts [MiB per run, default 128] [variant ...]
import { connect as netConnect, createServer as netServer, type Socket } from "node:net";
import { type TLSSocket, connect as tlsConnect, createServer as tlsServer } from "node:tls";
import { testPki } from "../test/support/identity.ts";

const MIB = 1024 * 1024;
const TOTAL = Number(process.argv[2] ?? 128) * MIB;
const ROUNDS = 3;
const pki = testPki("bench-tls-leg");
const server = pki.issue("a");
const client = pki.issue("b");

interface Variant {
  name: string;
  /** Plain TCP instead of TLS. */
  plain?: boolean;
  cipher?: string;
  /** Bytes per write call on the sender. */
  chunk?: number;
  /** Writes per cork/uncork (one writev). */
  batch?: number;
  noDelay?: boolean;
  highWaterMark?: number;
  /** How the receiver reads. */
  read?: "data" | "paused" | "onread-shared" | "onread-copy" | "onread-slab";
}

const VARIANTS: Variant[] = [
  { name: "plain TCP, 64 KiB writes, data", plain: true },
  { name: "default (AES-256-GCM, 64 KiB writes, data)" },
  { name: "TLS_AES_128_GCM_SHA256", cipher: "TLS_AES_128_GCM_SHA256" },
  { name: "TLS_CHACHA20_POLY1305_SHA256", cipher: "TLS_CHACHA20_POLY1305_SHA256" },
  { name: "16 KiB writes", chunk: 16 * 1024 },
  { name: "256 KiB writes", chunk: 256 * 1024 },
  { name: "1 MiB writes", chunk: MIB },
  { name: "writev: 4 × 64 KiB corked", batch: 4 },
  { name: "writev: 16 × 16 KiB corked", chunk: 16 * 1024, batch: 16 },
  { name: "setNoDelay on both", noDelay: true },
  { name: "highWaterMark 1 MiB", highWaterMark: MIB },
  { name: "receiver paused, read()", read: "paused" },
  { name: "receiver onread, one shared 64 KiB buffer", read: "onread-shared" },
  { name: "receiver onread, shared buffer, each read copied out", read: "onread-copy" },
  { name: "receiver onread, 1 MiB slab handed out in slices", read: "onread-slab" },
  { name: "onread slab + 256 KiB writes", read: "onread-slab", chunk: 256 * 1024 },
];

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function listen(v: Variant): Promise<{ port: number; accepted: Promise<Socket>; close: () => void }> {
  let resolveAccepted: (s: Socket) => void = () => {};
  const accepted = new Promise<Socket>((r) => {
    resolveAccepted = r;
  });
  const srv = v.plain
    ? netServer((s) => resolveAccepted(s))
    : tlsServer(
        {
          key: server.key,
          cert: server.certChain,
          ca: server.trustBundle,
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: "TLSv1.3",
          ...(v.cipher ? { ciphers: v.cipher } : {}),
        },
        (s: TLSSocket) => resolveAccepted(s),
      );
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  return { port, accepted, close: () => srv.close() };
}

/** Reads `total` bytes the chosen way; resolves when all arrived. */
function receive(s: Socket, v: Variant, total: number): Promise<void> {
  return new Promise((resolve) => {
    let got = 0;
    const count = (n: number) => {
      got += n;
      if (got >= total) resolve();
    };
    if (v.read === "paused") {
      s.on("readable", () => {
        for (let c = s.read() as Buffer | null; c !== null; c = s.read() as Buffer | null) count(c.length);
      });
    } else if (v.read === undefined || v.read === "data") {
      s.on("data", (c: Buffer) => count(c.length));
    }
    // onread variants count in their callback (see connectReceiver).
    (s as Socket & { countForBench?: (n: number) => void }).countForBench = count;
  });
}

function connectReceiver(v: Variant, port: number): Promise<Socket> {
  const onread =
    v.read === "onread-shared" || v.read === "onread-copy"
      ? { buffer: Buffer.allocUnsafeSlow(64 * 1024), callback }
      : v.read === "onread-slab"
        ? { buffer: slabBuffer, callback }
        : undefined;
  let slab = Buffer.allocUnsafeSlow(MIB);
  let at = 0;
  function slabBuffer(): Uint8Array {
    if (slab.length - at < 16 * 1024) {
      slab = Buffer.allocUnsafeSlow(MIB);
      at = 0;
    }
    return slab.subarray(at);
  }
  let sock: Socket;
  const kept: Buffer[] = [];
  function callback(n: number, buf: Uint8Array): boolean {
    at += n;
    if (v.read === "onread-copy") {
      // What a session that keeps the bytes does: a copy per read, dropped soon after.
      kept.push(Buffer.from(buf.subarray(0, n)));
      if (kept.length > 8) kept.shift();
    }
    (sock as Socket & { countForBench?: (n: number) => void }).countForBench?.(n);
    return true;
  }
  return new Promise((resolve, reject) => {
    const common = {
      host: "127.0.0.1",
      port,
      ...(v.highWaterMark ? { highWaterMark: v.highWaterMark } : {}),
      ...(onread ? { onread } : {}),
    };
    sock = v.plain
      ? netConnect(common)
      : tlsConnect({
          ...common,
          key: client.key,
          cert: client.certChain,
          ca: client.trustBundle,
          minVersion: "TLSv1.3",
          checkServerIdentity: () => undefined,
          ...(v.cipher ? { ciphers: v.cipher } : {}),
        });
    sock.once(v.plain ? "connect" : "secureConnect", () => resolve(sock));
    sock.once("error", reject);
  });
}

async function send(s: Socket, v: Variant, total: number): Promise<void> {
  const chunk = v.chunk ?? 64 * 1024;
  const batch = v.batch ?? 1;
  const buf = Buffer.alloc(chunk, 7);
  let sent = 0;
  while (sent < total) {
    if (batch > 1) s.cork();
    let ok = true;
    for (let i = 0; i < batch && sent < total; i++) {
      ok = s.write(buf);
      sent += chunk;
    }
    if (batch > 1) s.uncork();
    if (!ok) await new Promise((r) => s.once("drain", r));
  }
}

async function once(v: Variant): Promise<{ mibs: number; msPerMib: number; cipher: string }> {
  const { port, accepted, close } = await listen(v);
  const rx = await connectReceiver(v, port);
  const tx = await accepted;
  if (v.noDelay) {
    rx.setNoDelay(true);
    tx.setNoDelay(true);
  }
  const cipher = v.plain ? "-" : ((rx as TLSSocket).getCipher()?.standardName ?? "?");
  (globalThis as { gc?: () => void }).gc?.();
  const done = receive(rx, v, TOTAL);
  const c0 = cpuMs();
  const t0 = performance.now();
  await Promise.all([send(tx, v, TOTAL), done]);
  const ms = performance.now() - t0;
  const cpu = cpuMs() - c0;
  tx.destroy();
  rx.destroy();
  close();
  return { mibs: TOTAL / MIB / (ms / 1000), msPerMib: cpu / (TOTAL / MIB), cipher };
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(3);
  const list = wanted.length === 0 ? VARIANTS : VARIANTS.filter((v) => wanted.some((w) => v.name.includes(w)));
  console.log(`tls-leg: ${TOTAL / MIB} MiB per run, best of ${ROUNDS} (lowest CPU), both ends in one process`);
  console.log("| variant | cipher (getCipher) | MiB/s | CPU ms/MiB (both ends) |");
  console.log("|---|---|---|---|");
  for (const v of list) {
    let best: { mibs: number; msPerMib: number; cipher: string } | undefined;
    for (let i = 0; i < ROUNDS; i++) {
      const r = await once(v);
      if (best === undefined || r.msPerMib < best.msPerMib) best = r;
    }
    const b = best as { mibs: number; msPerMib: number; cipher: string };
    console.log(`| ${v.name} | ${b.cipher} | ${b.mibs.toFixed(0)} | ${b.msPerMib.toFixed(2)} |`);
  }
}

await main();
