// The least a Node.js process can do as one of the links bench's three hops with the relays'
// link TLS, for the bench's "node TLS floor" lane (docs/benchmarks/links.md): accept one kind of
// socket, dial the one target it was started with, and move bytes both ways. No CONNECT, framing,
// routing, streams, credit, metrics or limits. The TLS is what relay links use: TLS 1.3 only, the
// links' cipher order (AES-128-GCM first, the accepting side's order decides), the relays' test
// certificates, both certificates verified against the realm CA, the dialled one also checked for
// the expected relay's URI SAN. Bytes move the cheapest way Node offers: every socket reads with
// `onread` into buffers this process owns (`tls.connect`'s and `net.connect`'s option when
// dialling; for accepted sockets, which Node gives no such option, the same Node slots the relay's
// `pump.ts` and `links/reads.ts` set), and each read is written straight on without a copy.
// So three of these bound what any relay design on Node's TLS sockets can cost per byte.
// Usage (forked with an IPC channel): bench-tls-floor.ts IN OUT TARGET_PORT TLS_DIR [PEER] → sends {port}.
//   IN, OUT: `plain` or `tls`: how it accepts, and how it dials 127.0.0.1:TARGET_PORT.
//   TLS_DIR: tls.crt, tls.key, ca.crt of realm "bench" (test/support/identity.ts, writeRelayTls).
//   PEER: the relay name the dialled certificate must carry (OUT = tls).
import { readFileSync } from "node:fs";
import { createServer, connect as netConnect, type OnReadOpts, type Server, Socket } from "node:net";
import { join } from "node:path";
import {
  type ConnectionOptions,
  type PeerCertificate,
  type TLSSocket,
  Server as TlsServer,
  connect as tlsConnect,
} from "node:tls";
import { LINK_CIPHERS } from "../../k8s-agent/src/relay/links/tls.ts";
import { onreadSlots } from "../../k8s-agent/src/relay/pump.ts";
import { relayUri } from "../../src/core/identity.ts";

const [inMode, outMode, targetArg, tlsDir = "", peer = ""] = process.argv.slice(2);
const REALM = "bench";
const target = Number(targetArg);
if ((inMode !== "plain" && inMode !== "tls") || (outMode !== "plain" && outMode !== "tls") || !(target > 0)) {
  throw new Error("usage: bench-tls-floor.ts plain|tls plain|tls TARGET_PORT TLS_DIR [PEER]");
}

/** Read buffers: a plain socket's reads as the relay's (pump.ts), a TLS socket's hold one 16 KiB record each. */
const PLAIN_READ = 256 * 1024;
const TLS_READ = 64 * 1024;
/** A direction stops reading while this much waits to be written (the relays' per-direction buffer). */
const MAX_QUEUED = 256 * 1024;

const read = (name: string) => readFileSync(join(tlsDir, name), "utf8");
const material =
  inMode === "tls" || outMode === "tls"
    ? {
        key: read("tls.key"),
        cert: read("tls.crt"),
        ca: read("ca.crt"),
        minVersion: "TLSv1.3" as const,
        ciphers: LINK_CIPHERS,
      }
    : undefined;

/**
 * One direction of the stream: the source reads into `cur`, which is written on as it is. A write
 * that does not let go of its bytes at once keeps the buffer until its callback, and the source
 * reads into another from a small free list. A plain socket lets go when the write went to the
 * kernel whole; a TLS socket's handle encrypts (or copies) what it is handed before the write
 * returns, so there a buffer is held only when the write queued behind an earlier one.
 */
class Direction {
  dst: Socket | undefined;
  src: Socket | undefined;
  private cur: Buffer;
  private readonly free: Buffer[] = [];
  /** Per write not yet called back, in order: the buffer it holds, or null. */
  private readonly lent: Array<Buffer | null> = [];
  private waiting = false;

  constructor(
    private readonly size: number,
    private readonly dstTls: boolean,
  ) {
    this.cur = Buffer.allocUnsafeSlow(size);
  }

  /** `onread.buffer`: Node asks for the buffer of the next read right after each callback. */
  readonly next = (): Buffer => this.cur;

  /** `onread.callback`: false stops reading until the destination drains. */
  readonly onRead = (n: number, buf: Uint8Array): boolean => {
    const dst = this.dst as Socket;
    const before = dst.writableLength;
    dst.write((buf as Buffer).subarray(0, n), this.written);
    if (this.dstTls ? before > 0 : dst.writableLength > 0) {
      this.lent.push(this.cur);
      this.cur = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
    } else this.lent.push(null);
    if (dst.writableLength <= MAX_QUEUED) return true;
    if (!this.waiting) {
      this.waiting = true;
      dst.once("drain", this.resume);
    }
    return false;
  };

  private readonly written = (): void => {
    const b = this.lent.shift();
    if (b) this.free.push(b);
  };

  private readonly resume = (): void => {
    this.waiting = false;
    this.src?.resume();
  };

  get onread(): OnReadOpts {
    return { buffer: this.next, callback: this.onRead };
  }
}

/** Node's `onread` slots (the relay's pump.ts finds them the same way). */
const SLOTS = ((): { buffer: symbol; generator: symbol; callback: symbol } => {
  const probe = new Socket({ onread: { buffer: () => Buffer.alloc(1), callback: () => true } });
  const slots = onreadSlots(probe);
  probe.destroy();
  // A floor that silently read through 'data' would measure something else: refuse instead.
  if (slots === undefined) throw new Error("this Node keeps no onread slots where the floor expects them");
  return slots;
})();

/** Makes an accepted socket read through `d` from now on, as the Socket constructor does with `onread`. */
function adopt(s: Socket, d: Direction): void {
  const handle = (s as Socket & { _handle?: { useUserBuffer?: (b: Uint8Array) => void } | null })._handle;
  if (handle == null || typeof handle.useUserBuffer !== "function") throw new Error("accepted socket has no handle");
  const slots = s as Socket & Record<symbol, unknown>;
  const first = d.next();
  slots[SLOTS.buffer] = first;
  slots[SLOTS.generator] = d.next;
  slots[SLOTS.callback] = d.onRead;
  handle.useUserBuffer(first);
}

function checkPeer(_host: string, cert: PeerCertificate): Error | undefined {
  const sans = typeof cert.subjectaltname === "string" ? cert.subjectaltname.split(", ") : [];
  return sans.includes(`URI:${relayUri(REALM, peer)}`) ? undefined : new Error(`certificate does not name ${peer}`);
}

/** Dials the target; `ready` once bytes can be written (after the TLS handshake). */
function dial(d: Direction, ready: (s: Socket) => void, fail: () => void): Socket {
  if (outMode === "plain") {
    const s = netConnect({ host: "127.0.0.1", port: target, noDelay: true, allowHalfOpen: true, onread: d.onread });
    s.once("connect", () => ready(s));
    s.on("error", fail);
    return s;
  }
  // tls.connect takes `onread` (Node's tls docs) and `allowHalfOpen` though @types/node declares neither.
  const opts: ConnectionOptions & { onread: OnReadOpts; allowHalfOpen: boolean } = {
    ...material,
    host: "127.0.0.1",
    port: target,
    servername: "",
    checkServerIdentity: checkPeer,
    allowHalfOpen: true,
    onread: d.onread,
  };
  const s = tlsConnect(opts);
  s.setNoDelay(true);
  s.once("secureConnect", () => {
    // The lane is only a floor for the links if it runs their TLS.
    const cipher = s.getCipher().standardName;
    if (s.getProtocol() !== "TLSv1.3" || cipher !== "TLS_AES_128_GCM_SHA256") {
      process.stderr.write(`bench-tls-floor: negotiated ${s.getProtocol()} ${cipher}\n`);
      return fail();
    }
    ready(s);
  });
  s.on("error", fail);
  return s;
}

function carry(inSock: Socket): void {
  inSock.setNoDelay(true);
  const up = new Direction(inMode === "tls" ? TLS_READ : PLAIN_READ, outMode === "tls");
  const down = new Direction(outMode === "tls" ? TLS_READ : PLAIN_READ, inMode === "tls");
  const fail = () => {
    inSock.destroy();
    out.destroy();
  };
  inSock.on("error", fail);
  const out = dial(
    down,
    (o) => {
      up.dst = o;
      up.src = inSock;
      down.dst = inSock;
      down.src = o;
      // What the accepted socket read before it was adopted is Node's own buffer: written on first, in order.
      for (let c = inSock.read() as Buffer | null; c !== null; c = inSock.read() as Buffer | null) o.write(c);
      adopt(inSock, up);
      // Flowing, so 'end' is emitted; with `onread` no 'data' event comes.
      inSock.resume();
      o.resume();
    },
    fail,
  );
  inSock.on("end", () => out.end());
  out.on("end", () => inSock.end());
}

let server: Server;
if (inMode === "tls") {
  const tls = new TlsServer({
    ...material,
    requestCert: true,
    rejectUnauthorized: true,
    honorCipherOrder: true,
    allowHalfOpen: true,
  });
  tls.on("secureConnection", (s: TLSSocket) => carry(s));
  tls.on("tlsClientError", () => {});
  server = tls;
} else {
  server = createServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: true }, carry);
}
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  process.send?.({ port: typeof a === "object" && a ? a.port : 0 });
});
process.on("disconnect", () => process.exit(0));
